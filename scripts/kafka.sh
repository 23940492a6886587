#!/usr/bin/env bash
# Local single-node Apache Kafka (KRaft) for development, tests and CI.
#
#   scripts/kafka.sh fetch    copy the broker jars from Maven Central into $QS_HOME/kafka/libs
#   scripts/kafka.sh start    fetch if needed, format once, start, wait for a metadata answer
#   scripts/kafka.sh stop     SIGTERM, wait up to 30 s, then SIGKILL (idempotent)
#   scripts/kafka.sh status   exit 0 if the broker answers a metadata request
#   scripts/kafka.sh kill9    SIGKILL the broker (crash tests)
#   scripts/kafka.sh logs     tail the broker logs (logs -f to follow)
#
# Environment:
#   QS_HOME                   state root (default <repo>/.local)
#   QS_KAFKA_PORT             client listener (default 9092)
#   QS_KAFKA_CONTROLLER_PORT  KRaft controller listener (default 9093)
#   QS_KAFKA_READY_TIMEOUT    seconds to wait for readiness on start (default 60)
#   QS_KAFKA_HEAP_OPTS        JVM heap (default "-Xmx1g -Xms1g": the test suite and the chaos
#                             run create thousands of partitions; 512 MB ran out of heap)
#   QS_KAFKA_JIT_OPTS         JIT compilers (default "-XX:TieredStopAtLevel=1": the quick C1
#                             compiler only. On this 2-core machine C2 spent 0.7-1 core for
#                             minutes after every start compiling the broker's hot paths, CPU
#                             the services and tests need; a local broker is mostly idle and
#                             C1 code serves it with less CPU in all (stack bench at 1,000
#                             events/s: broker 0.20 ms of CPU per event, 0.24-0.52 with C2).
#                             Set it to "" for the default tiered JIT on a bigger machine)
#   QS_PYTHON                 python with aiokafka (default <repo>/.venv/bin/python)
#   QS_MVN_OPTS               extra maven arguments for fetch (e.g. -Dmaven.repo.local=...)
#
# Layout: $QS_HOME/kafka/{libs,config,data,logs}, pid in $QS_HOME/kafka/kafka.pid.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
QS_HOME="${QS_HOME:-$REPO/.local}"
KAFKA_PORT="${QS_KAFKA_PORT:-9092}"
CONTROLLER_PORT="${QS_KAFKA_CONTROLLER_PORT:-9093}"
READY_TIMEOUT="${QS_KAFKA_READY_TIMEOUT:-60}"
HEAP_OPTS="${QS_KAFKA_HEAP_OPTS:--Xmx1g -Xms1g}"
JIT_OPTS="${QS_KAFKA_JIT_OPTS--XX:TieredStopAtLevel=1}"
PYTHON="${QS_PYTHON:-$REPO/.venv/bin/python}"

INFRA="$REPO/infra/kafka"
POM="$INFRA/pom.xml"
DEP_PLUGIN="org.apache.maven.plugins:maven-dependency-plugin:3.8.1"

KHOME="$QS_HOME/kafka"
LIBS="$KHOME/libs"
CONF_DIR="$KHOME/config"
DATA="$KHOME/data"
LOG_DIRS="$DATA/kraft"
LOGS="$KHOME/logs"
PIDFILE="$KHOME/kafka.pid"
PROPS="$CONF_DIR/server.properties"
MARKER="$LIBS/.fetched"
BOOTSTRAP="127.0.0.1:$KAFKA_PORT"

