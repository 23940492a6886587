"""Ingest with several worker processes on one port (``QS_INGEST_WORKERS``), real Kafka.

The gateway is started as an ops team starts it, ``python -m services.ingest``; these tests
check what the supervisor promises: every worker serves, ``/metrics`` adds up over the workers
whichever one answers, a SIGKILLed worker is replaced, and SIGTERM stops everything.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from tests.conftest import KAFKA, free_port
from tests.integration.conftest import eventually, read_topic
from tests.integration.test_ingest import CE, CORE, _samples, event

pytestmark = pytest.mark.integration

WORKERS = 2


def _alive(pids: set[int]) -> set[int]:
    return {pid for pid in pids if Path(f"/proc/{pid}").exists()}


def _start(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "services.ingest"], env=env)


def _exists(path: str | Path) -> bool:
    return Path(path).exists()


def _children(pid: int) -> set[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return {int(p) for p in text.split()}


@pytest.fixture
def gateway(uid: str) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    port = free_port()
    env = {**os.environ, "QS_PORT": str(port), "QS_TOPIC_PREFIX": f"t{uid}",
           "QS_KAFKA_BOOTSTRAP": KAFKA, "QS_TOPIC_PARTITIONS": "3",
           "QS_INGEST_WORKERS": str(WORKERS), "QS_LOG_LEVEL": "WARNING"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    proc = subprocess.Popen([sys.executable, "-m", "services.ingest"], env=env)
    try:
        yield proc, f"http://127.0.0.1:{port}"
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(40)
            except subprocess.TimeoutExpired:
                proc.kill()


def _environ(pid: int) -> dict[str, str]:
    pairs = Path(f"/proc/{pid}/environ").read_bytes().decode().split("\0")
    return dict(pair.split("=", 1) for pair in pairs if "=" in pair)


async def _post_each_on_its_own_connection(url: str, events: list[dict]) -> None:
    for ev in events:
        # a new client per request: a new connection, which the kernel may give any worker
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            r = await client.post("/v1/events", content=orjson.dumps(ev), headers={**CE, **CORE})
            assert r.status_code == 202, r.text


async def _accepted(url: str) -> float:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        text = (await client.get("/metrics")).text
    key = (("outcome", "accepted"), ("route", "single"))
    return _samples(text, "qs_ingest_events_total").get(key, 0.0)


async def _ready(url: str) -> bool:
    async with httpx.AsyncClient(base_url=url, timeout=5) as client:
        return (await client.get("/readyz")).status_code == 200


async def test_workers_share_the_port_and_metrics_add_up_over_them(gateway, uid: str) -> None:
    proc, url = gateway
    await eventually(lambda: _ready(url), timeout=60)
    await eventually(lambda: asyncio.sleep(0, len(_children(proc.pid)) == WORKERS))
    events = [event() for _ in range(30)]
    await _post_each_on_its_own_connection(url, events)
    records = await read_topic(f"t{uid}.loan-events", expect=len(events), settle=1.0)
    assert sorted(orjson.loads(r.value)["id"] for r in records) == sorted(e["id"] for e in events)
    # thirty connections all on one worker would be a 1 in 2**29 chance; whichever worker
    # answers /metrics, it reports the sum over both
    for _ in range(6):
        assert await _accepted(url) == len(events)


async def test_a_killed_worker_is_replaced_and_sigterm_stops_all(gateway, uid: str) -> None:
    proc, url = gateway
    await eventually(lambda: _ready(url), timeout=60)
    await eventually(lambda: asyncio.sleep(0, len(_children(proc.pid)) == WORKERS))
    first = _children(proc.pid)
    victim = min(first)
    os.kill(victim, signal.SIGKILL)

    async def replaced() -> bool:
        now = _children(proc.pid)
        return victim not in now and len(now) == WORKERS

    await eventually(replaced, timeout=30)
    await eventually(lambda: _ready(url), timeout=60)
    late = [event(id=f"late-{uuid.uuid4()}") for _ in range(10)]
    await _post_each_on_its_own_connection(url, late)
    records = await read_topic(f"t{uid}.loan-events", expect=len(late), settle=1.0)
    assert {orjson.loads(r.value)["id"] for r in records} == {e["id"] for e in late}

    workers = _children(proc.pid)
    proc.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(proc.wait, 40) == 0
    assert not _alive(workers)


async def test_workers_stop_when_the_supervisor_is_killed(gateway) -> None:
    # else they would go on serving the port beside the workers of the next start
    proc, url = gateway
    await eventually(lambda: _ready(url), timeout=60)
    await eventually(lambda: asyncio.sleep(0, len(_children(proc.pid)) == WORKERS))
    workers = _children(proc.pid)
    env = _environ(min(workers))
    metrics_dir = env["PROMETHEUS_MULTIPROC_DIR"]
    proc.kill()
    proc.wait()
    try:
        await eventually(lambda: asyncio.sleep(0, not _alive(workers)), timeout=40)
        # the next start on the address empties what the killed supervisor left behind
        stale = Path(metrics_dir) / "counter_1.db"
        stale.write_bytes(b"left by a killed supervisor")
        for name in ("QS_INGEST_WORKER_PROCESS", "QS_INGEST_SUPERVISOR_PID",
                     "PROMETHEUS_MULTIPROC_DIR"):
            env.pop(name, None)
        again = _start(env)
        try:
            await eventually(lambda: _ready(url), timeout=60)
            assert not _exists(stale)
            again.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(again.wait, 40) == 0
            assert not _exists(metrics_dir)
        finally:
            if again.poll() is None:
                again.kill()
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


def test_a_taken_port_is_an_error_at_once_not_a_restart_loop() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        env = {**os.environ, "QS_PORT": str(taken.getsockname()[1]), "QS_INGEST_WORKERS": "2",
               "QS_LOG_LEVEL": "WARNING"}
        done = subprocess.run([sys.executable, "-m", "services.ingest"], env=env, timeout=60,
                              check=False, capture_output=True)
    assert done.returncode == 1
    assert b"Address already in use" in done.stderr
