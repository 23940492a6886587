"""The incentives consumer: events in, ledger entries and scorecards out, one batch at a time.

`before_batch` loads what the batch needs with a few multi-row queries (the loans' assignment,
arrears and last cure; scheme versions; closed periods) under the shared scorecard lock (other
instances' batches go on beside it; a scheme change or a period close waits). Handlers only
translate an event into calls of the pure domain and keep the results in memory. `after_batch`
writes the loans back, appends the ledger entries with one INSERT ... ON CONFLICT DO NOTHING
(only entries it reports as new reach the tallies), then, under the tally lock held until it
commits, folds them into the stored tallies, upserts the touched scorecards and queues one
`scorecard.updated` per changed scorecard (the locks: `services.incentives.store`).

Decision (arrival period): a claw-back or a complaint "arrives" in the month of the event's
`time` read in the bank's time zone (`QS_INCENTIVES_TIMEZONE`, not the producer's offset),
moved forward to the first open month when that month is closed or not after the original one:
nothing ever lands in a closed month. The same holds for every other entry: a back-valued
repayment (or a cure, a promise outcome) whose month was closed meanwhile counts in the first
open month after it, keeping its own date, so the rate is still the one of its value date. A
closed month's scorecard is what was paid; it never changes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from services.incentives import scoring, store
from services.incentives.domain import (
    CreditEntry,
    EntryKind,
    MalformedEvent,
    SchemeBook,
    assignment_from_assigned,
    clawback_for_unapplied,
    credit_for_applied,
    cure_for_stage_changed,
    cure_reversal_for_stage_changed,
    end_assignment,
    entries_for_assigned,
    entry_for_complaint,
    entry_for_promise,
    first_open_period,
    known_arrears,
    period_at,
    period_of,
    promise_entry_id,
)
from services.incentives.settings import DEFAULT_TIMEZONE
from shared.consumer import ConsumerSpec
from shared.context import BatchContext, Rejected
from shared.events import Event
from shared.topics import (
    COLLECTION_ASSIGNMENTS,
    COLLECTION_STAGES,
    LOAN_EVENTS,
    PROMISE_OUTCOMES,
    REPAYMENTS_APPLIED,
)

_STATE = "incentives"
DEFAULT_ZONE: tzinfo = ZoneInfo(DEFAULT_TIMEZONE)
# Types whose rules need the loan's stored facts (assignment, arrears, last cure).
_NEEDS_LOAN = frozenset({"case.assigned", "case.unassigned", "stage.changed",
                         "complaint.recorded"})


@dataclass
class BatchState:
    book: SchemeBook
    closed: set[str]
    loans: store.LoanFacts
    entries: dict[str, CreditEntry] = field(default_factory=dict)
    teams: dict[str, str] = field(default_factory=dict)
    # Ids of entries already in the ledger that this batch's rules ask about (kept promises).
    known_entries: set[str] = field(default_factory=set)
    zone: tzinfo = DEFAULT_ZONE


def _state(ctx: BatchContext) -> BatchState:
    state: BatchState = ctx.state[_STATE]
    return state


def as_mapping(event: Event) -> dict[str, Any]:
    """The event in the shape the pure domain reads (its typed data values, not re-parsed).

    The model's own field dict is shared, not copied: the domain only reads it, and the model is
    frozen.
    """
    return {"id": event.id, "source": event.source, "type": event.type,
            "data": event.data.__dict__}


def arrival_period(event: Event, closed: set[str], after: str | None = None,
                   zone: tzinfo = DEFAULT_ZONE) -> str:
    """The open month an event arrives in (see the module doc)."""
    return first_open_period(period_at(event.time, zone), closed, after)


def _keep(state: BatchState, event: Event, entries: list[CreditEntry]) -> list[CreditEntry]:
    """Queue `entries` for the ledger, each moved out of a closed period (see the module doc);
    returns them as queued."""
    kept = []
    for entry in entries:
        if entry.period in state.closed:
            landing = arrival_period(event, state.closed, entry.period, state.zone)
            entry = replace(entry, period=landing)
        kept.append(state.entries.setdefault(entry.entry_id, entry))
    return kept


# --- handlers ---------------------------------------------------------------------------------


async def apply_repayment(ctx: BatchContext, event: Event) -> None:
    _keep(_state(ctx), event, credit_for_applied(as_mapping(event)))


async def claw_back_repayment(ctx: BatchContext, event: Event) -> None:
    state = _state(ctx)
    original = period_of(event.data.value_date)
    arrival = arrival_period(event, state.closed, original, state.zone)
    _keep(state, event, clawback_for_unapplied(as_mapping(event), state.closed, arrival))


async def assign_case(ctx: BatchContext, event: Event) -> None:
    state, raw = _state(ctx), as_mapping(event)
    loan_id = event.data.loan_id
    arrears, currency = state.loans.arrears.get(loan_id, (None, None))
    _keep(state, event, entries_for_assigned(raw, arrears, currency))
    state.loans.assignments[loan_id] = assignment_from_assigned(raw)
    state.loans.dirty_assignments.add(loan_id)
    state.teams[event.data.collector_id] = event.data.team


async def unassign_case(ctx: BatchContext, event: Event) -> None:
    state = _state(ctx)
    loan_id = event.data.loan_id
    current = state.loans.assignments.get(loan_id)
    state.loans.assignments[loan_id] = end_assignment(current, as_mapping(event))
    state.loans.dirty_assignments.add(loan_id)


async def change_stage(ctx: BatchContext, event: Event) -> None:
    state, raw = _state(ctx), as_mapping(event)
    loans, loan_id = state.loans, event.data.loan_id
    loans.arrears[loan_id] = known_arrears(raw)
    loans.dirty_state.add(loan_id)
    cures = cure_for_stage_changed(raw, loans.assignments.get(loan_id))
    last = loans.last_cure.get(loan_id)
    after = last.period if last is not None else None
    reversals = cure_reversal_for_stage_changed(
        raw, last, state.closed, arrival_period(event, state.closed, after, state.zone))
    cures = _keep(state, event, cures)
    _keep(state, event, reversals)
    if cures:
        loans.last_cure[loan_id] = cures[0]
    elif reversals:
        loans.last_cure[loan_id] = None


async def record_promise(ctx: BatchContext, event: Event) -> None:
    state = _state(ctx)
    kept_id = _kept_entry_id(event)
    kept_counted = kept_id is not None and (
        kept_id in state.entries or kept_id in state.known_entries)
    _keep(state, event, entry_for_promise(as_mapping(event), kept_counted))


def _kept_entry_id(event: Event) -> str | None:
    """For a `promise.broken`, the id its promise's `promise_kept` entry would have."""
    if event.type != "promise.broken":
        return None
    return promise_entry_id(event.data.loan_id, event.data.promise_id, EntryKind.PROMISE_KEPT)


