"""SQL of the notifier: state read for decisions, the contact log, the two queues."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import orjson
from prometheus_client import Counter
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.notifier.domain import (
    DEFAULT_CONTACT_POLICY,
    BorrowerProfile,
    ContactPolicy,
    ContactRecord,
    ContactRequest,
    parse_contact_policy,
)


@dataclass(frozen=True, slots=True)
class LoanState:
    loan_id: str
    borrower_id: str | None
    stage: str
    closed: bool
    flags: frozenset[str]
    owner_id: str | None
    stage_entered_on: date | None
    dpd: int
    arrears: str
    currency: str | None


CONTACTS_LOGGED = Counter(
    "qs_contacts_logged_total", "Rows appended to the contact log (counted before commit)",
    ["channel", "status"])


def request_to_json(req: ContactRequest) -> str:
    return orjson.dumps({
        "contact_id": req.contact_id, "loan_id": req.loan_id, "borrower_id": req.borrower_id,
        "channel": req.channel, "template": req.template, "trigger": req.trigger,
        "stage": req.stage, "created_at": req.created_at.isoformat(),
        "requires_stage": req.requires_stage, "loan_stage_now": req.loan_stage_now,
        "loan_closed": req.loan_closed,
        "valid_until": req.valid_until.isoformat() if req.valid_until else None,
        "variables": dict(req.variables),
    }, default=str).decode()


def request_from_json(doc: dict[str, Any]) -> ContactRequest:
    valid = doc.get("valid_until")
    return ContactRequest(
        contact_id=doc["contact_id"], loan_id=doc["loan_id"], borrower_id=doc["borrower_id"],
        channel=doc["channel"], template=doc["template"], trigger=doc["trigger"],
        stage=doc["stage"], created_at=datetime.fromisoformat(doc["created_at"]),
        requires_stage=doc["requires_stage"], loan_stage_now=doc["loan_stage_now"],
        loan_closed=doc["loan_closed"], valid_until=date.fromisoformat(valid) if valid else None,
        variables=doc.get("variables") or {},
    )


async def load_policy(conn: AsyncConnection) -> tuple[int, dict[str, Any], ContactPolicy]:
    row = (await conn.execute(text(
        "SELECT version, document FROM contact_policies ORDER BY version DESC LIMIT 1"))).first()
    if row is None:
        return 0, DEFAULT_CONTACT_POLICY, parse_contact_policy(DEFAULT_CONTACT_POLICY)
    return row.version, row.document, parse_contact_policy(row.document)


async def load_loan(conn: AsyncConnection, loan_id: str) -> LoanState | None:
    row = (await conn.execute(text("SELECT * FROM loans WHERE loan_id = :id"),
                              {"id": loan_id})).first()
    if row is None:
        return None
    return LoanState(row.loan_id, row.borrower_id, row.stage, row.closed, frozenset(row.flags),
                     row.owner_id, row.stage_entered_on, row.dpd, str(row.arrears), row.currency)


async def load_borrower(conn: AsyncConnection,
                        borrower_id: str) -> tuple[BorrowerProfile, str] | None:
    row = (await conn.execute(text("SELECT * FROM borrowers WHERE borrower_id = :id"),
                              {"id": borrower_id})).first()
    if row is None:
        return None
    profile = BorrowerProfile(
        borrower_id=row.borrower_id, timezone=row.timezone, language=row.language,
        opted_out_channels=frozenset(row.opted_out_channels), vulnerable=row.vulnerable,
        has_phone=bool(row.phone), has_email=bool(row.email), has_address=True)
    return profile, row.name


_HISTORY = text("""
SELECT channel, min(decided_at) FILTER (WHERE status IN ('sent', 'failed')) AS sent_at,
       (array_agg(status ORDER BY id DESC))[1] AS status
FROM contacts
WHERE loan_id = :loan AND status IN ('sent', 'delivered', 'failed') AND decided_at > :since
GROUP BY contact_id, channel
""")


async def load_history(conn: AsyncConnection, loan_id: str, now: datetime,
                       policy: ContactPolicy) -> list[ContactRecord]:
    """One record per contact that went out (its first send time, its latest status)."""
    windows = [c.window for caps in policy.caps.values() for c in caps] or [timedelta(days=7)]
    rows = await conn.execute(_HISTORY, {"loan": loan_id, "since": now - max(windows)})
    return [ContactRecord(r.channel, r.sent_at, r.status) for r in rows if r.sent_at]


async def logged_already(conn: AsyncConnection, contact_id: str) -> bool:
    row = await conn.execute(text("SELECT 1 FROM contacts WHERE contact_id = :c LIMIT 1"),
                             {"c": contact_id})
    return row.first() is not None


_LOG = text("""
INSERT INTO contacts (contact_id, loan_id, borrower_id, channel, template, stage, trigger,
                      status, reason, scheduled_for, decided_at, attempt)
VALUES (:contact_id, :loan_id, :borrower_id, :channel, :template, :stage, :trigger,
        :status, :reason, :scheduled_for, :decided_at, CAST(:attempt AS jsonb))
""")


async def append_log(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> None:
    """Append decisions to the contact log (never updated, never deleted but by retention)."""
    if rows:
        for r in rows:
            CONTACTS_LOGGED.labels(r["channel"], r["status"]).inc()
        await conn.execute(_LOG, [
            {**r, "attempt": orjson.dumps(r["attempt"]).decode() if r.get("attempt") else None}
            for r in rows])


async def queue_deferred(conn: AsyncConnection, req: ContactRequest, due_at: datetime) -> None:
    await conn.execute(text("""
        INSERT INTO deferred_contacts (contact_id, due_at, request)
        VALUES (:c, :due, CAST(:req AS jsonb))
        ON CONFLICT (contact_id) DO UPDATE SET due_at = EXCLUDED.due_at"""),
        {"c": req.contact_id, "due": due_at, "req": request_to_json(req)})


async def queue_dispatch(conn: AsyncConnection, req: ContactRequest, template_id: str) -> None:
    await conn.execute(text("""
        INSERT INTO dispatch_queue (contact_id, channel, template_id, request)
        VALUES (:c, :ch, :t, CAST(:req AS jsonb)) ON CONFLICT (contact_id) DO NOTHING"""),
        {"c": req.contact_id, "ch": req.channel, "t": template_id,
         "req": request_to_json(req)})


async def purge_contacts(conn: AsyncConnection, older_than: datetime) -> int:
    """Retention: the one deletion the contact log allows, by age only."""
    result = await conn.execute(text("DELETE FROM contacts WHERE recorded_at < :t"),
                                {"t": older_than})
    return result.rowcount or 0
