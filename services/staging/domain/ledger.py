"""A loan's ledger: missed instalments, repayments, and how each repayment was allocated.

The ledger stores its inputs, not its results: the instalments and the surviving payments in
arrival order. Allocation is a replay of that sequence (oldest unpaid due date first, ties by
instalment number; what is left of a payment is ``excess``), so removing a reversed payment and
replaying gives, by construction, the ledger of a loan that never saw the payment.

Decisions:

- ``excess`` is not carried forward as a credit: core banking nets credits into the next
  ``payment.missed`` it sends, so carrying it here would count the money twice.
- A ``payment.missed`` for an instalment already recorded is core banking's correction of that
  instalment (new due date and amount unpaid at due date). It replaces the record in place, at
  the position of the first report, and every payment is re-allocated by replay; payments whose
  allocation moves are reported as reallocations. ``amount_unpaid`` is read as the instalment's
  unpaid amount at its due date, before the repayments this ledger has applied.
- A payment's ``value_date`` does not change allocation order (arrival order does); it decides
  the collector credited and whether the payment counts toward a promise.
- Reversed payment ids stay known so a re-sent ``repayment.received`` with the same id is a
  duplicate and a second reversal is refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from services.staging.domain.errors import Rejected
from services.staging.domain.values import ZERO, day, iso
from shared.frozen import quick_init

Money = Decimal


@quick_init
@dataclass(frozen=True)
class Instalment:
    instalment_no: int
    due_date: date
    amount_unpaid: Money  # at due date, as core banking last reported it


@quick_init
@dataclass(frozen=True)
class Payment:
    payment_id: str
    amount: Money
    value_date: date
    received_on: date  # business date of arrival: promises use it
    seq: int  # the loan's arrival counter: orders payments against promises


@quick_init
@dataclass(frozen=True)
class Allocation:
    """What one payment paid: per instalment, in application order, and the excess."""

    payment_id: str
    amount: Money
    instalments: tuple[tuple[int, Money], ...]
    excess: Money

    @property
    def to_arrears(self) -> Money:
        return sum((part for _, part in self.instalments), ZERO)

    def to_dict(self) -> dict[str, Any]:
        return {
            "payment_id": self.payment_id,
            "amount": str(self.amount),
            "to_arrears": str(self.to_arrears),
            "excess": str(self.excess),
            "instalments": [
                {"instalment_no": no, "amount": str(part)} for no, part in self.instalments
            ],
        }


@quick_init
@dataclass(frozen=True)
class Reallocation:
    """A surviving payment whose allocation moved because another entry changed."""

    before: Allocation
    after: Allocation


@quick_init
@dataclass(frozen=True)
class _View:
    unpaid: Mapping[int, Money]
    due: Mapping[int, date]
    allocations: Mapping[str, Allocation]
    # derived once per replay: every evaluation reads them several times
    arrears: Money
    oldest_unpaid_due_date: date | None


def _allocate(payment: Payment, unpaid: dict[int, Money], due: Mapping[int, date]) -> Allocation:
    """Apply ``payment`` to ``unpaid`` (changed in place): oldest due date first, ties by
    instalment number; what is left is the excess."""
    remaining = payment.amount
    parts: list[tuple[int, Money]] = []
    owed = [n for n, u in unpaid.items() if u > 0]
    if len(owed) > 1:
        owed.sort(key=lambda n: (due[n], n))
    for no in owed:
        if remaining <= 0:
            break
        left = unpaid[no]
        take = left if left < remaining else remaining  # min(): ties keep the payment's
        unpaid[no] = left - take
        remaining -= take
        parts.append((no, take))
    return Allocation(payment.payment_id, payment.amount, tuple(parts), remaining)


def _view(unpaid: dict[int, Money], due: Mapping[int, date],
          allocations: Mapping[str, Allocation]) -> _View:
    oldest = min((due[no] for no, left in unpaid.items() if left > 0), default=None)
    return _View(unpaid, due, allocations, sum(unpaid.values(), ZERO), oldest)


def _replay(entries: tuple[Instalment | Payment, ...]) -> _View:
    unpaid: dict[int, Money] = {}
    due: dict[int, date] = {}
    allocations: dict[str, Allocation] = {}
    for entry in entries:
        if isinstance(entry, Instalment):
            unpaid[entry.instalment_no] = entry.amount_unpaid
            due[entry.instalment_no] = entry.due_date
        else:
            allocations[entry.payment_id] = _allocate(entry, unpaid, due)
    return _view(unpaid, due, allocations)


def _extended(view: _View, entry: Instalment | Payment) -> _View:
    """The view of the entries of ``view`` followed by ``entry``, without a replay: a new
    last entry leaves every earlier allocation as it was (allocation follows arrival order),
    so the replay's last step is all that changes. For a new instalment number only; a
    correction of a known one replays. The dicts of ``view`` are not changed (views are
    never changed once made, so the new view may share the ones it does not change)."""
    unpaid = dict(view.unpaid)
    if isinstance(entry, Instalment):
        amount, due = entry.amount_unpaid, entry.due_date
        unpaid[entry.instalment_no] = amount
        oldest = view.oldest_unpaid_due_date
        if amount > 0 and (oldest is None or due < oldest):
            oldest = due
        # the replay's sum adds the new last value to the same running total
        return _View(unpaid, {**view.due, entry.instalment_no: due}, view.allocations,
                     view.arrears + amount, oldest)
    allocation = _allocate(entry, unpaid, view.due)
    return _view(unpaid, view.due, {**view.allocations, entry.payment_id: allocation})


_NO_ENTRIES = _replay(())  # every new loan's view (views are never changed once made)


@quick_init
@dataclass(frozen=True)
class Ledger:
    currency: str
    entries: tuple[Instalment | Payment, ...] = ()
    reversed_ids: frozenset[str] = frozenset()
    _view: _View = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_view", _replay(self.entries) if self.entries else _NO_ENTRIES)

    def _with(self, entry: Instalment | Payment) -> Ledger:
        """This ledger with ``entry`` appended (a payment, or an instalment of a new number),
        its view extended rather than replayed; equal to ``Ledger(currency, entries + (entry,),
        reversed_ids)``."""
        new = object.__new__(Ledger)
        values = new.__dict__  # frozen: fields go in the instance dict, as __init__ puts them
        values["currency"] = self.currency
        values["entries"] = (*self.entries, entry)
        values["reversed_ids"] = self.reversed_ids
        values["_view"] = _extended(self._view, entry)
        return new

    @property
    def arrears(self) -> Money:
        return self._view.arrears

    @property
    def oldest_unpaid_due_date(self) -> date | None:
        return self._view.oldest_unpaid_due_date

    def unpaid(self, instalment_no: int) -> Money:
        return self._view.unpaid.get(instalment_no, ZERO)

    @property
    def instalments(self) -> tuple[Instalment, ...]:
        return tuple(e for e in self.entries if isinstance(e, Instalment))

    @property
    def payments(self) -> tuple[Payment, ...]:
        return tuple(e for e in self.entries if isinstance(e, Payment))

    def payment(self, payment_id: str) -> Payment | None:
        if payment_id not in self._view.allocations:  # every surviving payment has one
            return None
        return next(e for e in self.entries
                    if isinstance(e, Payment) and e.payment_id == payment_id)

    def allocation(self, payment_id: str) -> Allocation:
        return self._view.allocations[payment_id]

    @property
    def allocations(self) -> Mapping[str, Allocation]:
        return self._view.allocations

    def to_dict(self) -> dict[str, Any]:
        entries: list[dict[str, Any]] = []
        for e in self.entries:
            if isinstance(e, Instalment):
                entries.append({"instalment_no": e.instalment_no,
                                "due_date": iso(e.due_date),
                                "amount_unpaid": str(e.amount_unpaid)})
            else:
                entries.append({"payment_id": e.payment_id, "amount": str(e.amount),
                                "value_date": iso(e.value_date),
                                "received_on": iso(e.received_on), "seq": e.seq})
        return {"currency": self.currency, "entries": entries,
                "reversed_ids": sorted(self.reversed_ids)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Ledger:
        entries: list[Instalment | Payment] = []
        for e in data["entries"]:
            if "instalment_no" in e:
                entries.append(Instalment(e["instalment_no"], day(e["due_date"]),
                                          Decimal(e["amount_unpaid"])))
            else:
                entries.append(Payment(e["payment_id"], Decimal(e["amount"]),
                                       day(e["value_date"]),
                                       day(e["received_on"]), e["seq"]))
        return cls(data["currency"], tuple(entries), frozenset(data.get("reversed_ids", ())))


@quick_init
@dataclass(frozen=True)
class LedgerChange:
    """The new ledger and what moved: the subject payment's allocation and everyone else's."""

    ledger: Ledger
    applied: Allocation | None = None  # the received payment's allocation
    unapplied: Allocation | None = None  # what the reversed payment had applied
    reallocations: tuple[Reallocation, ...] = ()


def _change(before: Ledger, after: Ledger, subject: str | None = None, **kw: Any) -> LedgerChange:
    moved = tuple(
        Reallocation(old, after.allocations[pid])
        for pid, old in before.allocations.items()
        if pid != subject and pid in after.allocations and after.allocations[pid] != old
    )
    return LedgerChange(after, reallocations=moved, **kw)


def record_missed_payment(ledger: Ledger, instalment_no: int, due_date: date,
                          amount_unpaid: Money) -> LedgerChange:
    """Add an instalment, or correct one already known (in place, then re-allocate)."""
    if isinstance(instalment_no, bool) or not isinstance(instalment_no, int) or instalment_no < 1:
        raise Rejected("invalid_instalment", "instalment_no must be a positive integer")
    known = instalment_no in ledger._view.due  # every recorded instalment has a due date
    if amount_unpaid < 0 or (amount_unpaid == 0 and not known):
        raise Rejected("invalid_amount", "amount_unpaid must be positive")
    record = Instalment(instalment_no, due_date, amount_unpaid)
    if not known:  # appended: no earlier allocation moves
        return LedgerChange(ledger._with(record))
    entries = tuple(
        record if isinstance(e, Instalment) and e.instalment_no == instalment_no else e
        for e in ledger.entries
    )
    return _change(ledger, Ledger(ledger.currency, entries, ledger.reversed_ids))


def record_repayment(ledger: Ledger, payment_id: str, amount: Money, currency: str,
                     value_date: date, *, received_on: date, seq: int) -> LedgerChange:
    """Apply a repayment to the oldest unpaid due dates; the rest is excess."""
    if currency != ledger.currency:
        raise Rejected("currency_mismatch", f"{currency} on a {ledger.currency} loan")
    if amount <= 0:
        raise Rejected("invalid_amount", "amount must be positive")
    if payment_id in ledger._view.allocations or payment_id in ledger.reversed_ids:
        raise Rejected("duplicate_payment", payment_id)
    after = ledger._with(Payment(payment_id, amount, value_date, received_on, seq))
    # appended: no earlier allocation moves
    return LedgerChange(after, applied=after.allocation(payment_id))


def reverse_repayment(ledger: Ledger, payment_id: str) -> LedgerChange:
    """Remove a payment as if it had never come; later payments are re-allocated by replay."""
    if payment_id in ledger.reversed_ids:
        raise Rejected("already_reversed", payment_id)
    if payment_id not in ledger._view.allocations:
        raise Rejected("unknown_payment", payment_id)
    entries = tuple(
        e for e in ledger.entries if not (isinstance(e, Payment) and e.payment_id == payment_id)
    )
    after = Ledger(ledger.currency, entries, ledger.reversed_ids | {payment_id})
    return _change(ledger, after, payment_id, unapplied=ledger.allocation(payment_id))
