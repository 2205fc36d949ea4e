#!/usr/bin/env bash
# A single-node Apache Kafka (KRaft: broker + controller in one JVM) for
# development and tests, without Docker: the official jars from Maven Central
# (deploy/local/pom.xml) run with the machine's Java.
#
#   deploy/local/kafka.sh start    # idempotent; returns once the broker answers
#   deploy/local/kafka.sh stop     # SIGTERM, then SIGKILL after a timeout
#   deploy/local/kafka.sh status   # 0 = running and answering
#
# Listens on 127.0.0.1:19092 (clients) and 127.0.0.1:19093 (controller), or
# $STOREMON_KAFKA_PORT and $STOREMON_KAFKA_CONTROLLER_PORT; and, secured, on
# 127.0.0.1:19094 (SASL_SSL: SCRAM-SHA-256, SCRAM-SHA-512 and PLAIN logins of the user
# `storemon`) and 127.0.0.1:19095 (SSL, a client certificate required), or
# $STOREMON_KAFKA_SASL_SSL_PORT and $STOREMON_KAFKA_SSL_PORT. Made at the first start,
# in $STOREMON_STATE_DIR/kafka/tls/: the CA (ca.crt) that signed the broker's
# certificate (for 127.0.0.1 and localhost) and a client certificate (client.crt,
# client.key); the user's password is in sasl-password.
# Everything lives in $STOREMON_STATE_DIR/kafka (default <repo>/.state/kafka).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

KAFKA_DIR="$STATE_DIR/kafka"
LIBS_DIR="$KAFKA_DIR/libs"
CONF_DIR="$KAFKA_DIR/config"
DATA_DIR="$KAFKA_DIR/data"
LOG_DIR="$KAFKA_DIR/logs"
PID_FILE="$KAFKA_DIR/kafka.pid"
CLUSTER_ID_FILE="$KAFKA_DIR/cluster.id"
SERVER_PROPS="$CONF_DIR/server.properties"
POM="$REPO_ROOT/deploy/local/pom.xml"
# Maven's own cache under the state folder too, so a fresh clone needs nothing
# in ~/.m2 and `rm -rf .state` really starts from scratch.
MAVEN_REPO="${STOREMON_MAVEN_REPO:-$STATE_DIR/maven}"
HEAP_OPTS="${STOREMON_KAFKA_HEAP_OPTS:--Xms256m -Xmx1g}"
START_TIMEOUT="${STOREMON_KAFKA_START_TIMEOUT:-120}"
STOP_TIMEOUT="${STOREMON_KAFKA_STOP_TIMEOUT:-60}"
BOOTSTRAP="$KAFKA_HOST:$KAFKA_PORT"
TLS_DIR="$KAFKA_DIR/tls"
SASL_USER=storemon
SASL_PASSWORD_FILE="$KAFKA_DIR/sasl-password"
PYTHON="${STOREMON_PYTHON:-$REPO_ROOT/.venv/bin/python}"

need_java() {
    command -v java >/dev/null ||
        die "java not found: install a Java 17 runtime (Debian: apt-get install -y openjdk-17-jre-headless)"
}

# Fetches the broker's jars once; re-fetches only when pom.xml changes.
fetch_libs() {
    local stamp="$LIBS_DIR/.pom.sha256" want
    want="$(sha256sum "$POM" | cut -d' ' -f1)"
    if [[ -f $stamp && "$(cat "$stamp")" == "$want" ]]; then
        return 0
    fi
    command -v mvn >/dev/null ||
        die "mvn not found: install Maven 3 (Debian: apt-get install -y maven) to fetch the Kafka jars"
    log "fetching Kafka jars with Maven into $LIBS_DIR (once per pom.xml version)"
    local tmp="$KAFKA_DIR/libs.tmp"
    rm -rf "$tmp"
    # Into a temporary folder first: an interrupted download must not look complete.
    # Maven's chatter goes to a file; shown only when it fails.
    if ! mvn -B -q -f "$POM" -Dmaven.repo.local="$MAVEN_REPO" \
        dependency:copy-dependencies -DoutputDirectory="$tmp" -DincludeScope=runtime \
        >"$KAFKA_DIR/mvn.log" 2>&1; then
        tail -n 40 "$KAFKA_DIR/mvn.log" >&2
        rm -rf "$tmp"
        die "Maven could not fetch the Kafka jars (full output: $KAFKA_DIR/mvn.log)"
    fi
    echo "$want" >"$tmp/.pom.sha256"
    rm -rf "$LIBS_DIR"
    mv "$tmp" "$LIBS_DIR"
}

