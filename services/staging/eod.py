"""End of day: age the loans whose next transition is due, in chunks, beside the consumer.

``business_day.closed`` (consumer) sets the business date and ``eod_pending``. This worker
(a background job of every staging instance, polling the calendar) then repeats, each in its
own transaction: claim up to ``chunk`` loans with ``next_transition_date <= date`` (indexed)
``FOR UPDATE SKIP LOCKED``, age them with the domain, write them back and queue their events.
The plain due loans (``domain.shortcut``: unowned, no flag or open promise, ageing one stage)
take a shortcut, decided from a few facts and written with one statement per chunk; the others
are aged by ``handlers.age_to``.
Several instances share the work; a loan locked by a consumer batch is skipped and taken on a
later pass (the batch may age it itself, since handlers catch loans up to the business date).
When nothing is due any more, the run is recorded (``eod_runs``, with the last stage-history
id, for roll rates) with a portfolio snapshot, and ``eod_pending`` is cleared.

So end of day costs in proportion to the loans whose date is due, not the book. A crash
midway leaves ``eod_pending`` set: the next poll resumes where the last committed chunk ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import Iterator
from datetime import date, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.staging import eodstore, portfolio, store
from services.staging.casework import Casework
from services.staging.domain.handlers import age_to
from services.staging.domain.loan import LoanState
from services.staging.domain.shortcut import PlainStep, plain_step
from shared import outbox
from shared.context import BatchContext
from shared.topics import TopicNames

log = logging.getLogger("qingshou.staging.eod")


class EndOfDay:
    def __init__(self, engine: AsyncEngine, topics: TopicNames, source: str, schema: str,
                 shards: int, chunk: int = 5000, poll_interval: float = 0.5,
                 shortcut: bool = True):
        self.engine = engine
        self.topics = topics
        self.source = source
        self.schema = schema
        self.shards = shards
        self.chunk = chunk
        self.poll_interval = poll_interval
        self.shortcut = shortcut  # off only to compare with the general path (tests)

    async def run_forever(self) -> None:
        while True:
            try:
                await self.run_pending()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("end of day failed; will retry")
            await asyncio.sleep(self.poll_interval)

    async def run_pending(self) -> int:
        """Finish the pending end of day, if any; returns the loans aged by this instance."""
        async with self.engine.connect() as conn:
            cal = await store.calendar(conn)
        if cal.eod_pending is None:
            return 0
        on, aged = cal.eod_pending, 0
        while True:
            done = await self.age_chunk(on)
            aged += done
            if done:
                continue
            async with self.engine.connect() as conn:
                left = await store.count_due(conn, on)
            if left == 0:
                break
            await asyncio.sleep(0.05)  # held by a consumer batch or another instance
        await self._finish(on, aged)
        return aged

    async def age_chunk(self, on: date) -> int:
        with _collector_paused():
            return await self._age_chunk(on)

    async def _age_chunk(self, on: date) -> int:
        async with self.engine.begin() as conn:
            due = await eodstore.claim_due(conn, on, self.chunk)
            if not due:
                return 0
            policies = await store.load_policy(conn)
            steps: dict[str, PlainStep] = {}
            loans: dict[str, LoanState] = {}
            for loan, doc in due:
                step = plain_step(loan, on, policies.for_product(loan.product)) \
                    if self.shortcut else None
                if step is None:
                    loans[loan.loan_id] = LoanState.from_dict(doc)
                else:
                    steps[loan.loan_id] = step
            ctx = BatchContext(conn, self.topics, self.source)
            work = Casework(ctx, policies, on, loans)
            for n, (loan, doc) in enumerate(due):  # in loan_id order, whichever path
                if n % 200 == 199:
                    await asyncio.sleep(0)  # CPU-bound: let the consumer and the API breathe
                if loan.loan_id in steps:
                    await work.record_plain(steps[loan.loan_id], doc)
                    continue
                state = loans[loan.loan_id]
                state = await work.record(age_to(state, on, work.policy(state)))
                if state.next_transition_date is not None and state.next_transition_date <= on:
                    # never claim the same loan twice in one run
                    log.warning("next transition not after the business date",
                                extra={"loan_id": state.loan_id})
                    work.loans[state.loan_id] = _postpone(state, on)
            await work.flush()
            await outbox.write(conn, ctx.outbox, self.shards, self.schema)
        return len(due)

    async def _finish(self, on: date, aged: int) -> None:
        async with self.engine.begin() as conn:
            cal = await store.calendar(conn, lock=True)
            if cal.eod_pending != on:
                return
            await conn.execute(text("""
                INSERT INTO eod_runs (business_date, history_upto, aged)
                SELECT :d, COALESCE(max(id), 0), :n FROM stage_history
                ON CONFLICT (business_date) DO NOTHING"""), {"d": on, "n": aged})
            await portfolio.snapshot(conn, on)
            await store.set_calendar(conn, cal.business_date, None)
        log.info("end of day done", extra={"business_date": on.isoformat(), "aged": aged})


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """The cyclic garbage collector off while a chunk is aged (process-wide, so also for a
    consumer batch interleaved meanwhile; about a second). A chunk holds a few hundred thousand
    containers (documents, states, events) that form no cycles, and the collector kept
    re-scanning them: 5 % of end of day's CPU. Reference counting still frees everything."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _postpone(state: LoanState, on: date) -> LoanState:
    return state.evolve(next_transition_date=on + timedelta(days=1))
