"""The consumer's handlers on in-memory batch state (no database): what each event leaves in the
batch's ledger entries, given the closed periods and the loans' stored facts."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from services.incentives import consumer, store
from services.incentives.domain import DEFAULT_SCHEME, EntryKind, SchemeBook
from shared.context import BatchContext
from shared.events import new_event
from shared.topics import TopicNames

APRIL_2 = datetime(2026, 4, 2, 10, 0, tzinfo=UTC)


def batch(closed: set[str] = frozenset()) -> BatchContext:
    ctx = BatchContext(None, TopicNames(""), "urn:test")  # type: ignore[arg-type]
    state = consumer.BatchState(SchemeBook([DEFAULT_SCHEME]), set(closed), store.LoanFacts())
    ctx.state["incentives"] = state
    return ctx


def event(type_: str, data: dict[str, Any], at: datetime = APRIL_2):
    return new_event(type_, source="urn:test:staging", data=data, time=at, id=str(uuid.uuid4()))


def repayment(type_: str, value_date: str, amount: str = "400.00", collector: str = "c1"):
    return event(type_, {
        "loan_id": "L1", "payment_id": "P1", "amount": amount, "to_arrears": amount,
        "excess": "0", "currency": "CNY", "value_date": value_date, "stage": "legal",
        "dpd_before": 95, "dpd_after": 0, "collector_id": collector})


async def handle(ctx: BatchContext, *events) -> list:
    for e in events:
        await consumer.HANDLERS[e.type](ctx, e)
    return list(ctx.state["incentives"].entries.values())


async def test_back_valued_credit_after_its_month_closed_lands_in_the_first_open_month():
    ctx = batch(closed={"2026-03"})
    [credit] = await handle(ctx, repayment("repayment.applied", "2026-03-30"))
    assert credit.kind is EntryKind.CREDIT
    assert credit.period == "2026-04"  # March is closed: paid out already
    assert credit.on.isoformat() == "2026-03-30"  # still at the rate of its value date


async def test_credit_in_an_open_month_stays_in_its_value_date_month():
    ctx = batch(closed={"2026-02"})
    [credit] = await handle(ctx, repayment("repayment.applied", "2026-03-30"))
    assert credit.period == "2026-03"
