"""Every event type: the sample parses, round-trips through JSON, and is registered right."""

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

import orjson
import pytest

from shared import topics
from shared.events import SAMPLES, Event, new_event, parse_event, registry, sample_cloudevent
from shared.events import types as t

INBOUND = [
    t.LOAN_OPENED, t.BORROWER_UPDATED, t.INSTALMENT_UPCOMING, t.PAYMENT_MISSED,
    t.REPAYMENT_RECEIVED, t.REPAYMENT_REVERSED, t.CASE_FLAG_RAISED, t.CASE_FLAG_CLEARED,
    t.PROMISE_MADE, t.COMPLAINT_RECORDED, t.LOAN_CLOSED, t.BUSINESS_DAY_CLOSED,
]  # fmt: skip
OUTBOUND = [
    t.STAGE_CHANGED, t.CASE_ASSIGNED, t.CASE_UNASSIGNED, t.REPAYMENT_APPLIED,
    t.REPAYMENT_UNAPPLIED, t.PROMISE_KEPT, t.PROMISE_BROKEN, t.CONTACT_ATTEMPTED,
    t.SCORECARD_UPDATED,
]  # fmt: skip
ALL = INBOUND + OUTBOUND


def test_registry_covers_the_contract_and_samples_cover_the_registry():
    assert sorted(registry.type_names("inbound")) == sorted(INBOUND)
    assert sorted(registry.type_names("outbound")) == sorted(OUTBOUND)
    assert sorted(SAMPLES) == sorted(ALL)


@pytest.mark.parametrize(
    ("event_type", "topic"),
    [
        (t.LOAN_OPENED, topics.LOAN_EVENTS),
        (t.BORROWER_UPDATED, topics.LOAN_EVENTS),
        (t.COMPLAINT_RECORDED, topics.LOAN_EVENTS),
        (t.BUSINESS_DAY_CLOSED, topics.CALENDAR),
        (t.STAGE_CHANGED, topics.COLLECTION_STAGES),
        (t.CASE_UNASSIGNED, topics.COLLECTION_ASSIGNMENTS),
        (t.REPAYMENT_UNAPPLIED, topics.REPAYMENTS_APPLIED),
        (t.PROMISE_BROKEN, topics.PROMISE_OUTCOMES),
        (t.CONTACT_ATTEMPTED, topics.CONTACT_OUTCOMES),
        (t.SCORECARD_UPDATED, topics.COLLECTOR_SCORES),
    ],
)
def test_topic_routing(event_type, topic):
    assert registry.topic_for(event_type) == topic


@pytest.mark.parametrize("event_type", ALL)
def test_every_type_round_trips(event_type):
    raw = orjson.dumps(sample_cloudevent(event_type))
    event = parse_event(raw)
    assert isinstance(event, Event)
    assert event.type == event_type
    assert isinstance(event.data, registry.get(event_type).model)

    again = parse_event(event.to_json())
    assert again == event
    wire = orjson.loads(event.to_json())
    assert {k: v for k, v in wire["data"].items() if v is not None} == SAMPLES[event_type]
    assert wire["specversion"] == "1.0"
    assert wire["time"] == "2024-06-14T18:05:00+08:00"
    assert event.key == event.subject.encode()


@pytest.mark.parametrize("event_type", ALL)
def test_every_type_can_be_built_with_new_event(event_type):
    event = new_event(event_type, source="urn:qingshou:test", data=SAMPLES[event_type])
    assert event.subject == sample_cloudevent(event_type)["subject"]
    assert event.time.tzinfo is not None
    assert len(event.id) == 36
    assert parse_event(event.to_json()) == event
    # a model instance is accepted as is, not copied
    rebuilt = new_event(event_type, source="s", data=event.data, id=event.id, time=event.time)
    assert rebuilt.data is event.data


@pytest.mark.parametrize("event_type", ALL)
def test_fast_serialisation_writes_exactly_what_pydantic_writes(event_type):
    # Event.to_json hands the model's field dict to orjson; it must give pydantic's bytes
    event = parse_event(orjson.dumps(sample_cloudevent(event_type)))
    assert orjson.loads(event.to_json())["data"] == orjson.loads(event.data.model_dump_json())
    assert b'"data":' + event.data.model_dump_json().encode() in event.to_json()


