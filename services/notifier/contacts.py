"""Deciding contact requests against stored state: decide, log, publish, queue.

Used by the consumer handlers (new requests) and by the scheduler (deferred ones on release),
always inside the caller's transaction, with `contact.attempted` queued on its outbox.
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
    ContactPolicy,
    ContactRequest,
    Decision,
    Defer,
    Send,
    Suppress,
    decide,
)
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
        "reason": row["reason"][:500],
        "scheduled_for": row["scheduled_for"].isoformat() if row["scheduled_for"] else None})


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


async def decide_and_record(ctx: BatchContext, req: ContactRequest, now: datetime,
                            policy: ContactPolicy) -> Decision | None:
    """Decide one request with fresh loan, borrower and history; log, publish and queue it.

    Returns None when the borrower is unknown: the request is deferred (reason
    ``unknown_borrower``) and decided again once the borrower may be known, or suppressed when
    it has waited longer than the policy's staleness limit.
    """
    conn = ctx.conn
    loan = await store.load_loan(conn, req.loan_id)
    if loan is not None:
        req = req.with_loan_state(loan.stage, loan.closed)
    flags = loan.flags if loan is not None else frozenset()
    found = await store.load_borrower(conn, req.borrower_id)
    if found is None:
        # borrower.updated travels keyed by borrower, so it may land after the loan's first
        # trigger: wait for it (backing off) while the request is fresh, then give up
        retry = now + max(_BORROWER_WAIT_MIN, now - req.created_at)
        if retry <= req.created_at + policy.max_deferral:
            row = log_row(req, "deferred", "unknown_borrower", now, scheduled_for=retry)
            await store.queue_deferred(conn, req, retry)
        else:
            row = log_row(req, "suppressed", "unknown_borrower", now)
        await store.append_log(conn, [row])
        publish(ctx, row)
        return None
    borrower, _name = found
    history = await store.load_history(conn, req.loan_id, now, policy)
    decision = decide(req, borrower, flags, history, now, policy)
    row = _row_for(req, decision, now)
    await store.append_log(conn, [row])
    publish(ctx, row)
    if isinstance(decision, Send):
        await store.queue_dispatch(conn, req, decision.template_id)
    elif isinstance(decision, Defer):
        await store.queue_deferred(conn, req, decision.until)
    return decision


async def submit(ctx: BatchContext, requests: Iterable[ContactRequest], now: datetime,
                 policy: ContactPolicy) -> None:
    """New requests from a trigger; a contact id already in the log is not asked twice."""
    for req in requests:
        if await store.logged_already(ctx.conn, req.contact_id):
            continue
        await decide_and_record(ctx, req, now, policy)


async def release_due(ctx: BatchContext, now: datetime, policy: ContactPolicy,
                      limit: int) -> int:
    """Decide again the deferred contacts due by `now` (claimed with SKIP LOCKED)."""
    conn: AsyncConnection = ctx.conn
    rows = (await conn.execute(text("""
        SELECT contact_id, request FROM deferred_contacts WHERE due_at <= :now
        ORDER BY due_at LIMIT :n FOR UPDATE SKIP LOCKED"""), {"now": now, "n": limit})).all()
    for row in rows:
        await conn.execute(text("DELETE FROM deferred_contacts WHERE contact_id = :c"),
                           {"c": row.contact_id})
        await decide_and_record(ctx, store.request_from_json(row.request), now, policy)
    return len(rows)
