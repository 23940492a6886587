"""Benchmark of the shared consumer runner on the real broker and database.

The probe handler (``shared.probe``) upserts one row per event and writes one outbox row. Two
figures come from the same run: the batched runner (``getmany`` batches, one transaction per
batch) and a per-event-transaction baseline (a batch of one, one statement per event). Each
counts events with every effect committed, from the start of consumption to the last commit.
The relay's publishing rate of the resulting outbox is measured after.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass

import orjson
from aiokafka.structs import ConsumerRecord
from sqlalchemy import text

from shared.consumer import ConsumerRunner, RunnerConfig
from shared.db import drop_schema, make_engine
from shared.gc_tuning import tune_gc
from shared.kafka import ensure_topics, make_producer
from shared.ops.chaos_kafka import KafkaProbe
from shared.probe import create_probe_schema, probe_spec
from shared.relay import OutboxRelay
from shared.topics import ALL_TOPICS, LOAN_EVENTS, TopicNames


@dataclass
class Result:
    name: str
    events: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


def _events(n: int, loans: int) -> list[tuple[bytes, bytes]]:
    out = []
    for i in range(n):
        loan = f"L{i % loans:07d}"
        out.append((loan.encode(), orjson.dumps({
            "specversion": "1.0", "id": uuid.uuid4().hex, "source": "urn:bench:core",
            "type": "repayment.received", "time": "2026-11-28T10:00:00+08:00",
            "subject": loan,
            "data": {"loan_id": loan, "payment_id": f"P{i}", "amount": "12.34",
                     "currency": "CNY", "value_date": "2026-11-28", "channel": "transfer"}})))
    return out


async def _produce(bootstrap: str, topic: str, events: list[tuple[bytes, bytes]]) -> None:
    producer = make_producer(bootstrap, client_id="bench")
    await producer.start()
    try:
        batch = []
        for key, value in events:
            batch.append(await producer.send(topic, value=value, key=key))
            if len(batch) >= 5000:
                await asyncio.gather(*batch)
                batch.clear()
        await asyncio.gather(*batch)
    finally:
        await producer.stop()


async def _consume(name: str, bootstrap: str, db_url: str, n: int, per_event: bool,
                   partitions: int, processes: int = 1) -> tuple[Result, str, str]:
    uid = uuid.uuid4().hex[:8]
    topics, schema = TopicNames(f"bench{uid}"), f"bench_{uid}"
    await ensure_topics(bootstrap, [topics.name(t) for t in ALL_TOPICS], partitions)
    engine = make_engine(db_url, schema, pool_size=2)
    await create_probe_schema(engine, schema)
    await _produce(bootstrap, topics.loan_events, _events(n, loans=max(1, n // 4)))
    config = RunnerConfig(
        bootstrap=bootstrap, group_id=f"bench-{uid}", schema=schema, topics=topics,
        max_records=1 if per_event else 5000, poll_timeout_ms=100)
    if processes > 1:
        elapsed = await consume_in_processes("shared.probe:probe_spec", db_url, config,
                                             LOAN_EVENTS, processes)
    else:
        runner = ConsumerRunner(probe_spec(per_event=per_event), engine, config)
        await runner.start()
        task = asyncio.create_task(runner.run())
        started = time.perf_counter()
        while runner.applied < n:  # noqa: ASYNC110 - polling a counter the runner updates
            await asyncio.sleep(0.02)
        elapsed = time.perf_counter() - started
        await runner.stop()
        await task
    async with engine.connect() as conn:
        applied = (await conn.execute(text("SELECT sum(events) FROM probe_loans"))).scalar_one()
        outbox = (await conn.execute(text("SELECT count(*) FROM outbox"))).scalar_one()
    assert applied == n and outbox == n, (applied, outbox)
    await engine.dispose()
    return Result(name, n, elapsed), schema, topics.prefix


async def consume_in_processes(factory: str, db_url: str, config: RunnerConfig, topic: str,
                               processes: int) -> float:
    """Run ``processes`` runner processes of one consumer group, as several instances of a
    service would run, and time them from the first one's start until the group has committed
    every record now on ``topic`` (unprefixed name). Rebalances while the others join are
    included.

    The runner commits a batch's offsets only after its database transaction commits, so a
    group with no lag has every effect committed. Asked of the broker (an offset lookup), not
    of the database: a ``count(*)`` over a table of hundreds of thousands of rows twenty times a
    second took a tenth of the two cores being measured.

    ``factory`` names the spec's factory as ``module:function`` (called without arguments).
    """
    probe = KafkaProbe(config.bootstrap)
    await probe.start()
    watched = [config.topics.name(topic)]
    args = [sys.executable, "-m", "shared.bench", "worker", factory, config.bootstrap, db_url,
            config.schema, config.topics.prefix, config.group_id]
    workers = [await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.PIPE)
               for _ in range(processes)]
    try:
        starts = []
        for w in workers:  # each prints the monotonic time at which its consumer started
            assert w.stdout is not None
            starts.append(float((await w.stdout.readline()).decode() or "inf"))
        while await probe.lag(config.group_id, watched):
            if any(w.returncode is not None for w in workers):
                raise RuntimeError("a runner process died")
            await asyncio.sleep(0.05)
        return time.monotonic() - min(starts)
    finally:
        await probe.stop()
        for w in workers:
            if w.returncode is None:
                w.terminate()
            await w.wait()


async def _worker(factory: str, bootstrap: str, db_url: str, schema: str, prefix: str,
                  group: str) -> None:
    module, _, function = factory.partition(":")
    spec = getattr(importlib.import_module(module), function)()
    engine = make_engine(db_url, schema, pool_size=2)
    runner = ConsumerRunner(spec, engine, RunnerConfig(
        bootstrap=bootstrap, group_id=group, schema=schema, topics=TopicNames(prefix),
        max_records=5000, poll_timeout_ms=100))
    await runner.start()
    print(time.monotonic(), flush=True)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, lambda: asyncio.ensure_future(runner.stop()))
    await runner.run()
    await engine.dispose()


async def _relay(bootstrap: str, db_url: str, schema: str, n: int) -> Result:
    engine = make_engine(db_url, schema, pool_size=2)
    producer = make_producer(bootstrap, client_id="bench-relay")
    await producer.start()
    relay = OutboxRelay(engine, producer, schema, batch=5000)
    started = time.perf_counter()
    while relay.published < n:
        if await relay.publish_once() == 0:
            break
    elapsed = time.perf_counter() - started
    await relay.close()
    await producer.stop()
    await engine.dispose()
    return Result("outbox relay (publish, acks=all)", relay.published, elapsed)


async def _drop(db_url: str, schemas: list[str]) -> None:
    engine = make_engine(db_url, "public", pool_size=1)
    for schema in schemas:
        await drop_schema(engine, schema)
    await engine.dispose()


async def run(bootstrap: str, db_url: str, events: int = 200_000, baseline_events: int = 5_000,
              partitions: int = 6, processes: int = 1) -> list[Result]:
    """The batched runner in one process, the baseline, the relay on the batched run's outbox,
    and, with ``processes`` > 1, the batched runner again as that many processes of one group
    (a service's instances on a machine of that many cores): rows in that order."""
    label = "runner, batched (getmany, 1 tx per batch)"
    batched, schema, _ = await _consume(label, bootstrap, db_url, events, False, partitions)
    relay = await _relay(bootstrap, db_url, schema, events)
    base, base_schema, _ = await _consume("baseline, 1 tx per event", bootstrap, db_url,
                                          baseline_events, True, partitions)
    results, schemas = [batched, base, relay], [schema, base_schema]
    if processes > 1:
        group, group_schema, _ = await _consume(
            f"{label}, {processes} processes in one group", bootstrap, db_url, events, False,
            partitions, processes)
        results.append(group)
        schemas.append(group_schema)
    await _drop(db_url, schemas)
    return results


# -- instructions per event: a measure this drifting machine cannot blur -----------------------

_BATCH = 5_000


async def apply_prebuilt(db_url: str, batches: int, size: int = _BATCH) -> tuple[int, int]:
    """The probe consumer's batches applied in process on prebuilt records of this benchmark,
    against the real PostgreSQL in a scratch schema, without Kafka: what the consumer process
    itself computes per event (parse, inbox, handler, outbound events, statements), nothing
    else. Returns (events applied, outbox rows)."""
    uid = uuid.uuid4().hex[:8]
    topics, schema = TopicNames(f"inproc{uid}"), f"inproc_{uid}"
    engine = make_engine(db_url, schema, pool_size=1)
    try:
        await create_probe_schema(engine, schema)
        runner = ConsumerRunner(probe_spec(), engine, RunnerConfig(
            bootstrap="127.0.0.1:9", group_id=f"inproc-{uid}", schema=schema, topics=topics))
        tune_gc()
        events = _events(size * batches, loans=max(1, size * batches // 4))
        records = [ConsumerRecord(topics.loan_events, n % 6, n, 0, 0, key, value, None,
                                  len(key), len(value), [])
                   for n, (key, value) in enumerate(events)]
        for n in range(batches):
            await runner._apply_batch(records[n * size:(n + 1) * size])
        await runner._close_connection()
        async with engine.connect() as conn:
            outbox = (await conn.execute(text("SELECT count(*) FROM outbox"))).scalar_one()
        return runner.applied, outbox
    finally:
        await drop_schema(engine, schema)
        await engine.dispose()


def instructions_per_event(batches: int = 3) -> int:
    """Machine instructions the consumer process executes per event: ``apply_prebuilt`` run
    under valgrind's callgrind with one batch and with ``batches``, the difference divided by
    the extra events (start-up and the first batch's warm-up cancel out). Deterministic to
    about 0.5 %, where wall-clock rates on this virtual machine drift by up to 2x."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise RuntimeError("valgrind is not installed (apt-get install valgrind)")

    def collected(n: int) -> int:
        out = subprocess.run(  # noqa: S603 - our own interpreter and module, fixed arguments
            [valgrind, "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
             "-m", "shared.bench", "inproc", str(n)],
            capture_output=True, text=True, check=True)
        found = re.search(r"Collected : (\d+)", out.stderr)
        if found is None:
            raise RuntimeError(f"no callgrind total in: {out.stderr[-500:]}")
        return int(found.group(1))

    return (collected(batches) - collected(1)) // ((batches - 1) * _BATCH)


def report(results: list[Result]) -> str:
    batched, base = results[0], results[1]
    lines = [f"Machine: {os.cpu_count()} cores, {platform.platform()}, "
             f"Python {platform.python_version()}", "",
             "| run | events | seconds | events/s |", "|---|---:|---:|---:|"]
    lines += [f"| {r.name} | {r.events:,} | {r.seconds:.2f} | {r.rate:,.0f} |" for r in results]
    lines += ["", f"Batched / baseline: {batched.rate / base.rate:.1f}x (one process)"]
    return "\n".join(lines)


if __name__ == "__main__" and sys.argv[1:2] == ["worker"]:
    asyncio.run(_worker(*sys.argv[2:8]))
if __name__ == "__main__" and sys.argv[1:2] == ["inproc"]:
    from shared.settings import ServiceSettings

    asyncio.run(apply_prebuilt(ServiceSettings().database_url, int(sys.argv[2])))