def test_fast_serialisation_of_awkward_values():
    # exponent-form Decimals, a timestamp with microseconds in a non-UTC zone, null optionals
    data = dict(SAMPLES[t.CONTACT_ATTEMPTED], status="deferred",
                scheduled_for=datetime(2024, 6, 15, 9, 0, 0, 123456,
                                       tzinfo=ZoneInfo("America/New_York")))
    contact = new_event(t.CONTACT_ATTEMPTED, source="s", data=data)
    applied = new_event(t.REPAYMENT_APPLIED, source="s", data=dict(
        SAMPLES[t.REPAYMENT_APPLIED], amount=Decimal("1E+3"), to_arrears=Decimal("1000.0"),
        excess=Decimal("0E-4")))
    others = [new_event(t.CONTACT_ATTEMPTED, source="s", data=dict(data, scheduled_for=when))
              for when in (datetime(2024, 6, 15, 9, tzinfo=UTC),
                           datetime(2024, 6, 15, 9, 30, 1, 5,
                                    tzinfo=timezone(timedelta(hours=5, minutes=30))),
                           datetime(2024, 12, 31, 23, 59, 59, tzinfo=ZoneInfo("Asia/Shanghai")))]
    for event in (contact, applied, *others):  # orjson writes dates and timestamps itself
        assert b'"data":' + event.data.model_dump_json().encode() in event.to_json()
    assert orjson.loads(applied.to_json())["data"]["amount"] == "1000"


def test_parse_accepts_bytes_str_and_dict():
    envelope = sample_cloudevent(t.REPAYMENT_RECEIVED)
    as_bytes = parse_event(orjson.dumps(envelope))
    assert parse_event(orjson.dumps(envelope).decode()) == as_bytes
    assert parse_event(envelope) == as_bytes


def test_typed_values_in_data():
    event = parse_event(sample_cloudevent(t.REPAYMENT_RECEIVED))
    data = event.data
    assert data.amount == Decimal("5000.00")
    assert data.value_date == date(2024, 5, 20)
    assert data.channel == "transfer"
    assert event.time == datetime(2024, 6, 14, 10, 5, tzinfo=UTC)


def test_new_event_json_shape():
    event = new_event(
        t.REPAYMENT_RECEIVED,
        source="urn:qingshou:test",
        data=SAMPLES[t.REPAYMENT_RECEIVED],
        id="e-1",
        time=datetime(2024, 6, 1, 9, 0, tzinfo=UTC),
        extensions={"traceparent": "00-abc-def-01"},
    )
    wire = orjson.loads(event.to_json())
    assert wire["time"] == "2024-06-01T09:00:00+00:00"
    assert wire["data"]["amount"] == "5000.00"
    assert wire["data"]["value_date"] == "2024-05-20"
    assert wire["traceparent"] == "00-abc-def-01"
    assert wire["datacontenttype"] == "application/json"
    assert "dataversion" not in wire
    assert event.key == b"LN-2024-000123"


def test_extensions_survive_parsing():
    envelope = sample_cloudevent(t.LOAN_CLOSED) | {"partitionkey": "x", "seq": 7, "replay": True}
    event = parse_event(envelope)
    assert event.extensions == {"partitionkey": "x", "seq": 7, "replay": True}
    assert orjson.loads(event.to_json())["seq"] == 7


def test_optional_fields_may_be_absent_or_null():
    data = dict(SAMPLES[t.LOAN_OPENED])
    del data["relationship_manager_id"]
    data["branch_id"] = None
    opened = new_event(t.LOAN_OPENED, source="s", data=data).data
    assert opened.relationship_manager_id is None
    assert opened.branch_id is None
    complaint = dict(SAMPLES[t.COMPLAINT_RECORDED])
    del complaint["collector_id"]
    assert new_event(t.COMPLAINT_RECORDED, source="s", data=complaint).data.collector_id is None


def test_timestamp_forms_accepted():
    for stamp in ("2024-06-14T10:05:00Z", "2024-06-14T10:05:00.123456789+00:00",
                  "2024-06-14 18:05:00+08:00", "2024-06-14t10:05:00z"):  # fmt: skip
        event = parse_event(sample_cloudevent(t.LOAN_CLOSED) | {"time": stamp})
        assert event.time.utcoffset() is not None


def test_event_ids_we_create_are_distinct_version_4_uuids():
    import uuid

    from shared.events.codec import new_event_id

    ids = [new_event_id() for _ in range(20_000)]
    assert len(set(ids)) == len(ids)
    for text in ids[:500]:
        parsed = uuid.UUID(text)
        assert (parsed.version, parsed.variant, str(parsed)) == (4, uuid.RFC_4122, text)
