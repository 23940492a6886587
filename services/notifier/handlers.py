"""Consumer handlers: keep what the notifier knows up to date and turn facts into requests.

Each handler translates one event into state writes and a call of a trigger of the domain;
`contacts.submit` decides the resulting requests in the batch's transaction.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text

from services.notifier import contacts, store
from services.notifier.clock import Clock, SimulationClock
from services.notifier.domain import ContactPolicy, triggers
from services.notifier.settings import NotifierSettings
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

_UPSERT_LOAN = text("""
INSERT INTO loans (loan_id, borrower_id, stage, closed, stage_entered_on, dpd, arrears, currency)
VALUES (:loan_id, :borrower_id, :stage, :closed, :entered, :dpd, :arrears, :currency)
ON CONFLICT (loan_id) DO UPDATE SET
    borrower_id = COALESCE(EXCLUDED.borrower_id, loans.borrower_id), stage = EXCLUDED.stage,
    closed = EXCLUDED.closed, stage_entered_on = EXCLUDED.stage_entered_on,
    dpd = EXCLUDED.dpd, arrears = EXCLUDED.arrears,
    currency = COALESCE(EXCLUDED.currency, loans.currency), updated_at = now()
""")


class NotifierHandlers:
    def __init__(self, settings: NotifierSettings, clock: Clock) -> None:
        self.settings = settings
        self.clock = clock

    async def _policy(self, ctx: BatchContext) -> ContactPolicy:
        if "policy" not in ctx.state:
            ctx.state["policy"] = (await store.load_policy(ctx.conn))[2]
        return ctx.state["policy"]

    async def _now(self, ctx: BatchContext) -> datetime:
        return await self.clock.now(ctx.conn)

    # -- what the notifier knows -----------------------------------------------------------

    async def borrower_updated(self, ctx: BatchContext, event: Event) -> None:
        d = event.data
        await ctx.conn.execute(text("""
            INSERT INTO borrowers (borrower_id, name, phone, email, timezone, language,
                                   opted_out_channels, vulnerable)
            VALUES (:id, :name, :phone, :email, :tz, :lang, :opt, :vul)
            ON CONFLICT (borrower_id) DO UPDATE SET name = EXCLUDED.name,
                phone = EXCLUDED.phone, email = EXCLUDED.email, timezone = EXCLUDED.timezone,
                language = EXCLUDED.language, opted_out_channels = EXCLUDED.opted_out_channels,
                vulnerable = EXCLUDED.vulnerable, updated_at = now()"""),
            {"id": d.borrower_id, "name": d.name, "phone": d.phone, "email": d.email,
             "tz": d.timezone, "lang": str(d.language),
             "opt": [str(c) for c in d.opted_out_channels], "vul": d.vulnerable})

    async def loan_opened(self, ctx: BatchContext, event: Event) -> None:
        d = event.data
        await ctx.conn.execute(text("""
            INSERT INTO loans (loan_id, borrower_id, currency, stage_entered_on)
            VALUES (:l, :b, :c, :o) ON CONFLICT (loan_id) DO UPDATE
            SET borrower_id = EXCLUDED.borrower_id, currency = EXCLUDED.currency"""),
            {"l": d.loan_id, "b": d.borrower_id, "c": str(d.currency), "o": d.opened_on})

    async def loan_closed(self, ctx: BatchContext, event: Event) -> None:
        await ctx.conn.execute(text("""
            INSERT INTO loans (loan_id, closed) VALUES (:l, true)
            ON CONFLICT (loan_id) DO UPDATE SET closed = true, updated_at = now()"""),
            {"l": event.data.loan_id})

    async def flag_raised(self, ctx: BatchContext, event: Event) -> None:
        await ctx.conn.execute(text("""
            INSERT INTO loans (loan_id, flags) VALUES (:l, ARRAY[:f])
            ON CONFLICT (loan_id) DO UPDATE SET flags = array_append(
                array_remove(loans.flags, :f), :f), updated_at = now()"""),
            {"l": event.data.loan_id, "f": str(event.data.flag)})

    async def flag_cleared(self, ctx: BatchContext, event: Event) -> None:
        await ctx.conn.execute(text("""
            UPDATE loans SET flags = array_remove(flags, :f), updated_at = now()
            WHERE loan_id = :l"""), {"l": event.data.loan_id, "f": str(event.data.flag)})

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
        d = event.data
        await ctx.conn.execute(_UPSERT_LOAN, {
            "loan_id": d.loan_id, "borrower_id": d.borrower_id, "stage": str(d.to_stage),
            "closed": str(d.reason) == "closed", "entered": d.business_date, "dpd": d.dpd,
            "arrears": d.arrears, "currency": str(d.currency)})
        now, policy = await self._now(ctx), await self._policy(ctx)
        requests = triggers.stage_entry_requests(
            loan_id=d.loan_id, borrower_id=d.borrower_id, to_stage=str(d.to_stage),
            business_date=d.business_date, created_at=now, policy=policy,
            variables=_stage_vars(str(d.to_stage), d.dpd, d.arrears, None))
        await contacts.submit(ctx, requests, now, policy)

    async def case_assigned(self, ctx: BatchContext, event: Event) -> None:
        d = event.data
        await ctx.conn.execute(text("""
            INSERT INTO loans (loan_id, owner_id, stage) VALUES (:l, :o, :s)
            ON CONFLICT (loan_id) DO UPDATE SET owner_id = EXCLUDED.owner_id,
                updated_at = now()"""), {"l": d.loan_id, "o": d.collector_id, "s": str(d.stage)})
        loan = await store.load_loan(ctx.conn, d.loan_id)
        if loan is None or loan.borrower_id is None:
            log.info("owner intro skipped: borrower unknown", extra={"loan_id": d.loan_id})
            return
        now, policy = await self._now(ctx), await self._policy(ctx)
        requests = triggers.owner_intro_requests(
            loan_id=d.loan_id, borrower_id=loan.borrower_id, collector_id=d.collector_id,
            stage=str(d.stage), business_date=d.business_date, created_at=now, policy=policy,
            variables={"collector_name": d.collector_id,
                       "collector_phone": self.settings.help_phone,
                       "stage": str(d.stage), "arrears": loan.arrears})
        await contacts.submit(ctx, requests, now, policy)

    async def promise_kept(self, ctx: BatchContext, event: Event) -> None:
        await self._promise_status(ctx, event, "kept")
        d = event.data
        loan = await store.load_loan(ctx.conn, d.loan_id)
        if loan is None or loan.borrower_id is None:
            return
        now, policy = await self._now(ctx), await self._policy(ctx)
        requests = triggers.promise_thanks_requests(
            loan_id=d.loan_id, borrower_id=loan.borrower_id, promise_id=d.promise_id,
            stage=loan.stage, created_at=now, policy=policy,
            variables={"promise_amount": str(d.amount), "collector_name": d.collector_id})
        await contacts.submit(ctx, requests, now, policy)

    async def instalment_upcoming(self, ctx: BatchContext, event: Event) -> None:
        d = event.data
        loan = await store.load_loan(ctx.conn, d.loan_id)
        if loan is None or loan.borrower_id is None:
            log.info("early warning skipped: loan unknown", extra={"loan_id": d.loan_id})
            return
        now, policy = await self._now(ctx), await self._policy(ctx)
        requests = triggers.early_warning_requests(
            loan_id=d.loan_id, borrower_id=loan.borrower_id, stage=loan.stage,
            instalment_no=d.instalment_no, due_date=d.due_date, created_at=now, policy=policy,
            variables={"amount_due": str(d.amount_due), "due_date": d.due_date.isoformat(),
                       "instalment_no": d.instalment_no})
        await contacts.submit(ctx, requests, now, policy)

    async def business_day_closed(self, ctx: BatchContext, event: Event) -> None:
        day = event.data.business_date
        conn = ctx.conn
        current = (await conn.execute(text(
            "SELECT business_date FROM calendar WHERE id = 1"))).scalar_one_or_none()
        if current is not None and day <= current:
            log.info("business date not after the current one; nothing to do",
                     extra={"business_date": day.isoformat()})
            return
        await conn.execute(text("""
            INSERT INTO calendar_closed (business_date) VALUES (:d) ON CONFLICT DO NOTHING"""),
            {"d": day})
        await conn.execute(text("UPDATE calendar SET business_date = :d WHERE id = 1"), {"d": day})
        if isinstance(self.clock, SimulationClock):
            await conn.execute(text("""
                UPDATE calendar SET sim_now = GREATEST(COALESCE(sim_now, :t), :t)
                WHERE id = 1"""), {"t": self.clock.after_close(day)})
        now, policy = await self._now(ctx), await self._policy(ctx)
        await self._cadence(ctx, day, now, policy)
        await self._promise_reminders(ctx, day, now, policy)

    async def _cadence(self, ctx: BatchContext, day: Any, now: datetime,
                       policy: ContactPolicy) -> None:
        stages = [s for s, p in policy.stages.items() if p.automated and p.cadence_business_days]
        rows = await ctx.conn.execute(text("""
            SELECT l.loan_id, l.borrower_id, l.stage, l.dpd, l.arrears, l.owner_id,
                   (SELECT count(*) FROM calendar_closed c
                    WHERE c.business_date > l.stage_entered_on AND c.business_date <= :d) AS days
            FROM loans l
            WHERE NOT l.closed AND l.stage = ANY(:stages) AND l.borrower_id IS NOT NULL
              AND l.stage_entered_on IS NOT NULL"""), {"d": day, "stages": stages})
        for r in rows.all():
            requests = triggers.cadence_requests(
                loan_id=r.loan_id, borrower_id=r.borrower_id, stage=r.stage,
                business_days_in_stage=r.days, business_date=day, created_at=now,
                policy=policy, variables=_stage_vars(r.stage, r.dpd, r.arrears, r.owner_id))
            await contacts.submit(ctx, requests, now, policy)

    async def _promise_reminders(self, ctx: BatchContext, day: Any, now: datetime,
                                 policy: ContactPolicy) -> None:
        before = policy.triggers["promise_reminder"].days_before or 1
        # the day after the closed date is "today"; a reminder falls due the day before due_on
        rows = await ctx.conn.execute(text("""
            UPDATE promises p SET reminded = true
            FROM loans l
            WHERE p.loan_id = l.loan_id AND p.status = 'open' AND NOT p.reminded
              AND p.due_on > :d AND p.due_on - CAST(:before AS int) <= :today
              AND l.borrower_id IS NOT NULL
            RETURNING p.promise_id, p.loan_id, p.collector_id, p.amount, p.due_on,
                      l.borrower_id, l.stage"""),
            {"d": day, "before": before, "today": day + timedelta(days=1)})
        for r in rows.all():
            requests = triggers.promise_reminder_requests(
                loan_id=r.loan_id, borrower_id=r.borrower_id, promise_id=r.promise_id,
                due_on=r.due_on, today=triggers.promise_reminder_date(r.due_on, policy),
                stage=r.stage, created_at=now, policy=policy,
                variables={"promise_amount": str(r.amount), "promise_due_on": r.due_on.isoformat(),
                           "collector_name": r.collector_id})
            await contacts.submit(ctx, requests, now, policy)

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
                        handlers=handlers.table())
