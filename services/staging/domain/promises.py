"""Promises to pay, evaluated by replay like the ledger.

Decisions:

- A repayment counts toward the promises made *before it arrived* whose ``due_on`` is on or
  after its value date and that are still open when it arrives, oldest promise first; the whole
  amount counts (excess included: the borrower did pay what they promised).
- A promise is kept on the business date the payment completing it arrives ("at once").
- Deadline: ``due_on + promise_grace_days`` (calendar days). The business date is the day the
  loan is at; ``business_day.closed(X)`` moves it to ``X``. A promise still short once the
  business date is after the deadline is broken, dated ``deadline + 1``. The grace days let a
  payment value-dated on or before ``due_on`` that arrives late still count.
- Outcomes are derived from the surviving payments, so a reversal un-counts its payment: a kept
  promise can become broken (deadline passed: ``promise.broken`` is published and supersedes the
  earlier ``promise.kept`` downstream) or open again (nothing is published until it resolves
  anew). A reversal only removes money, so a broken promise never becomes kept.
- When the loan closes, open promises are ``cancelled`` without an outcome: a sale or a
  restructuring is not the collector's broken promise.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from services.staging.domain.ledger import Payment
from services.staging.domain.values import ZERO, day, from_iso, iso
from shared.frozen import quick_init

OPEN, KEPT, BROKEN, CANCELLED = "open", "kept", "broken", "cancelled"


@quick_init
@dataclass(frozen=True)
class Promise:
    promise_id: str
    collector_id: str
    amount: Decimal
    due_on: date
    made_on: date
    seq: int
    status: str = OPEN
    paid: Decimal = ZERO
    resolved_on: date | None = None

    def deadline(self, grace_days: int) -> date:
        return self.due_on + timedelta(days=grace_days)

    def to_dict(self) -> dict[str, Any]:
        return {
            "promise_id": self.promise_id, "collector_id": self.collector_id,
            "amount": str(self.amount), "due_on": iso(self.due_on), "made_on": iso(self.made_on),
            "seq": self.seq, "status": self.status, "paid": str(self.paid),
            "resolved_on": iso(self.resolved_on),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Promise:
        return cls(d["promise_id"], d["collector_id"], Decimal(d["amount"]),
                   day(d["due_on"]), day(d["made_on"]), d["seq"],
                   d["status"], Decimal(d["paid"]), from_iso(d["resolved_on"]))


def evaluate_promises(promises: Iterable[Promise], payments: Iterable[Payment], grace_days: int,
                      on: date) -> tuple[Promise, ...]:
    """Every promise's ``paid`` and status from the surviving payments, as of date ``on``."""
    ordered = sorted(promises, key=lambda p: p.seq)
    state = {
        p.promise_id: replace(p, status=OPEN, paid=ZERO, resolved_on=None)
        for p in ordered if p.status != CANCELLED
    }
    for payment in sorted(payments, key=lambda p: p.seq):
        remaining = payment.amount
        for promise in ordered:
            current = state.get(promise.promise_id)
            if remaining <= 0 or current is None or current.status != OPEN:
                continue
            if not (promise.seq < payment.seq and payment.value_date <= promise.due_on
                    and payment.received_on <= promise.deadline(grace_days)):
                continue
            take = min(remaining, promise.amount - current.paid)
            remaining -= take
            paid = current.paid + take
            kept = paid >= promise.amount
            state[promise.promise_id] = replace(current, paid=paid, status=KEPT if kept else OPEN,
                                                resolved_on=payment.received_on if kept else None)
    result = []
    for promise in ordered:
        current = state.get(promise.promise_id, promise)
        deadline = current.deadline(grace_days)
        if current.status == OPEN and on > deadline:
            current = replace(current, status=BROKEN, resolved_on=deadline + timedelta(days=1))
        result.append(current)
    return tuple(result)


def promise_outcomes(before: Iterable[Promise], after: Iterable[Promise]) -> list[Promise]:
    """The promises newly kept or broken: each deserves a ``promise.kept``/``promise.broken``."""
    previous = {p.promise_id: p.status for p in before}
    return [
        p for p in after
        if p.status in (KEPT, BROKEN) and previous.get(p.promise_id) != p.status
    ]