# The CA, the broker's certificate and key (PEM, one file) and a client certificate,
# made once with openssl; the CA's key is kept (mode 600) only to sign these.
ensure_tls() {
    [[ -f $TLS_DIR/broker.pem && -f $TLS_DIR/client.key ]] && return 0
    command -v openssl >/dev/null || die "openssl not found (Debian: apt-get install openssl)"
    local tmp
    tmp="$(mktemp -d)"
    (
        cd "$tmp"
        tls_ca "storemon local Kafka CA"
        tls_signed broker "$KAFKA_HOST" "IP:$KAFKA_HOST,DNS:localhost"
        tls_signed client storemon
        # Kafka reads a PEM key store as one file: the key (PKCS#8), then the certificate.
        openssl pkcs8 -topk8 -nocrypt -in broker.key -out broker.pk8
        cat broker.pk8 broker.crt >broker.pem
    ) >"$KAFKA_DIR/tls.log" 2>&1 || { cat "$KAFKA_DIR/tls.log" >&2; rm -rf "$tmp"; die "openssl failed"; }
    mkdir -p "$TLS_DIR"
    (umask 077 && cp "$tmp"/{ca.key,broker.pem,client.key} "$TLS_DIR/")
    cp "$tmp"/{ca.crt,client.crt} "$TLS_DIR/"
    rm -rf "$tmp"
}

# The user `storemon`'s password: made once, kept in SASL_PASSWORD_FILE (mode 600).
sasl_password() {
    if [[ ! -s $SASL_PASSWORD_FILE ]]; then
        (umask 077 && od -An -tx1 -N24 /dev/urandom | tr -d ' \n' >"$SASL_PASSWORD_FILE")
    fi
    cat "$SASL_PASSWORD_FILE"
}

write_config() {
    mkdir -p "$CONF_DIR" "$DATA_DIR" "$LOG_DIR"
    ensure_tls
    local password scram
    password="$(sasl_password)"
    scram="org.apache.kafka.common.security.scram.ScramLoginModule required;"
    # Regenerated on every start so edits here take effect; data is kept.
    # It holds the PLAIN login's password: readable by this user only.
    : >"$SERVER_PROPS"
    chmod 600 "$SERVER_PROPS"
    cat >"$SERVER_PROPS" <<EOF
# Generated by deploy/local/kafka.sh: edit the script, not this file.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$KAFKA_HOST:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://$KAFKA_HOST:$KAFKA_PORT,CONTROLLER://$KAFKA_HOST:$KAFKA_CONTROLLER_PORT,SASL_SSL://$KAFKA_HOST:$KAFKA_SASL_SSL_PORT,SSL://$KAFKA_HOST:$KAFKA_SSL_PORT
advertised.listeners=PLAINTEXT://$KAFKA_HOST:$KAFKA_PORT,SASL_SSL://$KAFKA_HOST:$KAFKA_SASL_SSL_PORT,SSL://$KAFKA_HOST:$KAFKA_SSL_PORT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL,SSL:SSL
# TLS on the secured listeners: the broker's key and certificate (PEM), and the CA
# that client certificates must chain to (SSL listener: one is required).
ssl.keystore.type=PEM
ssl.keystore.location=$TLS_DIR/broker.pem
ssl.truststore.type=PEM
ssl.truststore.location=$TLS_DIR/ca.crt
listener.name.ssl.ssl.client.auth=required
# SASL logins: SCRAM users live in the cluster metadata (added after the start), PLAIN's
# in this file (mode 600, like the rest of the state folder's secrets).
sasl.enabled.mechanisms=SCRAM-SHA-256,SCRAM-SHA-512,PLAIN
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=$scram
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=$scram
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_$SASL_USER="$password";
log.dirs=$DATA_DIR
num.partitions=1
auto.create.topics.enable=true
# One broker: every internal topic has a single replica.
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
# Fewer internal partitions than the production default: faster first start.
offsets.topic.num.partitions=10
transaction.state.log.num.partitions=10
# Consumer groups (Faust, tests) start at once instead of waiting 3 s.
group.initial.rebalance.delay.ms=0
EOF
    cat >"$CONF_DIR/log4j.properties" <<'EOF'
# Generated by deploy/local/kafka.sh. The broker's logs go to a file, not the terminal.
log4j.rootLogger=INFO, file
log4j.appender.file=org.apache.log4j.RollingFileAppender
log4j.appender.file.File=${kafka.logs.dir}/server.log
log4j.appender.file.MaxFileSize=50MB
log4j.appender.file.MaxBackupIndex=2
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
log4j.logger.org.apache.kafka.clients=WARN
EOF
    cat >"$CONF_DIR/tools-log4j.properties" <<'EOF'
# Generated by deploy/local/kafka.sh: one-shot tools (format, probe) only warn.
log4j.rootLogger=WARN, stderr
log4j.appender.stderr=org.apache.log4j.ConsoleAppender
log4j.appender.stderr.Target=System.err
log4j.appender.stderr.layout=org.apache.log4j.PatternLayout
log4j.appender.stderr.layout.ConversionPattern=[%d] %p %m (%c)%n
EOF
}

