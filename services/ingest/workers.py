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
supervisor gives the workers a fresh ``PROMETHEUS_MULTIPROC_DIR`` and removes it at the end.
"""

from __future__ import annotations

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
MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"
# a worker that dies within this long of its start is not restarted at once (a crash loop)
_RESTART_PAUSE_S: Final = 2.0


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket that other workers may bind to the same address too."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def serve_worker(settings: IngestSettings) -> None:
    """One worker: uvicorn on its own ``SO_REUSEPORT`` socket (runs until SIGTERM)."""
    import uvicorn

    config = uvicorn.Config("services.ingest.asgi:app", factory=True, log_config=None,
                            access_log=False, timeout_graceful_shutdown=20)
    uvicorn.Server(config).run(sockets=[reuse_port_socket(settings.host, settings.port)])


def supervise(settings: IngestSettings) -> int:
    """Run ``settings.ingest_workers`` workers until SIGTERM/SIGINT; returns the exit code."""
    metrics_dir = tempfile.mkdtemp(prefix="qs-ingest-metrics-")
    env = {**os.environ, WORKER_ENV: "1", MULTIPROC_ENV: metrics_dir}
    command = [sys.executable, "-m", "services.ingest"]
    stopping = False

    def _stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)

    def start() -> tuple[subprocess.Popen[bytes], float]:
        return subprocess.Popen(command, env=env), time.monotonic()  # noqa: S603

    workers = [start() for _ in range(settings.ingest_workers)]
    log.info("ingest supervisor started %d workers on %s:%d", len(workers), settings.host,
             settings.port, extra={"pids": [p.pid for p, _ in workers]})
    try:
        while not stopping:
            time.sleep(0.2)
            for n, (proc, started) in enumerate(workers):
                code = proc.poll()
                if code is None or stopping:
                    continue
                _mark_dead(proc.pid, metrics_dir)
                log.error("ingest worker %d exited with %s; restarting it", proc.pid, code)
                if time.monotonic() - started < _RESTART_PAUSE_S:
                    time.sleep(_RESTART_PAUSE_S)
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
    return 0


def _mark_dead(pid: int, metrics_dir: str) -> None:
    # the dead worker's live gauges leave the sum; its counters stay counted
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid, metrics_dir)
