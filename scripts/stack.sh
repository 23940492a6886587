#!/usr/bin/env bash
# Start, stop and inspect the provider sandbox, the four Qingshou services and the web console
# in the background, each with its own pid file and JSON log under $QS_HOME/run and $QS_HOME/logs.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
QS_HOME="${QS_HOME:-$ROOT/.local}"
PY="${QS_PYTHON:-$ROOT/.venv/bin/python}"
RUN="$QS_HOME/run"; LOGS="$QS_HOME/logs"
mkdir -p "$RUN" "$LOGS"
# byte-code caches under $QS_HOME even where PYTHONDONTWRITEBYTECODE is set (see the Makefile)
export PYTHONDONTWRITEBYTECODE= PYTHONPYCACHEPREFIX="${PYTHONPYCACHEPREFIX:-$QS_HOME/pycache}"

# name:port — ports can be moved with QS_<NAME>_PORT
SERVICES="sandbox:${QS_SANDBOX_PORT:-8005} ingest:${QS_INGEST_PORT:-8001} staging:${QS_STAGING_PORT:-8002} notifier:${QS_NOTIFIER_PORT:-8003} incentives:${QS_INCENTIVES_PORT:-8004} console:${QS_CONSOLE_PORT:-8006}"
[ -n "${QS_STACK_EXTRA:-}" ] && SERVICES="$SERVICES $QS_STACK_EXTRA"

alive() { [ -f "$RUN/$1.pid" ] && kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null; }

ready() {  # ready <port>
  curl -fsS -m 3 "http://127.0.0.1:$1/readyz" >/dev/null 2>&1
}

start_one() {  # start_one <name> <port>
  local name=$1 port=$2
  if alive "$name"; then return 0; fi
  # exec: the background subshell becomes the service itself, so $! is the service's pid and
  # nothing keeps the caller's stdout open
  ( cd "$ROOT" && export QS_PORT="$port" \
      QS_KAFKA_BOOTSTRAP="${QS_KAFKA_BOOTSTRAP:-127.0.0.1:${QS_KAFKA_PORT:-9092}}" \
      QS_DATABASE_URL="${QS_DATABASE_URL:-postgresql+asyncpg://postgres@127.0.0.1:${QS_PG_PORT:-55432}/qingshou}" \
      QS_CONSOLE_STAGING_URL="${QS_CONSOLE_STAGING_URL:-http://127.0.0.1:${QS_STAGING_PORT:-8002}}" \
      QS_CONSOLE_NOTIFIER_URL="${QS_CONSOLE_NOTIFIER_URL:-http://127.0.0.1:${QS_NOTIFIER_PORT:-8003}}" \
      QS_CONSOLE_INCENTIVES_URL="${QS_CONSOLE_INCENTIVES_URL:-http://127.0.0.1:${QS_INCENTIVES_PORT:-8004}}" \
    && exec setsid "$PY" -m "services.$name" >>"$LOGS/$name.log" 2>&1 </dev/null ) &
  echo $! > "$RUN/$name.pid"
}

wait_ready() {  # wait_ready <name> <port> <deadline-seconds>
  local name=$1 port=$2 deadline=$((SECONDS + $3))
  until ready "$port"; do
    if ! alive "$name"; then
      echo "$name exited during start; last log lines:" >&2; tail -n 20 "$LOGS/$name.log" >&2; return 1
    fi
    if [ $SECONDS -ge $deadline ]; then
      echo "$name not ready on :$port in time; last log lines:" >&2; tail -n 20 "$LOGS/$name.log" >&2; return 1
    fi
    sleep 0.3
  done
}

stop_one() {  # stop_one <name>
  local name=$1 pid
  alive "$name" || { rm -f "$RUN/$name.pid"; return 0; }
  pid=$(cat "$RUN/$name.pid")
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  rm -f "$RUN/$name.pid"
}

# start|stop|restart [name...]: the named services only (default: all of them, in order)
cmd="${1:-status}"; shift || true
if [ $# -gt 0 ] && [ "$cmd" != kill9 ]; then
  picked=""
  for want in "$@"; do
    found=""
    for s in $SERVICES; do [ "${s%%:*}" = "$want" ] && found=$s; done
    [ -n "$found" ] || { echo "unknown service: $want (known: $(for s in $SERVICES; do printf '%s ' "${s%%:*}"; done))" >&2; exit 2; }
    picked="$picked $found"
  done
  SERVICES="${picked# }"
fi

case "$cmd" in
  start)
    for s in $SERVICES; do start_one "${s%%:*}" "${s##*:}"; done
    for s in $SERVICES; do wait_ready "${s%%:*}" "${s##*:}" "${QS_READY_TIMEOUT:-90}"; done
    for s in $SERVICES; do printf '  %-11s http://127.0.0.1:%s  (docs: /docs)\n' "${s%%:*}" "${s##*:}"; done
    ;;
  stop)
    for s in $SERVICES; do stop_one "${s%%:*}"; done ;;
  restart)
    for s in $SERVICES; do stop_one "${s%%:*}"; done
    for s in $SERVICES; do start_one "${s%%:*}" "${s##*:}"; done
    for s in $SERVICES; do wait_ready "${s%%:*}" "${s##*:}" "${QS_READY_TIMEOUT:-90}"; done ;;
  kill9)  # kill9 <name>: SIGKILL one service (crash tests)
    alive "$1" && kill -KILL "$(cat "$RUN/$1.pid")"; rm -f "$RUN/$1.pid" ;;
  status)
    rc=0
    for s in $SERVICES; do
      name=${s%%:*} port=${s##*:}
      if ready "$port"; then state=ready; elif alive "$name"; then state=starting; rc=1; else state=down; rc=1; fi
      printf '  %-11s %-8s http://127.0.0.1:%s\n' "$name" "$state" "$port"
    done
    exit $rc ;;
  *) echo "usage: $0 start|stop|restart [name...] | status [name...] | kill9 <name>" >&2; exit 2 ;;
esac
