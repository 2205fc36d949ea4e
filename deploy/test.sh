#!/usr/bin/env bash
# The project's test command (README): lint, then the whole pytest suite
# against real servers.
#
#   ./deploy/test.sh [pytest args...]
#
# Sets up .venv when missing or when pyproject.toml changed. Without a Docker
# engine and without KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL, starts the local
# servers of deploy/local and, on exit, stops the ones it started (a server
# that was already running is left running, for the next run's speed).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO_ROOT="$PWD"
LOCAL="$REPO_ROOT/deploy/local"

say() { printf '[test] %s\n' "$*" >&2; }

# shellcheck source=deploy/venv.sh
source "$REPO_ROOT/deploy/venv.sh"
# Headless Chromium and its driver for the web page's tests, promtool for the alert
# rules' (Debian's, installed when missing).
bash "$REPO_ROOT/deploy/test-tools.sh"

# --- Servers -----------------------------------------------------------------
started=()
cleanup() {
    local rc=$? s
    for s in "${started[@]}"; do
        bash "$LOCAL/$s" stop || { ((rc != 0)) || rc=1; }
    done
    exit "$rc"
}
trap cleanup EXIT

# start_if_needed <script>: starts it unless it already answers; remembers
# it for cleanup only when it was not running at all.
start_if_needed() {
    local script=$1 rc=0
    bash "$LOCAL/$script" status >/dev/null 2>&1 || rc=$?
    case $rc in
    0) say "${script%.sh} already running: using it, leaving it running" ;;
    3) started+=("$script") && bash "$LOCAL/$script" start ;;
    *) bash "$LOCAL/$script" start ;; # running but not answering yet: wait for it
    esac
}

if timeout 10 docker info >/dev/null 2>&1; then
    say "a Docker engine answers: tests use testcontainers for unconfigured servers"
else
    if [[ -n ${KAFKA_BOOTSTRAP_SERVERS:-} ]]; then
        say "KAFKA_BOOTSTRAP_SERVERS=$KAFKA_BOOTSTRAP_SERVERS: using it as configured"
    else
        start_if_needed kafka.sh
    fi
    if [[ -n ${DATABASE_URL:-} ]]; then
        say "DATABASE_URL is set: using it as configured"
    else
        start_if_needed postgres.sh
    fi
fi

# --- Checks --------------------------------------------------------------------
say "ruff check ."
ruff check .
say "pytest"
python -m pytest -q "$@"
