"""Several ingest worker processes on one port (``QS_INGEST_WORKERS`` > 1).

Why not uvicorn's own ``--workers``: its workers share one listening socket, and whichever
process wakes first accepts every connection waiting in the backlog. A client that opens its
connections at once (a core banking batch job, wrk) often landed all of them on one worker
while the other idled: in the ingest benchmark with two workers, one run in three served at the
speed of one worker. Here each worker binds its own socket with ``SO_REUSEPORT``, and the
kernel spreads connections over the workers by their address hash.

The supervisor (the ``python -m services.ingest`` process) starts the workers, restarts one
that dies (logged), and on SIGTERM or SIGINT stops them all gracefully. Prometheus counters of
all workers add up at ``/metrics`` through ``prometheus_client``'s multi-process mode: the
supervisor gives the workers an emptied ``PROMETHEUS_MULTIPROC_DIR`` (one per address, in the
temporary folder) and removes it at the end.
"""

from __future__ import annotations

import ctypes
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Final

from services.ingest.settings import IngestSettings

log = logging.getLogger("qingshou.ingest")

WORKER_ENV: Final = "QS_INGEST_WORKER_PROCESS"
SUPERVISOR_ENV: Final = "QS_INGEST_SUPERVISOR_PID"
MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"
# a worker that dies within this long of its start is not restarted at once (a crash loop)
_RESTART_PAUSE_S: Final = 2.0
# ...and after this many such deaths in a row the supervisor gives up and exits 1 (a port
# taken, a broken configuration): better than a live process that serves nothing
_CRASH_LOOP_LIMIT: Final = 5
_PR_SET_PDEATHSIG: Final = 1


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket that other workers may bind to the same address too."""
    sock = socket.socket(_family(host), socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def serve_worker(settings: IngestSettings) -> None:
    """One worker: uvicorn on its own ``SO_REUSEPORT`` socket (runs until SIGTERM, or until
    the supervisor dies)."""
    import uvicorn

    _die_with_supervisor()
    config = uvicorn.Config("services.ingest.asgi:app", factory=True, log_config=None,
                            access_log=False, timeout_graceful_shutdown=20)
    uvicorn.Server(config).run(sockets=[reuse_port_socket(settings.host, settings.port)])


def _die_with_supervisor() -> None:
    """SIGTERM this worker when the supervisor dies, even by SIGKILL (Linux).

    Otherwise a worker outlives it, still serving the port, and the workers of the next
    supervisor share the port with it (``SO_REUSEPORT``) and with the code it was started with.
    """
    supervisor = os.environ.get(SUPERVISOR_ENV)
    if supervisor is None or not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if str(os.getppid()) != supervisor:  # it was gone before the line above
        sys.exit(1)


def _port_is_free(host: str, port: int) -> bool:
    """Whether nothing listens on the port: every worker would join a listener that set
    ``SO_REUSEPORT`` too (say a worker left over from an earlier run) without a word, or fail
    to bind beside one that did not."""
    with socket.socket(_family(host), socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is no owner
        try:
            probe.bind((host, port))
        except OSError as exc:
            log.error("ingest cannot serve %s:%d: %s", host, port, exc)
            return False
    return True


def supervise(settings: IngestSettings) -> int:
    """Run ``settings.ingest_workers`` workers until SIGTERM/SIGINT; returns the exit code.

    0 when stopped by a signal; 1 when the port is taken or a worker keeps dying at its start.
    """
    if not _port_is_free(settings.host, settings.port):
        return 1
    metrics_dir = _fresh_metrics_dir(settings.host, settings.port)
    env = {**os.environ, WORKER_ENV: "1", MULTIPROC_ENV: metrics_dir,
           SUPERVISOR_ENV: str(os.getpid())}
    command = [sys.executable, "-m", "services.ingest"]
    stopping = False

    def _stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)

    def start() -> tuple[subprocess.Popen[bytes], float]:
        return subprocess.Popen(command, env=env), time.monotonic()  # noqa: S603

    workers: list[tuple[subprocess.Popen[bytes], float]] = []
    crashes = [0] * settings.ingest_workers  # deaths right after the start, in a row
    status = 0
    try:
        workers += [start() for _ in range(settings.ingest_workers)]
        log.info("ingest supervisor started %d workers on %s:%d", len(workers), settings.host,
                 settings.port, extra={"pids": [p.pid for p, _ in workers]})
        while not stopping:
            time.sleep(0.2)
            for n, (proc, started) in enumerate(workers):
                code = proc.poll()
                if code is None or stopping:
                    continue
                _mark_dead(proc.pid, metrics_dir)
                quick = time.monotonic() - started < _RESTART_PAUSE_S
                crashes[n] = crashes[n] + 1 if quick else 0
                if crashes[n] >= _CRASH_LOOP_LIMIT:
                    log.error("ingest worker %d exited with %s, the %dth death in a row within "
                              "%.0f s of its start; stopping", proc.pid, code, crashes[n],
                              _RESTART_PAUSE_S)
                    stopping, status = True, 1
                    break
                log.error("ingest worker %d exited with %s; restarting it", proc.pid, code)
                if quick:
                    time.sleep(_RESTART_PAUSE_S)
                    if stopping:  # a SIGTERM during the pause
                        break
                workers[n] = start()
    finally:
        for proc, _ in workers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        for proc, _ in workers:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(metrics_dir, ignore_errors=True)
    return status


def _fresh_metrics_dir(host: str, port: int) -> str:
    """An empty folder for the workers' metric files, one name per address.

    A fixed name, emptied at start: a supervisor killed by SIGKILL cannot remove its folder,
    and the next start on the same address (the port check above proved the old one gone)
    clears what it left instead of leaving one stale folder per crash.
    """
    safe_host = "".join(c if c.isalnum() else "_" for c in host)
    path = os.path.join(tempfile.gettempdir(), f"qs-ingest-metrics-{safe_host}-{port}")
    if os.path.islink(path):
        os.unlink(path)
    shutil.rmtree(path, ignore_errors=True)
    os.mkdir(path, 0o700)  # fails if anything reappeared meanwhile: never reuse a stranger's
    return path


def _mark_dead(pid: int, metrics_dir: str) -> None:
    # the dead worker's live gauges leave the sum; its counters stay counted
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid, metrics_dir)
