"""Staging through the real broker and database: the running app's consumer, end of day,
relay and API, observed via REST and the outbound topics."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import httpx
import orjson
import pytest

from services.staging.service import DEFINITION
from shared.events import new_event
from shared.migrations import migrate
from shared.service import create_app
from shared.settings import ServiceSettings
from tests.conftest import DB_URL, KAFKA
from tests.integration.conftest import eventually, read_topic

pytestmark = pytest.mark.integration

READ = {"Authorization": "Bearer qs-dev-read"}
ADMIN = {"Authorization": "Bearer qs-dev-admin"}


def event(type_: str, data: dict[str, Any], event_id: str | None = None) -> tuple[bytes, bytes]:
    built = new_event(type_, source="urn:test:core", data=data,
                      id=event_id or str(uuid.uuid4()))
    return built.key, built.to_json()


def opened(loan: str, rm: str | None = None, currency: str = "CNY") -> tuple[bytes, bytes]:
    data = {"loan_id": loan, "borrower_id": f"B-{loan}", "product": "consumer_loan",
            "currency": currency, "principal": "10000.00", "opened_on": "2026-01-01"}
    if rm:
        data["relationship_manager_id"] = rm
    return event("loan.opened", data)


def missed(loan: str, due: str = "2026-01-05", amount: str = "1000.00") -> tuple[bytes, bytes]:
    return event("payment.missed", {"loan_id": loan, "instalment_no": 1, "due_date": due,
                                    "amount_due": amount, "amount_unpaid": amount})


def repaid(loan: str, payment: str, amount: str, currency: str = "CNY",
           value_date: str = "2026-04-06", event_id: str | None = None) -> tuple[bytes, bytes]:
    return event("repayment.received", {
        "loan_id": loan, "payment_id": payment, "amount": amount, "currency": currency,
        "value_date": value_date, "channel": "transfer"}, event_id)


def reversed_(loan: str, payment: str) -> tuple[bytes, bytes]:
    return event("repayment.reversed", {"loan_id": loan, "payment_id": payment,
                                        "reason": "chargeback"})


def day_closed(day: str) -> tuple[bytes, bytes]:
    return event("business_day.closed", {"business_date": day})


@asynccontextmanager
async def running_service(uid: str, topics, schema: str,
                          group: str | None = None) -> AsyncIterator[httpx.AsyncClient]:
    await migrate(DB_URL, schema, DEFINITION.migrations)  # type: ignore[arg-type]
    settings = ServiceSettings(
        service="staging", kafka_bootstrap=KAFKA, database_url=DB_URL,
        topic_prefix=topics.prefix, db_schema=schema, consumer_group=group or f"g-{uid}",
        topic_partitions=3, consumer_poll_timeout_ms=100, relay_poll_interval_s=0.1)
    app = create_app(DEFINITION, settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://staging") as client:
            yield client


async def publish(producer, topic: str, *messages: tuple[bytes, bytes]) -> None:
    for key, value in messages:
        await producer.send_and_wait(topic, value, key=key)


async def loan(client: httpx.AsyncClient, loan_id: str) -> dict:
    response = await client.get(f"/v1/loans/{loan_id}", headers=READ)
    return response.json() if response.status_code == 200 else {}


async def wait_for_closed_day(client: httpx.AsyncClient, day: str) -> None:
    """Until the end of day of ``day`` has finished (its portfolio snapshot is taken last)."""
    async def closed() -> bool:
        response = await client.get("/v1/portfolio/history", headers=READ)
        return day in [item["business_date"] for item in response.json()["items"]]

    await eventually(closed)


async def wait_for(client: httpx.AsyncClient, loan_id: str, **expected: Any) -> dict:
    last: list = []

    async def check() -> bool:
        view = await loan(client, loan_id)
        ok = all(_pick(view, k) == v for k, v in expected.items())
        last.append(view)
        return ok

    try:
        await eventually(check)
    except AssertionError:
        raise AssertionError(f"{loan_id}: wanted {expected}, last {last[-1:]}") from None
    return await loan(client, loan_id)


def _pick(view: dict, key: str) -> Any:
    if key == "collector_id":
        return view.get("owner", {}).get("collector_id")
    return view.get(key)


async def put_collector(client, collector_id: str, team: str, capacity: int = 10,
                        active: bool = True) -> httpx.Response:
    return await client.put(f"/v1/collectors/{collector_id}", headers=ADMIN, json={
        "name": f"Collector {collector_id}", "team": team, "capacity": capacity,
        "active": active})


async def test_loan_walks_the_stages_and_repayments_cure_it(uid, topics, schema, producer):
    async with running_service(uid, topics, schema) as client:
        for cid, team in (("i1", "intensive"), ("i2", "intensive"), ("n1", "negotiation"),
                          ("g1", "legal")):
            assert (await put_collector(client, cid, team)).status_code == 200
        await publish(producer, topics.loan_events, opened("L1", rm="rm1"), opened("L2"),
                      missed("L1"), missed("L2"))
        await wait_for(client, "L2", arrears="1000.00")

        steps = [("2026-01-06", "early", None, None),
                 ("2026-02-05", "negotiation", "rm1", "n1"),
                 ("2026-03-07", "intensive", "i1", "i2"),
                 ("2026-04-06", "legal", "g1", "g1")]
        for day, stage, owner1, owner2 in steps:
            await publish(producer, topics.calendar, day_closed(day))
            await wait_for(client, "L1", stage=stage, collector_id=owner1, business_date=day)
            await wait_for(client, "L2", stage=stage, collector_id=owner2, business_date=day)
        view1 = await loan(client, "L1")
        assert view1["dpd"] == 91 and view1["oldest_due_date"] == "2026-01-05"
        assert [h["to"] for h in view1["history"]] == ["early", "negotiation", "intensive",
                                                        "legal"]
        assert (await client.get("/v1/collectors/i1", headers=READ)).json()["open_cases"] == 0
        assert (await client.get("/v1/collectors/i2", headers=READ)).json()["open_cases"] == 0
        assert (await client.get("/v1/collectors/g1", headers=READ)).json()["open_cases"] == 2
        cases = (await client.get("/v1/collectors/g1/cases", params={"limit": 1},
                                  headers=READ)).json()
        assert [c["loan_id"] for c in cases["items"]] == ["L1"]
        more = (await client.get("/v1/collectors/g1/cases", headers=READ,
                                 params={"limit": 1, "cursor": cases["next_cursor"]})).json()
        assert [c["loan_id"] for c in more["items"]] == ["L2"] and more["next_cursor"] is None

        # a repayment cures L2 (case unassigned); its reversal puts everything back
        payment = repaid("L2", "P2", "1000.00", value_date="2026-04-05")
        await publish(producer, topics.loan_events, payment)
        await wait_for(client, "L2", stage="current", collector_id=None, arrears="0.00")
        await publish(producer, topics.loan_events, payment)  # duplicate: no effect
        await publish(producer, topics.loan_events, reversed_("L2", "P2"))
        await wait_for(client, "L2", stage="legal", arrears="1000.00", dpd=91,
                       collector_id="g1")
        # a partial repayment leaves sticky legal in place
        await publish(producer, topics.loan_events, repaid("L1", "P1", "400.00"))
        await wait_for(client, "L1", arrears="600.00", stage="legal")

        listed = (await client.get("/v1/loans", params={"stage": "legal"},
                                   headers=READ)).json()
        assert [i["loan_id"] for i in listed["items"]] == ["L1", "L2"]
        folio = (await client.get("/v1/portfolio", headers=READ)).json()
        assert folio["products"]["consumer_loan"]["legal"] == {"count": 2,
                                                               "arrears": "1600.00"}
        assert folio["roll_rates"]["matrix"]["intensive"] == {"intensive": "0.0000",
                                                              "legal": "1.0000"}
        assert (await client.get("/v1/collectors/g1", headers=READ)).json()["open_cases"] == 2

    stages = [orjson.loads(r.value) for r in await read_topic(topics.collection_stages, 10)]
    l1 = [(s["data"]["to_stage"], s["data"]["reason"]) for s in stages if s["subject"] == "L1"]
    assert l1 == [("early", "aging"), ("negotiation", "aging"), ("intensive", "aging"),
                  ("legal", "aging")]
    cases = [orjson.loads(r.value) for r in await read_topic(topics.collection_assignments, 8)]
    l1_cases = [(c["type"], c["data"]["collector_id"], c["data"]["team"]) for c in cases
                if c["subject"] == "L1"]
    assert l1_cases == [("case.assigned", "rm1", "negotiation"),
                        ("case.assigned", "i1", "intensive"), ("case.assigned", "g1", "legal")]
    assert ("case.unassigned", "g1") in [(c["type"], c["data"]["collector_id"]) for c in cases
                                         if c["subject"] == "L2"]
    money = [orjson.loads(r.value) for r in await read_topic(topics.repayments_applied, 3)]
    assert [(m["type"], m["data"]["payment_id"], m["data"]["collector_id"]) for m in money] == [
        ("repayment.applied", "P2", "i2"), ("repayment.unapplied", "P2", "i2"),
        ("repayment.applied", "P1", "g1")]
    # the duplicate was dropped by the inbox, not refused by the ledger
    assert await read_topic(f"{topics.loan_events}.dlq", 0, timeout=2) == []


async def test_bad_events_go_to_the_dlq_and_replay(uid, topics, schema, producer):
    async with running_service(uid, topics, schema) as client:
        orphan = missed("L9")
        await publish(producer, topics.loan_events, orphan, opened("L3"), missed("L3"),
                      repaid("L3", "P-USD", "100.00", currency="USD"),
                      reversed_("L3", "P-none"))
        await wait_for(client, "L3", arrears="1000.00")
        dead = await read_topic(f"{topics.loan_events}.dlq", 3)
        reasons = sorted(dict((k, v.decode()) for k, v in r.headers)["qs-reason"] for r in dead)
        assert len(reasons) == 3 and "unknown_loan" in reasons
        assert all(r != "handler_error" for r in reasons), reasons
        # replay the orphan once its loan exists
        await publish(producer, topics.loan_events, opened("L9"))
        await wait_for(client, "L9", arrears="0")
        await publish(producer, topics.loan_events, orphan)
        await wait_for(client, "L9", arrears="1000.00")


async def test_policy_is_validated_and_versioned(uid, topics, schema, producer):
    async with running_service(uid, topics, schema) as client:
        current = (await client.get("/v1/policy", headers=READ)).json()
        assert current["versions"] == [1]
        doc = {k: v for k, v in current["policy"].items() if k != "version"}
        gap = dict(doc, stages=[dict(s, dpd_min=32) if s["name"] == "negotiation" else s
                                for s in doc["stages"]])
        refused = await client.put("/v1/policy", json=gap, headers=ADMIN)
        assert refused.status_code == 422
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert any(e["field"].startswith("stages") for e in refused.json()["errors"])
        assert (await client.put("/v1/policy", json=doc, headers=READ)).status_code == 403
        # 5.00 unpaid is within the default tolerance (10.00): current, nothing due by time
        await publish(producer, topics.loan_events, opened("T1"),
                      missed("T1", due="2026-01-05", amount="5.00"))
        view = await wait_for(client, "T1", arrears="5.00")
        assert view["stage"] == "current" and view["next_transition_date"] is None
        accepted = await client.put("/v1/policy", json=dict(doc, tolerance="1.00"),
                                    headers=ADMIN)
        assert accepted.status_code == 200, accepted.text
        assert (await client.get("/v1/policy", headers=READ)).json()["versions"] == [1, 2]
        # the new tolerance is applied to every loan by the next end of day
        await publish(producer, topics.calendar, day_closed("2026-01-10"))
        await wait_for(client, "T1", stage="early", dpd=5)
        # a business date not after the current one changes nothing
        await publish(producer, topics.calendar, day_closed("2026-01-08"))
        await publish(producer, topics.loan_events, repaid("T1", "PT", "1.00",
                                                           value_date="2026-01-10"))
        await wait_for(client, "T1", arrears="4.00", dpd=5, business_date="2026-01-10")
        folio = (await client.get("/v1/portfolio", headers=READ)).json()
        assert folio["business_date"] == "2026-01-10"
        bad = await put_collector(client, "x1", "nobody")
        assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "team"
        assert (await client.get("/v1/loans/none", headers=READ)).status_code == 404


async def test_two_instances_match_one(uid, topics, producer):
    loans = [f"M{i}" for i in range(12)]
    events = [opened(lid, rm=f"rm{i % 3}") for i, lid in enumerate(loans)]
    events += [missed(lid, amount=f"{100 + i}.00") for i, lid in enumerate(loans)]
    events += [repaid(lid, f"Q{i}", "50.00", value_date="2026-01-10")
               for i, lid in enumerate(loans) if i % 2]
    events += [reversed_(lid, f"Q{i}") for i, lid in enumerate(loans) if i % 4 == 1]
    events.append(event("payment.missed", {"loan_id": "M9", "instalment_no": 2,
                                           "due_date": "2026-02-05", "amount_due": "7.00",
                                           "amount_unpaid": "7.00"}))
    one, two = f"t_{uid}_one", f"t_{uid}_two"
    async with AsyncExitStack() as stack:
        single = await stack.enter_async_context(
            running_service(uid, topics, one, group=f"one-{uid}"))
        pair = [await stack.enter_async_context(
            running_service(uid, topics, two, group=f"two-{uid}")) for _ in range(2)]
        await publish(producer, topics.loan_events, *events)
        for client in (single, pair[0]):
            await wait_for(client, loans[-1], arrears="61.00")
            await wait_for(client, "M9", arrears="116.00")
        await publish(producer, topics.calendar, day_closed("2026-02-05"))
        for client in (single, pair[0]):
            # the end of day itself done, not only the calendar moved: a loan's view is aged
            # to the business date as it is read, but its new owner comes with the end of day
            await wait_for_closed_day(client, "2026-02-05")
            for lid in loans:
                await wait_for(client, lid, business_date="2026-02-05")
        for lid in loans:
            a, b = await loan(single, lid), await loan(pair[1], lid)
            assert a == b
            assert a["stage"] == "negotiation"


async def test_flags_promises_and_deactivation(uid, topics, schema, producer):
    async with running_service(uid, topics, schema) as client:
        await put_collector(client, "g1", "legal", capacity=10)
        await put_collector(client, "g2", "legal", capacity=5)
        loans = ["F1", "F2", "F3"]
        await publish(producer, topics.loan_events, *[opened(lid) for lid in loans],
                      *[missed(lid) for lid in loans])
        for lid in loans:  # one by one: the least-loaded choice depends on the order
            await wait_for(client, lid, arrears="1000.00")
            await publish(producer, topics.loan_events, event("case.flag.raised", {
                "loan_id": lid, "flag": "wilful_default", "note": "moved abroad"}))
            await wait_for(client, lid, stage="legal")
        owners = [(await loan(client, lid))["owner"]["collector_id"] for lid in loans]
        assert owners == ["g1", "g2", "g1"]

        off = await put_collector(client, "g1", "legal", active=False)
        assert off.status_code == 200 and off.json()["reassigned"] == 2
        assert off.json()["open_cases"] == 0
        assert (await client.get("/v1/collectors/g2", headers=READ)).json()["open_cases"] == 3
        for lid in loans:
            assert (await loan(client, lid))["owner"]["collector_id"] == "g2"

        await publish(producer, topics.loan_events, event("promise.made", {
            "loan_id": "F1", "promise_id": "PR1", "collector_id": "g2", "amount": "300.00",
            "due_on": "2026-01-10"}))
        await wait_for(client, "F1", open_promises=[{
            "promise_id": "PR1", "collector_id": "g2", "amount": "300.00",
            "due_on": "2026-01-10", "made_on": "2026-01-01", "seq": 1, "status": "open",
            "paid": "0", "resolved_on": None}])
        await publish(producer, topics.loan_events,
                      repaid("F1", "PF1", "300.00", value_date="2026-01-02"))
        view = await wait_for(client, "F1", open_promises=[], arrears="700.00")
        assert view["promises"][0]["status"] == "kept"
    kept = [orjson.loads(r.value) for r in await read_topic(topics.promise_outcomes, 1)]
    assert [(k["type"], k["data"]["paid"]) for k in kept] == [("promise.kept", "300.00")]


async def test_deactivation_reassigns_on_the_current_business_date(uid, topics, schema,
                                                                   producer):
    """A case end of day has not touched for days (nothing due) is reassigned as of today:
    the leaving collector keeps the days they owned it, so a late payment value-dated in
    them is still theirs."""
    async with running_service(uid, topics, schema) as client:
        for cid in ("i1", "i2"):
            await put_collector(client, cid, "intensive")
        await publish(producer, topics.loan_events, opened("D1"), missed("D1"))
        await wait_for(client, "D1", arrears="1000.00")
        await publish(producer, topics.calendar, day_closed("2026-03-07"))
        await wait_for(client, "D1", stage="intensive", collector_id="i1")
        await publish(producer, topics.calendar, day_closed("2026-03-20"))

        async def closed() -> bool:
            return (await client.get("/v1/portfolio", headers=READ)).json()[
                "business_date"] == "2026-03-20"
        await eventually(closed)
        off = await put_collector(client, "i1", "intensive", active=False)
        assert off.status_code == 200 and off.json()["reassigned"] == 1
        await wait_for(client, "D1", collector_id="i2")
        await publish(producer, topics.loan_events,
                      repaid("D1", "PD", "100.00", value_date="2026-03-15"))
        await wait_for(client, "D1", arrears="900.00")
    cases = [orjson.loads(r.value) for r in await read_topic(topics.collection_assignments, 2)]
    assert [(c["data"]["collector_id"], c["data"]["business_date"]) for c in cases] == [
        ("i1", "2026-03-07"), ("i2", "2026-03-20")]
    money = [orjson.loads(r.value) for r in await read_topic(topics.repayments_applied, 1)]
    assert [m["data"]["collector_id"] for m in money] == ["i1"]
