"""One loan's collection journey through the running stack, as the bank would see it.

A loan misses a payment and ages through early → negotiation (its relationship manager) →
intensive → legal as business days close; a repayment cures it; the notifier contacted the
borrower only in allowed hours and the provider got each contact once; the legal collector's
scorecard shows the recovery. Everything goes in through ingest and is read back through the
services' REST APIs.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from tests.e2e.conftest import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

SHANGHAI = ZoneInfo("Asia/Shanghai")


def event(type_: str, subject: str, data: dict, day: str = "2026-01-02") -> dict:
    return {"specversion": "1.0", "id": uuid.uuid4().hex, "source": "urn:test:core-banking",
            "type": type_, "time": f"{day}T10:00:00+08:00", "subject": subject, "data": data}


def close(stack: Stack, day: str) -> None:
    """Close a business day and wait for staging's end of day to finish, as a bank's
    operations do before the next close (a close that arrives while an earlier end of day is
    still pending supersedes it: loans still step through each date, but no snapshot is
    recorded for the superseded day)."""
    stack.post_event(event("business_day.closed", "calendar", {"business_date": day}, day))

    def finished() -> bool:
        items = stack.get("staging", "/v1/portfolio/history", limit=366).json()["items"]
        return any(d["business_date"] == day for d in items)

    stack.wait_for(finished, timeout=120)


def test_a_loan_walks_the_stages_is_cured_and_credited(stack: Stack):
    run = uuid.uuid4().hex[:6]
    loan, borrower, rm = f"L-{run}", f"B-{run}", f"rm-{run}"
    collectors = {"intensive": f"ci-{run}", "legal": f"cl-{run}"}
    for team, cid in collectors.items():
        r = stack.client.put(stack.url("staging", f"/v1/collectors/{cid}"),
                             json={"name": f"Collector {team}", "team": team, "capacity": 50})
        assert r.status_code in (200, 201), r.text

    stack.post_event(event("borrower.updated", borrower, {
        "borrower_id": borrower, "name": "Li Wei", "phone": "+8613900001111",
        "email": "li.wei@example.com", "timezone": "Asia/Shanghai", "language": "zh-CN",
        "opted_out_channels": [], "vulnerable": False}))
    stack.post_event(event("loan.opened", loan, {
        "loan_id": loan, "borrower_id": borrower, "product": "consumer_loan",
        "currency": "CNY", "principal": "50000.00", "opened_on": "2026-01-02",
        "relationship_manager_id": rm}))
    stack.post_event(event("payment.missed", loan, {
        "loan_id": loan, "instalment_no": 1, "due_date": "2026-01-05",
        "amount_due": "1000.00", "amount_unpaid": "1000.00"}, "2026-01-05"))

    def loan_view() -> dict:
        r = stack.get("staging", f"/v1/loans/{loan}")
        assert r.status_code == 200, r.text
        return r.json()

    def reaches(stage: str, owner: str | None):
        # the stored state (the list), not GET /v1/loans/{id}, which ages the loan to the
        # business date for display before end of day has run
        def check() -> dict | None:
            items = stack.get("staging", "/v1/loans", stage=stage, limit=1000).json()["items"]
            if any(i["loan_id"] == loan and i["collector_id"] == owner for i in items):
                return loan_view()
            return None
        return check

    # each close ages the loan into the next stage; owners follow the policy
    for day, stage, owner in (("2026-01-06", "early", None),
                              ("2026-02-05", "negotiation", rm),
                              ("2026-03-07", "intensive", collectors["intensive"]),
                              ("2026-04-06", "legal", collectors["legal"])):
        close(stack, day)
        view = stack.wait_for(reaches(stage, owner))
        assert view["arrears"] == "1000.00"

    # a repayment on the legal collector's watch cures the loan and unassigns the case
    stack.post_event(event("repayment.received", loan, {
        "loan_id": loan, "payment_id": f"P-{run}", "amount": "1000.00", "currency": "CNY",
        "value_date": "2026-04-06", "channel": "transfer"}, "2026-04-06"))
    view = stack.wait_for(reaches("current", None))
    assert view["arrears"] == "0.00" and view["dpd"] == 0
    assert [h["to"] for h in view["history"]] == [
        "early", "negotiation", "intensive", "legal", "current"]

    # incentives credited the recovery to the collector who owned the case on the value date
    def scorecard() -> dict | None:
        r = stack.get("incentives", f"/v1/scorecards/{collectors['legal']}", period="2026-04")
        ok = r.status_code == 200 and Decimal(r.json()["recovered"]) != 0  # "0.00" too
        return r.json() if ok else None

    card = stack.wait_for(scorecard)
    assert card["recovered"] in ("1000.00", "1000")
    assert float(card["payout"]) > 0  # commission on a legal recovery (3%)

    # the notifier contacted the borrower, never in quiet hours, each contact id once
    def contacts() -> list[dict] | None:
        r = stack.get("notifier", f"/v1/loans/{loan}/contacts", limit=500)
        items = r.json()["items"]
        return items if any(c["status"] == "sent" for c in items) else None

    logged = stack.wait_for(contacts)
    for contact in logged:
        if contact["status"] == "sent":
            local = datetime.fromisoformat(contact["decided_at"]).astimezone(SHANGHAI)
            assert 8 <= local.hour < 21, contact
    sent_ids = {c["contact_id"] for c in logged if c["status"] == "sent"}

    def delivered_to_provider() -> list[dict] | None:
        got = stack.client.get(stack.url("sandbox", "/v1/messages")).json()["items"]
        mine = [m for m in got if m["idempotency_key"] in sent_ids]
        return mine if {m["idempotency_key"] for m in mine} == sent_ids else None

    received = stack.wait_for(delivered_to_provider)
    assert len(received) == len(sent_ids)  # each contact id reached the provider once

    # the end-of-day snapshots give the trend over business days
    days = stack.get("staging", "/v1/portfolio/history", limit=10).json()["items"]
    by_day = {d["business_date"]: d["stages"] for d in days}
    for day, stage in (("2026-01-06", "early"), ("2026-02-05", "negotiation"),
                       ("2026-03-07", "intensive"), ("2026-04-06", "legal")):
        assert by_day[day][stage] == {"count": 1, "arrears": "1000.0000"}, by_day[day]

    # the notifier's summary counts each contact once, at its latest status
    summary = stack.get("notifier", "/v1/contacts/summary", days=3660).json()
    assert summary["contacts"] == sum(i["count"] for i in summary["items"])
    assert sum(i["count"] for i in summary["items"] if i["status"] == "sent") >= len(sent_ids)
