"""The notifier on real Kafka, PostgreSQL and the provider sandbox served by uvicorn.

Time: the consumer, scheduler and dispatcher share a `ManualClock` the test moves, so a
contact deferred from 23:30 to 08:00 local is released without waiting real hours. The
scheduler and dispatcher ticks are called by the test (their `run` loops only repeat them).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import text

from services.notifier.clock import Clock, ManualClock, SimulationClock
from services.notifier.dispatcher import Dispatcher
from services.notifier.domain.policy import DEFAULT_CONTACT_POLICY
from services.notifier.handlers import consumer_spec
from services.notifier.scheduler import Scheduler
from services.notifier.settings import NotifierSettings
from services.sandbox.app import create_app as sandbox_app
from shared.consumer import ConsumerRunner, RunnerConfig
from shared.events import new_event
from shared.migrations import migrate
from shared.relay import OutboxRelay
from tests.conftest import DB_URL, KAFKA, free_port
from tests.integration.conftest import drop_scratch, eventually, read_topic

pytestmark = pytest.mark.integration

MIGRATIONS = Path(__file__).resolve().parents[2] / "services" / "notifier" / "migrations"
# 23:30 in Shanghai (UTC+8) and the next 08:00 there
LATE_EVENING = datetime(2026, 11, 27, 15, 30, tzinfo=UTC)
NEXT_MORNING = datetime(2026, 11, 28, 0, 0, tzinfo=UTC)


@pytest.fixture
async def sandbox() -> AsyncIterator[str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(sandbox_app(), host="127.0.0.1", port=port,
                                           log_level="warning", access_log=False))
    task = asyncio.create_task(server.serve())

    async def started() -> bool:
        return server.started

    await eventually(started, timeout=10, interval=0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await task


@dataclass
class Notifier:
    settings: NotifierSettings
    clock: Any
    scheduler: Scheduler
    dispatcher: Dispatcher
    sandbox: str
    engine: object

    async def rows(self, sql: str, **params: object) -> list:
        async with self.engine.connect() as conn:  # type: ignore[attr-defined]
            return (await conn.execute(text(sql), params)).all()

    async def sandbox_messages(self) -> list[dict]:
        async with httpx.AsyncClient() as client:
            return (await client.get(f"{self.sandbox}/v1/messages")).json()["items"]


@contextlib.asynccontextmanager
async def running(engine, schema, topics, producer, uid, sandbox,
                  clock: Clock | None = None,
                  batches: list[list[str]] | None = None) -> AsyncIterator[Notifier]:
    """The notifier's consumer, relay, scheduler and dispatcher on the test's topics and schema;
    ``batches`` (if given) collects the event types of each batch the consumer applies."""
    await migrate(DB_URL, schema, MIGRATIONS)
    urls = {f"provider_{ch}_url": f"{sandbox}/v1/{ch}" for ch in ("sms", "email", "voice",
                                                                  "letter")}
    settings = NotifierSettings(kafka_bootstrap=KAFKA, database_url=DB_URL, db_schema=schema,
                                topic_prefix=topics.prefix, dispatch_concurrency=1,
                                provider_backoff_first_s=0.01, **urls)
    clock = clock or ManualClock(LATE_EVENING)
    spec = consumer_spec(settings, clock)
    if batches is not None:
        load = spec.before_batch
        assert load is not None

        async def recorded(ctx, events) -> None:  # type: ignore[no-untyped-def]
            batches.append([e.type for e in events])
            await load(ctx, events)

        spec.before_batch = recorded
    runner = ConsumerRunner(spec, engine, RunnerConfig(
        bootstrap=KAFKA, group_id=f"g-{uid}", schema=schema, topics=topics,
        source="urn:qingshou:notifier", max_records=500, poll_timeout_ms=100))
    relay = OutboxRelay(engine, producer, schema, poll_interval=0.1, name="notifier-test")
    tasks = [asyncio.create_task(runner.run()), asyncio.create_task(relay.run())]
    dispatcher = Dispatcher(engine, settings, topics, clock)
    scheduler = Scheduler(engine, settings, topics, clock)
    yield Notifier(settings, clock, scheduler, dispatcher, sandbox, engine)
    await runner.stop()
    await relay.stop()
    for task in tasks:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 20)
    await dispatcher.close()
    await scheduler.close()


@pytest.fixture
async def notifier(engine, schema, topics, producer, uid, sandbox) -> AsyncIterator[Notifier]:
    async with running(engine, schema, topics, producer, uid, sandbox) as n:
        yield n


async def publish(producer, topics, topic: str, type_: str, subject: str, data: dict) -> None:
    event = new_event(type_, source="urn:test:core", subject=subject, data=data)
    await producer.send_and_wait(topics.name(topic), event.to_json(), key=subject.encode())


async def borrower_in_early(n: Notifier, producer, topics, uid: str) -> str:
    loan, borrower = f"L{uid}", f"B{uid}"
    await publish(producer, topics, "loan-events", "borrower.updated", borrower, {
        "borrower_id": borrower, "name": "Li Hua", "phone": "+8613800000000",
        "email": "li.hua@example.com", "timezone": "Asia/Shanghai", "language": "en",
        "opted_out_channels": [], "vulnerable": False})

    async def known() -> bool:  # topics are not ordered with each other: wait for the borrower
        return bool(await n.rows("SELECT 1 FROM borrowers WHERE borrower_id = :b", b=borrower))

    await eventually(known)
    await publish(producer, topics, "collection-stages", "stage.changed", loan, {
        "loan_id": loan, "borrower_id": borrower, "product": "consumer_loan",
        "from_stage": "current", "to_stage": "early", "dpd": 1, "arrears": "800.00",
        "currency": "CNY", "business_date": "2026-11-27", "reason": "missed_payment"})
    return loan


async def statuses(n: Notifier, loan: str) -> list[tuple[str, str, str]]:
    rows = await n.rows("SELECT channel, status, reason FROM contacts WHERE loan_id = :l "
                        "ORDER BY id", l=loan)
    return [(r.channel, r.status, r.reason) for r in rows]


async def test_late_evening_stage_change_is_deferred_to_eight_and_sent_once(
        notifier: Notifier, producer, topics, uid):
    loan = await borrower_in_early(notifier, producer, topics, uid)

    async def deferred() -> bool:
        return len(await statuses(notifier, loan)) == 2

    await eventually(deferred)
    rows = await notifier.rows("SELECT * FROM contacts WHERE loan_id = :l", l=loan)
    assert {r.status for r in rows} == {"deferred"}
    assert {r.scheduled_for for r in rows} == {NEXT_MORNING}
    assert await notifier.scheduler.tick() == 0  # not due yet at 23:30
    assert await notifier.dispatcher.tick() == 0

    notifier.clock.at = NEXT_MORNING
    assert await notifier.scheduler.tick() == 2
    assert await notifier.dispatcher.tick() == 2
    assert await notifier.scheduler.tick() == 0
    assert await notifier.dispatcher.tick() == 0

    messages = await notifier.sandbox_messages()
    assert sorted(m["channel"] for m in messages) == ["email", "sms"]
    assert len({m["idempotency_key"] for m in messages}) == 2
    assert all("Li Hua" in m["payload"]["body"] for m in messages)
    final = await statuses(notifier, loan)
    assert [s for _, s, _ in final].count("sent") == 4  # decided to send, provider accepted
    outcomes = await read_topic(topics.name("contact-outcomes"), expect=4)
    assert len(outcomes) == 4  # 2 deferred + 2 sent decisions; acceptance is not republished


async def test_provider_failing_twice_then_succeeding_sends_exactly_once(
        notifier: Notifier, producer, topics, uid):
    notifier.clock.at = datetime(2026, 11, 27, 3, 0, tzinfo=UTC)  # 11:00 in Shanghai
    async with httpx.AsyncClient() as client:
        await client.post(f"{notifier.sandbox}/control", json={"fail_next": 2})
    loan = await borrower_in_early(notifier, producer, topics, uid)

    async def queued() -> bool:
        return len(await notifier.rows("SELECT 1 FROM dispatch_queue")) == 2

    await eventually(queued)
    assert await notifier.dispatcher.tick() == 2
    messages = await notifier.sandbox_messages()
    assert len(messages) == 2
    assert len({m["idempotency_key"] for m in messages}) == 2
    async with httpx.AsyncClient() as client:
        stats = (await client.get(f"{notifier.sandbox}/v1/stats")).json()
    assert stats == {"requests": 4, "failed": 2, "accepted": 2}
    accepted = await notifier.rows("SELECT attempt FROM contacts WHERE loan_id = :l AND "
                                   "reason = 'provider_accepted'", l=loan)
    assert sorted(r.attempt["attempts"] for r in accepted) == [1, 3]


async def test_flag_raised_while_deferred_suppresses_the_contact(
        notifier: Notifier, producer, topics, uid):
    loan = await borrower_in_early(notifier, producer, topics, uid)

    async def deferred() -> bool:
        return len(await notifier.rows("SELECT 1 FROM deferred_contacts")) == 2

    await eventually(deferred)
    await publish(producer, topics, "loan-events", "case.flag.raised", loan, {
        "loan_id": loan, "flag": "cease_contact", "note": "borrower asked us to stop"})

    async def flagged() -> bool:
        rows = await notifier.rows("SELECT flags FROM loans WHERE loan_id = :l", l=loan)
        return bool(rows) and "cease_contact" in rows[0].flags

    await eventually(flagged)
    notifier.clock.at = NEXT_MORNING
    assert await notifier.scheduler.tick() == 2
    assert await notifier.dispatcher.tick() == 0
    final = await statuses(notifier, loan)
    assert [s for _, s, _ in final] == ["deferred", "deferred", "suppressed", "suppressed"]
    assert {r for _, s, r in final if s == "suppressed"} == {"cease_contact"}
    assert await notifier.sandbox_messages() == []


def api_client(n: Notifier, topics) -> httpx.AsyncClient:
    from fastapi import FastAPI

    from services.notifier.api import build_router
    from shared.auth import DEV_API_KEYS, KeyRing
    from shared.problems import install_problem_handlers

    app = FastAPI()
    app.state.keyring = KeyRing(DEV_API_KEYS)
    install_problem_handlers(app)
    app.include_router(build_router(n.engine, n.settings, topics, n.clock))  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://notifier",
                             headers={"Authorization": "Bearer qs-dev-admin"})


async def test_api_log_paging_policy_templates_and_receipts(
        notifier: Notifier, producer, topics, uid):
    notifier.clock.at = datetime(2026, 11, 27, 3, 0, tzinfo=UTC)
    loan = await borrower_in_early(notifier, producer, topics, uid)

    async def queued() -> bool:
        return len(await notifier.rows("SELECT 1 FROM dispatch_queue")) == 2

    await eventually(queued)
    await notifier.dispatcher.tick()
    async with api_client(notifier, topics) as api:
        first = (await api.get(f"/v1/loans/{loan}/contacts", params={"limit": 3})).json()
        assert len(first["items"]) == 3 and first["next_cursor"]
        rest = (await api.get(f"/v1/loans/{loan}/contacts",
                              params={"limit": 3, "cursor": first["next_cursor"]})).json()
        assert len(rest["items"]) == 1 and rest["next_cursor"] is None
        bad = await api.get(f"/v1/loans/{loan}/contacts", params={"cursor": "nope"})
        assert bad.status_code == 400

        sms = next(i for i in first["items"] + rest["items"] if i["channel"] == "sms")
        receipt = await api.post("/v1/receipts/sms", json={
            "contact_id": sms["contact_id"], "status": "delivered"},
            headers={"Authorization": "Bearer qs-dev-provider"})
        assert receipt.status_code == 200 and receipt.json()["duplicate"] is False
        again = await api.post("/v1/receipts/sms", json={
            "contact_id": sms["contact_id"], "status": "delivered"},
            headers={"Authorization": "Bearer qs-dev-provider"})
        assert again.json()["duplicate"] is True
        forbidden = await api.post("/v1/receipts/sms", json={
            "contact_id": sms["contact_id"], "status": "delivered"},
            headers={"Authorization": "Bearer qs-dev-read"})
        assert forbidden.status_code == 403

        policy = (await api.get("/v1/contact-policy")).json()
        policy["quiet_hours"]["start"] = "25:00"
        refused = await api.put("/v1/contact-policy", json=policy)
        assert refused.status_code == 422
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert any(e["field"].startswith("quiet_hours") for e in refused.json()["errors"])
        policy["quiet_hours"]["start"] = "20:00"
        saved = await api.put("/v1/contact-policy", json=policy)
        assert saved.status_code == 200 and saved.json()["version"] == 2

        template = (await api.get("/v1/templates/early.sms.en")).json()
        assert template["builtin"] is True
        unknown_var = await api.put("/v1/templates/early.sms.en",
                                    json={"source": "Hello {{ password }}. Reply STOP to opt out"})
        assert unknown_var.status_code == 422
        assert unknown_var.json()["errors"][0]["field"] == "source"
        ok = await api.put("/v1/templates/early.sms.en", json={
            "source": "{{ bank_name }}: {{ arrears }} {{ currency }} is overdue on "
                      "{{ loan_ref }}. Call {{ help_phone }} for help. Reply STOP to opt out"})
        assert ok.status_code == 200
    log_rows = await statuses(notifier, loan)
    assert log_rows[-1] == ("sms", "delivered", "provider_receipt")


async def test_batch_provider_failing_twice_sends_each_contact_once(
        notifier: Notifier, producer, topics, uid, engine):
    notifier.clock.at = datetime(2026, 11, 27, 3, 0, tzinfo=UTC)
    async with httpx.AsyncClient() as client:
        await client.post(f"{notifier.sandbox}/control", json={"fail_next": 2})
    await borrower_in_early(notifier, producer, topics, uid)

    async def queued() -> bool:
        return len(await notifier.rows("SELECT 1 FROM dispatch_queue")) == 2

    await eventually(queued)
    settings = notifier.settings.model_copy(update={"provider_batch_size": 50})
    batch = Dispatcher(engine, settings, topics, notifier.clock)
    try:
        assert await batch.tick() == 2
    finally:
        await batch.close()
    messages = await notifier.sandbox_messages()
    assert sorted(m["channel"] for m in messages) == ["email", "sms"]
    assert len({m["idempotency_key"] for m in messages}) == 2


async def test_simulation_clock_drives_stage_entry_promise_reminder_and_cadence(
        engine, schema, topics, producer, uid, sandbox):
    """Closing a business date moves "now" to 09:00 Shanghai the next day (no wall clock)."""
    clock = SimulationClock("Asia/Shanghai", "09:00")
    async with running(engine, schema, topics, producer, uid, sandbox, clock) as n:
        async def close(day: str) -> None:
            await publish(producer, topics, "calendar", "business_day.closed", "calendar",
                          {"business_date": day})

            async def closed() -> bool:
                rows = await n.rows("SELECT business_date FROM calendar")
                return rows[0].business_date.isoformat() == day

            await eventually(closed)

        await close("2026-11-26")
        loan = await borrower_in_early(n, producer, topics, uid)

        async def entered() -> bool:
            return len(await statuses(n, loan)) == 2

        await eventually(entered)
        first = await n.rows("SELECT status, decided_at FROM contacts WHERE loan_id = :l", l=loan)
        # 2026-11-27 09:00 in Shanghai: the morning after the closed date, so sent at once
        assert {(r.status, r.decided_at) for r in first} == {
            ("sent", datetime(2026, 11, 27, 1, 0, tzinfo=UTC))}

        await publish(producer, topics, "loan-events", "promise.made", loan, {
            "loan_id": loan, "promise_id": f"P{uid}", "collector_id": "C1",
            "amount": "300.00", "due_on": "2026-11-29"})

        async def promised() -> bool:
            return bool(await n.rows("SELECT 1 FROM promises"))

        await eventually(promised)
        # the stage was entered on 2026-11-27: its fifth business day closes on 2026-12-02
        for day in ("2026-11-27", "2026-11-28", "2026-11-29", "2026-11-30", "2026-12-01",
                    "2026-12-02"):
            await close(day)
        rows = await n.rows("SELECT trigger, channel, status FROM contacts WHERE loan_id = :l "
                            "ORDER BY id", l=loan)
        assert [(r.trigger, r.channel, r.status) for r in rows] == [
            ("stage_entry", "sms", "sent"), ("stage_entry", "email", "sent"),
            ("promise_reminder", "sms", "sent"),
            ("cadence", "sms", "sent"), ("cadence", "email", "sent")]


async def test_a_contact_that_keeps_failing_is_failed_and_published(
        notifier: Notifier, producer, topics, uid, engine):
    notifier.clock.at = datetime(2026, 11, 27, 3, 0, tzinfo=UTC)
    async with httpx.AsyncClient() as client:
        await client.post(f"{notifier.sandbox}/control", json={"fail_next": 100})
    loan = await borrower_in_early(notifier, producer, topics, uid)

    async def queued() -> bool:
        return len(await notifier.rows("SELECT 1 FROM dispatch_queue")) == 2

    await eventually(queued)
    settings = notifier.settings.model_copy(update={"provider_max_attempts": 2,
                                                    "breaker_failures": 100})
    dispatcher = Dispatcher(engine, settings, topics, notifier.clock)
    try:
        assert await dispatcher.tick() == 2
    finally:
        await dispatcher.close()
    assert await notifier.rows("SELECT 1 FROM dispatch_queue") == []
    final = await statuses(notifier, loan)
    assert sorted(r for _, s, r in final if s == "failed") == ["http_503", "http_503"]
    outcomes = await read_topic(topics.name("contact-outcomes"), expect=4)
    assert sorted(o.value.count(b'"failed"') for o in outcomes) == [0, 0, 1, 1]


async def test_retention_purges_by_age_only(notifier: Notifier, engine):
    async with engine.begin() as conn:
        for age_days in (3, 5 * 366 + 1):
            await conn.execute(text("""
                INSERT INTO contacts (contact_id, loan_id, borrower_id, channel, template,
                    stage, trigger, status, reason, decided_at, recorded_at)
                VALUES (:c, 'L-old', 'B', 'sms', 'early.sms', 'early', 'cadence', 'sent',
                        'queued_for_provider', now(), now() - make_interval(days => :d))"""),
                {"c": f"c{age_days}", "d": age_days})
    assert await notifier.scheduler.purge() == 1
    left = await notifier.rows("SELECT contact_id FROM contacts WHERE loan_id = 'L-old'")
    assert [r.contact_id for r in left] == ["c3"]


async def test_owner_intro_and_promise_thanks_respect_the_daily_caps(
        notifier: Notifier, producer, topics, uid):
    notifier.clock.at = datetime(2026, 11, 27, 3, 0, tzinfo=UTC)  # 11:00 in Shanghai
    loan = await borrower_in_early(notifier, producer, topics, uid)

    async def entered() -> bool:
        return len(await statuses(notifier, loan)) == 2

    await eventually(entered)
    await publish(producer, topics, "collection-assignments", "case.assigned", loan, {
        "loan_id": loan, "collector_id": "C7", "team": "early", "stage": "early",
        "business_date": "2026-11-27"})
    await publish(producer, topics, "promise-outcomes", "promise.kept", loan, {
        "loan_id": loan, "promise_id": f"P{uid}", "collector_id": "C7", "amount": "300.00",
        "paid": "300.00", "currency": "CNY", "due_on": "2026-11-27"})

    async def decided() -> bool:
        return len(await statuses(notifier, loan)) == 5

    await eventually(decided)
    rows = await notifier.rows("SELECT trigger, channel, status, reason, scheduled_for "
                               "FROM contacts WHERE loan_id = :l ORDER BY id", l=loan)
    later = {(r.trigger, r.channel): (r.status, r.reason, r.scheduled_for) for r in rows[2:]}
    tomorrow = datetime(2026, 11, 28, 3, 0, tzinfo=UTC)  # the daily window has passed
    assert later == {
        ("owner_intro", "sms"): ("deferred", "frequency_cap", tomorrow),
        ("owner_intro", "email"): ("deferred", "frequency_cap", tomorrow),
        ("promise_thanks", "sms"): ("deferred", "frequency_cap", tomorrow),
    }


async def test_a_contact_for_a_borrower_not_yet_known_waits_for_the_borrower(
        notifier: Notifier, producer, topics, uid):
    """borrower.updated is keyed by borrower and may arrive after the loan's stage change."""
    loan, borrower = f"L{uid}", f"B{uid}"
    notifier.clock.at = datetime(2026, 11, 27, 3, 0, tzinfo=UTC)  # 11:00 in Shanghai
    await publish(producer, topics, "collection-stages", "stage.changed", loan, {
        "loan_id": loan, "borrower_id": borrower, "product": "consumer_loan",
        "from_stage": "current", "to_stage": "early", "dpd": 1, "arrears": "800.00",
        "currency": "CNY", "business_date": "2026-11-27", "reason": "missed_payment"})

    async def waiting() -> bool:
        return [(s, r) for _, s, r in await statuses(notifier, loan)] == [
            ("deferred", "unknown_borrower")] * 2

    await eventually(waiting)
    await publish(producer, topics, "loan-events", "borrower.updated", borrower, {
        "borrower_id": borrower, "name": "Li Hua", "phone": "+8613800000000",
        "email": "li.hua@example.com", "timezone": "Asia/Shanghai", "language": "en",
        "opted_out_channels": [], "vulnerable": False})

    async def known() -> bool:
        return bool(await notifier.rows("SELECT 1 FROM borrowers WHERE borrower_id = :b",
                                        b=borrower))

    await eventually(known)
    notifier.clock.at = datetime(2026, 11, 27, 3, 20, tzinfo=UTC)  # after the 15-minute wait
    assert await notifier.scheduler.tick() == 2
    assert await notifier.dispatcher.tick() == 2
    sent = [c for c, s, _ in await statuses(notifier, loan) if s == "sent"]
    assert sorted(set(sent)) == ["email", "sms"]


