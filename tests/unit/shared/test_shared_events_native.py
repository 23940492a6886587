"""The native fast paths give what the Python ones give, and vouch for nothing they refuse.

BulkParser (the consumer's batch parse) against parse_event / check_envelope, OutboundJson
(BatchContext.emit) against new_event(...).to_json(), and the pydantic-core quirk that made
the first version of both silently fall back to the Python validators.
"""

from __future__ import annotations

import copy
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from enum import Enum
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared import money
from shared.events import (
    Event,
    EventError,
    check_envelope,
    new_event,
    parse_event,
    registry,
    sample_cloudevent,
)
from shared.events.bulk import build, native_schema
from shared.events.native import BulkParser, OutboundJson
from tests.unit.shared.test_shared_events_bulk import _mutated, _single_mutations

ALL = registry.DEFAULT.type_names()
INBOUND = registry.DEFAULT.type_names("inbound")
OUTBOUND = registry.DEFAULT.type_names("outbound")
SOURCE = "urn:qingshou:test"


# -- BulkParser ------------------------------------------------------------------------------

def _judged(parser_handles: set[str], item: Any) -> Event[Any] | tuple[str, str] | None:
    """What the Python path makes of one decoded item (None: it is poison)."""
    try:
        if type(item) is dict and item.get("type") not in parser_handles:
            _, source, event_id = check_envelope(item)
            return (source, event_id)
        return parse_event(item)
    except EventError:
        return None


def _agrees(parser: BulkParser, handled: set[str], items: list[Any]) -> None:
    for item, got in zip(items, parser.parse(items), strict=True):
        if got is not None:
            assert got == _judged(handled, item), item


@pytest.mark.parametrize("event_type", ALL)
def test_the_usual_event_of_every_type_is_parsed_natively_as_parse_event_parses_it(
        event_type: str) -> None:
    handled = BulkParser(ALL)
    event = sample_cloudevent(event_type)
    assert handled.parse([event]) == [parse_event(event)]
    skipping = BulkParser([])
    assert skipping.parse([event]) == [(event["source"], event["id"])]


def test_no_single_near_miss_is_parsed_unlike_parse_event() -> None:
    parser, handled = BulkParser(INBOUND), set(INBOUND)
    items = _single_mutations()
    results = parser.parse(items)
    _agrees(parser, handled, items)
    assert sum(r is not None for r in results) > len(INBOUND) * 10  # not refusing everything


@settings(max_examples=400, deadline=None)
@given(st.lists(_mutated(), min_size=1, max_size=6), st.sets(st.sampled_from(INBOUND)))
def test_a_parsed_item_is_what_parse_event_or_check_envelope_makes_of_it(events, handled):
    parser = BulkParser(sorted(handled))
    _agrees(parser, handled, events)
    # a bad neighbour changes nothing for the others
    assert parser.parse(events) == [parser.parse([e])[0] for e in events]


def test_what_orjson_did_not_decode_or_is_no_object_is_left_to_parse_event() -> None:
    parser = BulkParser(INBOUND)
    marker = object()
    good = sample_cloudevent(INBOUND[0])
    assert parser.parse([marker, None, [], "x", 1, good])[:5] == [None] * 5
    assert parser.parse([marker, good])[1] == parse_event(good)


def test_the_native_data_validator_calls_none_of_the_python_wire_validators(monkeypatch) -> None:
    # pydantic-core takes a complete model's own validator for a schema naming the model,
    # whatever the schema holds: the first version of these paths still ran every Python
    # validator and gained nothing
    calls = []
    real = money._check_decimal

    def counted(*args: Any) -> Any:
        calls.append(args)
        return real(*args)

    monkeypatch.setattr(money, "_check_decimal", counted)
    spec = registry.DEFAULT.get("repayment.received")
    validator = build(native_schema(spec.model.__pydantic_core_schema__))
    data = sample_cloudevent("repayment.received")["data"]
    assert validator.validate_python(data) == parse_event(
        sample_cloudevent("repayment.received")).data
    assert BulkParser(["repayment.received"]).parse(
        [sample_cloudevent("repayment.received")])[0] is not None
    calls.clear()
    validator.validate_python(data)
    BulkParser(["repayment.received"]).parse([sample_cloudevent("repayment.received")])
    assert calls == []
    # and the model classes are left as they were
    assert spec.model.__pydantic_complete__ is True
    assert spec.model.model_validate(data) == validator.validate_python(data)


