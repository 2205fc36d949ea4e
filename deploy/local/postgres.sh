#!/usr/bin/env bash
# A private PostgreSQL cluster for development and tests, from the operating
# system's packages (no Docker), separate from any system cluster.
#
#   deploy/local/postgres.sh start    # idempotent; returns once it answers
#   deploy/local/postgres.sh stop     # fast shutdown, then harder if needed
#   deploy/local/postgres.sh status   # 0 = running and answering
#
# Listens on 127.0.0.1:55432 (or $STOREMON_PG_PORT) only, plus a unix socket in
# the state folder that only the cluster's owner can open. Data in
# $STOREMON_STATE_DIR/postgres.
#
# Roles: `postgres`, the superuser, only over that socket and only for set-up
# here; `storemon`, the application's, neither superuser nor able to create roles
# or databases, owns the database `storemon` (so it can create a schema per
# deployment or test, and its reports' large objects) and logs in over TCP with a
# password (SCRAM). The password is generated once and kept, as a pgpass line, in
# $STOREMON_STATE_DIR/postgres/pgpass (mode 600), where storemon's default
# DATABASE_URL finds it (storemon/config.py). A cluster made by an earlier version
# of this script (trust auth, `storemon` a superuser) is brought to this at start.
#
# TLS: the server offers it (clients' default sslmode=prefer takes it) with a
# certificate for 127.0.0.1 and localhost signed by a CA made at the first start;
# $STOREMON_STATE_DIR/postgres/ca.crt is that CA, for `sslmode=verify-full&sslrootcert=`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PG_DIR="$STATE_DIR/postgres"
DATA_DIR="$PG_DIR/data"
SOCK_DIR="$PG_DIR/run"
LOG_FILE="$PG_DIR/postgres.log"
# The application role's password, as a pgpass line; storemon/config.py knows this path.
PASS_FILE="$PG_DIR/pgpass"
# The CA the server's certificate is signed by (clients verify against it).
CA_FILE="$PG_DIR/ca.crt"
START_TIMEOUT="${STOREMON_PG_START_TIMEOUT:-60}"
STOP_TIMEOUT="${STOREMON_PG_STOP_TIMEOUT:-60}"
DB=storemon

find_pg_bin() {
    local d
    if [[ -n ${STOREMON_PG_BIN:-} ]]; then
        echo "$STOREMON_PG_BIN"
        return 0
    fi
    # An existing cluster must be run by the major version that created it.
    if [[ -f $DATA_DIR/PG_VERSION ]]; then
        d="/usr/lib/postgresql/$(cat "$DATA_DIR/PG_VERSION")/bin"
        [[ -x $d/pg_ctl ]] && { echo "$d"; return 0; }
    fi
    # Debian/Ubuntu keep server binaries off PATH, one folder per major version.
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        [[ -x $d/initdb && -x $d/pg_ctl ]] && { echo "$d"; return 0; }
    done
    if command -v initdb >/dev/null && command -v pg_ctl >/dev/null; then
        dirname "$(readlink -f "$(command -v pg_ctl)")"
        return 0
    fi
    return 1
}

ensure_pg_bin() {
    PG_BIN="$(find_pg_bin)" && return 0
    if [[ $EUID -eq 0 ]] && command -v apt-get >/dev/null; then
        log "PostgreSQL server not installed: installing the OS package 'postgresql'"
        DEBIAN_FRONTEND=noninteractive apt-get update -q
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql
        PG_BIN="$(find_pg_bin)" && return 0
    fi
    die "PostgreSQL server binaries (initdb, pg_ctl) not found. Install the server" \
        "(Debian/Ubuntu: sudo apt-get install -y postgresql), or set DATABASE_URL to an" \
        "existing server, or STOREMON_PG_BIN to the folder holding initdb and pg_ctl"
}

# The server refuses to run as root: as root, everything server-side runs as
# the `postgres` OS user (created by the package); otherwise as ourselves.
as_pg() {
    if [[ $EUID -eq 0 ]]; then
        # From /, so the tools never trip over a cwd postgres can't read.
        (cd / && runuser -u postgres -- "$@")
    else
        "$@"
    fi
}

# Set-up, as the superuser, over the unix socket.
psql_admin() {
    "$PG_BIN/psql" -X -q -w -h "$SOCK_DIR" -p "$PG_PORT" -U postgres -d postgres \
        -v ON_ERROR_STOP=1 "$@"
}

# As the application, over TCP with its password: what storemon does.
psql_app() {
    PGPASSFILE="$PASS_FILE" "$PG_BIN/psql" -X -q -w -h "$PG_HOST" -p "$PG_PORT" -U "$DB" -d "$DB" \
        -v ON_ERROR_STOP=1 "$@"
}

