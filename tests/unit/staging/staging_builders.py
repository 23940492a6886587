"""Plain-value builders for the staging domain tests."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

from services.staging.domain.handlers import (
    Outcome,
    age_to,
    apply_assignment,
    apply_flag_cleared,
    apply_flag_raised,
    apply_payment_missed,
    apply_promise_made,
    apply_repayment_received,
    apply_repayment_reversed,
    open_loan,
)
from services.staging.domain.loan import LoanState
from services.staging.domain.policy import DEFAULT_POLICY, Policy

D0 = date(2026, 1, 1)


def day(n: int) -> date:
    return D0 + timedelta(days=n)


def new_loan(rm: str | None = "rm-1", policy: Policy = DEFAULT_POLICY) -> LoanState:
    return open_loan(
        {"loan_id": "L1", "borrower_id": "B1", "product": "consumer_loan", "currency": "CNY",
         "principal": "10000.00", "opened_on": D0.isoformat(), "relationship_manager_id": rm},
        D0, policy,
    ).state


def missed(state: LoanState, no: int, due: date, amount: str, on: date | None = None,
           policy: Policy = DEFAULT_POLICY) -> Outcome:
    data = {"loan_id": "L1", "instalment_no": no, "due_date": due.isoformat(),
            "amount_due": amount, "amount_unpaid": amount}
    return apply_payment_missed(state, data, on or state.business_date, policy)


def repay(state: LoanState, pid: str, amount: str, on: date | None = None,
          value_date: date | None = None, currency: str = "CNY",
          policy: Policy = DEFAULT_POLICY) -> Outcome:
    on = on or state.business_date
    data = {"loan_id": "L1", "payment_id": pid, "amount": amount, "currency": currency,
            "value_date": (value_date or on).isoformat(), "channel": "transfer"}
    return apply_repayment_received(state, data, on, policy)


def reverse(state: LoanState, pid: str, on: date | None = None,
            policy: Policy = DEFAULT_POLICY) -> Outcome:
    data = {"loan_id": "L1", "payment_id": pid, "reason": "chargeback"}
    return apply_repayment_reversed(state, data, on or state.business_date, policy)


def flag(state: LoanState, name: str, on: date | None = None, until: date | None = None,
         policy: Policy = DEFAULT_POLICY) -> Outcome:
    data = {"loan_id": "L1", "flag": name, "note": "n",
            "until": until.isoformat() if until else None}
    return apply_flag_raised(state, data, on or state.business_date, policy)


def unflag(state: LoanState, name: str, on: date | None = None,
           policy: Policy = DEFAULT_POLICY) -> Outcome:
    return apply_flag_cleared(state, {"loan_id": "L1", "flag": name}, on or state.business_date,
                              policy)


def promise(state: LoanState, pid: str, amount: str, due_on: date, on: date | None = None,
            collector: str = "c-1", policy: Policy = DEFAULT_POLICY) -> Outcome:
    data = {"loan_id": "L1", "promise_id": pid, "collector_id": collector, "amount": amount,
            "due_on": due_on.isoformat()}
    return apply_promise_made(state, data, on or state.business_date, policy)


def age(state: LoanState, on: date, policy: Policy = DEFAULT_POLICY) -> Outcome:
    return age_to(state, on, policy)


def assign(state: LoanState, collector: str | None, team: str | None,
           policy: Policy = DEFAULT_POLICY) -> Outcome:
    return apply_assignment(state, collector, team, policy)


def types(outcome: Outcome) -> list[str]:
    return [e.type for e in outcome.events]


def of_type(outcome: Outcome, kind: str) -> list[dict]:
    return [e.data for e in outcome.events if e.type == kind]


def dec(value: str) -> Decimal:
    return Decimal(value)
