"""Builders of the CloudEvents the incentives domain reads, with unique ids per call."""

from __future__ import annotations

import itertools
from datetime import date
from decimal import Decimal
from typing import Any

_ids = itertools.count(1)


def envelope(type_: str, data: dict[str, Any], *, event_id: str | None = None) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": event_id or f"evt-{next(_ids)}",
        "source": "staging",
        "type": type_,
        "time": "2025-03-01T00:00:00+08:00",
        "subject": data.get("loan_id", "calendar"),
        "data": data,
    }


def applied(
    to_arrears: str | Decimal,
    value_date: date,
    *,
    collector_id: str | None = "c1",
    stage: str = "early",
    excess: str = "0.00",
    loan_id: str = "L1",
    event_id: str | None = None,
    type_: str = "repayment.applied",
) -> dict[str, Any]:
    arrears = Decimal(to_arrears)
    data: dict[str, Any] = {
        "loan_id": loan_id,
        "payment_id": f"p-{next(_ids)}",
        "amount": str(arrears + Decimal(excess)),
        "to_arrears": str(arrears),
        "excess": excess,
        "value_date": value_date.isoformat(),
        "stage": stage,
        "dpd_before": 12,
        "dpd_after": 0,
    }
    if collector_id is not None:
        data["collector_id"] = collector_id
    return envelope(type_, data, event_id=event_id)


def unapplied(original: dict[str, Any], *, event_id: str | None = None) -> dict[str, Any]:
    return envelope("repayment.unapplied", dict(original["data"]), event_id=event_id)


def assigned(
    collector_id: str,
    on: date,
    *,
    loan_id: str = "L1",
    team: str = "negotiation",
    previous: str | None = None,
) -> dict[str, Any]:
    return envelope(
        "case.assigned",
        {
            "loan_id": loan_id,
            "collector_id": collector_id,
            "team": team,
            "stage": "negotiation",
            "business_date": on.isoformat(),
            "previous_collector_id": previous,
        },
    )


def unassigned(collector_id: str, on: date, *, loan_id: str = "L1") -> dict[str, Any]:
    return envelope(
        "case.unassigned",
        {
            "loan_id": loan_id,
            "collector_id": collector_id,
            "team": "negotiation",
            "stage": "current",
            "business_date": on.isoformat(),
            "previous_collector_id": None,
        },
    )


def stage_changed(
    from_stage: str,
    to_stage: str,
    on: date,
    *,
    reason: str = "repayment",
    arrears: str = "0.00",
    loan_id: str = "L1",
) -> dict[str, Any]:
    return envelope(
        "stage.changed",
        {
            "loan_id": loan_id,
            "borrower_id": "B1",
            "product": "consumer_loan",
            "from_stage": from_stage,
            "to_stage": to_stage,
            "dpd": 0 if to_stage == "current" else 35,
            "arrears": arrears,
            "currency": "CNY",
            "business_date": on.isoformat(),
            "reason": reason,
        },
    )


def promise(type_: str, due_on: date, *, collector_id: str = "c1", loan_id: str = "L1"):
    data = {
        "loan_id": loan_id,
        "promise_id": f"pr-{next(_ids)}",
        "collector_id": collector_id,
        "amount": "500.00",
        "due_on": due_on.isoformat(),
    }
    if type_ != "promise.made":
        data["paid"] = "500.00" if type_ == "promise.kept" else "100.00"
    return envelope(type_, data)


def complaint(severity: str, *, collector_id: str | None = "c1", loan_id: str = "L1"):
    data = {"loan_id": loan_id, "complaint_id": f"cp-{next(_ids)}", "severity": severity}
    if collector_id is not None:
        data["collector_id"] = collector_id
    data["note"] = "rude call"
    return envelope("complaint.recorded", data)
