"""Benchmark of staging: event throughput through Kafka, and end of day on a large book.

`python -m services.staging.bench [events] [book] [consumers] [eod_workers]` (defaults 100,000,
1,000,000, 1 and 2) against the local Kafka and PostgreSQL (QS_KAFKA_BOOTSTRAP,
QS_DATABASE_URL). Consumers and end-of-day workers run in their own processes, as several
staging instances would.

1. Throughput: a realistic mix per loan (loan.opened, payment.missed, repayment.received,
   a second payment.missed, and for every other loan a repayment.reversed) is produced first;
   a fresh runner is then timed from its start until every event is committed (loans, history,
   outbox), like the other services' benchmarks. By default no business day has closed, so
   every loan is evaluated at its own opening date and stays current; ``--business-date
   YYYY-MM-DD`` sets the calendar first, so the same events also move stages and owners (with
   2026-02-10 every loan enters negotiation with DPD 36 and is assigned to its relationship
   manager: a stage.changed and a case.assigned more per loan, with their history rows).
2. End of day: a book of `book` loans is written with one INSERT ... SELECT generate_series
   (templated states built by the domain); 5% are early loans at DPD 30 whose next transition
   is the new business date (they move to negotiation and are assigned to their relationship
   manager), the rest are current. `eod_workers` end-of-day workers, each in its own process
   (as several staging instances would), share the day through SKIP LOCKED; timed until the
   day is recorded as done. Before timing, the book is vacuumed and a checkpoint writes it
   out, as a book in service would be (``--unsettled``: skip that, and the day also pays for
   the bulk load's hint bits and dirty buffers).

The schema and topics are unique per run and dropped at the end, even on failure. With
``events`` = 0 only the end of day runs (no Kafka needed); with ``book`` = 0 only the
throughput. Each row gives /proc/loadavg taken just before its timed part.
"""

from __future__ import annotations

import asyncio
import os
import platform
import sys
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from datetime import date
from pathlib import Path

import orjson
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.staging.domain import handlers
from services.staging.domain.policy import DEFAULT_POLICY
from services.staging.eod import EndOfDay
from shared.bench import _produce, consume_in_processes
from shared.consumer import RunnerConfig
from shared.db import drop_schema, make_engine
from shared.gc_tuning import tune_gc
from shared.kafka import ensure_topics
from shared.migrations import migrate
from shared.settings import ServiceSettings
from shared.topics import ALL_TOPICS, LOAN_EVENTS, TopicNames

MIGRATIONS = Path(__file__).parent / "migrations"
EOD_DATE = date(2026, 2, 5)


def _cloudevent(type_: str, subject: str, data: dict) -> tuple[bytes, bytes]:
    return subject.encode(), orjson.dumps({
        "specversion": "1.0", "id": uuid.uuid4().hex, "source": "urn:bench:core",
        "type": type_, "time": "2026-01-20T10:00:00+08:00", "subject": subject, "data": data})


def event_mix(n: int) -> list[tuple[bytes, bytes]]:
    """About ``n`` events: 4.5 per loan, each loan's events in order on its key."""
    out: list[tuple[bytes, bytes]] = []
    i = 0
    while len(out) < n:
        loan = f"T{i:08d}"
        out.append(_cloudevent("loan.opened", loan, {
            "loan_id": loan, "borrower_id": f"B{i}", "product": "consumer_loan",
            "currency": "CNY", "principal": "20000.00", "opened_on": "2026-01-01",
            "relationship_manager_id": f"rm{i % 50}"}))
        for no, due in ((1, "2026-01-05"), (2, "2026-02-05")):
            out.append(_cloudevent("payment.missed", loan, {
                "loan_id": loan, "instalment_no": no, "due_date": due, "amount_due": "800.00",
                "amount_unpaid": "800.00"}))
            if no == 1:
                out.append(_cloudevent("repayment.received", loan, {
                    "loan_id": loan, "payment_id": f"P{i}", "amount": "300.00",
                    "currency": "CNY", "value_date": "2026-01-08", "channel": "auto_debit"}))
        if i % 2:
            out.append(_cloudevent("repayment.reversed", loan, {
                "loan_id": loan, "payment_id": f"P{i}", "reason": "bounced"}))
        i += 1
    return out


def _templates() -> tuple[str, str]:
    """(current loan, early loan due to move to negotiation on EOD_DATE), id as __ID__."""
    opened = handlers.open_loan({
        "loan_id": "__ID__", "borrower_id": "B__ID__", "product": "credit_card",
        "currency": "CNY", "principal": "5000.00", "opened_on": "2026-01-01",
        "relationship_manager_id": "rm1"}, date(2026, 1, 1), DEFAULT_POLICY).state
    early = handlers.apply_payment_missed(opened, {
        "instalment_no": 1, "due_date": "2026-01-05", "amount_due": "500.00",
        "amount_unpaid": "500.00"}, date(2026, 2, 4), DEFAULT_POLICY).state
    assert early.stage == "early" and early.next_transition_date == EOD_DATE
    assert str(early.arrears) == "500.00" and early.oldest_unpaid_due_date == date(2026, 1, 5)
    current = handlers.age_to(opened, date(2026, 2, 4), DEFAULT_POLICY).state
    return (orjson.dumps(current.to_dict()).decode(), orjson.dumps(early.to_dict()).decode())