# -- OutboundJson ----------------------------------------------------------------------------

OUT = OutboundJson()


def _python_data(event_type: str) -> dict[str, Any]:
    """A sample's data as a handler holds it: Decimals, dates, enums."""
    return dict(parse_event(sample_cloudevent(event_type)).data.__dict__)


def _without_id_and_time(body: bytes) -> dict[str, Any]:
    out = orjson.loads(body)
    assert datetime.fromisoformat(out.pop("time")).utcoffset() == timedelta(0)
    out.pop("id")
    return out  # type: ignore[no-any-return]


def _slow(event_type: str, subject: Any, data: Any) -> dict[str, Any] | None:
    try:
        event = new_event(event_type, source=SOURCE, subject=subject, data=data)
    except EventError:
        return None
    return _without_id_and_time(event.to_json())


@pytest.mark.parametrize("event_type", OUTBOUND)
def test_the_usual_event_of_every_outbound_type_is_written_natively_as_new_event_writes_it(
        event_type: str) -> None:
    # (inbound types are not emitted by the services; those with a list field never are
    # written natively, and the tests below cover them all the same)
    sample = sample_cloudevent(event_type)
    for data in (_python_data(event_type), sample["data"]):
        body = OUT.dumps(event_type, SOURCE, sample["subject"], data)
        assert body is not None, data
        assert _without_id_and_time(body) == _slow(event_type, sample["subject"], data)
        parsed = parse_event(body)
        assert parsed.data == parse_event(sample).data


@pytest.mark.parametrize("event_type", [t for t in ALL
                                        if any(not f.is_required() for f in registry.DEFAULT
                                               .get(t).model.model_fields.values())])
def test_a_field_left_out_is_written_with_the_models_default(event_type: str) -> None:
    model = registry.DEFAULT.get(event_type).model
    data = _python_data(event_type)
    subject = sample_cloudevent(event_type)["subject"]
    for name, info in model.model_fields.items():
        if not info.is_required():
            less = {k: v for k, v in data.items() if k != name}
            if _slow(event_type, subject, less) is None:
                continue  # a model validator needs it here (a deferral's time)
            body = OUT.dumps(event_type, SOURCE, subject, less)
            assert body is not None
            assert _without_id_and_time(body) == _slow(event_type, subject, less)


class _Colour(Enum):
    RED = "red"


_ODD: list[Any] = [
    Decimal("1E+3"), Decimal("1.00000"), Decimal("-0"), Decimal("-0.00"), Decimal("-1.00"),
    Decimal("0"), Decimal("NaN"), Decimal("Infinity"), Decimal("1234567890123456"),
    Decimal("0.0001"), Decimal("12.345"), "12.34", "-1", "1e3", 12, 12.5, True, None, "",
    " ", "x y", "x\x00", "é", "LN-1", "CNY", "cny", "XXX", date(2026, 3, 2),
    datetime(2026, 3, 2, 10, 15), datetime(2026, 3, 2, 10, 15, tzinfo=UTC),
    datetime(2026, 3, 2, 10, 15, 0, 500, tzinfo=timezone(timedelta(hours=8))),
    "2026-03-02", "2026-03-02T10:15:00+08:00", "2026-02-30", [], {}, (), _Colour.RED,
    "early", "current", "sms", "deferred", 0, -1, 2**40, 1.0, "x" * 129, "x" * 501,
]


