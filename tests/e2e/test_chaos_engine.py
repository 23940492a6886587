"""The chaos engine's own parts, without a stack: the stream, the replay, and that each check
fails on the fault it exists to catch (a check that cannot fail proves nothing).

Pure and fast (no Kafka, no PostgreSQL): not marked e2e, so ``make test-quick`` runs them too.
They live next to the chaos test they support.
"""

from __future__ import annotations

from collections import Counter
from decimal import Decimal
from functools import cache
from typing import Any

import orjson
from aiokafka.structs import ConsumerRecord
from fastapi.testclient import TestClient

from services.sandbox.app import create_app
from services.staging.domain.outbound import TOPICS
from shared.events import parse_event
from shared.ops.chaos_checks import (
    check_contacts,
    check_dead_letters,
    check_loans,
    check_log,
    check_sandbox,
    check_staging_effects,
)
from shared.ops.chaos_replay import Expected, ReplayEvent, plain, replay
from shared.ops.chaos_stream import Stream, StreamConfig, build_stream
from shared.ops.dlq import DeadLetter

CFG = StreamConfig(loans=30, events_per_loan=14, seed=11, phases=6, phase_days=20, tag="T-")


@cache
def the_stream() -> Stream:
    return build_stream(CFG)


@cache
def the_replay() -> Expected:
    stream = the_stream()
    return replay(loan_events_of(stream), stream.closes, stream.collectors)


def record(topic: str, value: bytes, offset: int = 0,
           headers: dict[str, str] | None = None) -> ConsumerRecord:
    return ConsumerRecord(topic, 0, offset, 0, 0, None, value, None, 0, len(value),
                          tuple((k, v.encode()) for k, v in (headers or {}).items()))


def sent_events(stream: Stream) -> list[dict[str, Any]]:
    return [e for phase in stream.rounds for round_ in phase for e, _ in round_]


def loan_events_of(stream: Stream) -> dict[str, list[ReplayEvent]]:
    out: dict[str, list[ReplayEvent]] = {}
    for e in sent_events(stream):
        if e["type"] != "borrower.updated":
            event = parse_event(orjson.dumps(e))
            out.setdefault(e["subject"], []).append(
                ReplayEvent(stream.phase_of[e["id"]], event.type, plain(event)))
    return out


def test_the_stream_is_seeded_valid_and_one_event_per_loan_per_round():
    stream = the_stream()
    assert [e["id"] for e in sent_events(stream)] == \
        [e["id"] for e in sent_events(build_stream(CFG))]
    # the average per loan, or a little more where a loan's schedule alone needs more
    assert CFG.loans * CFG.events_per_loan <= stream.events <= 1.1 * CFG.loans * \
        CFG.events_per_loan
    for e in sent_events(stream):
        parse_event(orjson.dumps(e))  # every event of the book is valid
    for phase in stream.rounds:
        for round_ in phase:
            subjects = [e["subject"] for e, _ in round_]
            assert len(subjects) == len(set(subjects))
    assert {"loan.opened", "borrower.updated", "payment.missed", "repayment.received",
            "repayment.reversed", "instalment.upcoming"} <= set(stream.types)
    # a reversal always comes after the payment it reverses
    position: dict[str, int] = {}
    for n, e in enumerate(sent_events(stream)):
        if e["type"] == "repayment.received":
            position[e["data"]["payment_id"]] = n
        if e["type"] == "repayment.reversed":
            assert position[e["data"]["payment_id"]] < n
    kinds = Counter(p.kind for p in stream.poison)
    assert set(kinds) == {"invalid_json", "not_cloudevent", "unknown_type", "schema_error",
                          "unknown_loan"}


def test_the_replay_applies_every_event_and_credits_what_went_to_arrears():
    stream, expected = the_stream(), the_replay()
    assert set(expected.views) == set(stream.loans)
    assert Counter(v["stage"] for v in expected.views.values())["current"] < CFG.loans
    applied = [d for out in expected.outbound.values() for t, d in out
               if t == "repayment.applied" and d["collector_id"]]
    unapplied = [d for out in expected.outbound.values() for t, d in out
                 if t == "repayment.unapplied" and d["collector_id"]]
    assert sum(expected.credits.values()) == \
        sum(Decimal(d["to_arrears"]) for d in applied) - \
        sum(Decimal(d["to_arrears"]) for d in unapplied) > 0


def test_the_log_check_wants_every_event_in_the_order_sent():
    stream = the_stream()
    events = sent_events(stream)
    records = [record("t.loan-events", orjson.dumps(e), n) for n, e in enumerate(events)]
    ok, by_loan = check_log(stream, records + records[:5], [])
    assert ok.ok and "5 re-posted copies" in ok.counts
    assert sum(len(v) for v in by_loan.values()) == len(events) - CFG.loans  # no borrowers
    assert not check_log(stream, records[1:], [])[0].ok
    loan = stream.loans[0]
    mine = [n for n, e in enumerate(events) if e["subject"] == loan]
    swapped = list(records)
    swapped[mine[1]], swapped[mine[2]] = swapped[mine[2]], swapped[mine[1]]
    assert not check_log(stream, swapped, [])[0].ok