log() { echo "kafka.sh: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---------------------------------------------------------------- helpers

fetch_key() {
    # Changes whenever the pom or the copy command changes.
    { sha256sum "$POM" | cut -d' ' -f1; echo "$DEP_PLUGIN runtime"; } | sha256sum | cut -d' ' -f1
}

libs_ok() {
    [[ -f "$MARKER" ]] && [[ "$(cat "$MARKER")" == "$(fetch_key)" ]]
}

need_java() {
    command -v java >/dev/null 2>&1 || die "java not found (Kafka 4.x needs Java 17+); run scripts/deps.sh"
}

pid_alive() {
    # The pid file names a live process that is our broker (guards against pid reuse).
    [[ -f "$PIDFILE" ]] || return 1
    local pid
    pid="$(cat "$PIDFILE" 2>/dev/null || true)"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    [[ -r "/proc/$pid/cmdline" ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "kafka.Kafka $PROPS" || return 1
    echo "$pid"
}

port_busy() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

ready() {
    # ready TIMEOUT_SECONDS [--quiet]
    [[ -x "$PYTHON" ]] || die "python not found at $PYTHON (set QS_PYTHON)"
    "$PYTHON" "$REPO/scripts/kafka_ready.py" --bootstrap "$BOOTSTRAP" --timeout "$1" "${@:2}"
}

show_log_tail() {
    local f
    for f in "$LOGS/server.log" "$LOGS/kafka.out"; do
        if [[ -s "$f" ]]; then
            echo "----- tail -n 40 $f -----" >&2
            tail -n 40 "$f" >&2
        fi
    done
}

with_lock() {
    # Serialise start/stop/fetch between concurrent callers.
    mkdir -p "$KHOME"
    exec 9>"$KHOME/.lock"
    flock -w 120 9 || die "could not take $KHOME/.lock"
}

# ---------------------------------------------------------------- fetch

do_fetch() {
    if libs_ok; then
        return 0
    fi
    need_java
    command -v mvn >/dev/null 2>&1 || die "mvn not found; run scripts/deps.sh"
    log "fetching Kafka jars from Maven Central into $LIBS"
    local tmp="$KHOME/libs.tmp.$$" t0=$SECONDS
    rm -rf "$tmp"
    mkdir -p "$tmp"
    # shellcheck disable=SC2086
    if ! mvn -B -q -Dstyle.color=never ${QS_MVN_OPTS:-} -f "$POM" \
            "$DEP_PLUGIN:copy-dependencies" \
            -DoutputDirectory="$tmp" -DincludeScope=runtime </dev/null >"$KHOME/fetch.log" 2>&1; then
        cat "$KHOME/fetch.log" >&2
        rm -rf "$tmp"
        die "maven copy-dependencies failed"
    fi
    ls "$tmp"/kafka_2.13-*.jar >/dev/null 2>&1 || die "no kafka_2.13 jar after fetch"
    fetch_key >"$tmp/.fetched"
    rm -rf "$LIBS"
    mv "$tmp" "$LIBS"
    log "fetched $(find "$LIBS" -name '*.jar' | wc -l) jars in $((SECONDS - t0)) s"
}

# ---------------------------------------------------------------- start

render_config() {
    mkdir -p "$CONF_DIR" "$LOGS" "$DATA"
    sed -e "s|@KAFKA_PORT@|$KAFKA_PORT|g" \
        -e "s|@CONTROLLER_PORT@|$CONTROLLER_PORT|g" \
        -e "s|@LOG_DIRS@|$LOG_DIRS|g" \
        "$INFRA/server.properties.in" >"$PROPS.tmp"
    mv "$PROPS.tmp" "$PROPS"
}

format_storage() {
    # The --standalone format records the controller endpoint; if the ports changed
    # since then, the old data does not match the new config: start from scratch.
    local ports="$KAFKA_PORT $CONTROLLER_PORT"
    if [[ -f "$LOG_DIRS/meta.properties" ]]; then
        if [[ "$(cat "$DATA/ports" 2>/dev/null || true)" == "$ports" ]]; then
            return 0
        fi
        log "ports changed ($(cat "$DATA/ports" 2>/dev/null || echo '?') -> $ports): wiping $DATA"
        rm -rf "$DATA"
        mkdir -p "$DATA"
    fi
    local cid
    if [[ -s "$DATA/cluster-id" ]]; then
        cid="$(cat "$DATA/cluster-id")"
    else
        cid="$(java -cp "$LIBS/*" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1)"
        [[ -n "$cid" ]] || die "StorageTool random-uuid produced nothing"
        echo "$cid" >"$DATA/cluster-id"
    fi
    log "formatting $LOG_DIRS (cluster id $cid)"
    java -Dkafka.logs.dir="$LOGS" -Dlog4j2.configurationFile="$INFRA/log4j2.yaml" \
        -cp "$LIBS/*" kafka.tools.StorageTool format -t "$cid" -c "$PROPS" --standalone \
        >"$LOGS/format.log" 2>&1 || { cat "$LOGS/format.log" >&2; die "storage format failed"; }
    echo "$ports" >"$DATA/ports"
}

do_start() {
    with_lock
    local pid
    if pid="$(pid_alive)"; then
        # Running (or still starting): answer as soon as it is ready.
        if ready "$READY_TIMEOUT" --quiet; then
            log "already running (pid $pid) at $BOOTSTRAP"
            return 0
        fi
        show_log_tail
        die "broker process $pid is alive but not answering at $BOOTSTRAP"
    fi
    rm -f "$PIDFILE"
    for p in "$KAFKA_PORT" "$CONTROLLER_PORT"; do
        port_busy "$p" && die "port $p is already in use by another process (set QS_KAFKA_PORT / QS_KAFKA_CONTROLLER_PORT)"
    done

    need_java
    do_fetch
    render_config
    format_storage

    local t0=$SECONDS
    local gc_log="-Xlog:gc*:file=$LOGS/kafkaServer-gc.log:time,tags:filecount=5,filesize=20M"
    # shellcheck disable=SC2086
    setsid nohup java $HEAP_OPTS $JIT_OPTS -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
        -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent \
        -Djava.awt.headless=true "$gc_log" \
        -Dkafka.logs.dir="$LOGS" -Dlog4j2.configurationFile="$INFRA/log4j2.yaml" \
        -cp "$LIBS/*" kafka.Kafka "$PROPS" \
        >>"$LOGS/kafka.out" 2>&1 </dev/null 9>&- &
    echo $! >"$PIDFILE"
    log "started broker pid $(cat "$PIDFILE"), waiting up to ${READY_TIMEOUT}s for $BOOTSTRAP"
    if ! ready "$READY_TIMEOUT"; then
        show_log_tail
        if ! pid_alive >/dev/null; then
            log "the broker process has exited"
        fi
        die "kafka did not become ready within ${READY_TIMEOUT}s"
    fi
    log "ready in $((SECONDS - t0)) s"
}

# ---------------------------------------------------------------- stop / kill

wait_gone() {
    # wait_gone PID SECONDS -> 0 when gone
    local pid=$1 n=$(($2 * 10))
    while ((n-- > 0)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    ! kill -0 "$pid" 2>/dev/null
}

do_stop() {
    with_lock
    local pid
    if ! pid="$(pid_alive)"; then
        rm -f "$PIDFILE"
        log "not running"
        return 0
    fi
    log "stopping pid $pid (SIGTERM)"
    kill -TERM "$pid" 2>/dev/null || true
    if ! wait_gone "$pid" 30; then
        log "still alive after 30 s: SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        wait_gone "$pid" 10 || die "pid $pid survived SIGKILL"
    fi
    rm -f "$PIDFILE"
    log "stopped"
}

do_kill9() {
    with_lock
    local pid
    if ! pid="$(pid_alive)"; then
        rm -f "$PIDFILE"
        log "not running"
        return 0
    fi
    kill -KILL "$pid" 2>/dev/null || true
    wait_gone "$pid" 10 || die "pid $pid survived SIGKILL"
    rm -f "$PIDFILE"
    log "killed pid $pid (SIGKILL)"
}

do_status() {
    local pid
    if pid="$(pid_alive)" && ready 3 --quiet; then
        echo "kafka: running (pid $pid) at $BOOTSTRAP"
        return 0
    fi
    if [[ -n "${pid:-}" ]]; then
        echo "kafka: process $pid alive but not answering at $BOOTSTRAP"
    else
        echo "kafka: not running"
    fi
    return 1
}

do_logs() {
    mkdir -p "$LOGS"
    if [[ "${1:-}" == "-f" ]]; then
        exec tail -n 50 -F "$LOGS/server.log" "$LOGS/kafka.out"
    fi
    show_log_tail 2>&1
}

case "${1:-}" in
    fetch) with_lock; do_fetch ;;
    start) do_start ;;
    stop) do_stop ;;
    status) do_status ;;
    kill9) do_kill9 ;;
    logs) shift; do_logs "$@" ;;
    *)
        echo "usage: $0 {fetch|start|stop|status|kill9|logs [-f]}" >&2
        exit 2
        ;;
esac
