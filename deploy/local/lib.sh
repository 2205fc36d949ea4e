# Shared by deploy/local/*.sh (sourced, not run).
#
# Everything the local servers need (downloads, data, logs, pid files) lives
# under one gitignored state folder, so `rm -rf .state` is a full reset.
# Ports mirror the defaults in storemon/config.py; keep them in sync. Each can
# be moved by the environment (with STOREMON_STATE_DIR, a second, private set
# of servers next to the usual one: the fault tests start and stop their own).

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
STATE_DIR="${STOREMON_STATE_DIR:-$REPO_ROOT/.state}"
mkdir -p "$STATE_DIR"
STATE_DIR="$(cd "$STATE_DIR" && pwd)"

KAFKA_HOST=127.0.0.1
KAFKA_PORT="${STOREMON_KAFKA_PORT:-19092}"
KAFKA_CONTROLLER_PORT="${STOREMON_KAFKA_CONTROLLER_PORT:-19093}"
# Secured listeners of the same broker: SASL_SSL (SCRAM and PLAIN logins) and SSL with a
# client certificate, for trying and testing storemon's Kafka security settings.
KAFKA_SASL_SSL_PORT="${STOREMON_KAFKA_SASL_SSL_PORT:-19094}"
KAFKA_SSL_PORT="${STOREMON_KAFKA_SSL_PORT:-19095}"
PG_HOST=127.0.0.1
PG_PORT="${STOREMON_PG_PORT:-55432}"

log() { printf '%s\n' "[$(basename "$0" .sh)] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# True when something accepts TCP connections on host:port. Only used to
# detect a port taken by a foreign process; readiness is checked properly.
port_open() {
    (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}

# True when $1 is a live process whose command line contains $2 (guards
# against a stale pid file whose pid was reused by something else). Test it
# with `if`, not as `pid_matches ... && echo` at the end of a pipeline's
# stage: under pipefail a last non-matching pid would fail the whole listing
# (and, with set -e, end the script without a word).
pid_matches() {
    local pid=$1 needle=$2
    [[ -n $pid && -r /proc/$pid/cmdline ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$needle"
}

# Waits up to $2 seconds for pid $1 to exit; returns non-zero if it didn't.
wait_pid_gone() {
    local pid=$1 deadline=$((SECONDS + $2))
    while kill -0 "$pid" 2>/dev/null; do
        ((SECONDS < deadline)) || return 1
        sleep 0.2
    done
}

# Serializes start/stop of one server (e.g. two test sessions starting the
# stack at once). Holds fd 9 until the script exits; launched servers must
# close it (9>&-).
lock_state() {
    exec 9>"$STATE_DIR/$1.lock"
    flock -w 600 9 || die "timed out waiting for another start/stop of $1"
}

# Certificates made with openssl in the current folder (deploy/local's TLS), each server's
# valid for 10 years; a key pair NAME.key / NAME.crt signed by the CA ca.key / ca.crt.
tls_ca() { # CN
    openssl req -x509 -new -nodes -newkey rsa:2048 -days 3650 -keyout ca.key -out ca.crt \
        -subj "/CN=$1"
}
tls_signed() { # NAME CN [subjectAltName]
    local name=$1 extension=()
    openssl req -new -nodes -newkey rsa:2048 -keyout "$name.key" -out "$name.csr" -subj "/CN=$2"
    if [[ -n ${3:-} ]]; then
        printf 'subjectAltName=%s\n' "$3" >"$name.ext"
        extension=(-extfile "$name.ext")
    fi
    openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
        "${extension[@]}" -out "$name.crt"
}
