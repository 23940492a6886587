"""Consumer handlers: keep what the notifier knows up to date and turn facts into requests.

The consumer works per batch (:mod:`services.notifier.batch`): ``before_batch`` locks and reads
the loans and borrowers the batch names; each handler translates one event into changes of
that in-memory state and a call of a trigger of the domain, and queues the resulting requests
with the state as it is at that event; ``after_batch`` writes the state back and decides every
request of the batch together (`contacts.ContactBatch`), the decision itself being the pure
`decide` of the domain.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text

from services.notifier import store
from services.notifier.batch import NotifierBatch
from services.notifier.clock import Clock, SimulationClock
from services.notifier.domain import ContactPolicy, triggers
from services.notifier.settings import NotifierSettings
from services.notifier.store import BorrowerRow, LoanState
from shared.consumer import ConsumerSpec, Handler
from shared.context import BatchContext
from shared.events import Event
from shared.topics import (
    CALENDAR,
    COLLECTION_ASSIGNMENTS,
    COLLECTION_STAGES,
    LOAN_EVENTS,
    PROMISE_OUTCOMES,
)

log = logging.getLogger("qingshou.notifier.handlers")

_BATCH = "notifier"
_NOW = "now"


def _batch(ctx: BatchContext) -> NotifierBatch:
    batch: NotifierBatch = ctx.state[_BATCH]
    return batch


class NotifierHandlers:
    def __init__(self, settings: NotifierSettings, clock: Clock) -> None:
        self.settings = settings
        self.clock = clock

    async def _policy(self, ctx: BatchContext) -> ContactPolicy:
        if "policy" not in ctx.state:
            # read with the batch's loans and borrowers (NotifierBatch.load), or now
            loaded = _batch(ctx).policy if _BATCH in ctx.state else None
            ctx.state["policy"] = loaded or (await store.load_policy(ctx.conn))[2]
        return ctx.state["policy"]

    async def _now(self, ctx: BatchContext) -> datetime:
        if not self.clock.simulated:
            return await self.clock.now(ctx.conn)
        # the simulated "now" moves only when a business day closes (which drops this cache)
        if _NOW not in ctx.state:
            ctx.state[_NOW] = await self.clock.now(ctx.conn)
        return ctx.state[_NOW]

    # -- batch hooks -----------------------------------------------------------------------

    async def load_batch(self, ctx: BatchContext, events: list[Event]) -> None:
        ctx.state[_BATCH] = await NotifierBatch.load(ctx.conn, events)

    async def write_batch(self, ctx: BatchContext) -> None:
        await _batch(ctx).finish(ctx)

    # -- what the notifier knows -----------------------------------------------------------

    async def borrower_updated(self, ctx: BatchContext, event: Event) -> None:
        d = event.data
        _batch(ctx).put_borrower(BorrowerRow(
            borrower_id=d.borrower_id, name=d.name, phone=d.phone, email=d.email,
            timezone=d.timezone, language=str(d.language),
            opted_out_channels=tuple(str(c) for c in d.opted_out_channels),
            vulnerable=d.vulnerable))

    async def loan_opened(self, ctx: BatchContext, event: Event) -> None:
        d, batch = event.data, _batch(ctx)
        old = batch.loan(d.loan_id)
        if old is None:
            batch.put_loan(LoanState(d.loan_id, borrower_id=d.borrower_id,
                                     currency=str(d.currency), stage_entered_on=d.opened_on))
        else:
            batch.put_loan(replace(old, borrower_id=d.borrower_id, currency=str(d.currency)))

    async def loan_closed(self, ctx: BatchContext, event: Event) -> None:
        batch, loan_id = _batch(ctx), event.data.loan_id
        old = batch.loan(loan_id)
        batch.put_loan(LoanState(loan_id, closed=True) if old is None
                       else replace(old, closed=True))

    async def flag_raised(self, ctx: BatchContext, event: Event) -> None:
        batch, loan_id, flag = _batch(ctx), event.data.loan_id, str(event.data.flag)
        old = batch.loan(loan_id)
        if old is None:
            batch.put_loan(LoanState(loan_id, flags=(flag,)))
        else:  # raised again: it moves to the end, as array_append(array_remove(...)) did
            batch.put_loan(replace(old, flags=(*(f for f in old.flags if f != flag), flag)))

    async def flag_cleared(self, ctx: BatchContext, event: Event) -> None:
        batch, loan_id, flag = _batch(ctx), event.data.loan_id, str(event.data.flag)
        old = batch.loan(loan_id)
        if old is not None:
            batch.put_loan(replace(old, flags=tuple(f for f in old.flags if f != flag)))

    async def promise_made(self, ctx: BatchContext, event: Event) -> None:
        d = event.data
        await ctx.conn.execute(text("""
            INSERT INTO promises (promise_id, loan_id, collector_id, amount, due_on)
            VALUES (:p, :l, :c, :a, :d) ON CONFLICT (promise_id) DO NOTHING"""),
            {"p": d.promise_id, "l": d.loan_id, "c": d.collector_id, "a": d.amount,
             "d": d.due_on})

    async def promise_broken(self, ctx: BatchContext, event: Event) -> None:
        await self._promise_status(ctx, event, "broken")

    async def _promise_status(self, ctx: BatchContext, event: Event, status: str) -> None:
        d = event.data
        await ctx.conn.execute(text("""
            INSERT INTO promises (promise_id, loan_id, collector_id, amount, due_on, status)
            VALUES (:p, :l, :c, :a, :d, :s)
            ON CONFLICT (promise_id) DO UPDATE SET status = EXCLUDED.status"""),
            {"p": d.promise_id, "l": d.loan_id, "c": d.collector_id, "a": d.amount,
             "d": d.due_on, "s": status})

    # -- triggers ----------------------------------------------------------------------------

    async def stage_changed(self, ctx: BatchContext, event: Event) -> None:
        d, batch = event.data, _batch(ctx)
        base = batch.loan(d.loan_id) or LoanState(d.loan_id)
        loan = replace(base, borrower_id=d.borrower_id or base.borrower_id,
                       stage=str(d.to_stage), closed=str(d.reason) == "closed",
                       stage_entered_on=d.business_date, dpd=d.dpd,
                       arrears=store.as_stored_arrears(d.arrears), currency=str(d.currency))
        batch.put_loan(loan)
        now, policy = await self._now(ctx), await self._policy(ctx)
        requests = triggers.stage_entry_requests(
            loan_id=d.loan_id, borrower_id=d.borrower_id, to_stage=str(d.to_stage),
            business_date=d.business_date, created_at=now, policy=policy,
            variables=_stage_vars(str(d.to_stage), d.dpd, d.arrears, None))
        await batch.request(ctx.conn, requests, now, policy, loan)

    async def case_assigned(self, ctx: BatchContext, event: Event) -> None:
        d, batch = event.data, _batch(ctx)
        old = batch.loan(d.loan_id)
        loan = (LoanState(d.loan_id, owner_id=d.collector_id, stage=str(d.stage)) if old is None
                else replace(old, owner_id=d.collector_id))
        batch.put_loan(loan)
        if loan.borrower_id is None:
            log.info("owner intro skipped: borrower unknown", extra={"loan_id": d.loan_id})
            return
        now, policy = await self._now(ctx), await self._policy(ctx)
        requests = triggers.owner_intro_requests(
            loan_id=d.loan_id, borrower_id=loan.borrower_id, collector_id=d.collector_id,
            stage=str(d.stage), business_date=d.business_date, created_at=now, policy=policy,
            variables={"collector_name": d.collector_id,
                       "collector_phone": self.settings.help_phone,
                       "stage": str(d.stage), "arrears": str(loan.arrears)})
        await batch.request(ctx.conn, requests, now, policy, loan)

    async def promise_kept(self, ctx: BatchContext, event: Event) -> None:
        await self._promise_status(ctx, event, "kept")
        d, batch = event.data, _batch(ctx)
        loan = batch.loan(d.loan_id)
        if loan is None or loan.borrower_id is None:
            return
        now, policy = await self._now(ctx), await self._policy(ctx)
        requests = triggers.promise_thanks_requests(
            loan_id=d.loan_id, borrower_id=loan.borrower_id, promise_id=d.promise_id,
            stage=loan.stage, created_at=now, policy=policy,
            variables={"promise_amount": str(d.amount), "collector_name": d.collector_id})
        await batch.request(ctx.conn, requests, now, policy, loan)

    async def instalment_upcoming(self, ctx: BatchContext, event: Event) -> None:
        d, batch = event.data, _batch(ctx)
        loan = batch.loan(d.loan_id)
        if loan is None or loan.borrower_id is None:
            log.info("early warning skipped: loan unknown", extra={"loan_id": d.loan_id})
            return
        now, policy = await self._now(ctx), await self._policy(ctx)
        requests = triggers.early_warning_requests(
            loan_id=d.loan_id, borrower_id=loan.borrower_id, stage=loan.stage,
            instalment_no=d.instalment_no, due_date=d.due_date, created_at=now, policy=policy,
            variables={"amount_due": str(d.amount_due), "due_date": d.due_date.isoformat(),
                       "instalment_no": d.instalment_no})
        await batch.request(ctx.conn, requests, now, policy, loan)

    async def business_day_closed(self, ctx: BatchContext, event: Event) -> None:
        day = event.data.business_date
        conn = ctx.conn
        current = (await conn.execute(text(
            "SELECT business_date FROM calendar WHERE id = 1"))).scalar_one_or_none()
        if current is not None and day <= current:
            log.info("business date not after the current one; nothing to do",
                     extra={"business_date": day.isoformat()})
            return
        await _batch(ctx).flush(conn)  # cadence and reminders below read the loans' rows
        await conn.execute(text("""
            INSERT INTO calendar_closed (business_date) VALUES (:d) ON CONFLICT DO NOTHING"""),
            {"d": day})
        await conn.execute(text("UPDATE calendar SET business_date = :d WHERE id = 1"), {"d": day})
        if isinstance(self.clock, SimulationClock):
            await conn.execute(text("""
                UPDATE calendar SET sim_now = GREATEST(COALESCE(sim_now, :t), :t)
                WHERE id = 1"""), {"t": self.clock.after_close(day)})
            ctx.state.pop(_NOW, None)
        now, policy = await self._now(ctx), await self._policy(ctx)
        await self._cadence(ctx, day, now, policy)
        await self._promise_reminders(ctx, day, now, policy)

    async def _cadence(self, ctx: BatchContext, day: Any, now: datetime,
                       policy: ContactPolicy) -> None:
        batch = _batch(ctx)
        stages = [s for s, p in policy.stages.items() if p.automated and p.cadence_business_days]
        rows = (await ctx.conn.execute(text("""
            SELECT l.loan_id, l.borrower_id, l.stage, l.closed, l.flags, l.owner_id,
                   l.stage_entered_on, l.dpd, l.arrears, l.currency,
                   (SELECT count(*) FROM calendar_closed c
                    WHERE c.business_date > l.stage_entered_on AND c.business_date <= :d) AS days
            FROM loans l
            WHERE NOT l.closed AND l.stage = ANY(:stages) AND l.borrower_id IS NOT NULL
              AND l.stage_entered_on IS NOT NULL"""), {"d": day, "stages": stages})).all()
        await batch.ensure_borrowers(ctx.conn, {r.borrower_id for r in rows})
        for r in rows:
            requests = triggers.cadence_requests(
                loan_id=r.loan_id, borrower_id=r.borrower_id, stage=r.stage,
                business_days_in_stage=r.days, business_date=day, created_at=now,
                policy=policy, variables=_stage_vars(r.stage, r.dpd, r.arrears, r.owner_id))
            await batch.request(ctx.conn, requests, now, policy, store.loan_from_row(r))

    async def _promise_reminders(self, ctx: BatchContext, day: Any, now: datetime,
                                 policy: ContactPolicy) -> None:
        batch = _batch(ctx)
        before = policy.triggers["promise_reminder"].days_before or 1
        # the day after the closed date is "today"; a reminder falls due the day before due_on
        rows = (await ctx.conn.execute(text("""
            UPDATE promises p SET reminded = true
            FROM loans l
            WHERE p.loan_id = l.loan_id AND p.status = 'open' AND NOT p.reminded
              AND p.due_on > :d AND p.due_on - CAST(:before AS int) <= :today
              AND l.borrower_id IS NOT NULL
            RETURNING p.promise_id, p.loan_id, p.collector_id, p.amount, p.due_on,
                      l.borrower_id, l.stage, l.closed, l.flags, l.owner_id,
                      l.stage_entered_on, l.dpd, l.arrears, l.currency"""),
            {"d": day, "before": before, "today": day + timedelta(days=1)})).all()
        await batch.ensure_borrowers(ctx.conn, {r.borrower_id for r in rows})
        for r in rows:
            requests = triggers.promise_reminder_requests(
                loan_id=r.loan_id, borrower_id=r.borrower_id, promise_id=r.promise_id,
                due_on=r.due_on, today=triggers.promise_reminder_date(r.due_on, policy),
                stage=r.stage, created_at=now, policy=policy,
                variables={"promise_amount": str(r.amount), "promise_due_on": r.due_on.isoformat(),
                           "collector_name": r.collector_id})
            await batch.request(ctx.conn, requests, now, policy, store.loan_from_row(r))

    def table(self) -> dict[str, Handler]:
        return {
            "borrower.updated": self.borrower_updated,
            "loan.opened": self.loan_opened,
            "loan.closed": self.loan_closed,
            "stage.changed": self.stage_changed,
            "case.assigned": self.case_assigned,
            "case.flag.raised": self.flag_raised,
            "case.flag.cleared": self.flag_cleared,
            "promise.made": self.promise_made,
            "promise.kept": self.promise_kept,
            "promise.broken": self.promise_broken,
            "instalment.upcoming": self.instalment_upcoming,
            "business_day.closed": self.business_day_closed,
        }


def _stage_vars(stage: str, dpd: int, arrears: Any, owner: str | None) -> dict[str, object]:
    return {"stage": stage, "dpd": dpd, "arrears": str(arrears),
            "collector_name": owner or "Customer care"}


def consumer_spec(settings: NotifierSettings, clock: Clock) -> ConsumerSpec:
    handlers = NotifierHandlers(settings, clock)
    return ConsumerSpec(name="notifier", topics=[COLLECTION_STAGES, COLLECTION_ASSIGNMENTS,
                                                 PROMISE_OUTCOMES, LOAN_EVENTS, CALENDAR],
                        handlers=handlers.table(), before_batch=handlers.load_batch,
                        after_batch=handlers.write_batch)
