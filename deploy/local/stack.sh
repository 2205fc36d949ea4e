#!/usr/bin/env bash
# The local development stack: Kafka (deploy/local/kafka.sh) and PostgreSQL
# (deploy/local/postgres.sh), without Docker.
#
#   deploy/local/stack.sh {start|stop|status}
#
# A server configured from outside is left alone: with KAFKA_BOOTSTRAP_SERVERS
# set, Kafka isn't managed here; with DATABASE_URL set, PostgreSQL isn't.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

cmd="${1:-}"
case "$cmd" in
start | stop | status) ;;
*)
    echo "usage: $0 {start|stop|status}" >&2
    exit 2
    ;;
esac

rc=0
run() { # run <script> <configured-value> <env-var-name>
    local script=$1 configured=$2 var=$3
    if [[ -n $configured ]]; then
        echo "[stack] $var=$configured is set: using it as configured, not managing it" >&2
        return 0
    fi
    # status/stop go on to the other server even when this one fails.
    bash "$HERE/$script" "$cmd" || rc=$?
}

if [[ $cmd == stop ]]; then
    # Reverse order of start.
    run postgres.sh "${DATABASE_URL:-}" DATABASE_URL
    run kafka.sh "${KAFKA_BOOTSTRAP_SERVERS:-}" KAFKA_BOOTSTRAP_SERVERS
else
    run kafka.sh "${KAFKA_BOOTSTRAP_SERVERS:-}" KAFKA_BOOTSTRAP_SERVERS
    # A failed start stops here: half a stack is no stack.
    [[ $cmd == start && $rc -ne 0 ]] && exit "$rc"
    run postgres.sh "${DATABASE_URL:-}" DATABASE_URL
fi
exit "$rc"
