"""Benchmark: `repayment.applied` events/s through the incentives consumer, every effect committed.

`python -m services.incentives.bench [events] [collectors] [processes]` (defaults 100,000, 500
and 1; more than one process runs that many consumer processes in one group) against the local
Kafka and PostgreSQL (QS_KAFKA_BOOTSTRAP, QS_DATABASE_URL). Phase one assigns ten loans to
each collector and consumes the assignments; phase two produces the repayments and times a fresh
runner of the same group from its start until every repayment is committed (ledger entries,
scorecards, outbox). The schema and topics are unique per run; the schema is dropped at the end.
"""

from __future__ import annotations

import asyncio
import os
import platform
import sys
import time
import uuid
from pathlib import Path

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.incentives import scoring, store
from services.incentives.consumer import consumer_spec
from shared.bench import _produce, consume_in_processes
from shared.consumer import ConsumerRunner, RunnerConfig
from shared.db import drop_schema, make_engine
from shared.kafka import ensure_topics
from shared.migrations import migrate
from shared.settings import ServiceSettings
from shared.topics import ALL_TOPICS, REPAYMENTS_APPLIED, TopicNames

LOANS_PER_COLLECTOR = 10
MIGRATIONS = Path(__file__).parent / "migrations"


def _cloudevent(type_: str, subject: str, data: dict) -> tuple[bytes, bytes]:
    return subject.encode(), orjson.dumps({
        "specversion": "1.0", "id": uuid.uuid4().hex, "source": "urn:bench:staging",
        "type": type_, "time": "2026-03-20T10:00:00+08:00", "subject": subject, "data": data})


def assignments(collectors: int) -> list[tuple[bytes, bytes]]:
    return [_cloudevent("case.assigned", f"L{c:04d}-{k}", {
        "loan_id": f"L{c:04d}-{k}", "collector_id": f"C{c:04d}", "team": f"T{c % 20:02d}",
        "stage": "early", "business_date": "2026-03-02"})
        for c in range(collectors) for k in range(LOANS_PER_COLLECTOR)]


def repayments(n: int, collectors: int) -> list[tuple[bytes, bytes]]:
    out = []
    for i in range(n):
        c, k = i % collectors, (i // collectors) % LOANS_PER_COLLECTOR
        loan = f"L{c:04d}-{k}"
        out.append(_cloudevent("repayment.applied", loan, {
            "loan_id": loan, "payment_id": f"P{i}", "amount": "12.34", "to_arrears": "12.34",
            "excess": "0", "currency": "CNY", "value_date": f"2026-03-{1 + i % 28:02d}",
            "stage": "early", "dpd_before": 5, "dpd_after": 0, "collector_id": f"C{c:04d}"}))
    return out


async def _consume(runner: ConsumerRunner, until: int) -> float:
    await runner.start()
    task = asyncio.create_task(runner.run())
    started = time.perf_counter()
    while runner.applied < until:  # noqa: ASYNC110 - polls the runner's counter
        await asyncio.sleep(0.01)
    elapsed = time.perf_counter() - started
    await runner.stop()
    await task
    return elapsed


async def _drifted(engine: AsyncEngine) -> list[tuple[str, str]]:
    """The scorecards whose stored document a rebuild from the ledger alone would change (none,
    if the batches' folds, concurrent ones included, lost no entry and counted none twice).
    The rebuild is rolled back."""
    async with engine.connect() as conn:
        trans = await conn.begin()
        try:
            book = store.book_of(await store.load_schemes(conn))
            periods = [r[0] for r in await conn.execute(text(
                "SELECT DISTINCT period FROM scorecards"))]
            changed = await scoring.rebuild(conn, book, periods)
        finally:
            await trans.rollback()
    return [(u.card.collector_id, u.card.period) for u in changed]


async def run(n: int, collectors: int, processes: int = 1) -> str:
    s = ServiceSettings(service="incentives")
    uid = uuid.uuid4().hex[:8]
    topics, schema = TopicNames(f"bench{uid}"), f"bench_inc_{uid}"
    await ensure_topics(s.kafka_bootstrap, [topics.name(t) for t in ALL_TOPICS],
                        s.topic_partitions)
    await migrate(s.database_url, schema, MIGRATIONS)
    engine = make_engine(s.database_url, schema, pool_size=2)

    def runner() -> ConsumerRunner:
        return ConsumerRunner(consumer_spec(), engine, RunnerConfig(
            bootstrap=s.kafka_bootstrap, group_id=f"bench-{uid}", schema=schema, topics=topics,
            max_records=5000, poll_timeout_ms=100))

    try:
        cases = assignments(collectors)
        await _produce(s.kafka_bootstrap, topics.collection_assignments, cases)
        await _consume(runner(), len(cases))
        await _produce(s.kafka_bootstrap, topics.repayments_applied, repayments(n, collectors))
        if processes > 1:
            elapsed = await consume_in_processes(
                "services.incentives.consumer:consumer_spec", s.database_url, runner().config,
                REPAYMENTS_APPLIED, processes)
        else:
            elapsed = await _consume(runner(), n)
        async with engine.connect() as conn:
            credits = (await conn.execute(text(
                "SELECT count(*) FROM credit_ledger WHERE kind = 'credit'"))).scalar_one()
            cards = (await conn.execute(text("SELECT count(*) FROM scorecards"))).scalar_one()
            updates = (await conn.execute(text("SELECT count(*) FROM outbox"))).scalar_one()
        assert credits == n, (credits, n)
        drifted = await _drifted(engine)
        assert not drifted, f"scorecards differ from a rebuild from the ledger: {drifted[:5]}"
    finally:
        await drop_schema(engine, schema)
        await engine.dispose()
    return "\n".join([
        f"Machine: {os.cpu_count()} cores, {platform.platform()}, "
        f"Python {platform.python_version()}",
        f"Partitions: {s.topic_partitions}, batch (max_records): 5000",
        "",
        "| run | events | seconds | events/s |", "|---|---:|---:|---:|",
        f"| repayment.applied, {collectors} collectors, {processes} consumer process(es) | "
        f"{n:,} | {elapsed:.2f} | "
        f"{n / elapsed:,.0f} |",
        "",
        f"Ledger credits committed: {credits:,}; scorecards: {cards:,}; "
        f"outbox rows (scorecard.updated): {updates:,}; every scorecard equals a rebuild "
        "from the ledger",
    ])


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    collectors = int(sys.argv[2]) if len(sys.argv) > 2 else 500
    processes = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    sys.stdout.write(asyncio.run(run(n, collectors, processes)) + "\n")


if __name__ == "__main__":
    main()