@st.composite
def _outbound(draw: st.DrawFn) -> tuple[str, Any, Any]:
    event_type = draw(st.sampled_from(ALL))
    data: Any = _python_data(event_type)
    subject: Any = sample_cloudevent(event_type)["subject"]
    for _ in range(draw(st.integers(0, 3))):
        what = draw(st.sampled_from(["field", "drop", "extra", "subject"]))
        if what == "subject":
            subject = draw(st.sampled_from(["", "other", "x y", "é", "x\x00", "x\x7f", "x" * 256,
                                              "x" * 257, 1, None, subject]))
            continue
        key = draw(st.sampled_from([*data, "unknown_field"]))
        if what == "drop":
            data.pop(key, None)
        elif what == "extra":
            data["unknown_field"] = draw(st.sampled_from(_ODD))
        else:
            data[key] = draw(st.sampled_from(_ODD))
    return event_type, subject, data


@settings(max_examples=1500, deadline=None)
@given(_outbound())
def test_written_natively_only_what_new_event_accepts_and_writes_alike(case) -> None:
    event_type, subject, data = case
    body = OUT.dumps(event_type, SOURCE, subject, copy.copy(data))
    if body is not None:
        assert _without_id_and_time(body) == _slow(event_type, subject, data), (subject, data)


def test_no_single_odd_value_is_written_unlike_new_event() -> None:
    written = 0
    for event_type in ALL:
        subject = sample_cloudevent(event_type)["subject"]
        for key in _python_data(event_type):
            for value in _ODD:
                data = {**_python_data(event_type), key: value}
                body = OUT.dumps(event_type, SOURCE, subject, data)
                if body is not None:
                    written += 1
                    assert _without_id_and_time(body) == _slow(event_type, subject, data), (
                        event_type, key, value)
    assert written > len(ALL) * 10


def test_what_is_not_a_plain_dict_or_of_an_unknown_type_is_left_to_new_event() -> None:
    event_type = OUTBOUND[0]
    sample = sample_cloudevent(event_type)
    model = parse_event(sample).data
    assert OUT.dumps(event_type, SOURCE, sample["subject"], model) is None
    assert OUT.dumps("no.such.type", SOURCE, sample["subject"], sample["data"]) is None
    assert OUT.dumps(event_type, "urn:with space", sample["subject"], sample["data"]) is None
    assert OUT.dumps(event_type, "", sample["subject"], sample["data"]) is None
    assert OUT.dumps(event_type, SOURCE, "x\tab", sample["data"]) is None


def test_the_subject_is_checked_as_the_envelope_checks_it() -> None:
    # the attributes are not checked per event: the subject, the one a handler gives, is
    # checked in Python by new_event's own rule (shared.events.codec._subject_ok)
    event_type = next(t for t in OUTBOUND if registry.DEFAULT.get(t).subject_field)
    field = registry.DEFAULT.get(event_type).subject_field
    for subject in ("x", "x y", "~" * 256, "x" * 257, "", " ", "é", "x\x00", "x\x7f", "x\n"):
        data = {**_python_data(event_type), field: subject}
        body, slow = OUT.dumps(event_type, SOURCE, subject, data), _slow(event_type, subject, data)
        if body is not None:  # never looser than new_event
            assert _without_id_and_time(body) == slow, subject
        elif subject in ("x", "x y", "~" * 256):
            assert slow is None, subject


def test_a_model_that_fails_oddly_leaves_the_whole_batch_to_parse_event(monkeypatch) -> None:
    # a TypeError from a model's own code is no ValidationError: rather than fail the batch
    # (the runner would retry it for ever), every item goes to parse_event
    parser = BulkParser(INBOUND)

    class Odd:
        def validate_python(self, items: Any) -> Any:
            raise TypeError("not comparable")

    monkeypatch.setattr(parser, "_validator", Odd())
    assert parser.parse([sample_cloudevent(INBOUND[0])]) == [None]
