"""Ingest against the real broker: what is posted is what a consumer reads.

Each test gets its own topic prefix. The app runs in-process: its lifespan is entered by hand
and httpx talks to it through ASGITransport. "Kafka down" is a second app pointed at a closed
port (the shared broker is never stopped): it starts anyway, answers 503 and claims nothing.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from services.ingest.service import create_ingest_app
from services.ingest.settings import IngestSettings
from shared.events import registry, sample_cloudevent
from tests.conftest import KAFKA
from tests.integration.conftest import eventually, read_topic

pytestmark = pytest.mark.integration

CE = {"content-type": "application/cloudevents+json"}
BATCH = {"content-type": "application/cloudevents-batch+json"}


def auth(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


ADMIN, CORE, DESK, READ = (auth(k) for k in ("qs-dev-admin", "qs-dev-core", "qs-dev-desk",
                                              "qs-dev-read"))


def event(event_type: str = "repayment.received", **changes: Any) -> dict[str, Any]:
    ev = copy.deepcopy(sample_cloudevent(event_type))
    ev["id"] = str(uuid.uuid4())
    ev["source"] = "urn:test:core-banking"
    ev.update(changes)
    return ev


@asynccontextmanager
async def ingest(uid: str, first_attempt_s: float = 10.0,
                 **overrides: Any) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    values: dict[str, Any] = {"topic_prefix": f"t{uid}", "kafka_bootstrap": KAFKA,
                              "topic_partitions": 3, "environment": "test"}
    values.update(overrides)
    app = create_ingest_app(IngestSettings(**values), first_attempt_s=first_attempt_s)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ingest",
                                     timeout=60) as client:
            yield app, client


async def test_what_is_posted_is_what_a_consumer_reads(uid: str) -> None:
    posted: dict[str, bytes] = {}
    async with ingest(uid) as (_, client):
        for event_type in registry.type_names("inbound"):
            # each type once, as a client would format it: indented, non-canonical bytes
            body = orjson.dumps(event(event_type), option=orjson.OPT_INDENT_2)
            r = await client.post("/v1/events", content=body, headers={**CE, **ADMIN})
            assert r.status_code == 202, r.text
            assert r.json()["duplicate"] is False
            posted[r.json()["id"]] = body
    loan_events = await read_topic(f"t{uid}.loan-events", expect=len(posted) - 1)
    calendar = await read_topic(f"t{uid}.calendar", expect=1)
    assert len(loan_events) == len(posted) - 1 and len(calendar) == 1
    for record in loan_events + calendar:
        sent = orjson.loads(posted[orjson.loads(record.value)["id"]])
        assert record.value == posted[sent["id"]]  # the very bytes that were posted
        assert record.key == sent["subject"].encode()
        want = "calendar" if sent["type"] == "business_day.closed" else "loan-events"
        assert record.topic == f"t{uid}.{want}"
        assert dict(record.headers)["content-type"] == b"application/cloudevents+json"


async def test_a_batch_with_invalid_items_publishes_the_valid_ones(uid: str) -> None:
    bad_amount = event()
    bad_amount["data"]["amount"] = "lots"
    desk_only = event("promise.made")
    good = [event(), event("business_day.closed"), event("loan.opened")]
    batch = [good[0], bad_amount, event("stage.changed"), desk_only, "not an object",
             good[1], good[2], event(time="tomorrow")]
    async with ingest(uid) as (_, client):
        r = await client.post("/v1/events/batch", content=orjson.dumps(batch),
                              headers={**BATCH, **CORE})
    assert r.status_code == 207, r.text
    body = r.json()
    assert [x["status"] for x in body["results"]] == [202, 422, 422, 403, 422, 202, 202, 422]
    assert (body["accepted"], body["rejected"], body["failed"]) == (3, 5, 0)
    assert body["results"][1]["errors"][0]["field"] == "data.amount"
    assert body["results"][7]["errors"][0]["field"] == "time"
    assert body["results"][3]["errors"][0]["field"] == "type"
    records = (await read_topic(f"t{uid}.loan-events", expect=2)
               + await read_topic(f"t{uid}.calendar", expect=1))
    assert sorted(orjson.loads(r.value)["id"] for r in records) == sorted(g["id"] for g in good)
    for record in records:
        assert orjson.loads(record.value) == next(
            g for g in good if g["id"] == orjson.loads(record.value)["id"])


async def test_a_large_batch_keeps_each_loans_order_and_partition(uid: str) -> None:
    # 960 events of ~2 KB over 12 loans and 3 partitions: whole record batches, and at least
    # one partition (4 loans or more) needs several of them
    loans = [f"LN-{uid}-{n}" for n in range(12)]
    batch = [event(subject=loan, padding="x" * 1500,
                   data={**event()["data"], "loan_id": loan, "payment_id": f"P-{loan}-{seq}"})
             for seq in range(80) for loan in loans]
    singles = [event(subject=loan, data={**event()["data"], "loan_id": loan}) for loan in loans]
    async with ingest(uid) as (_, client):
        for ev in singles:  # one event per request goes through send(): the reference partition
            r = await client.post("/v1/events", content=orjson.dumps(ev), headers={**CE, **CORE})
            assert r.status_code == 202, r.text
        r = await client.post("/v1/events/batch", content=orjson.dumps(batch),
                              headers={**BATCH, **CORE})
        assert r.status_code == 202, r.text
        assert r.json()["accepted"] == len(batch)
    records = await read_topic(f"t{uid}.loan-events", expect=len(batch) + len(singles))
    assert len(records) == len(batch) + len(singles)
    by_id = {orjson.loads(rec.value)["id"]: rec for rec in records}
    assert len(by_id) == len(records)
    for ev in batch:
        assert orjson.loads(by_id[ev["id"]].value) == ev
        assert by_id[ev["id"]].key == ev["subject"].encode()
    for single in singles:
        loan = single["subject"]
        mine = sorted((rec for rec in records if rec.key == loan.encode()),
                      key=lambda rec: rec.offset)
        assert {rec.partition for rec in mine} == {by_id[single["id"]].partition}
        posted = [single["id"]] + [ev["id"] for ev in batch if ev["subject"] == loan]
        assert [orjson.loads(rec.value)["id"] for rec in mine] == posted


async def test_single_errors_are_problems_naming_the_field(uid: str) -> None:
    ev = event()
    ev["data"]["amount"] = 1.5
    async with ingest(uid) as (_, client):
        r = await client.post("/v1/events", content=orjson.dumps(ev), headers={**CE, **CORE})
        assert r.status_code == 422
        assert r.headers["content-type"] == "application/problem+json"
        assert "data.amount" in {e["field"] for e in r.json()["errors"]}
        r = await client.post("/v1/events", content=b"{nope", headers={**CE, **CORE})
        assert r.status_code == 400
        r = await client.post("/v1/events", content=orjson.dumps(event()),
                              headers={"content-type": "text/plain", **CORE})
        assert r.status_code == 415
        r = await client.post("/v1/events", content=orjson.dumps(event("scorecard.updated")),
                              headers={**CE, **ADMIN})
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "type"


async def test_a_repeat_is_accepted_as_a_duplicate_and_published_once(uid: str) -> None:
    ev = orjson.dumps(event())
    async with ingest(uid) as (_, client):
        first = await client.post("/v1/events", content=ev, headers={**CE, **CORE})
        second = await client.post("/v1/events", content=ev, headers={**CE, **CORE})
        in_batch = await client.post("/v1/events/batch", content=b"[" + ev + b"]",
                                     headers={**BATCH, **CORE})
    assert first.json()["duplicate"] is False and second.json()["duplicate"] is True
    assert second.status_code == 202
    assert in_batch.status_code == 202 and in_batch.json()["duplicates"] == 1
    assert len(await read_topic(f"t{uid}.loan-events", expect=1, settle=1.0)) == 1


@pytest.mark.parametrize("path,headers", [("/v1/events", CE), ("/v1/events/batch", BATCH)])
async def test_auth_and_scope_on_every_route(uid: str, path: str, headers: dict) -> None:
    one = event("loan.opened")
    body = orjson.dumps(one if path == "/v1/events" else [one])
    async with ingest(uid) as (_, client):
        for who in ({}, auth("wrong-key"), {"authorization": "Basic eDp5"}):
            r = await client.post(path, content=body, headers={**headers, **who})
            assert r.status_code == 401, (who, r.text)
            assert r.headers["www-authenticate"] == "Bearer"
        r = await client.post(path, content=body, headers={**headers, **READ})
        assert r.status_code == 403  # a key without any events scope
        r = await client.post(path, content=body, headers={**headers, **DESK})
        if path == "/v1/events":
            assert r.status_code == 403 and r.json()["errors"][0]["field"] == "type"
        else:  # decided: per item in a batch, so the desk's other items still go through
            assert r.status_code == 207 and r.json()["results"][0]["status"] == 403
        desk = orjson.dumps(event("promise.made"))
        r = await client.post("/v1/events", content=desk, headers={**CE, **DESK})
        assert r.status_code == 202
    assert len(await read_topic(f"t{uid}.loan-events", expect=1)) == 1


async def test_body_and_batch_size_limits(uid: str) -> None:
    async with ingest(uid, ingest_max_event_bytes=2048, ingest_max_batch_items=3,
                      ingest_rate_burst=1000) as (_, client):
        big = event()
        big["padding"] = "x" * 4096
        r = await client.post("/v1/events", content=orjson.dumps(big), headers={**CE, **CORE})
        assert r.status_code == 413 and r.json()["errors"][0]["field"] == "body"

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: streamed and counted
            for _ in range(10):
                yield b" " * 512

        r = await client.post("/v1/events", content=chunks(), headers={**CE, **CORE})
        assert r.status_code == 413
        four = orjson.dumps([event() for _ in range(4)])
        r = await client.post("/v1/events/batch", content=four, headers={**BATCH, **CORE})
        assert r.status_code == 413
        r = await client.post("/v1/events/batch", content=b"[]", headers={**BATCH, **CORE})
        assert r.status_code == 422


async def test_rate_limit_per_key(uid: str) -> None:
    async with ingest(uid, ingest_rate_per_second=0.01, ingest_rate_burst=3,
                      ingest_max_batch_items=3) as (_, client):
        r = await client.post("/v1/events/batch", content=orjson.dumps([event(), event()]),
                              headers={**BATCH, **CORE})
        assert r.status_code == 202
        r = await client.post("/v1/events", content=orjson.dumps(event()), headers={**CE, **CORE})
        assert r.status_code == 202
        r = await client.post("/v1/events", content=orjson.dumps(event()), headers={**CE, **CORE})
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        desk = orjson.dumps(event("promise.made"))
        r = await client.post("/v1/events", content=desk, headers={**CE, **DESK})
        assert r.status_code == 202  # another key, another bucket


async def test_kafka_unreachable_gives_503_and_loses_nothing(uid: str) -> None:
    batch = [event() for _ in range(5)] + [event("business_day.closed"), {"broken": True}]
    single = event()
    async with ingest(uid, first_attempt_s=1.0, kafka_bootstrap="127.0.0.1:1") as (_, down):
        ready = await down.get("/readyz")
        assert ready.status_code == 503 and ready.json()["checks"]["kafka"] is False
        assert ready.json()["checks"]["event_routes"] is False
        r = await down.post("/v1/events", content=orjson.dumps(single), headers={**CE, **CORE})
        assert r.status_code == 503 and int(r.headers["retry-after"]) >= 1
        r = await down.post("/v1/events/batch", content=orjson.dumps(batch),
                            headers={**BATCH, **CORE})
        assert r.status_code == 503 and int(r.headers["retry-after"]) >= 1
        body = r.json()
        assert [x["status"] for x in body["results"]] == [503] * 6 + [422]
        assert body["accepted"] == 0 and body["failed"] == 6
    # the client retries against a healthy gateway: everything arrives exactly once
    async with ingest(uid) as (_, up):
        r = await up.post("/v1/events", content=orjson.dumps(single), headers={**CE, **CORE})
        assert r.status_code == 202
        r = await up.post("/v1/events/batch", content=orjson.dumps(batch[:6]),
                          headers={**BATCH, **CORE})
        assert r.status_code == 202 and r.json()["accepted"] == 6
    records = await read_topic(f"t{uid}.loan-events", expect=6, settle=1.0)
    ids = sorted(orjson.loads(r.value)["id"] for r in records)
    assert ids == sorted([single["id"]] + [e["id"] for e in batch[:5]])
    assert len(await read_topic(f"t{uid}.calendar", expect=1, settle=1.0)) == 1


async def test_a_gateway_that_started_without_kafka_connects_later(uid: str) -> None:
    async with ingest(uid, first_attempt_s=0.5, kafka_bootstrap="127.0.0.1:1",
                      ingest_kafka_retry_interval_s=0.2) as (app, client):
        rt = app.state.runtime
        r = await client.post("/v1/events", content=orjson.dumps(event()), headers={**CE, **CORE})
        assert r.status_code == 503
        # the broker "comes back": the bootstrap now points at the real one
        rt.settings.kafka_bootstrap = KAFKA

        async def is_ready() -> bool:
            return (await client.get("/readyz")).status_code == 200

        await eventually(is_ready, timeout=30)
        ev = event()
        r = await client.post("/v1/events", content=orjson.dumps(ev), headers={**CE, **CORE})
        assert r.status_code == 202
    records = await read_topic(f"t{uid}.loan-events", expect=1, settle=1.0)
    assert [orjson.loads(r.value)["id"] for r in records] == [ev["id"]]


async def test_a_batch_item_above_the_event_limit_is_refused_not_retried(uid: str) -> None:
    # the per-event limit holds inside a batch too: an item above it is refused (413) for
    # good, not published, and not answered 503 (a retry could never succeed: above the
    # broker's message size it used to fail as "Kafka did not acknowledge" forever)
    big, huge, fine = event(), event(), event()
    big["padding"] = "x" * 4096
    huge["padding"] = "y" * 1_200_000
    async with ingest(uid, ingest_max_event_bytes=2048) as (_, client):
        r = await client.post("/v1/events/batch", content=orjson.dumps([big, fine, huge]),
                              headers={**BATCH, **CORE})
    assert r.status_code == 207, r.text
    body = r.json()
    assert [x["status"] for x in body["results"]] == [413, 202, 413]
    assert (body["accepted"], body["rejected"], body["failed"]) == (1, 2, 0)
    assert body["results"][0]["title"] == "Payload too large"
    assert "2048" in body["results"][0]["detail"]
    records = await read_topic(f"t{uid}.loan-events", expect=1, settle=1.0)
    assert [orjson.loads(rec.value)["id"] for rec in records] == [fine["id"]]


def _samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {tuple(sorted(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples
            if s.name == name}


async def test_metrics_count_requests_and_events_by_outcome(uid: str) -> None:
    # ops watch ingest through /metrics: what was accepted, refused, throttled or failed
    async with ingest(uid) as (_, client):
        before = (await client.get("/metrics")).text
        ev = orjson.dumps(event())
        for body, headers in [(ev, {**CE, **CORE}), (ev, {**CE, **CORE}),
                              (b"{nope", {**CE, **CORE}), (ev, CE)]:
            await client.post("/v1/events", content=body, headers=headers)
        bad = event()
        bad["data"]["amount"] = "lots"
        r = await client.post("/v1/events/batch", content=orjson.dumps([event(), bad]),
                              headers={**BATCH, **CORE})
        assert r.status_code == 207
        after = (await client.get("/metrics")).text
    for name, labels, delta in [
        ("qs_ingest_requests_total", {"route": "single", "status": "202"}, 2),
        ("qs_ingest_requests_total", {"route": "single", "status": "400"}, 1),
        ("qs_ingest_requests_total", {"route": "single", "status": "401"}, 1),
        ("qs_ingest_requests_total", {"route": "batch", "status": "207"}, 1),
        ("qs_ingest_events_total", {"route": "single", "outcome": "accepted"}, 1),
        ("qs_ingest_events_total", {"route": "single", "outcome": "duplicate"}, 1),
        ("qs_ingest_events_total", {"route": "single", "outcome": "rejected"}, 1),
        ("qs_ingest_events_total", {"route": "batch", "outcome": "accepted"}, 1),
        ("qs_ingest_events_total", {"route": "batch", "outcome": "rejected"}, 1),
    ]:
        key = tuple(sorted(labels.items()))
        was = _samples(before, name).get(key, 0.0)
        assert _samples(after, name).get(key, 0.0) - was == delta, (name, labels)
