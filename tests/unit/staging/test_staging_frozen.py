"""quick_init builds the same frozen values as the dataclass-generated __init__."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest

from services.staging.domain import (
    assignment,
    flags,
    handlers,
    ledger,
    loan,
    outbound,
    policy,
    promises,
)
from shared.events import Event
from shared.frozen import quick_init
from shared.inbox import InboxKey


def both(cls: type, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
    quick = cls(*args, **kwargs)
    generated = object.__new__(cls)
    cls._generated_init(generated, *args, **kwargs)
    return quick, generated


@quick_init
@dataclass(frozen=True)
class Sample:
    a: int
    b: str = "b"
    c: dict[str, int] = field(default_factory=dict)
    d: int = field(init=False, default=4)
    e: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "e", self.a + self.d)


@pytest.mark.parametrize("args,kwargs", [((1,), {}), ((1, "x", {"k": 2}), {}),
                                         ((), {"a": 3, "c": {}}), ((2,), {"b": "y"})])
def test_same_values_defaults_factories_and_post_init(args, kwargs):
    quick, generated = both(Sample, *args, **kwargs)
    assert quick.__dict__ == generated.__dict__ and quick == generated
    assert hash(dataclasses.replace(quick, c=None)) == hash(dataclasses.replace(generated, c=None))
    assert Sample(1).c is not Sample(1).c  # a fresh default per instance
    with pytest.raises(dataclasses.FrozenInstanceError):
        quick.a = 5


def test_refuses_what_it_does_not_handle():
    @dataclass(frozen=True, slots=True)
    class Slotted:
        a: int

    @dataclass(frozen=True, kw_only=True)
    class KeywordOnly:
        a: int

    for cls in (Slotted, KeywordOnly):
        with pytest.raises(TypeError):
            quick_init(cls)


def test_every_decorated_domain_class_matches_its_generated_init():
    day = date(2026, 1, 5)
    change = ledger.Instalment(1, day, Decimal("10.00"))
    pay = ledger.Payment("p1", Decimal("4.00"), day, day, 1)
    samples: list[tuple[type, tuple[Any, ...]]] = [
        (ledger.Instalment, (1, day, Decimal("10.00"))),
        (ledger.Payment, ("p1", Decimal("4.00"), day, day, 1)),
        (ledger.Ledger, ("CNY", (change, pay), frozenset({"p0"}))),
        (ledger.Ledger, ("CNY",)),
        (loan.StageChange, ("early", "negotiation", 31, "aging", day)),
        (loan.Owner, ()), (loan.OwnerPeriod, (day, "c1")),
        (loan.LoanState, ("L1", "B1", "credit_card", "CNY", Decimal("1"), day, day)),
        (flags.Flags, ()), (flags.Flag, ("dispute", day)),
        (promises.Promise, ("pr", "c1", Decimal("5"), day, day, 2)),
        (assignment.CollectorLoad, ("c1", "legal", 3, True, 1)),
        (assignment.AssignmentRequest, ("L1", "legal", "team", "legal", None, None, day)),
        (outbound.Emitted, ("stage.changed", {"loan_id": "L1"})),
        (handlers.Outcome, (loan.LoanState("L1", "B1", "p", "CNY", Decimal("1"), day, day),)),
        (policy.StageRule, ("early", 1, 30, "automated", None, False)),
    ]
    decorated = {cls for module in (assignment, flags, handlers, ledger, loan, outbound, policy,
                                    promises)
                 for cls in vars(module).values()
                 if isinstance(cls, type) and "_generated_init" in cls.__dict__}
    assert decorated - {cls for cls, _ in samples} <= {
        ledger.Allocation, ledger.Reallocation, ledger._View, ledger.LedgerChange,
        policy.Policy, policy.PolicySet}
    for cls, args in samples:
        quick, generated = both(cls, *args)
        assert quick.__dict__ == generated.__dict__, cls


def test_the_runtimes_event_and_inbox_key_match_their_generated_init():
    when = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)
    for cls, args, kwargs in [
            (Event, ("t", "urn:s", "id-1", when, "L1", None), {}),
            (Event, ("t", "urn:s", "id-1", when, "L1", None, 2, None, "urn:schema"),
             {"extensions": {"x": 1}}),
            (Event, (), {"type": "t", "source": "urn:s", "id": "i", "time": when,
                         "subject": "L1", "data": None, "datacontenttype": None}),
            (InboxKey, ("urn:s", "id-1", "loan-events", 3, 42), {})]:
        quick, generated = both(cls, *args, **kwargs)
        assert quick.__dict__ == generated.__dict__ and quick == generated, cls
        with pytest.raises(dataclasses.FrozenInstanceError):
            quick.id = "other"
