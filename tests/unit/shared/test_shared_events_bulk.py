"""BulkChecker vouches only for what parse_event accepts, and for the usual event of every type."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.events import EventError, parse_event, registry, sample_cloudevent
from shared.events.bulk import BulkChecker

INBOUND = registry.DEFAULT.type_names("inbound")
CHECKER = BulkChecker(types=INBOUND)

# values that tempt a checker: near-misses of the wire forms, other JSON types, odd characters
_TRICKY_TEXT = st.sampled_from([
    "", " ", "a b", "x\x00y", "tab\there", "é", "LN-1", "LN-1 ", "calendar", "1250.00", "-1.00",
    "0", "0.00", "1e3", "NaN", "2026-03-02", "2026-02-30", "2026-3-2", "20260302",
    "2026-03-02T10:15:00+08:00", "2026-03-02T10:15:00Z", "2026-03-02t10:15:00z",
    "2026-03-02 10:15:00+08:00", "2026-03-02T10:15:00", "2026-03-02T24:00:00Z",
    "2026-03-02T23:59:60Z", "2026-03-02T10:15:00.1234567Z", "2026-03-02T10:15:00.5+14:00",
    "2026-03-02T10:15:00+25:00", "2026-13-02T10:15:00Z", "CNY", "cny", "XXX", "transfer",
    "application/json", "application/json; charset=utf-8", "1.0", "1", "urn:x", "x" * 257,
])
_VALUE = st.one_of(_TRICKY_TEXT, st.text(max_size=12), st.integers(-2, 2), st.booleans(),
                   st.none(), st.floats(allow_nan=True), st.lists(st.integers(), max_size=2),
                   st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
_ATTRIBUTES = ["specversion", "id", "source", "type", "time", "subject", "datacontenttype",
               "dataschema", "dataversion", "extra"]


@st.composite
def _mutated(draw: st.DrawFn) -> dict[str, Any]:
    event = copy.deepcopy(sample_cloudevent(draw(st.sampled_from(INBOUND))))
    for _ in range(draw(st.integers(0, 3))):
        if draw(st.booleans()):
            name = draw(st.sampled_from(_ATTRIBUTES))
        else:
            event = {**event, "data": dict(event["data"])}
            name = None
            key = draw(st.sampled_from([*event["data"], "unknown_field"]))
        action = draw(st.sampled_from(["set", "drop"]))
        target = event if name is not None else event["data"]
        field = name if name is not None else key
        if action == "drop":
            target.pop(field, None)
        else:
            target[field] = draw(_VALUE)
    return event


def _accepted_key(event: Any) -> bytes | None:
    try:
        return parse_event(event).key
    except EventError:
        return None


@pytest.mark.parametrize("event_type", INBOUND)
def test_the_usual_event_of_every_inbound_type_is_vouched_for(event_type: str) -> None:
    # otherwise that type silently takes the slow path and the batch route loses its speed
    event = sample_cloudevent(event_type)
    assert CHECKER.valid([event]) == [True]
    assert _accepted_key(event) == event["subject"].encode()


def _single_mutations() -> list[dict[str, Any]]:
    """Every sample with one attribute or one data field set to each near miss, or dropped."""
    out = []
    values: list[Any] = [*_TRICKY_TEXT.elements, 1, 1.5, True, None, [], {}]  # type: ignore[attr-defined]
    for event_type in INBOUND:
        sample = sample_cloudevent(event_type)
        for field in [*_ATTRIBUTES, *(f"data.{k}" for k in sample["data"])]:
            for value in [*values, _DROP]:
                event = copy.deepcopy(sample)
                target = event["data"] if field.startswith("data.") else event
                name = field.removeprefix("data.")
                if value is _DROP:
                    target.pop(name, None)
                else:
                    target[name] = value
                out.append(event)
    return out


_DROP = object()


def test_no_single_near_miss_is_vouched_for_unless_parse_event_takes_it() -> None:
    events = _single_mutations()
    verdicts = CHECKER.valid(events)
    wrong = [e for e, vouched in zip(events, verdicts, strict=True)
             if vouched and _accepted_key(e) != e["subject"].encode()]
    assert not wrong, wrong[:3]
    # and the checker is not merely refusing everything: many near misses are still fine
    assert sum(verdicts) > len(INBOUND) * 10


@settings(max_examples=600, deadline=None)
@given(st.lists(_mutated(), min_size=1, max_size=6))
def test_a_vouched_item_is_one_parse_event_accepts_with_the_subject_as_key(events) -> None:
    verdicts = CHECKER.valid(events)
    assert verdicts == [CHECKER.valid([e])[0] for e in events]  # the index of each error
    for event, vouched in zip(events, verdicts, strict=True):
        if vouched:
            assert _accepted_key(event) == event["subject"].encode(), event


def test_what_is_not_a_mapping_or_of_another_type_is_left_to_parse_event() -> None:
    outbound = sample_cloudevent(registry.DEFAULT.type_names("outbound")[0])
    assert CHECKER.valid([None, [], "x", outbound, sample_cloudevent(INBOUND[0])]) == [
        False, False, False, False, True]
