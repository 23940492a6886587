"""BulkChecker vouches only for what parse_event accepts, and for the usual event of every type."""

from __future__ import annotations

import copy
import types
from collections.abc import Callable, Iterator, Mapping
from enum import StrEnum
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import Field

from shared.events import EventError, parse_event, registry, sample_cloudevent
from shared.events.base import EventData
from shared.events.bulk import BulkChecker
from shared.money import PositiveMoney

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


class _AlwaysEqual(str):
    def __eq__(self, other: object) -> bool:
        return True

    __hash__ = str.__hash__


class _OtherKey(str):
    def encode(self, *args: Any, **kwargs: Any) -> bytes:  # type: ignore[override]
        return b"another key"


class _Shouting(str):
    def upper(self) -> str:  # type: ignore[override]
        return "not a time"


class _Mapping(Mapping[str, Any]):
    def __init__(self, d: dict[str, Any]) -> None:
        self._d = d

    def __getitem__(self, key: str) -> Any:
        return self._d[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._d)

    def __len__(self) -> int:
        return len(self._d)


def _with(change: Callable[[dict[str, Any]], Any]) -> Any:
    event = copy.deepcopy(sample_cloudevent("repayment.received"))
    return change(event) or event


@pytest.mark.parametrize("event", [
    # pydantic-core reads these by their contents, parse_event through their methods
    _with(lambda e: _Mapping(e)),
    _with(lambda e: types.MappingProxyType(e)),
    _with(lambda e: e.update(subject=_AlwaysEqual("LN-someone-else"))),
    _with(lambda e: e.update(subject=_OtherKey(e["subject"]))),
    _with(lambda e: e.update(time=_Shouting(e["time"]))),
    _with(lambda e: e["data"].update(loan_id=_AlwaysEqual("LN-someone-else"))),
], ids=["mapping", "mappingproxy", "subject-eq", "subject-encode", "time-upper", "data-eq"])
def test_python_objects_that_only_look_like_json_are_left_to_parse_event(event: Any) -> None:
    vouched = CHECKER.valid([event]) == [True]
    assert not vouched or _accepted_key(event) == event["subject"].encode()


class _Mood(StrEnum):
    UP = "up"
    DOWN = "down"


class _TwoMoods(EventData):
    loan_id: str
    before: _Mood
    after: _Mood


class _MoreMoods(EventData):
    loan_id: str
    first: _Mood
    last: _Mood


class _Aliased(EventData):
    loan_id: str
    amount: PositiveMoney = Field(alias="amt")


class _Checked(EventData):
    loan_id: str
    amount: PositiveMoney

    def model_post_init(self, context: Any, /) -> None:
        if self.amount > 100:
            raise ValueError("too much")


def _made_up_registry() -> registry.Registry:
    reg = registry.Registry()
    made_up: list[tuple[str, type[EventData]]] = [
        ("x.moods", _TwoMoods), ("x.more", _MoreMoods), ("x.aliased", _Aliased),
        ("x.checked", _Checked)]
    for name, model in made_up:
        reg.register(name, model, topic="t", direction="inbound", subject_field="loan_id")
    return reg


def _made_up(event_type: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"specversion": "1.0", "id": "1", "source": "urn:x", "type": event_type,
            "time": "2026-03-02T10:15:00Z", "subject": "LN-1", "data": {"loan_id": "LN-1", **data}}


def test_models_of_other_shapes_keep_their_rules() -> None:
    # two types with an enum used twice each (both schemas come with a "definitions" list),
    # a field alias, a model_post_init: the checker builds, and vouches only for what passes
    reg = _made_up_registry()
    checker = BulkChecker(reg)
    events = [_made_up("x.moods", {"before": "up", "after": "down"}),
              _made_up("x.more", {"first": "up", "last": "sideways"}),
              _made_up("x.aliased", {"amt": "1.00"}),
              _made_up("x.aliased", {"amount": "1.00"}),
              _made_up("x.checked", {"amount": "1.00"}),
              _made_up("x.checked", {"amount": "1000.00"})]
    verdicts = checker.valid(events)

    def accepted(event: dict[str, Any]) -> bool:
        try:
            parse_event(event, registry=reg)
        except EventError:
            return False
        return True

    assert [accepted(e) for e in events] == [True, False, True, False, True, False]
    assert verdicts[0] and verdicts[2]
    assert not any(v and not accepted(e) for e, v in zip(events, verdicts, strict=True))
