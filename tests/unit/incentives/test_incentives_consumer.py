"""The consumer's handlers on in-memory batch state (no database): what each event leaves in the
batch's ledger entries, given the closed periods and the loans' stored facts."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from services.incentives import consumer, store
from services.incentives.domain import DEFAULT_SCHEME, EntryKind, SchemeBook, compute_scorecard
from services.incentives.settings import IncentivesSettings
from services.incentives.tallies import event_data
from shared.context import BatchContext
from shared.events import new_event
from shared.topics import TopicNames

APRIL_2 = datetime(2026, 4, 2, 10, 0, tzinfo=UTC)


def batch(closed: set[str] = frozenset(), known: set[str] = frozenset()) -> BatchContext:
    ctx = BatchContext(None, TopicNames(""), "urn:test")  # type: ignore[arg-type]
    state = consumer.BatchState(SchemeBook([DEFAULT_SCHEME]), set(closed), store.LoanFacts())
    state.known_entries.update(known)
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


def promise(type_: str, promise_id: str = "PR1", due_on: str = "2026-04-10"):
    data = {"loan_id": "L1", "promise_id": promise_id, "collector_id": "c1",
            "amount": "500.00", "due_on": due_on}
    if type_ != "promise.made":
        data |= {"currency": "CNY", "paid": "500.00" if type_ == "promise.kept" else "0"}
    return event(type_, data)


def april_card(entries):
    return compute_scorecard("c1", "2026-04", entries, [DEFAULT_SCHEME], "CNY")


async def test_a_broken_promise_supersedes_its_kept_outcome():
    # staging: a payment kept the promise, its reversal broke it (promise.broken supersedes)
    ctx = batch()
    entries = await handle(ctx, promise("promise.made"), promise("promise.kept"),
                           promise("promise.broken"))
    card = april_card(entries)
    assert (card.promises_made, card.promises_kept, card.promises_broken) == (1, 0, 1)
    assert card.kept_rate == 0 and card.bonuses == 0 and card.payout == 0


async def test_a_broken_promise_supersedes_a_kept_outcome_counted_in_an_earlier_batch():
    kept = await handle(batch(), promise("promise.kept"))
    ctx = batch(known={e.entry_id for e in kept})
    later = await handle(ctx, promise("promise.broken"))
    card = april_card(kept + later)
    assert (card.promises_kept, card.promises_broken, card.bonuses) == (0, 1, 0)
    # without a kept outcome on record, a broken promise is only broken
    alone = april_card(await handle(batch(), promise("promise.broken", "PR2")))
    assert (alone.promises_kept, alone.promises_broken) == (0, 1)


async def test_the_same_promise_or_complaint_under_another_event_id_counts_once():
    # kept -> open (a reversal) -> kept again publishes promise.kept twice; a desk re-posts a
    # promise or a complaint with a fresh CloudEvent id
    complaint = {"loan_id": "L1", "complaint_id": "CP1", "collector_id": "c1",
                 "severity": "major", "note": "rude call"}
    entries = await handle(batch(), promise("promise.made"), promise("promise.made"),
                           promise("promise.kept"), promise("promise.kept"),
                           event("complaint.recorded", complaint),
                           event("complaint.recorded", complaint))
    card = april_card(entries)
    assert (card.promises_made, card.promises_kept, card.complaints_major) == (1, 1, 1)
    assert card.payout == Decimal("7.50")  # one kept bonus of 10.00 x (1 - 0.25)


async def test_a_kept_reversal_landing_in_a_later_month_publishes_a_valid_scorecard():
    # the promise was kept in April; April is closed when the reversal breaks it in May
    kept = await handle(batch(), promise("promise.kept"))
    may = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)
    broken = promise("promise.broken")
    ctx = batch(closed={"2026-04"}, known={e.entry_id for e in kept})
    await consumer.HANDLERS[broken.type](ctx, event(broken.type, broken.data.__dict__, at=may))
    entries = list(ctx.state["incentives"].entries.values())
    assert {e.period for e in entries} == {"2026-05"}
    card = compute_scorecard("c1", "2026-05", entries, [DEFAULT_SCHEME], "CNY")
    assert card.promises_kept == -1 and card.bonuses == Decimal("-10.00")
    new_event("scorecard.updated", source="urn:test", data=event_data(card, "T1"))


async def test_a_complaint_arrives_in_the_month_of_the_bank_time_zone_not_of_the_offset():
    # 01:00 on 1 April in Shanghai, written by a producer in UTC or in +08:00: the same instant
    complaint = {"loan_id": "L1", "complaint_id": "CP1", "collector_id": "c1",
                 "severity": "minor", "note": "rude call"}
    for at in (datetime(2026, 3, 31, 17, 0, tzinfo=UTC),
               datetime(2026, 4, 1, 1, 0, tzinfo=ZoneInfo("Asia/Shanghai"))):
        [entry] = await handle(batch(), event("complaint.recorded", complaint, at=at))
        assert entry.period == "2026-04"
    # the zone is the bank's, configurable
    ctx = batch()
    ctx.state["incentives"].zone = ZoneInfo("Europe/London")
    [entry] = await handle(ctx, event("complaint.recorded", complaint,
                                      at=datetime(2026, 3, 31, 17, 0, tzinfo=UTC)))
    assert entry.period == "2026-03"


def test_the_bank_time_zone_is_a_checked_setting():
    assert IncentivesSettings().zone == ZoneInfo("Asia/Shanghai")
    assert IncentivesSettings(incentives_timezone="Europe/London").zone.key == "Europe/London"
    with pytest.raises(ValidationError):
        IncentivesSettings(incentives_timezone="Mars/Olympus")