async def test_one_batch_decides_in_event_order_and_caps_count_its_own_sends(
        engine, schema, topics, producer, uid, sandbox):
    """Requests of one consumed batch are decided together: a send decided earlier in the batch
    counts toward the caps of the next request, and a flag raised between two events of the
    batch blocks only the later one."""
    loan, borrower = f"L{uid}", f"B{uid}"
    clock = ManualClock(datetime(2026, 11, 27, 3, 0, tzinfo=UTC))  # 11:00 in Shanghai
    async with running(engine, schema, topics, producer, uid, sandbox, clock) as n:
        await publish(producer, topics, "loan-events", "borrower.updated", borrower, {
            "borrower_id": borrower, "name": "Li Hua", "phone": "+8613800000000",
            "email": "li.hua@example.com", "timezone": "Asia/Shanghai", "language": "en",
            "opted_out_channels": [], "vulnerable": False})
        await publish(producer, topics, "loan-events", "loan.opened", loan, {
            "loan_id": loan, "borrower_id": borrower, "product": "consumer_loan",
            "currency": "CNY", "principal": "10000.00", "opened_on": "2026-01-02"})

        async def known() -> bool:
            return bool(await n.rows("SELECT 1 FROM loans l JOIN borrowers b USING (borrower_id) "
                                     "WHERE l.loan_id = :l", l=loan))

        await eventually(known)

    # while no consumer runs: one loan's events, one partition, in this order
    def upcoming(no: int) -> dict:
        return {"loan_id": loan, "instalment_no": no, "due_date": f"2026-12-0{no}",
                "amount_due": "500.00"}

    await publish(producer, topics, "loan-events", "instalment.upcoming", loan, upcoming(1))
    await publish(producer, topics, "loan-events", "instalment.upcoming", loan, upcoming(2))
    await publish(producer, topics, "loan-events", "case.flag.raised", loan, {
        "loan_id": loan, "flag": "cease_contact", "note": "asked us to stop"})
    await publish(producer, topics, "loan-events", "instalment.upcoming", loan, upcoming(3))

    batches: list[list[str]] = []
    async with running(engine, schema, topics, producer, uid, sandbox, clock, batches) as n:
        async def decided() -> bool:
            return len(await statuses(n, loan)) == 6

        await eventually(decided)
        rows = await n.rows("SELECT channel, status, reason, scheduled_for, attempt "
                            "FROM contacts WHERE loan_id = :l ORDER BY id", l=loan)
        flags = await n.rows("SELECT flags FROM loans WHERE loan_id = :l", l=loan)
    assert batches == [["instalment.upcoming", "instalment.upcoming", "case.flag.raised",
                        "instalment.upcoming"]]
    tomorrow = datetime(2026, 11, 28, 3, 0, tzinfo=UTC)  # the daily windows have passed
    assert [(r.channel, r.status, r.reason, r.scheduled_for) for r in rows] == [
        ("sms", "sent", "queued_for_provider", None),
        ("email", "sent", "queued_for_provider", None),
        ("sms", "deferred", "frequency_cap", tomorrow),
        ("email", "deferred", "frequency_cap", tomorrow),
        ("sms", "suppressed", "cease_contact", None),
        ("email", "suppressed", "cease_contact", None)]
    assert flags[0].flags == ["cease_contact"]