def test_the_effect_checks_tell_a_copy_from_a_second_application():
    expected = the_replay()
    loan = next(k for k, v in expected.outbound.items()
                if any(t == "repayment.applied" for t, _ in v))
    docs = [{"id": f"e{n}", "source": "s", "type": t, "subject": k, "data": d}
            for n, (k, t, d) in enumerate((k, t, d) for k, v in expected.outbound.items()
                                          for t, d in v)]
    by_topic: dict[str, list[ConsumerRecord]] = {}
    for n, doc in enumerate(docs):
        by_topic.setdefault(TOPICS[doc["type"]], []).append(
            record(TOPICS[doc["type"]], orjson.dumps(doc), n))
    assert check_staging_effects(expected, by_topic).ok
    applied = next(d for d in docs if d["subject"] == loan and d["type"] == "repayment.applied")
    topic = "repayments-applied"
    copy = record(topic, orjson.dumps(applied), 10**6)
    again = record(topic, orjson.dumps({**applied, "id": "another-id"}), 10**6)
    with_copy = {**by_topic, topic: [*by_topic[topic], copy]}
    assert check_staging_effects(expected, with_copy).ok  # at least once: same id
    twice = {**by_topic, topic: [*by_topic[topic], again]}
    assert not check_staging_effects(expected, twice).ok  # applied twice: a new id


def test_the_loan_check_compares_every_field_of_the_view():
    stream, expected = the_stream(), the_replay()
    views = {k: dict(v) for k, v in expected.views.items()}
    assert check_loans(expected, views).ok
    loan = stream.loans[3]
    views[loan]["arrears"] = str(Decimal(views[loan]["arrears"]) + Decimal("0.01"))
    assert not check_loans(expected, views).ok
    views[loan] = None  # type: ignore[assignment]
    assert not check_loans(expected, views).ok


def test_contacts_and_the_provider_each_once():
    def decision(event_id: str, contact: str, status: str) -> ConsumerRecord:
        return record("t.contact-outcomes", orjson.dumps({"id": event_id, "data": {
            "contact_id": contact, "status": status, "reason": "r", "scheduled_for": None}}))

    check, sent = check_contacts([decision("1", "c1", "sent"), decision("1", "c1", "sent"),
                                  decision("2", "c2", "deferred")])
    assert check.ok and sent == {"c1"}
    assert not check_contacts([decision("1", "c1", "sent"), decision("3", "c1", "sent")])[0].ok
    later = record("t.contact-outcomes", orjson.dumps({"id": "4", "data": {
        "contact_id": "c1", "status": "sent", "reason": "r", "scheduled_for": "2026-01-03"}}))
    assert not check_contacts([decision("1", "c1", "sent"), later])[0].ok
    message = {"payload": {"contact_id": "c1"}}
    assert check_sandbox({"c1"}, [message], {"resent": 1}).ok
    assert not check_sandbox({"c1"}, [message, message], {}).ok
    assert not check_sandbox({"c1", "c2"}, [message], {}).ok
    assert not check_sandbox(set(), [message], {}).ok


def test_the_dlq_check_wants_exactly_the_poison_from_each_consumer():
    stream = the_stream()
    letters = []
    for p in stream.poison:
        for consumer in p.consumers:
            letters.append(DeadLetter(f"x.{p.topic}.dlq", 0, len(letters), p.key, p.value, {
                "qs-reason": p.reason, "qs-consumer": consumer,
                "qs-original-topic": f"x.{p.topic}"}))
    assert check_dead_letters(stream.poison, letters).ok
    assert check_dead_letters(stream.poison, [*letters, letters[0]]).ok  # a relay copy
    assert not check_dead_letters(stream.poison, letters[1:]).ok
    stray = orjson.dumps(sent_events(stream)[5])
    extra = DeadLetter("x.loan-events.dlq", 0, 999, b"k", stray, {
        "qs-reason": "handler_error", "qs-consumer": "notifier",
        "qs-original-topic": "x.loan-events"})
    assert not check_dead_letters(stream.poison, [*letters, extra]).ok


def test_the_sandbox_counts_every_request_and_accepts_a_contact_once():
    client = TestClient(create_app())
    body = {"contact_id": "c-1", "channel": "sms", "to": "+8613900000000"}
    assert client.post("/v1/sms", json=body, headers={"Idempotency-Key": "c-1"}).status_code \
        == 202
    assert client.post("/v1/sms", json=body, headers={"Idempotency-Key": "c-1"}).status_code \
        == 200
    assert client.post("/v1/sms/batch", json={"messages": [body]}).status_code == 200
    got = client.get("/v1/received").json()
    assert got["items"] == [{"idempotency_key": "c-1", "requests": 3, "message_id": "sbx-1"}]
    assert got["resent"] == 2
    assert client.get("/v1/messages").json()["count"] == 1
