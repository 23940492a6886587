"""Deciding contact requests against stored state: decide, log, publish, queue.

Used by the consumer (new requests) and by the scheduler (deferred ones on release), always
inside the caller's transaction, with `contact.attempted` queued on its outbox. Requests are
gathered in a :class:`ContactBatch` with the loan and borrower as they were when each was
made, then decided together in the order they were made: the contact log is asked, in one
statement, which ids it already has and for the loans' recent history, every decision is the pure
`decide`, and each send joins the history in memory before the next request is decided, so a
cap counts contacts decided earlier in the same batch. Log rows, queue rows and outbox events
are then written with one statement each.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.notifier import store
from services.notifier.domain import (
    BorrowerProfile,
    ContactPolicy,
    ContactRecord,
    ContactRequest,
    Decision,
    Defer,
    Send,
    Suppress,
    decide,
)
from services.notifier.store import LoanState
from shared.context import BatchContext
from shared.topics import CONTACT_OUTCOMES

log = logging.getLogger("qingshou.notifier.contacts")


def log_row(req: ContactRequest, status: str, reason: str, now: datetime, *,
            template: str | None = None, scheduled_for: datetime | None = None,
            attempt: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"contact_id": req.contact_id, "loan_id": req.loan_id,
            "borrower_id": req.borrower_id, "channel": req.channel,
            "template": template or req.template, "stage": req.stage, "trigger": req.trigger,
            "status": status, "reason": reason, "scheduled_for": scheduled_for,
            "decided_at": now, "attempt": attempt}


def publish(ctx: BatchContext, row: dict[str, Any]) -> None:
    """Queue `contact.attempted` for one log row on the caller's outbox."""
    ctx.emit(CONTACT_OUTCOMES, "contact.attempted", row["loan_id"], {
        "contact_id": row["contact_id"], "loan_id": row["loan_id"],
        "borrower_id": row["borrower_id"], "channel": row["channel"],
        "template": row["template"], "stage": row["stage"], "status": row["status"],
        # the aware datetime itself: the model keeps it as is and writes its isoformat, the
        # bytes an isoformat string parsed back gave (and no parse per event)
        "reason": row["reason"][:500], "scheduled_for": row["scheduled_for"]})


def _row_for(req: ContactRequest, decision: Decision, now: datetime) -> dict[str, Any]:
    if isinstance(decision, Send):
        return log_row(req, "sent", "queued_for_provider", now, template=decision.template_id)
    if isinstance(decision, Defer):
        # the reason is the constraint that fixed the time; every one met is kept alongside
        return log_row(req, "deferred", decision.reason, now, scheduled_for=decision.until,
                       attempt={"constraints": list(decision.constraints)})
    assert isinstance(decision, Suppress)
    reason = f"{decision.reason}:{decision.detail}" if decision.detail else decision.reason
    return log_row(req, "suppressed", reason, now)


_BORROWER_WAIT_MIN = timedelta(minutes=15)
_NO_FLAGS: frozenset[str] = frozenset()


# a queued request with what it is decided against: (request, now, policy, loan, borrower)
_Pending = tuple[ContactRequest, datetime, ContactPolicy, LoanState | None,
                 BorrowerProfile | None]