prepare_dirs() {
    mkdir -p "$PG_DIR"
    if [[ $EUID -eq 0 ]]; then
        id postgres >/dev/null 2>&1 ||
            die "no 'postgres' OS user (it comes with the postgresql package)"
        chown postgres:postgres "$PG_DIR"
        chmod 700 "$PG_DIR"
        # postgres must be able to reach its folder: our own state folder we
        # can open up; a parent we don't own is the user's call.
        if ! runuser -u postgres -- test -w "$PG_DIR" 2>/dev/null; then
            chmod o+x "$STATE_DIR"
        fi
        if ! runuser -u postgres -- test -w "$PG_DIR" 2>/dev/null; then
            # Name the first folder, from the root down, that it can't enter.
            local p="" part parts
            IFS=/ read -ra parts <<<"${PG_DIR#/}"
            for part in "${parts[@]}"; do
                p="$p/$part"
                runuser -u postgres -- test -x "$p" 2>/dev/null || break
            done
            die "the 'postgres' OS user cannot reach $PG_DIR (blocked at $p)." \
                "Set STOREMON_STATE_DIR to a folder it can reach, or: chmod o+x $p"
        fi
    fi
    as_pg mkdir -p "$SOCK_DIR"
    # A unix socket path is limited to 107 bytes.
    ((${#SOCK_DIR} < 90)) ||
        die "state folder path too long for a unix socket ($SOCK_DIR); set STOREMON_STATE_DIR shorter"
}

init_cluster() {
    [[ -f $DATA_DIR/PG_VERSION ]] && return 0
    log "initdb (first run) in $DATA_DIR"
    # write_config replaces pg_hba.conf before the first start.
    as_pg "$PG_BIN/initdb" -D "$DATA_DIR" -U postgres -E UTF8 --locale=C \
        --auth-local=trust --auth-host=scram-sha-256 >"$PG_DIR/initdb.log" 2>&1 || {
        cat "$PG_DIR/initdb.log" >&2
        die "initdb failed"
    }
    echo "include_if_exists = 'storemon.conf'" | as_pg tee -a "$DATA_DIR/postgresql.conf" >/dev/null
}

# The server's certificate and key in the data folder, and the CA that signed them in
# CA_FILE, made once (the CA's key is not kept: nothing else is ever signed by it).
ensure_tls() {
    as_pg test -f "$DATA_DIR/server.key" && [[ -f $CA_FILE ]] && return 0
    command -v openssl >/dev/null || die "openssl not found (Debian: apt-get install openssl)"
    local tmp
    tmp="$(mktemp -d)"
    (
        cd "$tmp"
        tls_ca "storemon local PostgreSQL CA"
        tls_signed server "$PG_HOST" "IP:$PG_HOST,DNS:localhost"
    ) >"$PG_DIR/tls.log" 2>&1 || { cat "$PG_DIR/tls.log" >&2; rm -rf "$tmp"; die "openssl failed"; }
    as_pg tee "$DATA_DIR/server.crt" <"$tmp/server.crt" >/dev/null
    as_pg tee "$DATA_DIR/server.key" <"$tmp/server.key" >/dev/null
    as_pg chmod 600 "$DATA_DIR/server.key"
    cp "$tmp/ca.crt" "$CA_FILE"
    chmod 644 "$CA_FILE"
    rm -rf "$tmp"
}

# Our settings, rewritten at each start so changes here take effect.
write_config() {
    ensure_tls
    as_pg tee "$DATA_DIR/storemon.conf" >/dev/null <<EOF
# Generated by deploy/local/postgres.sh: edit the script, not this file.
listen_addresses = '$PG_HOST'
port = $PG_PORT
unix_socket_directories = '$SOCK_DIR'
# A disposable dev/test cluster: trade crash safety for speed.
fsync = off
synchronous_commit = off
full_page_writes = off
# The socket's trust auth (pg_hba.conf) is safe only if no one else can open it.
unix_socket_permissions = 0700
password_encryption = scram-sha-256
ssl = on
ssl_cert_file = 'server.crt'
ssl_key_file = 'server.key'
EOF
    as_pg tee "$DATA_DIR/pg_hba.conf" >/dev/null <<EOF
# Generated by deploy/local/postgres.sh: edit the script, not this file.
# Set-up: the superuser, over the unix socket (unix_socket_permissions = 0700).
local all postgres trust
# Everyone else, the application included: a password, over TCP on loopback.
host all all 127.0.0.1/32 scram-sha-256
host all all ::1/128 scram-sha-256
EOF
}

# Postmaster pids for this data folder: from postmaster.pid, or found by the
# `-D <data>` on its command line if that file is gone.
server_pids() {
    local pid
    {
        if [[ -f $DATA_DIR/postmaster.pid ]]; then
            pid="$(head -n 1 "$DATA_DIR/postmaster.pid")"
            if pid_matches "$pid" "$DATA_DIR"; then echo "$pid"; fi
        fi
        for pid in $(pgrep -f -- "-D $DATA_DIR" || true); do
            if pid_matches "$pid" "-D $DATA_DIR"; then echo "$pid"; fi
        done
    } | sort -u
}

answers() {
    psql_admin -tAc 'select 1' >/dev/null 2>&1
}

app_answers() {
    psql_app -tAc 'select 1' >/dev/null 2>&1
}

# The application role's password: generated on first use, then kept in PASS_FILE,
# rewritten with the current port.
app_password() {
    local password=""
    [[ -f $PASS_FILE ]] && password="$(cut -d: -f5- "$PASS_FILE")"
    # 48 hex digits: nothing a pgpass line or an SQL literal would need to escape.
    [[ $password =~ ^[0-9a-f]{48}$ ]] || password="$(od -An -tx1 -N24 /dev/urandom | tr -d ' \n')"
    (umask 077 && echo "$PG_HOST:$PG_PORT:$DB:$DB:$password" >"$PASS_FILE.tmp")
    mv "$PASS_FILE.tmp" "$PASS_FILE"
    echo "$password"
}

# Role and database `storemon`: created when missing, and (a cluster of an earlier
# version of this script had it a superuser) given only what the application needs.
bootstrap_db() {
    local password
    password="$(app_password)"
    # The password goes on stdin, never on a command line; a failed statement is not
    # written to the server's log, where it would show the password.
    psql_admin >/dev/null <<SQL
SET log_min_error_statement = panic;
SET log_statement = none;
SELECT 'CREATE ROLE $DB LOGIN'
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$DB')\gexec
ALTER ROLE $DB WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS
    PASSWORD '$password';
SELECT 'CREATE DATABASE $DB OWNER $DB'
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$DB')\gexec
ALTER DATABASE $DB OWNER TO $DB;
SQL
}

# Our roles and pg_hba.conf on a running server: the password first, so that the
# application never meets a password check before it has one; a reload applies pg_hba.conf.
configure_running() {
    bootstrap_db
    write_config
    psql_admin -tAc 'select pg_reload_conf()' >/dev/null
    app_answers || die "'$DB' cannot log in over TCP with its password (log: $LOG_FILE)"
}

do_start() {
    ensure_pg_bin
    if [[ -n "$(server_pids)" ]]; then
        local deadline=$((SECONDS + START_TIMEOUT))
        until answers; do
            ((SECONDS < deadline)) || die "running (pid $(server_pids)) but not answering on $PG_HOST:$PG_PORT"
            sleep 0.5
        done
        # Brings a cluster an earlier version of this script started up to date.
        configure_running
        local pids
        pids="$(server_pids)"
        log "already running (pid ${pids//$'\n'/ }) on $PG_HOST:$PG_PORT"
        return 0
    fi
    if port_open "$PG_HOST" "$PG_PORT"; then
        die "port $PG_PORT on $PG_HOST is taken by another process (a cluster from another" \
            "checkout?); stop it, or set DATABASE_URL to use it"
    fi
    local started=$SECONDS
    prepare_dirs
    init_cluster
    write_config
    # pg_ctl daemonizes the server in its own session and -w waits until it
    # accepts connections.
    # 9>&-: the server must not inherit (and so hold) our lock.
    if ! as_pg "$PG_BIN/pg_ctl" -D "$DATA_DIR" -l "$LOG_FILE" -w -t "$START_TIMEOUT" -s start 9>&-; then
        tail -n 40 "$LOG_FILE" >&2 || true
        do_stop || true
        die "PostgreSQL did not start (log: $LOG_FILE)"
    fi
    bootstrap_db
    app_answers || die "started but '$DB' cannot log in over TCP (log: $LOG_FILE)"
    log "ready on $PG_HOST:$PG_PORT in $((SECONDS - started))s" \
        "(postgresql://$DB@$PG_HOST:$PG_PORT/$DB, password in $PASS_FILE, log: $LOG_FILE)"
}

do_stop() {
    local pids pid
    pids="$(server_pids)"
    if [[ -z $pids ]]; then
        log "not running"
        return 0
    fi
    log "stopping (pid ${pids//$'\n'/ })"
    PG_BIN="${PG_BIN:-$(find_pg_bin || true)}"
    if [[ -n $PG_BIN && -f $DATA_DIR/postmaster.pid ]]; then
        # fast: disconnect clients, clean shutdown; immediate: no checkpoint.
        as_pg "$PG_BIN/pg_ctl" -D "$DATA_DIR" -m fast -w -t "$STOP_TIMEOUT" -s stop 2>/dev/null ||
            as_pg "$PG_BIN/pg_ctl" -D "$DATA_DIR" -m immediate -w -t 10 -s stop 2>/dev/null || true
    fi
    for pid in $pids; do
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            if ! wait_pid_gone "$pid" 10; then
                log "pid $pid still alive: SIGKILL to its process group"
                kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
                wait_pid_gone "$pid" 10 || die "pid $pid survived SIGKILL"
            fi
        fi
    done
    log "stopped"
}

do_status() {
    local pids
    pids="$(server_pids)"
    if [[ -z $pids ]]; then
        log "not running"
        return 3
    fi
    PG_BIN="$(find_pg_bin)" || die "PostgreSQL binaries not found"
    if answers; then
        log "running (pid ${pids//$'\n'/ }) and answering on $PG_HOST:$PG_PORT"
        return 0
    fi
    log "running (pid ${pids//$'\n'/ }) but not answering on $PG_HOST:$PG_PORT"
    return 1
}

case "${1:-}" in
start) lock_state postgres && do_start ;;
stop) lock_state postgres && do_stop ;;
status) do_status ;;
*)
    echo "usage: $0 {start|stop|status}" >&2
    exit 2
    ;;
esac