async def test_stored_profiles_are_what_the_rows_make(engine, schema, uid) -> None:
    """``store.load_profiles`` reads a borrower's profile straight from its row: the same
    value ``BorrowerRow.profile`` makes of that row, empty and missing contact details too."""
    from services.notifier import store
    from services.notifier.store import BorrowerRow

    await migrate(DB_URL, schema, MIGRATIONS)
    rows = [BorrowerRow(f"B{i}", "Name", phone, email, tz, lang, opted, vulnerable)
            for i, (phone, email, tz, lang, opted, vulnerable) in enumerate([
                ("+8613800000000", "a@example.com", "Asia/Shanghai", "zh-CN", (), False),
                (None, "", "Europe/London", "en", ("sms", "voice"), True),
                ("", None, "America/New_York", "en", ("email",), False),
                (None, None, "Asia/Kolkata", "zh-CN", ("letter", "sms"), True)])]
    try:
        async with engine.begin() as conn:
            await store.save_borrowers(conn, rows)
            profiles = await store.load_profiles(conn, [*(r.borrower_id for r in rows),
                                                        "B-none"])
            # loans of B1 and B3 (and one with no borrower yet), read with the borrowers in
            # one statement: B0 by name, B1 and B3 as the loans' borrowers
            await store.create_loans(conn, ["L1", "L3", "L-bare"])
            stored = await store.load_loans(conn, ["L1", "L3"], lock=True)
            await store.save_loans(conn, [replace(stored["L1"], borrower_id="B1", dpd=4),
                                          replace(stored["L3"], borrower_id="B3")])
            default = await store.load_batch_state(conn, ["L1", "L3", "L-bare", "L-none"],
                                                   ["B0", "B-none"])
            await conn.execute(text("INSERT INTO contact_policies (version, document) "
                                    "VALUES (1, :d), (2, :d2)"),
                               {"d": json.dumps(DEFAULT_CONTACT_POLICY),
                                "d2": json.dumps({**DEFAULT_CONTACT_POLICY, "version": 2,
                                                  "staleness": {"max_deferral_hours": 48}})})
            together = await store.load_batch_state(conn, ["L1", "L3", "L-bare", "L-none"],
                                                    ["B0", "B-none"])
            apart = (await store.load_loans(conn, ["L1", "L3", "L-bare", "L-none"]),
                     await store.load_profiles(conn, ["B0", "B1", "B3", "B-none"]),
                     (await store.load_policy(conn))[2])
            nobody = await store.load_batch_state(conn, [], [])
    finally:
        await drop_scratch(uid)
    assert profiles == {r.borrower_id: r.profile for r in rows}
    assert (together.loans, together.profiles, together.policy) == apart
    assert sorted(together.loans) == ["L-bare", "L1", "L3"] and together.loans["L1"].dpd == 4
    assert sorted(together.profiles) == ["B0", "B1", "B3"]
    # the latest version is in force; with none stored, the built-in default
    assert together.policy.version == 2 and together.policy.max_deferral == timedelta(hours=48)
    assert default.policy.max_deferral == timedelta(hours=72)
    assert (nobody.loans, nobody.profiles, nobody.policy) == ({}, {}, together.policy)