class ContactBatch:
    """Contact requests of one transaction, decided together in the order they were added.

    ``skip_logged``: a contact id already in the log (or decided earlier in this batch) is not
    asked twice — true for new requests from triggers, false for deferred ones being released
    (their deferral is already logged).
    """

    def __init__(self, *, skip_logged: bool = True) -> None:
        self.skip_logged = skip_logged
        self._pending: list[_Pending] = []

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, requests: Iterable[ContactRequest], now: datetime, policy: ContactPolicy,
            loan: LoanState | None, borrower: BorrowerProfile | None) -> None:
        """Queue requests with the loan and borrower as they are now (None: not known)."""
        pending = self._pending
        for req in requests:
            pending.append((req, now, policy, loan, borrower))

    async def decide_all(self, ctx: BatchContext) -> list[Decision | None]:
        """Decide every queued request; log, publish and queue the outcomes.

        One result per request decided (None when its borrower was unknown); requests skipped
        as already logged have none.
        """
        pending, self._pending = self._pending, []
        if not pending:
            return []
        spans: dict[int, timedelta] = {}  # a batch has one policy, asked once
        for p in pending:
            if id(p[2]) not in spans:
                spans[id(p[2])] = store.history_span(p[2])
        since = min(p[1] - spans[id(p[2])] for p in pending)
        seen, history = await store.decision_state(
            ctx.conn, (p[0].contact_id for p in pending) if self.skip_logged else (),
            (p[0].loan_id for p in pending), since)
        outcome = _Outcome()
        decisions: list[Decision | None] = []
        for p in pending:
            if self.skip_logged:
                if p[0].contact_id in seen:
                    continue
                seen.add(p[0].contact_id)
            decisions.append(outcome.decide(p, history.setdefault(p[0].loan_id, [])))
        await outcome.write(ctx)
        return decisions


class _Outcome:
    """What a batch of decisions writes: log rows, both queues, outbox events (in order)."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.deferred: list[tuple[ContactRequest, datetime]] = []
        self.dispatch: list[tuple[ContactRequest, str]] = []

    def decide(self, p: _Pending, history: list[ContactRecord]) -> Decision | None:
        """Decide one request; a send joins ``history`` at once, for the caps of the next."""
        req, now, policy, loan, borrower = p
        if loan is not None and (loan.stage != req.loan_stage_now
                                 or loan.closed != req.loan_closed):
            req = req.with_loan_state(loan.stage, loan.closed)  # a copy only when it differs
        if borrower is None:
            # borrower.updated travels keyed by borrower, so it may land after the loan's first
            # trigger: wait for it (backing off) while the request is fresh, then give up
            retry = now + max(_BORROWER_WAIT_MIN, now - req.created_at)
            if retry <= req.created_at + policy.max_deferral:
                self.rows.append(log_row(req, "deferred", "unknown_borrower", now,
                                         scheduled_for=retry))
                self.deferred.append((req, retry))
            else:
                self.rows.append(log_row(req, "suppressed", "unknown_borrower", now))
            return None
        flags = frozenset(loan.flags) if loan is not None and loan.flags else _NO_FLAGS
        decision = decide(req, borrower, flags, history, now, policy)
        self.rows.append(_row_for(req, decision, now))
        if isinstance(decision, Send):
            # logged `sent` now, so it counts toward the caps from this moment
            history.append(ContactRecord(req.channel, now, "sent"))
            self.dispatch.append((req, decision.template_id))
        elif isinstance(decision, Defer):
            self.deferred.append((req, decision.until))
        return decision

    async def write(self, ctx: BatchContext) -> None:
        await store.write_contacts(ctx.conn, self.rows, self.dispatch, self.deferred)
        for row in self.rows:
            publish(ctx, row)


async def release_due(ctx: BatchContext, now: datetime, limit: int) -> int:
    """Decide again the deferred contacts due by `now` (claimed with SKIP LOCKED), with fresh
    loan, flag and borrower state and the contact policy in force (read together)."""
    conn: AsyncConnection = ctx.conn
    rows = (await conn.execute(text("""
        SELECT contact_id, request FROM deferred_contacts WHERE due_at <= :now
        ORDER BY due_at LIMIT :n FOR UPDATE SKIP LOCKED"""), {"now": now, "n": limit})).all()
    if not rows:
        return 0
    await conn.execute(text(
        "DELETE FROM deferred_contacts WHERE contact_id = ANY(CAST(:c AS text[]))"),
        {"c": [r.contact_id for r in rows]})
    requests = [store.request_from_json(r.request) for r in rows]
    state = await store.load_batch_state(conn, (r.loan_id for r in requests),
                                         (r.borrower_id for r in requests))
    loans, profiles = state.loans, state.profiles
    batch = ContactBatch(skip_logged=False)
    for req in requests:
        batch.add([req], now, state.policy, loans.get(req.loan_id),
                  profiles.get(req.borrower_id))
    await batch.decide_all(ctx)
    return len(rows)