_BOOK = text("""
INSERT INTO loans (loan_id, product, status, stage, dpd, arrears, currency, collector_id, team,
                   next_transition_date, business_date, oldest_due_date, state)
SELECT id, 'credit_card', 'open', CASE WHEN moving THEN 'early' ELSE 'current' END,
       CASE WHEN moving THEN 30 ELSE 0 END, CASE WHEN moving THEN 500.00 ELSE 0 END, 'CNY',
       NULL, NULL, CASE WHEN moving THEN DATE '2026-02-05' END, DATE '2026-02-04',
       CASE WHEN moving THEN DATE '2026-01-05' END,
       CAST(replace(CASE WHEN moving THEN :early ELSE :current END, '__ID__', id) AS json)
FROM (SELECT 'E' || lpad(i::text, 8, '0') AS id, i % 20 = 0 AS moving
      FROM generate_series(1, :n) AS i) AS g
""")

# The book's portfolio, as the loans' own saves would have recorded it (portfolio_moves).
_BOOK_MOVES = text("""
INSERT INTO portfolio_moves (product, stage, loans, arrears)
VALUES ('credit_card', 'current', :n - :n / 20, 0),
       ('credit_card', 'early', :n / 20, 500.00 * (:n / 20))
""")


def _eod_worker(url: str, schema: str, prefix: str, shards: int) -> int:
    tune_gc()  # as the runner does in every staging instance, whose process the worker shares

    async def work() -> int:
        engine = make_engine(url, schema, pool_size=1)
        try:
            eod = EndOfDay(engine, TopicNames(prefix), "urn:bench:staging", schema, shards)
            return await eod.run_pending()
        finally:
            await engine.dispose()

    return asyncio.run(work())


async def _end_of_day(s: ServiceSettings, schema: str, prefix: str, workers: int) -> int:
    loop = asyncio.get_running_loop()
    with ProcessPoolExecutor(workers) as pool:
        done = await asyncio.gather(*[
            loop.run_in_executor(pool, _eod_worker, s.database_url, schema, prefix,
                                 s.relay_shards) for _ in range(workers)])
    return sum(done)


def _loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


async def _throughput(s: ServiceSettings, engine: AsyncEngine, schema: str, topics: TopicNames,
                      uid: str, n: int, consumers: int,
                      business_date: date | None) -> tuple[str, str]:
    events = event_mix(n)
    await _produce(s.kafka_bootstrap, topics.loan_events, events)
    if business_date is not None:
        async with engine.begin() as conn:
            await conn.execute(text("UPDATE calendar SET business_date = :d"),
                               {"d": business_date})
    load = _loadavg()
    # the runner's own multi-process harness: timed from the first consumer's start until the
    # group has committed every event (its lag, asked of the broker), shutdown not counted
    elapsed = await consume_in_processes(
        "services.staging.consumer:consumer_spec", s.database_url, RunnerConfig(
            bootstrap=s.kafka_bootstrap, group_id=f"bench-{uid}", schema=schema, topics=topics,
            max_records=5000, poll_timeout_ms=100), LOAN_EVENTS, consumers)
    async with engine.connect() as conn:
        loans = (await conn.execute(text("SELECT count(*) FROM loans"))).scalar_one()
        out = (await conn.execute(text("SELECT count(*) FROM outbox"))).scalar_one()
        dead = (await conn.execute(text(
            "SELECT count(*) FROM inbox WHERE status <> 'applied'"))).scalar_one()
        seen = (await conn.execute(text("SELECT count(*) FROM inbox"))).scalar_one()
        stages = (await conn.execute(text(
            "SELECT stage, count(*) FROM loans GROUP BY stage ORDER BY stage"))).all()
    assert seen == len(events), (seen, len(events))  # every event's effects were committed
    on = "no business day closed" if business_date is None else f"business date {business_date}"
    return (f"| event mix through Kafka, all effects committed, {consumers} consumer(s), {on} "
            f"(load average {load}) | {len(events):,} events | {elapsed:.2f} | "
            f"{len(events) / elapsed:,.0f} |",
            f"Throughput run: {loans:,} loans ("
            + ", ".join(f"{stage} {count:,}" for stage, count in stages)
            + f"), {out:,} outbox rows, {dead} dead-lettered.")