async def test_one_statement_writes_the_log_and_both_queues(engine, schema, uid) -> None:
    """``store.write_contacts`` writes a batch's log rows, dispatch rows and deferred rows in
    one statement, with each table's rules: the log in the given order, a contact already in
    the dispatch queue kept as it was, a deferred contact moved to the last time given."""
    from services.notifier import store
    from services.notifier.contacts import log_row
    from services.notifier.domain import ContactRequest

    def request(n: int, channel: str) -> ContactRequest:
        return ContactRequest(f"C{n}", f"L{n}", f"B{n}", channel, "early.sms", "stage_entered",
                              "early", LATE_EVENING, None, "early",
                              variables={"amount": "12.30"})

    at = [LATE_EVENING, NEXT_MORNING, NEXT_MORNING.replace(hour=2)]
    await migrate(DB_URL, schema, MIGRATIONS)
    try:
        async with engine.begin() as conn:
            await store.write_contacts(conn, (), dispatch=[(request(1, "sms"),
                                                            "early.sms.zh-CN")])
        async with engine.begin() as conn:
            await store.write_contacts(
                conn,
                [log_row(request(n, "sms"), status, "test", LATE_EVENING)
                 for n, status in [(3, "deferred"), (1, "sent"), (2, "sent")]],
                dispatch=[(request(1, "sms"), "early.sms.en"), (request(2, "sms"), "early.sms.en")],
                deferred=[(request(3, "sms"), at[1]), (request(4, "email"), at[0]),
                          (request(3, "sms"), at[2])])
        async with engine.connect() as conn:
            log = (await conn.execute(text(
                "SELECT contact_id, status FROM contacts ORDER BY id"))).all()
            dispatch = (await conn.execute(text(
                "SELECT contact_id, template_id, request->>'borrower_id' AS b "
                "FROM dispatch_queue ORDER BY contact_id"))).all()
            deferred = (await conn.execute(text(
                "SELECT contact_id, due_at, request->'variables'->>'amount' AS amount "
                "FROM deferred_contacts ORDER BY contact_id"))).all()
    finally:
        await drop_scratch(uid)
    assert [tuple(r) for r in log] == [("C3", "deferred"), ("C1", "sent"), ("C2", "sent")]
    assert [tuple(r) for r in dispatch] == [("C1", "early.sms.zh-CN", "B1"),
                                            ("C2", "early.sms.en", "B2")]
    assert [tuple(r) for r in deferred] == [("C3", at[2], "12.30"), ("C4", at[0], "12.30")]


async def test_the_batch_state_reads_borrowers_by_index(engine, schema, uid) -> None:
    """The batch's one read finds borrowers through the primary key even where the planner
    would rather not (tiny test tables): a form of the statement that ORed the named
    borrowers with the loans' ones could only scan every row (1.3 million on a dev stack,
    250 ms a batch)."""
    from services.notifier import store

    await migrate(DB_URL, schema, MIGRATIONS)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("SET LOCAL enable_seqscan = off"))
            plan = "\n".join(r[0] for r in await conn.execute(
                text("EXPLAIN " + store._BATCH_STATE.text),
                {"loans": ["L1", "L2"], "borrowers": ["B1"]}))
    finally:
        await drop_scratch(uid)
    assert "on borrowers" in plan and "Seq Scan on borrowers" not in plan, plan
    assert "Seq Scan on loans" not in plan, plan