run_tool() {
    java -Xmx256m -Dlog4j.configuration="file:$CONF_DIR/tools-log4j.properties" \
        -cp "$LIBS_DIR/*" "$@"
}

# KRaft needs its log dir formatted with a cluster id exactly once.
format_storage() {
    [[ -f $DATA_DIR/meta.properties ]] && return 0
    if [[ ! -s $CLUSTER_ID_FILE ]]; then
        run_tool kafka.tools.StorageTool random-uuid >"$CLUSTER_ID_FILE.tmp"
        mv "$CLUSTER_ID_FILE.tmp" "$CLUSTER_ID_FILE"
    fi
    log "formatting KRaft storage (cluster id $(cat "$CLUSTER_ID_FILE"))"
    run_tool kafka.tools.StorageTool format --ignore-formatted \
        -t "$(cat "$CLUSTER_ID_FILE")" -c "$SERVER_PROPS" >/dev/null
}

# Pids of brokers started from this state folder: the pid file's, plus any
# whose pid file was lost (the command line names our server.properties).
broker_pids() {
    local pid
    {
        if [[ -f $PID_FILE ]]; then
            pid="$(cat "$PID_FILE")"
            if pid_matches "$pid" "$SERVER_PROPS"; then echo "$pid"; fi
        fi
        for pid in $(pgrep -f 'kafka\.Kafka' || true); do
            if pid_matches "$pid" "kafka.Kafka $SERVER_PROPS"; then echo "$pid"; fi
        done
    } | sort -u
}

# The broker answers a metadata request and lists itself. A TCP connect
# alone would succeed before the broker has joined its own controller.
answers() {
    if [[ -z ${PROBE:-} ]]; then
        if [[ -x $PYTHON ]] && "$PYTHON" -c 'import confluent_kafka' 2>/dev/null; then
            PROBE=python
        else
            PROBE=java
        fi
    fi
    if [[ $PROBE == python ]]; then
        "$PYTHON" - "$BOOTSTRAP" 2>/dev/null <<'EOF'
import sys
from confluent_kafka.admin import AdminClient

md = AdminClient({"bootstrap.servers": sys.argv[1]}).list_topics(timeout=3)
sys.exit(0 if md.brokers else 1)
EOF
    else
        timeout 20 java -Xmx128m -Dlog4j.configuration="file:$CONF_DIR/tools-log4j.properties" \
            -cp "$LIBS_DIR/*" kafka.admin.BrokerApiVersionsCommand \
            --bootstrap-server "$BOOTSTRAP" >/dev/null 2>&1
    fi
}

show_log_tail() {
    local f
    for f in "$LOG_DIR/server.log" "$KAFKA_DIR/kafka.out"; do
        [[ -s $f ]] || continue
        log "---- last lines of $f ----"
        tail -n 40 "$f" >&2
    done
}

wait_until_answers() {
    local pid=$1 deadline=$((SECONDS + START_TIMEOUT))
    until answers; do
        if ! kill -0 "$pid" 2>/dev/null; then
            show_log_tail
            die "Kafka exited during startup"
        fi
        if ((SECONDS >= deadline)); then
            show_log_tail
            do_stop
            die "Kafka did not answer on $BOOTSTRAP within ${START_TIMEOUT}s"
        fi
        sleep 0.5
    done
}