async def record_complaint(ctx: BatchContext, event: Event) -> None:
    state = _state(ctx)
    assignment = state.loans.assignments.get(event.data.loan_id)
    _keep(state, event, entry_for_complaint(as_mapping(event), assignment,
                                     arrival_period(event, state.closed, zone=state.zone)))


Handler = Callable[[BatchContext, Event], Awaitable[None]]


def _refusing_malformed(handler: Handler) -> Handler:
    async def guarded(ctx: BatchContext, event: Event) -> None:
        try:
            await handler(ctx, event)
        except MalformedEvent as exc:
            raise Rejected("schema_error", str(exc)) from exc

    guarded.__name__ = handler.__name__
    return guarded


HANDLERS: dict[str, Handler] = {
    name: _refusing_malformed(fn) for name, fn in {
        "repayment.applied": apply_repayment,
        "repayment.unapplied": claw_back_repayment,
        "case.assigned": assign_case,
        "case.unassigned": unassign_case,
        "stage.changed": change_stage,
        "promise.made": record_promise,
        "promise.kept": record_promise,
        "promise.broken": record_promise,
        "complaint.recorded": record_complaint,
    }.items()
}


# --- batch hooks ------------------------------------------------------------------------------


async def load_batch(ctx: BatchContext, events: list[Event],
                     zone: tzinfo = DEFAULT_ZONE) -> None:
    conn = ctx.conn
    # Taken first: a scheme change recomputing scorecards must not interleave with this batch
    # (shared: other instances' batches go on; store's module doc gives the locks' order).
    await store.share_scorecards(conn)
    schemes = await store.load_schemes(conn)
    closed = await store.load_closed_periods(conn)
    loans = await store.load_loans(conn, (e.data.loan_id for e in events
                                          if e.type in _NEEDS_LOAN))
    known = await store.existing_entries(
        conn, [i for e in events if (i := _kept_entry_id(e)) is not None])
    ctx.state[_STATE] = BatchState(store.book_of(schemes), closed, loans, known_entries=known,
                                   zone=zone)


async def write_batch(ctx: BatchContext) -> None:
    state, conn = _state(ctx), ctx.conn
    await store.save_loans(conn, state.loans)
    await store.save_teams(conn, state.teams)
    entries = list(state.entries.values())
    new_ids = await store.insert_entries(conn, entries)
    fresh = [e for e in entries if e.entry_id in new_ids]
    if fresh:
        await store.lock_tallies(conn)  # last: held only for the fold and the commit
        scoring.publish(ctx, await scoring.fold_in(conn, state.book, fresh))


def consumer_spec(name: str = "incentives", zone: tzinfo = DEFAULT_ZONE) -> ConsumerSpec:
    async def before_batch(ctx: BatchContext, events: list[Event]) -> None:
        await load_batch(ctx, events, zone)

    return ConsumerSpec(
        name=name,
        topics=[COLLECTION_ASSIGNMENTS, REPAYMENTS_APPLIED, PROMISE_OUTCOMES,
                COLLECTION_STAGES, LOAN_EVENTS],
        handlers=HANDLERS, before_batch=before_batch, after_batch=write_batch)


__all__ = ["HANDLERS", "arrival_period", "consumer_spec"]