async def _eod(s: ServiceSettings, engine: AsyncEngine, schema: str, topics: TopicNames,
               book: int, workers: int, settle: bool) -> tuple[str, str]:
    async with engine.begin() as conn:
        await conn.execute(text("TRUNCATE loans, stage_history, outbox, portfolio_moves"))
        current, early = _templates()
        started = time.perf_counter()
        await conn.execute(_BOOK, {"n": book, "current": current, "early": early})
        await conn.execute(_BOOK_MOVES, {"n": book})
        await conn.execute(text("UPDATE calendar SET business_date = :d, eod_pending = :d"),
                           {"d": EOD_DATE})
    load_s = time.perf_counter() - started
    if settle:
        # a book in service has been vacuumed and its pages written out long before the day
        # closes: do both here (not counted), or the day pays for the bulk load's leftovers
        # (hint bits on every page, a gigabyte of dirty buffers to evict)
        async with engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text("VACUUM (ANALYZE) loans"))
            await conn.execute(text("CHECKPOINT"))
    else:
        async with engine.begin() as conn:
            await conn.execute(text("ANALYZE loans"))
    load = _loadavg()
    started = time.perf_counter()
    aged = await _end_of_day(s, schema, topics.prefix, workers)
    eod_s = time.perf_counter() - started
    async with engine.connect() as conn:
        moved = (await conn.execute(text(
            "SELECT count(*) FROM loans WHERE stage = 'negotiation'"))).scalar_one()
        eod_out = (await conn.execute(text("SELECT count(*) FROM outbox"))).scalar_one()
        snapshot = (await conn.execute(text(
            "SELECT sum(loans) FROM portfolio_snapshots"))).scalar_one()
    assert moved == aged == book // 20, (moved, aged)
    assert snapshot == book, snapshot
    return (f"| end of day, {book:,} loans, {aged:,} change stage, {workers} worker(s)"
            f"{'' if settle else ', book not settled'} (load average {load}) | {aged:,} loans | "
            f"{eod_s:.2f} | {aged / eod_s:,.0f} |",
            f"End of day: {eod_out:,} outbox rows (stage.changed + case.assigned), snapshot of "
            f"{snapshot:,} loans; book written in {load_s:.1f} s (not counted).")


async def _drop_topics(bootstrap: str, topics: TopicNames) -> None:
    """Delete the run's topics: a broker keeping every run's partitions runs out of heap."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="qingshou-bench",
                                request_timeout_ms=60_000)
    await admin.start()
    try:
        names = set(topics.all()) & set(await admin.list_topics())
        if names:
            await admin.delete_topics(sorted(names), timeout_ms=60_000)
    finally:
        await admin.close()


async def run(n: int, book: int, consumers: int, workers: int, settle: bool = True,
              business_date: date | None = None) -> str:
    """Both parts (``n`` = 0: end of day only, without Kafka); the run's schema and topics
    are dropped at the end, whatever happens."""
    s = ServiceSettings(service="staging")
    uid = uuid.uuid4().hex[:8]
    topics, schema = TopicNames(f"bench{uid}"), f"bench_stg_{uid}"
    rows, notes = [], []
    try:
        if n:
            await ensure_topics(s.kafka_bootstrap, [topics.name(t) for t in ALL_TOPICS],
                                s.topic_partitions)
        await migrate(s.database_url, schema, MIGRATIONS)
        engine = make_engine(s.database_url, schema, pool_size=2)
        try:
            if n:
                row, note = await _throughput(s, engine, schema, topics, uid, n, consumers,
                                              business_date)
                rows.append(row)
                notes.append(note)
            if book:
                row, note = await _eod(s, engine, schema, topics, book, workers, settle)
                rows.append(row)
                notes.append(note)
        finally:
            await drop_schema(engine, schema)
            await engine.dispose()
    finally:
        if n:
            await _drop_topics(s.kafka_bootstrap, topics)
    return "\n".join([
        f"Machine: {os.cpu_count()} cores, {platform.platform()}, "
        f"Python {platform.python_version()}",
        f"Partitions: {s.topic_partitions}, batch (max_records): 5000, EOD chunk: 5000",
        "", "| run | items | seconds | per second |", "|---|---:|---:|---:|", *rows, "", *notes,
    ])


def main() -> None:
    argv = sys.argv[1:]
    business_date = None
    if "--business-date" in argv:
        at = argv.index("--business-date")
        business_date = date.fromisoformat(argv[at + 1])
        del argv[at:at + 2]
    args = [a for a in argv if not a.startswith("--")]
    n = int(args[0]) if len(args) > 0 else 100_000
    book = int(args[1]) if len(args) > 1 else 1_000_000
    consumers = int(args[2]) if len(args) > 2 else 1
    workers = int(args[3]) if len(args) > 3 else 2
    settle = "--unsettled" not in argv
    sys.stdout.write(asyncio.run(run(n, book, consumers, workers, settle, business_date)) + "\n")


if __name__ == "__main__":
    main()
