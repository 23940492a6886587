"""Incentives through the real broker and database: the running app's consumer, relay and API."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import orjson
import pytest
from sqlalchemy import text

from services.incentives import scoring, store
from services.incentives.consumer import as_mapping
from services.incentives.domain import credit_for_applied, period_of
from services.incentives.service import DEFINITION
from shared.events import new_event, parse_event
from shared.migrations import migrate
from shared.service import create_app
from shared.settings import ServiceSettings
from tests.conftest import DB_URL, KAFKA
from tests.integration.conftest import drop_scratch, eventually, read_topic

pytestmark = pytest.mark.integration

READ = {"Authorization": "Bearer qs-dev-read"}
ADMIN = {"Authorization": "Bearer qs-dev-admin"}
MIGRATIONS = Path("services/incentives/migrations")
MARCH = datetime(2026, 3, 20, 10, 0, tzinfo=UTC)


def _event(type_: str, data: dict[str, Any], *, at: datetime = MARCH,
           event_id: str | None = None) -> tuple[bytes, bytes]:
    event = new_event(type_, source="urn:test:staging", data=data, time=at,
                      id=event_id or str(uuid.uuid4()))
    return event.key, event.to_json()


def assigned(loan: str, collector: str, team: str) -> tuple[bytes, bytes]:
    return _event("case.assigned", {
        "loan_id": loan, "collector_id": collector, "team": team, "stage": "early",
        "business_date": "2026-03-02", "previous_collector_id": None})


def stage_changed(loan: str, arrears: str) -> tuple[bytes, bytes]:
    return _event("stage.changed", {
        "loan_id": loan, "borrower_id": f"B-{loan}", "product": "consumer_loan",
        "from_stage": "current", "to_stage": "early", "dpd": 3, "arrears": arrears,
        "currency": "CNY", "business_date": "2026-03-02", "reason": "aging"})


def repayment(type_: str, loan: str, collector: str, amount: str, *,
              at: datetime = MARCH, event_id: str | None = None) -> tuple[bytes, bytes]:
    return _event(type_, {
        "loan_id": loan, "payment_id": f"P-{loan}", "amount": amount, "to_arrears": amount,
        "excess": "0", "currency": "CNY", "value_date": "2026-03-10", "stage": "early",
        "dpd_before": 8, "dpd_after": 0, "collector_id": collector}, at=at, event_id=event_id)


def complaint(loan: str, collector: str, severity: str) -> tuple[bytes, bytes]:
    return _event("complaint.recorded", {
        "loan_id": loan, "complaint_id": f"C-{uuid.uuid4().hex[:6]}", "collector_id": collector,
        "severity": severity, "note": "rude call"})


@pytest.fixture(autouse=True)
async def _drop_scratch(uid: str) -> AsyncIterator[None]:
    """These tests leave no schema or topic behind."""
    yield
    await drop_scratch(uid)


def promise(type_: str, loan: str, promise_id: str) -> tuple[bytes, bytes]:
    return _event(type_, {
        "loan_id": loan, "promise_id": promise_id, "collector_id": "c1", "amount": "500.00",
        "paid": "500.00" if type_ == "promise.kept" else "0", "currency": "CNY",
        "due_on": "2026-03-16"})


@asynccontextmanager
async def running_service(uid: str, topics, schema: str) -> AsyncIterator[httpx.AsyncClient]:
    await migrate(DB_URL, schema, MIGRATIONS)  # a second instance finds it done
    settings = ServiceSettings(
        service="incentives", kafka_bootstrap=KAFKA, database_url=DB_URL,
        topic_prefix=topics.prefix, db_schema=schema, consumer_group=f"g-{uid}",
        topic_partitions=3, consumer_poll_timeout_ms=100, relay_poll_interval_s=0.1)
    app = create_app(DEFINITION, settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://incentives") as client:
            yield client


async def publish(producer, topic: str, *messages: tuple[bytes, bytes]) -> None:
    for key, value in messages:
        await producer.send_and_wait(topic, value, key=key)


async def scorecard(client: httpx.AsyncClient, collector: str, period: str = "2026-03") -> dict:
    response = await client.get(f"/v1/scorecards/{collector}", params={"period": period},
                                headers=READ)
    return response.json() if response.status_code == 200 else {}


async def test_repayment_credits_owner_and_complaint_lowers_payout(uid, topics, schema,
                                                                   producer, engine):
    async with running_service(uid, topics, schema) as client:
        await publish(producer, topics.collection_stages, stage_changed("L1", "1000.00"))
        await publish(producer, topics.collection_assignments,
                      assigned("L1", "c1", "T1"), assigned("L2", "c2", "T1"),
                      assigned("L3", "c3", "T2"))
        key, paid = repayment("repayment.applied", "L1", "c1", "400.00")
        await publish(producer, topics.repayments_applied, (key, paid),
                      repayment("repayment.applied", "L2", "c2", "100.00"))

        async def credited() -> bool:
            card = await scorecard(client, "c1")
            return card.get("recovered") == "400.00" and card.get("cases_assigned") == 1

        await eventually(credited)
        card = await scorecard(client, "c1")
        assert card["commission"] == "2.00" and card["payout"] == "2.00"
        assert card["team"] == "T1" and card["multiplier"] == "1.0000"

        board = (await client.get("/v1/leaderboard", params={"period": "2026-03", "team": "T1"},
                                  headers=READ)).json()
        assert [row["collector_id"] for row in board["items"]] == ["c1", "c2"]
        assert [row["rank"] for row in board["items"]] == [1, 2]

        # the same repayment again: a no-op everywhere
        await publish(producer, topics.repayments_applied, (key, paid))
        await publish(producer, topics.loan_events, complaint("L1", "c1", "major"))

        async def penalised() -> bool:
            return (await scorecard(client, "c1")).get("complaints_major") == 1

        await eventually(penalised)
        card = await scorecard(client, "c1")
        assert card["recovered"] == "400.00"
        assert card["multiplier"] == "0.7500" and card["payout"] == "1.50"
        async with engine.connect() as conn:
            credits = (await conn.execute(text(
                "SELECT count(*), sum(amount) FROM credit_ledger WHERE kind = 'credit'"))).one()
        assert credits[0] == 2 and credits[1] == Decimal("500.00")

        missing = await client.get("/v1/scorecards/nobody", params={"period": "2026-03"},
                                   headers=READ)
        assert missing.status_code == 404
        assert missing.headers["content-type"].startswith("application/problem+json")
        assert (await client.get("/v1/leaderboard")).status_code == 401

    records = await read_topic(topics.collector_scores, expect=4)
    updates = [orjson.loads(r.value) for r in records]
    assert {u["type"] for u in updates} == {"scorecard.updated"}
    latest = [u["data"] for u in updates if u["subject"] == "c1"][-1]
    assert latest["payout"] == "1.50" and latest["complaints_major"] == 1
    assert latest["period"] == "2026-03" and latest["team"] == "T1"


async def test_scheme_change_recomputes_and_closed_period_clawback(uid, topics, schema,
                                                                    producer):
    async with running_service(uid, topics, schema) as client:
        await publish(producer, topics.collection_assignments, assigned("L1", "c1", "T1"))
        await publish(producer, topics.repayments_applied,
                      repayment("repayment.applied", "L1", "c1", "400.00"))

        async def credited() -> bool:
            return (await scorecard(client, "c1")).get("payout") == "2.00"

        await eventually(credited)

        scheme = (await client.get("/v1/scheme", headers=READ)).json()
        assert scheme["current"]["commission"]["early"] == "0.005"
        doc = {k: v for k, v in scheme["current"].items() if k != "version"}
        doc["effective_from"] = "2026-03-01"
        bad = dict(doc, commission=dict(doc["commission"], early="1.5"))
        refused = await client.put("/v1/scheme", json=bad, headers=ADMIN)
        assert refused.status_code == 422
        assert "commission.early" in [e["field"] for e in refused.json()["errors"]]
        assert (await client.put("/v1/scheme", json=doc, headers=READ)).status_code == 403

        doc["commission"] = dict(doc["commission"], early="0.01")
        accepted = await client.put("/v1/scheme", json=doc, headers=ADMIN)
        assert accepted.status_code == 200, accepted.text
        assert [v["version"] for v in accepted.json()["versions"]] == [1, 2]
        assert "2026-03" in accepted.json()["recomputed_periods"]
        card = await scorecard(client, "c1")
        assert card["payout"] == "4.00" and card["scheme_version"] == 2

        # a month still running (or a typo for a future one) cannot be closed: it would send
        # every credit of that month to the next one
        for early in ("2999-01", period_of(datetime.now(ZoneInfo("Asia/Shanghai")).date())):
            refused = await client.post(f"/v1/periods/{early}/close", headers=ADMIN)
            assert refused.status_code == 422, refused.text
            assert [e["field"] for e in refused.json()["errors"]] == ["period"]
        closed = await client.post("/v1/periods/2026-03/close", headers=ADMIN)
        assert closed.status_code == 200
        # March is paid: a scheme may not reach back into it
        doc["effective_from"] = "2026-03-31"
        doc["commission"] = dict(doc["commission"], early="0.02")
        refused = await client.put("/v1/scheme", json=doc, headers=ADMIN)
        assert refused.status_code == 422, refused.text
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert [e["field"] for e in refused.json()["errors"]] == ["effective_from"]
        assert (await scorecard(client, "c1"))["payout"] == "4.00"
        doc["effective_from"] = "2026-04-01"
        assert (await client.put("/v1/scheme", json=doc, headers=ADMIN)).status_code == 200
        april = datetime(2026, 4, 3, 9, 0, tzinfo=UTC)
        await publish(producer, topics.repayments_applied,
                      repayment("repayment.unapplied", "L1", "c1", "400.00", at=april))

        async def clawed_back() -> bool:
            return (await scorecard(client, "c1", "2026-04")).get("recovered") == "-400.00"

        await eventually(clawed_back)
        assert (await scorecard(client, "c1", "2026-04"))["payout"] == "0.00"
        assert (await scorecard(client, "c1"))["recovered"] == "400.00"


async def test_broken_promise_supersedes_a_kept_one_from_an_earlier_batch(uid, topics, schema,
                                                                          producer):
    async with running_service(uid, topics, schema) as client:
        await publish(producer, topics.promise_outcomes, promise("promise.kept", "L1", "PR1"))

        async def kept() -> bool:
            return (await scorecard(client, "c1")).get("promises_kept") == 1

        await eventually(kept)
        # the payment that kept it bounced: staging publishes promise.broken, and kept again
        # under another id must not count twice
        await publish(producer, topics.promise_outcomes, promise("promise.kept", "L1", "PR1"),
                      promise("promise.broken", "L1", "PR1"))

        async def broken() -> bool:
            return (await scorecard(client, "c1")).get("promises_broken") == 1

        await eventually(broken)
        card = await scorecard(client, "c1")
        assert card["promises_kept"] == 0 and card["bonuses"] == "0.00"
        assert card["payout"] == "0.00"


async def test_scorecard_currency_is_set_by_the_first_money_entry_not_a_promise(uid, topics,
                                                                                schema, producer):
    async with running_service(uid, topics, schema) as client:
        # a USD bank: the collector's first entry of the month is a promise (no currency)
        await publish(producer, topics.promise_outcomes, promise("promise.kept", "L1", "PR1"))

        async def kept() -> bool:
            return (await scorecard(client, "c1")).get("promises_kept") == 1

        await eventually(kept)
        key, value = repayment("repayment.applied", "L1", "c1", "400.00")
        value = value.replace(b'"currency":"CNY"', b'"currency":"USD"')
        await publish(producer, topics.repayments_applied, (key, value))

        async def credited() -> bool:
            card = await scorecard(client, "c1")
            return card.get("recovered") == "400.00" or card.get("foreign_entries") == 1

        await eventually(credited)
        card = await scorecard(client, "c1")
        assert card["currency"] == "USD" and card["foreign_entries"] == 0
        assert card["payout"] == "12.00"  # 0.5% of 400.00 + the kept bonus 10.00


async def test_two_instances_fold_every_credit_once(uid, topics, schema, producer, engine):
    """Two instances in one group, their partitions' repayments credited to the same two
    collectors: each scorecard ends as a rebuild from the ledger would make it, every credit
    counted once (the folds' order is the next test's)."""
    loans = {f"K{i}": f"c{i % 2}" for i in range(6)}
    amounts = [f"{10 + i % 7}.{i % 100:02d}" for i in range(300)]
    async with AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(running_service(uid, topics, schema))
                   for _ in range(2)]
        await publish(producer, topics.collection_assignments,
                      *[assigned(loan, collector, "T1") for loan, collector in loans.items()])
        names = list(loans)
        await publish(producer, topics.repayments_applied, *[
            repayment("repayment.applied", names[i % 6], loans[names[i % 6]], amount)
            for i, amount in enumerate(amounts)])

        async def all_credited() -> bool:
            async with engine.connect() as conn:
                return (await conn.execute(text(
                    "SELECT count(*) FROM credit_ledger WHERE kind = 'credit'"))).scalar_one() \
                    == len(amounts)

        await eventually(all_credited)
        for collector in ("c0", "c1"):
            expected = sum(Decimal(a) for i, a in enumerate(amounts)
                           if loans[names[i % 6]] == collector)

            async def folded(collector: str = collector, expected: Decimal = expected) -> bool:
                card = await scorecard(clients[0], collector)
                return Decimal(card.get("recovered", "0")) == expected

            await eventually(folded)
        async with engine.connect() as conn:
            trans = await conn.begin()
            book = store.book_of(await store.load_schemes(conn))
            assert await scoring.rebuild(conn, book, ["2026-03"]) == []  # nothing would change
            await trans.rollback()


async def test_a_batch_in_flight_holds_off_a_period_close_not_other_batches(schema, engine):
    """A consumed batch shares the scorecard lock: another instance's batch takes it too, a
    period close (or a scheme change) waits for both to commit."""
    await migrate(DB_URL, schema, MIGRATIONS)
    async with engine.connect() as first, engine.connect() as second:
        await first.begin()
        await store.share_scorecards(first)
        await second.begin()
        await asyncio.wait_for(store.share_scorecards(second), 5)  # not held off

        async def close() -> None:
            async with engine.begin() as conn:
                await store.lock_scorecards(conn)
                await store.close_period(conn, "2026-02")

        closing = asyncio.create_task(close())
        await asyncio.sleep(0.5)
        assert not closing.done()
        await first.rollback()
        await asyncio.sleep(0.2)
        assert not closing.done()  # the second batch is still in flight
        await second.commit()
        await asyncio.wait_for(closing, 5)
    async with engine.connect() as conn:
        assert await store.load_closed_periods(conn) == {"2026-02"}


async def test_the_tally_lock_orders_two_batches_folds(schema, engine):
    """Two batches in flight at once fold into one stored tally: the second reads it only
    after the first commits, so neither credit is lost (without the lock both read the empty
    tally and the later write keeps only its own credit)."""
    await migrate(DB_URL, schema, MIGRATIONS)

    def entries(amount: str) -> list:
        _, value = repayment("repayment.applied", f"L-{amount}", "c9", amount)
        return credit_for_applied(as_mapping(parse_event(value)))

    async def batch(conn, amount: str) -> None:
        await store.share_scorecards(conn)
        await store.lock_tallies(conn)
        book = store.book_of(await store.load_schemes(conn))
        await scoring.fold_in(conn, book, entries(amount))

    async with engine.connect() as first, engine.connect() as second:
        await first.begin()
        await batch(first, "100.00")
        await second.begin()
        folding = asyncio.create_task(batch(second, "23.45"))
        await asyncio.sleep(0.5)
        assert not folding.done()  # waits for the tally lock, not for a share
        await first.commit()
        await asyncio.wait_for(folding, 5)
        await second.commit()
    async with engine.connect() as conn:
        doc = await store.scorecard_doc(conn, "c9", "2026-03")
    assert Decimal(doc["recovered"]) == Decimal("123.45")
