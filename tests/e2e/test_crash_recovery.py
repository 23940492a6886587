"""The running stack survives SIGKILL: services killed mid-stream lose nothing, apply nothing twice.

A small variant of the chaos test: repayments stream in through ingest while staging,
incentives and the notifier are each killed with SIGKILL at a random moment and restarted.
Afterwards every loan's arrears equal the replay of its events, the collectors' credited
recovery equals the sum of the repayments, and no dead-letter topic holds anything.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from decimal import Decimal

import pytest

from shared.ops.dlq import read_dead_letters
from shared.topics import ALL_TOPICS
from tests.conftest import KAFKA
from tests.e2e.conftest import Stack
from tests.e2e.test_collection_journey import close, event

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

LOANS, REPAYMENTS_PER_LOAN = 12, 20


def post_batch(stack: Stack, events: list[dict]) -> None:
    r = stack.client.post(stack.url("ingest", "/v1/events/batch"), json=events,
                          headers={"Content-Type": "application/cloudevents-batch+json"})
    assert r.status_code == 202, r.text


def test_services_killed_mid_stream_lose_nothing_and_apply_nothing_twice(stack: Stack):
    rng = random.Random(7)
    run = uuid.uuid4().hex[:6]
    team = [f"ci{i}-{run}" for i in range(2)]
    for cid in team:
        r = stack.client.put(stack.url("staging", f"/v1/collectors/{cid}"),
                             json={"name": cid, "team": "intensive", "capacity": 100})
        assert r.status_code in (200, 201), r.text
    loans = [f"K{i}-{run}" for i in range(LOANS)]
    setup = []
    for loan in loans:
        setup.append(event("loan.opened", loan, {
            "loan_id": loan, "borrower_id": f"B-{loan}", "product": "credit_card",
            "currency": "CNY", "principal": "5000.00", "opened_on": "2026-01-02"}))
        setup.append(event("payment.missed", loan, {
            "loan_id": loan, "instalment_no": 1, "due_date": "2026-01-05",
            "amount_due": "1000.00", "amount_unpaid": "1000.00"}, "2026-01-05"))
    post_batch(stack, setup)
    close(stack, "2026-03-07")  # 61 days past due: intensive, owned by the team

    def all_intensive() -> bool:
        views = [stack.get("staging", f"/v1/loans/{loan}").json() for loan in loans]
        return all(v["stage"] == "intensive" and v["owner"]["collector_id"] in team
                   for v in views)

    stack.wait_for(all_intensive, timeout=90)

    repayments = [event("repayment.received", loan, {
        "loan_id": loan, "payment_id": f"P{n}-{loan}", "amount": "1.00", "currency": "CNY",
        "value_date": "2026-03-07", "channel": "auto_debit"}, "2026-03-07")
        for n in range(REPAYMENTS_PER_LOAN) for loan in loans]
    rng.shuffle(repayments)
    chunks = [repayments[i::4] for i in range(4)]
    for chunk, victim in zip(chunks, ("staging", "incentives", "notifier", None), strict=True):
        post_batch(stack, chunk)
        if victim is not None:
            time.sleep(rng.uniform(0.0, 0.6))  # somewhere in the middle of the batch
            stack.kill9(victim)
            stack.start(victim)

    expected_arrears = f"{1000 - REPAYMENTS_PER_LOAN}.00"

    def arrears_settled() -> bool:
        views = [stack.get("staging", f"/v1/loans/{loan}").json() for loan in loans]
        return all(v["arrears"] == expected_arrears for v in views)

    stack.wait_for(arrears_settled, timeout=120)

    def credited() -> Decimal:
        total = Decimal(0)
        for cid in team:
            r = stack.get("incentives", f"/v1/scorecards/{cid}", period="2026-03")
            if r.status_code == 200:
                total += Decimal(r.json()["recovered"])
        return total

    want = Decimal(LOANS * REPAYMENTS_PER_LOAN)
    stack.wait_for(lambda: credited() == want, timeout=120)
    time.sleep(2.0)  # a second application would show up now
    assert credited() == want
    for loan in loans:
        assert stack.get("staging", f"/v1/loans/{loan}").json()["arrears"] == expected_arrears

    async def dead_letters() -> int:
        count = 0
        for base in ALL_TOPICS:
            count += len(await read_dead_letters(KAFKA, f"{stack.prefix}.{base}"))
        return count

    assert asyncio.run(dead_letters()) == 0
