"""One valid example `data` per event type, in wire form.

Used by the tests (every type must round-trip) and by ingest's OpenAPI examples; keep them
realistic. `sample_cloudevent(type)` wraps one in a full structured-mode envelope.
"""

from __future__ import annotations

import copy
from typing import Any, Final

from shared.events import types as t
from shared.events.registry import DEFAULT, Registry

__all__ = ["SAMPLES", "SAMPLE_SOURCE", "sample_cloudevent"]

SAMPLE_SOURCE: Final = "urn:qingshou:sample"

_LOAN: Final = "LN-2024-000123"
_BORROWER: Final = "BR-88001"

SAMPLES: Final[dict[str, dict[str, Any]]] = {
    t.LOAN_OPENED: {
        "loan_id": _LOAN,
        "borrower_id": _BORROWER,
        "product": "consumer_loan",
        "currency": "CNY",
        "principal": "120000.00",
        "opened_on": "2024-01-15",
        "relationship_manager_id": "RM-017",
        "branch_id": "SH-PUDONG-03",
    },
    t.BORROWER_UPDATED: {
        "borrower_id": _BORROWER,
        "name": "王小明",
        "phone": "+8613812345678",
        "email": "xiaoming.wang@example.cn",
        "timezone": "Asia/Shanghai",
        "language": "zh-CN",
        "opted_out_channels": ["voice"],
        "vulnerable": False,
    },
    t.INSTALMENT_UPCOMING: {
        "loan_id": _LOAN,
        "instalment_no": 4,
        "due_date": "2024-05-15",
        "amount_due": "10500.00",
    },
    t.PAYMENT_MISSED: {
        "loan_id": _LOAN,
        "instalment_no": 4,
        "due_date": "2024-05-15",
        "amount_due": "10500.00",
        "amount_unpaid": "10500.00",
    },
    t.REPAYMENT_RECEIVED: {
        "loan_id": _LOAN,
        "payment_id": "PAY-20240520-0042",
        "amount": "5000.00",
        "currency": "CNY",
        "value_date": "2024-05-20",
        "channel": "transfer",
    },
    t.REPAYMENT_REVERSED: {
        "loan_id": _LOAN,
        "payment_id": "PAY-20240520-0042",
        "reason": "auto-debit returned: insufficient funds",
    },
    t.CASE_FLAG_RAISED: {
        "loan_id": _LOAN,
        "flag": "hardship",
        "note": "Borrower lost job; hardship plan under review",
        "until": "2024-07-31",
    },
    t.CASE_FLAG_CLEARED: {
        "loan_id": _LOAN,
        "flag": "hardship",
        "note": "Hardship plan agreed",
    },
    t.PROMISE_MADE: {
        "loan_id": _LOAN,
        "promise_id": "PRM-5531",
        "collector_id": "C-1042",
        "amount": "5500.00",
        "due_on": "2024-06-28",
    },
    t.COMPLAINT_RECORDED: {
        "loan_id": _LOAN,
        "complaint_id": "CMP-0098",
        "collector_id": "C-1042",
        "severity": "minor",
        "note": "Call made during lunch break after borrower asked for e-mail only",
    },
    t.LOAN_CLOSED: {"loan_id": _LOAN, "reason": "repaid"},
    t.BUSINESS_DAY_CLOSED: {"business_date": "2024-06-14"},
    t.STAGE_CHANGED: {
        "loan_id": _LOAN,
        "borrower_id": _BORROWER,
        "product": "consumer_loan",
        "from_stage": "early",
        "to_stage": "negotiation",
        "dpd": 31,
        "arrears": "10500.00",
        "currency": "CNY",
        "business_date": "2024-06-15",
        "reason": "aging",
    },
    t.CASE_ASSIGNED: {
        "loan_id": _LOAN,
        "collector_id": "C-1042",
        "team": "intensive",
        "stage": "intensive",
        "business_date": "2024-07-15",
        "previous_collector_id": "RM-017",
    },
    t.CASE_UNASSIGNED: {
        "loan_id": _LOAN,
        "collector_id": "RM-017",
        "team": "negotiation",
        "stage": "intensive",
        "business_date": "2024-07-15",
    },
    t.REPAYMENT_APPLIED: {
        "loan_id": _LOAN,
        "payment_id": "PAY-20240520-0042",
        "amount": "12000.00",
        "to_arrears": "10500.00",
        "excess": "1500.00",
        "currency": "CNY",
        "value_date": "2024-06-20",
        "stage": "negotiation",
        "dpd_before": 36,
        "dpd_after": 0,
        "collector_id": "RM-017",
    },
    t.REPAYMENT_UNAPPLIED: {
        "loan_id": _LOAN,
        "payment_id": "PAY-20240520-0042",
        "amount": "12000.00",
        "to_arrears": "10500.00",
        "excess": "1500.00",
        "currency": "CNY",
        "value_date": "2024-06-20",
        "stage": "current",
        "dpd_before": 0,
        "dpd_after": 38,
        "collector_id": "RM-017",
    },
    t.PROMISE_KEPT: {
        "loan_id": _LOAN,
        "promise_id": "PRM-5531",
        "collector_id": "C-1042",
        "amount": "5500.00",
        "paid": "5500.00",
        "currency": "CNY",
        "due_on": "2024-06-28",
    },
    t.PROMISE_BROKEN: {
        "loan_id": _LOAN,
        "promise_id": "PRM-5532",
        "collector_id": "C-1042",
        "amount": "5500.00",
        "paid": "2000.00",
        "currency": "CNY",
        "due_on": "2024-07-28",
    },
    t.CONTACT_ATTEMPTED: {
        "contact_id": "CT-7f3a9c",
        "loan_id": _LOAN,
        "borrower_id": _BORROWER,
        "channel": "sms",
        "template": "early.sms.zh-CN.v3",
        "stage": "early",
        "status": "deferred",
        "reason": "quiet_hours",
        "scheduled_for": "2024-05-17T08:00:00+08:00",
    },
    t.SCORECARD_UPDATED: {
        "collector_id": "C-1042",
        "period": "2024-06",
        "team": "intensive",
        "currency": "CNY",
        "cases_assigned": 48,
        "arrears_assigned": "612000.00",
        "recovered": "201960.00",
        "recovery_rate": "0.33",
        "cures": 12,
        "cure_rate": "0.25",
        "avg_days_to_cure": "9.5",
        "promises_made": 20,
        "promises_kept": 15,
        "kept_rate": "0.75",
        "complaints_minor": 1,
        "complaints_major": 0,
        "multiplier": "0.95",
        "payout": "3837.24",
        "composite_score": "0.4095",
    },
}


def sample_cloudevent(type: str, *, registry: Registry = DEFAULT) -> dict[str, Any]:
    """A complete, valid structured-mode CloudEvent (as a dict) carrying SAMPLES[type]."""
    data = copy.deepcopy(SAMPLES[type])
    spec = registry.get(type)
    subject = spec.subject_value or data[spec.subject_field or "loan_id"]
    return {
        "specversion": "1.0",
        "id": f"sample-{type}",
        "source": SAMPLE_SOURCE,
        "type": type,
        "time": "2024-06-14T18:05:00+08:00",
        "subject": subject,
        "datacontenttype": "application/json",
        "data": data,
    }
