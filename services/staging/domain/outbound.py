"""Outbound event payloads (PRODUCT.md 3.3), JSON-ready: Decimal as string, dates ISO.

A few fields beyond 3.3 help consumers correct themselves: ``currency`` and ``arrears``, and on
repayment events ``reason`` (received, reversed, reallocated) and ``instalments`` (what the
payment paid, per instalment). A reallocation is published as ``repayment.unapplied`` of the old
allocation followed by ``repayment.applied`` of the new one, so a consumer that claws back on
unapplied and credits on applied ends with the right totals.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from services.staging.domain.ledger import Allocation
from services.staging.domain.loan import LoanState, StageChange
from services.staging.domain.promises import Promise
from services.staging.domain.values import iso
from shared.frozen import quick_init

TOPICS = {
    "stage.changed": "collection-stages",
    "case.assigned": "collection-assignments",
    "case.unassigned": "collection-assignments",
    "repayment.applied": "repayments-applied",
    "repayment.unapplied": "repayments-applied",
    "promise.kept": "promise-outcomes",
    "promise.broken": "promise-outcomes",
}


@quick_init
@dataclass(frozen=True)
class Emitted:
    type: str
    data: dict[str, Any]

    @property
    def topic(self) -> str:
        return TOPICS[self.type]


def stage_changed(state: LoanState, change: StageChange) -> Emitted:
    return stage_change(state.loan_id, state.borrower_id, state.product, state.arrears,
                        state.currency, change)


def stage_change(loan_id: str, borrower_id: str, product: str, arrears: Decimal, currency: str,
                 change: StageChange) -> Emitted:
    """``stage.changed`` from plain values (end of day's shortcut has no LoanState)."""
    return Emitted("stage.changed", {
        "loan_id": loan_id, "borrower_id": borrower_id, "product": product,
        "from_stage": change.from_stage, "to_stage": change.to_stage, "dpd": change.dpd,
        "arrears": str(arrears), "currency": currency,
        "business_date": iso(change.business_date), "reason": change.reason,
    })


def repayment(kind: str, state: LoanState, allocation: Allocation, value_date: date, *,
              dpd_before: int, reason: str) -> Emitted:
    return Emitted(kind, {
        "loan_id": state.loan_id, "payment_id": allocation.payment_id,
        "amount": str(allocation.amount), "to_arrears": str(allocation.to_arrears),
        "excess": str(allocation.excess), "currency": state.currency,
        "value_date": iso(value_date), "stage": state.stage, "dpd_before": dpd_before,
        "dpd_after": state.dpd,
        "collector_id": state.credited_to(allocation.payment_id, value_date), "reason": reason,
        "instalments": [{"instalment_no": no, "amount": str(part)}
                        for no, part in allocation.instalments],
    })


def promise_outcome(state: LoanState, promise: Promise) -> Emitted:
    return Emitted(f"promise.{promise.status}", {
        "loan_id": state.loan_id, "promise_id": promise.promise_id,
        "collector_id": promise.collector_id, "amount": str(promise.amount),
        "paid": str(promise.paid), "currency": state.currency, "due_on": iso(promise.due_on),
        "business_date": iso(promise.resolved_on),
    })


def assignment(kind: str, state: LoanState, collector_id: str | None, team: str | None,
               previous_collector_id: str | None) -> Emitted:
    return owner_change(kind, state.loan_id, state.stage, state.business_date, collector_id,
                        team, previous_collector_id)


def owner_change(kind: str, loan_id: str, stage: str, business_date: date,
                 collector_id: str | None, team: str | None,
                 previous_collector_id: str | None) -> Emitted:
    """``case.assigned``/``case.unassigned`` from plain values."""
    return Emitted(kind, {
        "loan_id": loan_id, "collector_id": collector_id, "team": team,
        "stage": stage, "business_date": iso(business_date),
        "previous_collector_id": previous_collector_id,
    })