# The SCRAM credentials of the user `storemon` (both hashes), with the password of
# SASL_PASSWORD_FILE; idempotent. Through the PLAINTEXT listener, the password on stdin.
ensure_scram_user() {
    if ! { [[ -x $PYTHON ]] && "$PYTHON" -c 'import confluent_kafka' 2>/dev/null; }; then
        log "no Python with confluent-kafka yet: SCRAM user $SASL_USER not created"
        return 0
    fi
    sasl_password | "$PYTHON" -c '
import sys
from confluent_kafka.admin import (
    AdminClient, ScramCredentialInfo, ScramMechanism, UserScramCredentialUpsertion,
)

bootstrap, user = sys.argv[1:3]
password = sys.stdin.read().strip().encode()
admin = AdminClient({"bootstrap.servers": bootstrap})
# One request a mechanism: the broker refuses two changes of one user in one request.
for mechanism in (ScramMechanism.SCRAM_SHA_256, ScramMechanism.SCRAM_SHA_512):
    info = ScramCredentialInfo(mechanism, 8192)
    upsert = UserScramCredentialUpsertion(user, info, password)
    for future in admin.alter_user_scram_credentials([upsert]).values():
        future.result(30)
' "$BOOTSTRAP" "$SASL_USER" || die "could not create the SCRAM user $SASL_USER"
}

do_start() {
    local pids
    pids="$(broker_pids)"
    if [[ -n $pids ]]; then
        # Possibly still starting (another caller raced us): wait, don't relaunch.
        wait_until_answers "${pids%%$'\n'*}"
        ensure_scram_user
        log "already running (pid ${pids//$'\n'/ }) on $BOOTSTRAP"
        return 0
    fi
    local port
    for port in "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT" "$KAFKA_SASL_SSL_PORT" "$KAFKA_SSL_PORT"; do
        port_open "$KAFKA_HOST" "$port" || continue
        die "port $port on $KAFKA_HOST is taken by another process" \
            "(a broker from another checkout?); stop it, or set KAFKA_BOOTSTRAP_SERVERS to use it"
    done
    need_java
    mkdir -p "$KAFKA_DIR"
    fetch_libs
    write_config
    format_storage

    local started=$SECONDS
    rm -f "$PID_FILE"
    # setsid: own session, so the broker outlives the calling shell/terminal and
    # a Ctrl-C there doesn't reach it. The wrapper records the pid it execs into.
    # 9>&-: the broker must not inherit (and so hold) our lock.
    # shellcheck disable=SC2086  # HEAP_OPTS is a list of JVM flags
    setsid bash -c 'echo $$ >"$0"; exec "$@"' "$PID_FILE" \
        java $HEAP_OPTS -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
        -Dkafka.logs.dir="$LOG_DIR" -Dlog4j.configuration="file:$CONF_DIR/log4j.properties" \
        -cp "$LIBS_DIR/*" kafka.Kafka "$SERVER_PROPS" \
        </dev/null >>"$KAFKA_DIR/kafka.out" 2>&1 9>&- &
    local i
    for i in $(seq 50); do
        [[ -s $PID_FILE ]] && break
        sleep 0.1
    done
    [[ -s $PID_FILE ]] || die "could not launch the broker (no pid file)"
    log "started (pid $(cat "$PID_FILE")), waiting for it to answer on $BOOTSTRAP"
    wait_until_answers "$(cat "$PID_FILE")"
    ensure_scram_user
    log "ready on $BOOTSTRAP in $((SECONDS - started))s (logs: $LOG_DIR/server.log);" \
        "SASL_SSL on $KAFKA_HOST:$KAFKA_SASL_SSL_PORT, SSL on $KAFKA_HOST:$KAFKA_SSL_PORT" \
        "(user $SASL_USER, password in $SASL_PASSWORD_FILE, CA $TLS_DIR/ca.crt)"
}

do_stop() {
    local pids pid
    pids="$(broker_pids)"
    if [[ -z $pids ]]; then
        rm -f "$PID_FILE"
        log "not running"
        return 0
    fi
    for pid in $pids; do
        log "stopping (pid $pid)"
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in $pids; do
        if ! wait_pid_gone "$pid" "$STOP_TIMEOUT"; then
            log "pid $pid ignored SIGTERM for ${STOP_TIMEOUT}s: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            wait_pid_gone "$pid" 10 || die "pid $pid survived SIGKILL"
        fi
    done
    rm -f "$PID_FILE"
    log "stopped"
}

do_status() {
    local pids
    pids="$(broker_pids)"
    if [[ -z $pids ]]; then
        log "not running"
        return 3
    fi
    if answers; then
        log "running (pid ${pids//$'\n'/ }) and answering on $BOOTSTRAP"
        return 0
    fi
    log "running (pid ${pids//$'\n'/ }) but not answering on $BOOTSTRAP"
    return 1
}

case "${1:-}" in
start) lock_state kafka && do_start ;;
stop) lock_state kafka && do_stop ;;
status) do_status ;;
*)
    echo "usage: $0 {start|stop|status}" >&2
    exit 2
    ;;
esac
