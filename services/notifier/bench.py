"""Notifier benchmark: `.venv/bin/python -m services.notifier.bench [--contacts N]`.

1. Decisions per second in process (the pure `decide`, a loan with 20 recent contacts,
   requests on every channel at times spread over a week: sends, deferrals and suppressions).
2. Dispatch to the provider sandbox: N contacts queued in a scratch schema, rendered, sent over
   HTTP (the sandbox runs as its own process) and recorded in the log; contacts per second.
3. Consumed batches (`--batches`): `instalment.upcoming` for N loans, in batches as the runner
   hands them over, through the handlers, the batch hooks and the outbox in a scratch schema,
   at a fixed "now" (`--hour` UTC: 22 defers for quiet hours in Asia/Shanghai, 3 sends); CPU
   per event of this process and of its PostgreSQL backend, which a busy machine disturbs much
   less than the stack benchmark's latency.

Needs PostgreSQL (QS_DATABASE_URL); prints figures, asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy import text

from services.notifier.clock import ManualClock, WallClock
from services.notifier.dispatcher import Dispatcher
from services.notifier.domain import (
    DEFAULT_POLICY,
    BorrowerProfile,
    ContactRecord,
    ContactRequest,
    decide,
)
from services.notifier.handlers import NotifierHandlers
from services.notifier.settings import NotifierSettings
from services.notifier.store import request_to_json
from shared import outbox
from shared.context import BatchContext
from shared.db import drop_schema, make_engine
from shared.events import Event, new_event
from shared.gc_tuning import tune_gc
from shared.migrations import migrate
from shared.topics import TopicNames

CHANNELS = ("sms", "email", "voice", "letter")
ZONES = ("Asia/Shanghai", "America/New_York", "Europe/London", "Asia/Kolkata")


Case = tuple[ContactRequest, BorrowerProfile, frozenset[str], list[ContactRecord], datetime]


def decision_cases(n: int = 1000) -> list[Case]:
    start = datetime(2026, 10, 20, tzinfo=UTC)
    borrowers = [BorrowerProfile(f"B{i}", tz, vulnerable=i == 3) for i, tz in enumerate(ZONES)]
    history = [ContactRecord(CHANNELS[i % 4], start - timedelta(hours=16 * i + 3),
                             ("sent", "delivered", "failed")[i % 3]) for i in range(20)]
    cases: list[Case] = []
    for i in range(n):
        now = start + timedelta(minutes=97 * i)
        channel = CHANNELS[i % 4]
        req = ContactRequest(contact_id=f"c{i}", loan_id="L1", borrower_id="B", channel=channel,
                             template=f"intensive.{channel}", trigger="cadence",
                             stage="intensive", created_at=now, requires_stage="intensive",
                             loan_stage_now="intensive")
        cases.append((req, borrowers[i % 4], frozenset(), history, now))
    return cases


def bench_decisions(rounds: int = 30) -> None:
    cases = decision_cases()
    mix = Counter(decide(r, b, f, h, t, DEFAULT_POLICY).kind for r, b, f, h, t in cases)
    began = time.perf_counter()
    for _ in range(rounds):
        for req, borrower, flags, history, now in cases:
            decide(req, borrower, flags, history, now, DEFAULT_POLICY)
    elapsed = time.perf_counter() - began
    total = rounds * len(cases)
    print(f"decide: {total} decisions in {elapsed:.3f} s = {total / elapsed:,.0f} decisions/s; "
          f"mix {dict(mix)}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _wait_up(url: str) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(100):
            try:
                await client.get(f"{url}/v1/stats")
                return
            except httpx.HTTPError:
                await asyncio.sleep(0.1)
    raise RuntimeError("sandbox did not start")


async def _fill(engine, contacts: int) -> None:
    now = datetime.now(UTC)
    async with engine.begin() as conn:
        await conn.execute(text("""
            INSERT INTO borrowers (borrower_id, name, phone, email, timezone, language)
            VALUES ('B1', 'Li Hua', '+8613800000000', 'li@example.com', 'Asia/Shanghai', 'en')
        """))
        reqs = [ContactRequest(
            contact_id=str(uuid.uuid4()), loan_id=f"L{i}", borrower_id="B1", channel="sms",
            template="early.sms", trigger="stage_entry", stage="early", created_at=now,
            requires_stage="early", loan_stage_now="early",
            variables={"stage": "early", "dpd": 3, "arrears": "800.00",
                       "collector_name": "Customer care"}) for i in range(contacts)]
        await conn.execute(text("""
            INSERT INTO dispatch_queue (contact_id, channel, template_id, request)
            SELECT c, 'sms', 'early.sms.en', CAST(r AS jsonb)
            FROM unnest(CAST(:c AS text[]), CAST(:r AS text[])) AS u(c, r)"""),
            {"c": [r.contact_id for r in reqs], "r": [request_to_json(r) for r in reqs]})


async def bench_dispatch(contacts: int, url: str, batch_size: int) -> None:
    schema = f"bench_notifier_{uuid.uuid4().hex[:8]}"
    settings = NotifierSettings(db_schema=schema, provider_sms_url=f"{url}/v1/sms",
                                provider_batch_size=batch_size)
    engine = make_engine(settings.database_url, schema, pool_size=4)
    try:
        await _wait_up(url)
        await migrate(settings.database_url, schema, Path(__file__).parent / "migrations")
        await _fill(engine, contacts)
        dispatcher = Dispatcher(engine, settings, TopicNames(), WallClock())
        began = time.perf_counter()
        sent = 0
        while (claimed := await dispatcher.tick()) > 0:
            sent += claimed
        elapsed = time.perf_counter() - began
        await dispatcher.close()
        async with httpx.AsyncClient() as client:
            stats = (await client.get(f"{url}/v1/stats")).json()
        print(f"dispatch: {sent} contacts in {elapsed:.3f} s = {sent / elapsed:,.0f} contacts/s "
              f"(claim {settings.dispatch_batch}, provider batch {batch_size}, "
              f"concurrency {settings.dispatch_concurrency}); "
              f"sandbox {stats}")
    finally:
        await drop_schema(engine, schema)
        await engine.dispose()


def _backend_cpu_s(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def bench_batches(loans: int, batch: int, rounds: int, hour: int) -> None:
    schema = f"bench_notifier_{uuid.uuid4().hex[:8]}"
    settings = NotifierSettings(db_schema=schema)
    engine = make_engine(settings.database_url, schema, pool_size=1)
    handlers = NotifierHandlers(settings, ManualClock(datetime(2026, 11, 30, hour, 7,
                                                                tzinfo=UTC)))
    table, topics = handlers.table(), TopicNames(prefix=f"{schema}.")

    async def apply(events: list[Event]) -> None:
        async with engine.begin() as conn:
            ctx = BatchContext(conn, topics, "urn:qingshou:notifier")
            await handlers.load_batch(ctx, events)
            for event in events:
                await table[event.type](ctx, event)
            await handlers.write_batch(ctx)
            await outbox.write(conn, ctx.outbox, settings.relay_shards, schema)

    def upcoming(n: int) -> list[Event]:
        return [new_event("instalment.upcoming", source="urn:bench", subject=f"L{i}", data={
            "loan_id": f"L{i}", "instalment_no": n, "due_date": "2026-12-03",
            "amount_due": "850.00"}) for i in range(loans)]

    try:
        await migrate(settings.database_url, schema, Path(__file__).parent / "migrations")
        setup: list[Event] = []
        for i in range(loans):
            setup.append(new_event("borrower.updated", source="urn:bench", subject=f"B{i}",
                                   data={"borrower_id": f"B{i}", "name": "Bench Borrower",
                                         "phone": "+8613900000000",
                                         "email": "bench@example.com",
                                         "timezone": "Asia/Shanghai", "language": "zh-CN",
                                         "opted_out_channels": [], "vulnerable": False}))
            setup.append(new_event("loan.opened", source="urn:bench", subject=f"L{i}", data={
                "loan_id": f"L{i}", "borrower_id": f"B{i}", "product": "consumer_loan",
                "currency": "CNY", "principal": "10000.00", "opened_on": "2026-01-02"}))
        for k in range(0, len(setup), 500):
            await apply(setup[k:k + 500])
        warm_up = upcoming(1)  # then fresh statistics, as a long-running log has
        for k in range(0, loans, batch):
            await apply(warm_up[k:k + batch])
        async with engine.begin() as conn:
            await conn.execute(text("ANALYZE"))
            pid = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        measured = [upcoming(n + 2) for n in range(rounds)]
        tune_gc()
        cpu, backend, began = time.process_time(), _backend_cpu_s(pid), time.perf_counter()
        for events in measured:
            for k in range(0, loans, batch):
                await apply(events[k:k + batch])
        cpu = time.process_time() - cpu
        backend = _backend_cpu_s(pid) - backend
        elapsed = time.perf_counter() - began
        async with engine.connect() as conn:
            mix = (await conn.execute(text(
                "SELECT status, count(*) FROM contacts GROUP BY status ORDER BY status"))).all()
        total = loans * rounds
        print(f"batches: {total} instalment.upcoming in batches of {batch} at {hour:02d}:07 UTC: "
              f"python {cpu / total * 1e3:.3f} ms/event, postgres backend "
              f"{backend / total * 1e3:.3f} ms/event, {total / elapsed:,.0f} events/s; "
              f"contact log {dict((r[0], r[1]) for r in mix)}")
    finally:
        await drop_schema(engine, schema)
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=5000)
    parser.add_argument("--batch-size", type=int, default=100,
                        help="contacts per provider request (1: one request per contact)")
    parser.add_argument("--skip-dispatch", action="store_true")
    parser.add_argument("--batches", action="store_true",
                        help="only the consumed-batch benchmark (step 3)")
    parser.add_argument("--loans", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=200, help="events per consumed batch")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--hour", type=int, default=22, help="UTC hour of the fixed now")
    args = parser.parse_args()
    if args.batches:
        asyncio.run(bench_batches(args.loans, args.batch, args.rounds, args.hour))
        return
    bench_decisions()
    if not args.skip_dispatch:
        port = _free_port()
        sandbox = subprocess.Popen([sys.executable, "-m", "services.sandbox"],
                                   env={**os.environ, "QS_SANDBOX_PORT": str(port)})
        try:
            asyncio.run(bench_dispatch(args.contacts, f"http://127.0.0.1:{port}",
                                      args.batch_size))
        finally:
            sandbox.terminate()
            sandbox.wait(10)


if __name__ == "__main__":
    main()
