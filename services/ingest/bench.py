"""Benchmark of the ingest gateway: ``python -m services.ingest.bench``.

Starts ``python -m services.ingest`` (uvicorn; ``--workers N`` processes, default one) on a
free port against the real broker (``QS_KAFKA_BOOTSTRAP``, default 127.0.0.1:9092) with fresh
topics (a unique prefix, deleted after the run) and the rate limit lifted, then drives it with
wrk:

1. single: ``POST /v1/events``, one CloudEvent per request, every 202 after Kafka's ack;
2. batch: ``POST /v1/events/batch``, 1,000 CloudEvents per request.

``--only single|batch`` runs one of the two. Prints a Markdown table for BENCHMARKS.md. Needs
``wrk`` (``apt-get install -y wrk``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient

LUA_DIR = Path(__file__).with_name("bench")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"ingest exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=2) as r:  # noqa: S310
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit("ingest did not become ready (is Kafka running?)")


async def _drop_topics(bootstrap: str, prefix: str) -> int:
    """Delete the run's topics: a broker collecting every run's ~100 partitions runs out of heap
    (Kafka died of OutOfMemoryError at ~15,000 partitions with the default 512 MB)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="qingshou-bench",
                                request_timeout_ms=60_000)
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if t.startswith(f"{prefix}.")]
        if names:
            await admin.delete_topics(names, timeout_ms=60_000)
        return len(names)
    finally:
        await admin.close()


def _seconds(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[unit]


def _wrk(url: str, script: str, connections: int, duration: int, threads: int,
         env: dict[str, str]) -> dict[str, float]:
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency",
           "--timeout", "30s", "-s", str(LUA_DIR / script), url]
    print("$", " ".join(cmd), file=sys.stderr)
    out = subprocess.run(cmd, env=env, capture_output=True, text=True,  # noqa: S603
                         check=True).stdout
    print(out, file=sys.stderr)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    # the latency distribution's own lines: "62.50%" of the Req/Sec line must not match "50%"
    p50 = _seconds(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = _seconds(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    return {"rps": rps, "p50": p50, "p99": p99, "non2xx": float(bad.group(1)) if bad else 0.0,
            "socket_errors": 1.0 if errors else 0.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=15, help="seconds per run")
    parser.add_argument("--connections", type=int, default=64, help="single-event run")
    parser.add_argument("--batch-connections", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--wrk-threads", type=int, default=1)
    parser.add_argument("--workers", type=int, default=1, help="ingest worker processes")
    parser.add_argument("--only", choices=["single", "batch"], help="run just one of the two")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found: apt-get install -y wrk")

    port, run = _free_port(), uuid.uuid4().hex[:8]
    bootstrap = os.environ.get("QS_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    env = {**os.environ, "QS_PORT": str(port), "QS_TOPIC_PREFIX": f"bench{run}",
           "QS_KAFKA_BOOTSTRAP": bootstrap, "QS_LOG_LEVEL": "WARNING",
           "QS_INGEST_RATE_PER_SECOND": "1e9",
           "QS_INGEST_WORKERS": str(args.workers), "QS_INGEST_RATE_BURST": "1000000000"}
    server = subprocess.Popen([sys.executable, "-m", "services.ingest"], env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, server)
        wrk_env = {**os.environ, "QS_BENCH_LUA_DIR": str(LUA_DIR), "QS_BENCH_RUN": run,
                   "QS_BENCH_BATCH": str(args.batch_size)}
        # a short warm-up so connections, metadata and JIT-free caches are in place
        _wrk(f"{url}/v1/events", "single.lua", 8, 2, 1, wrk_env)
        results: dict[str, dict[str, float]] = {}
        if args.only != "batch":
            results["single"] = _wrk(f"{url}/v1/events", "single.lua", args.connections,
                                     args.duration, args.wrk_threads, wrk_env)
        if args.only != "single":
            results["batch"] = _wrk(f"{url}/v1/events/batch", "batch.lua",
                                    args.batch_connections, args.duration, args.wrk_threads,
                                    wrk_env)
    finally:
        server.terminate()
        server.wait(30)
        try:
            dropped = asyncio.run(_drop_topics(bootstrap, f"bench{run}"))
            print(f"deleted the run's {dropped} topics", file=sys.stderr)
        except Exception as exc:  # the figures stand; say what to clean up by hand
            print(f"could not delete the bench{run}.* topics: {exc!r}", file=sys.stderr)

    machine = (f"{platform.machine()}, {os.cpu_count()} cores, "
               f"{platform.system()} {platform.release()}")
    workers = "one uvicorn worker" if args.workers == 1 else f"{args.workers} uvicorn workers"
    print(f"machine: {machine}; broker {bootstrap}; {workers}; wrk {args.wrk_threads} "
          f"thread(s); {args.duration} s per run\n")
    print("| run | workers | connections | requests/s | events/s | p50 | p99 | non-2xx |")
    print("|---|---|---|---|---|---|---|---|")
    single, batch = results.get("single"), results.get("batch")
    if single:
        print(f"| single `POST /v1/events` | {args.workers} | {args.connections} | "
              f"{single['rps']:,.0f} | {single['rps']:,.0f} | {single['p50'] * 1000:.1f} ms | "
              f"{single['p99'] * 1000:.1f} ms | {single['non2xx']:.0f} |")
    if batch:
        print(f"| batch `POST /v1/events/batch` ({args.batch_size}/request) | {args.workers} | "
              f"{args.batch_connections} | {batch['rps']:,.1f} | "
              f"{batch['rps'] * args.batch_size:,.0f} | {batch['p50'] * 1000:.0f} ms | "
              f"{batch['p99'] * 1000:.0f} ms | {batch['non2xx']:.0f} |")

if __name__ == "__main__":
    main()
