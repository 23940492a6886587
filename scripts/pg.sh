#!/usr/bin/env bash
# Project-owned PostgreSQL cluster for development, tests and CI (not Debian's 5432 one).
#
#   scripts/pg.sh start    install the server if missing, initdb once, start, create db qingshou
#   scripts/pg.sh stop     fast shutdown (idempotent)
#   scripts/pg.sh status   exit 0 if it accepts connections
#   scripts/pg.sh psql     psql as postgres to the qingshou database (extra args passed on)
#   scripts/pg.sh url      print the SQLAlchemy URL
#   scripts/pg.sh dir      print the cluster folder in use
#
# Environment: QS_HOME (default <repo>/.local), QS_PG_PORT (default 55432).
# Layout: <base>/data (PGDATA, owned by postgres), <base>/postgres.log, unix socket in <base>,
# where <base> is $QS_HOME/pg, or /var/tmp/qingshou-<hash>/pg when the postgres user
# cannot reach $QS_HOME (initdb and the server refuse to run as root).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
QS_HOME="${QS_HOME:-$REPO/.local}"
PORT="${QS_PG_PORT:-55432}"
DB="qingshou"
PG_USER="postgres"

log() { echo "pg.sh: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

find_bindir() {
    local initdb
    initdb="$(ls -d /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n 1 || true)"
    [[ -n "$initdb" ]] && dirname "$initdb"
}

ensure_server_installed() {
    BIN="$(find_bindir || true)"
    if [[ -z "$BIN" ]]; then
        [[ "$(id -u)" == 0 ]] || die "PostgreSQL server missing and not root: apt-get install postgresql"
        log "PostgreSQL server not installed: apt-get install postgresql"
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            -o Dpkg::Options::=--force-confold postgresql </dev/null >/dev/null
        BIN="$(find_bindir || true)"
        [[ -n "$BIN" ]] || die "initdb still missing after installing postgresql"
    fi
}

as_pg() {
    # Run as postgres from a folder it can read (avoids "could not change directory").
    (cd / && runuser -u "$PG_USER" -- "$@")
}

can_use_base() {
    # postgres must traverse every parent of $1 and write into it.
    as_pg test -x "$1" -a -w "$1" 2>/dev/null
}

resolve_base() {
    id "$PG_USER" >/dev/null 2>&1 || die "no '$PG_USER' user (is the postgresql package installed?)"
    local preferred="$QS_HOME/pg"
    mkdir -p "$preferred"
    chown "$PG_USER:" "$preferred"
    if can_use_base "$preferred"; then
        BASE="$preferred"
    else
        local hash
        hash="$(printf '%s' "$QS_HOME" | sha256sum | cut -c1-10)"
        BASE="/var/tmp/qingshou-$hash/pg"
        if [[ "${1:-}" != quiet ]]; then
            log "user $PG_USER cannot reach $preferred (a parent folder is not traversable);"
            log "using $BASE instead"
        fi
        mkdir -p "$BASE"
        chmod 755 "/var/tmp/qingshou-$hash"
        chown "$PG_USER:" "$BASE"
        can_use_base "$BASE" || die "user $PG_USER cannot use $BASE either"
    fi
    DATA="$BASE/data"
    LOGFILE="$BASE/postgres.log"
}

write_conf() {
    # Rewritten at every start so a changed QS_PG_PORT takes effect.
    as_pg tee "$DATA/qingshou.conf" >/dev/null <<EOF
# Written by scripts/pg.sh at every start; edit the script, not this file.
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$BASE'
max_connections = 200
shared_buffers = 256MB
work_mem = 8MB
maintenance_work_mem = 128MB
# Durable like production: fsync stays on. Checkpoints by time, not by WAL volume: at 2GB the
# stack benchmark's load started one every 5-8 minutes, and the seconds after a checkpoint
# starts (each page's first change writes the whole page to WAL) held its worst latencies.
fsync = on
synchronous_commit = on
max_wal_size = 8GB
checkpoint_timeout = 15min
log_checkpoints = on
# Tables are analyzed within 10 s of filling, not within a minute: a service's statements are
# prepared and their plans cached per connection, and a plan made while a new table was empty
# (a sequential scan) stayed until the first analyze, so on a fresh database the notifier fell
# further behind each second of its first minute (p99 1.1 s in the first stack benchmark run)
autovacuum_naptime = 10s
logging_collector = off
log_min_duration_statement = 1000
log_line_prefix = '%m [%p] %q%u@%d '
timezone = 'UTC'
EOF
    if ! grep -q "^include_if_exists = 'qingshou.conf'" "$DATA/postgresql.conf"; then
        echo "include_if_exists = 'qingshou.conf'" | as_pg tee -a "$DATA/postgresql.conf" >/dev/null
    fi
}

running() {
    [[ -f "$DATA/PG_VERSION" ]] || return 1
    as_pg "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1
}

accepting() {
    "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT" -t "${1:-2}"
}

psql_cmd() {
    "$BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PORT" -U "$PG_USER" "$@"
}

ensure_db() {
    if [[ "$(psql_cmd -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB'")" != 1 ]]; then
        # Byte-order collation: PostgreSQL compares C-collated text with memcmp and abbreviated
        # keys, where any other locale (C.UTF-8 included, same order) goes through strcoll;
        # the inbox's and the services' text keys cost ~7% less statement time. The order is
        # that of C.UTF-8 (code points); character classes stay UTF-8 aware (LC_CTYPE).
        psql_cmd -d postgres -c "CREATE DATABASE $DB TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C.UTF-8'"
        log "created database $DB"
    fi
}

port_busy() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

do_start() {
    ensure_server_installed
    resolve_base
    if running; then
        accepting 30 || die "postgres in $DATA runs but does not accept connections on $PORT"
        ensure_db
        log "already running on 127.0.0.1:$PORT ($DATA)"
        return 0
    fi
    if [[ ! -f "$DATA/PG_VERSION" ]]; then
        log "initdb $DATA"
        as_pg "$BIN/initdb" -D "$DATA" -A trust -U "$PG_USER" -E UTF8 --locale=C.UTF-8 \
            >"$BASE/initdb.log" 2>&1 || { cat "$BASE/initdb.log" >&2; die "initdb failed"; }
    fi
    port_busy "$PORT" && die "port $PORT is in use by another process (set QS_PG_PORT)"
    write_conf
    # A stale pid file left by a crash is handled by the server itself.
    as_pg "$BIN/pg_ctl" -D "$DATA" -l "$LOGFILE" -w -t 60 start >/dev/null ||
        { tail -n 30 "$LOGFILE" >&2; die "pg_ctl start failed"; }
    ensure_db
    log "running on 127.0.0.1:$PORT ($DATA)"
}

do_stop() {
    BIN="$(find_bindir || true)"
    [[ -n "$BIN" ]] || { log "not installed"; return 0; }
    resolve_base quiet
    if running; then
        as_pg "$BIN/pg_ctl" -D "$DATA" -m fast -w -t 60 stop >/dev/null
        log "stopped"
    else
        log "not running"
    fi
}

do_status() {
    BIN="$(find_bindir || true)"
    if [[ -n "$BIN" ]]; then
        resolve_base quiet
        if running && accepting 2; then
            echo "postgres: running on 127.0.0.1:$PORT ($DATA)"
            return 0
        fi
    fi
    echo "postgres: not running"
    return 1
}

case "${1:-}" in
    start) do_start ;;
    stop) do_stop ;;
    status) do_status ;;
    psql)
        shift
        BIN="$(find_bindir || true)"
        [[ -n "$BIN" ]] || die "not installed; run scripts/pg.sh start"
        exec "$BIN/psql" -X -h 127.0.0.1 -p "$PORT" -U "$PG_USER" -d "$DB" "$@"
        ;;
    url) echo "postgresql+asyncpg://$PG_USER@127.0.0.1:$PORT/$DB" ;;
    dir) BIN="$(find_bindir || true)"; resolve_base quiet; echo "$BASE" ;;
    *)
        echo "usage: $0 {start|stop|status|psql|url|dir}" >&2
        exit 2
        ;;
esac
