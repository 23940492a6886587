"""The notifier's REST API: the contact log, the contact policy, templates, receipts."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal

import orjson
from fastapi import APIRouter, Body, Depends, Query
from pydantic import BaseModel, Field
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.notifier import store
from services.notifier.clock import Clock
from services.notifier.contacts import publish
from services.notifier.domain import validate_contact_policy, validate_template
from services.notifier.domain.builtin_templates import BUILTIN_TEMPLATES
from services.notifier.settings import NotifierSettings
from shared import outbox
from shared.api import require
from shared.context import BatchContext
from shared.paging import decode_cursor, encode_cursor
from shared.problems import Problem
from shared.topics import TopicNames

PROVIDERS = ("sms", "email", "voice", "letter")


class TemplateBody(BaseModel):
    source: str = Field(min_length=1, max_length=20_000)


class Receipt(BaseModel):
    contact_id: str = Field(min_length=1, max_length=128)
    status: Literal["delivered", "failed"]
    reason: str = Field(default="provider_receipt", min_length=1, max_length=500)
    message_id: str | None = None


def _contact(r: Any) -> dict[str, Any]:
    return {"contact_id": r.contact_id, "loan_id": r.loan_id, "borrower_id": r.borrower_id,
            "channel": r.channel, "template": r.template, "stage": r.stage,
            "trigger": r.trigger, "status": r.status, "reason": r.reason,
            "scheduled_for": r.scheduled_for.isoformat() if r.scheduled_for else None,
            "decided_at": r.decided_at.isoformat(), "attempt": r.attempt}


def build_router(engine: AsyncEngine, settings: NotifierSettings, topics: TopicNames,
                 clock: Clock, source: str = "urn:qingshou:notifier") -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["notifier"])

    @router.get("/loans/{loan_id}/contacts", dependencies=[Depends(require("read"))])
    async def loan_contacts(loan_id: str, limit: int = Query(50, ge=1, le=500),
                            cursor: str | None = None) -> dict[str, Any]:
        after = decode_cursor(cursor, int, 0)
        async with engine.connect() as conn:
            rows = (await conn.execute(text("""
                SELECT * FROM contacts WHERE loan_id = :l AND id > :a ORDER BY id LIMIT :n"""),
                {"l": loan_id, "a": after, "n": limit + 1})).all()
        more = len(rows) > limit
        rows = rows[:limit]
        return {"items": [_contact(r) for r in rows],
                "next_cursor": encode_cursor(rows[-1].id) if more else None}

    @router.get("/contacts/summary", dependencies=[Depends(require("read"))])
    async def contacts_summary(days: int = Query(30, ge=1, le=3660)) -> dict[str, Any]:
        """Contacts decided in the last ``days`` days by channel, status and reason, each
        contact counted once at its latest status (deferred then sent counts as sent)."""
        async with engine.connect() as conn:
            since = await clock.now(conn) - timedelta(days=days)
            rows = (await conn.execute(text("""
                SELECT channel, status, reason, count(*) AS n FROM (
                    SELECT DISTINCT ON (contact_id) channel, status, reason FROM contacts
                    WHERE decided_at >= :since ORDER BY contact_id, id DESC) latest
                GROUP BY channel, status, reason ORDER BY channel, status, reason"""),
                {"since": since})).all()
        return {"since": since.isoformat(), "contacts": sum(r.n for r in rows),
                "items": [{"channel": r.channel, "status": r.status, "reason": r.reason,
                           "count": r.n} for r in rows]}

    @router.get("/contact-policy", dependencies=[Depends(require("read"))])
    async def get_policy() -> dict[str, Any]:
        async with engine.connect() as conn:
            version, doc, _ = await store.load_policy(conn)
        return {**doc, "version": version or doc.get("version", 1)}

    @router.put("/contact-policy", dependencies=[Depends(require("admin"))])
    async def put_policy(document: dict[str, Any] = Body(...)) -> dict[str, Any]:
        errors = validate_contact_policy(document)
        if errors:
            raise Problem(422, "the contact policy is invalid", errors=errors)
        async with engine.begin() as conn:
            await conn.execute(text("LOCK TABLE contact_policies IN EXCLUSIVE MODE"))
            current = (await conn.execute(text(
                "SELECT coalesce(max(version), 1) FROM contact_policies"))).scalar_one()
            stored = {**document, "version": current + 1}
            await conn.execute(text("""
                INSERT INTO contact_policies (version, document)
                VALUES (:v, CAST(:d AS jsonb))"""),
                {"v": current + 1, "d": orjson.dumps(stored).decode()})
        return stored

    @router.get("/templates/{template_id}", dependencies=[Depends(require("read"))])
    async def get_template(template_id: str) -> dict[str, Any]:
        async with engine.connect() as conn:
            row = (await conn.execute(text(
                "SELECT source, updated_at FROM template_overrides WHERE template_id = :t"),
                {"t": template_id})).first()
        if row is not None:
            return {"template_id": template_id, "source": row.source, "builtin": False,
                    "updated_at": row.updated_at.isoformat()}
        if template_id in BUILTIN_TEMPLATES:
            return {"template_id": template_id, "source": BUILTIN_TEMPLATES[template_id],
                    "builtin": True, "updated_at": None}
        raise Problem(404, f"no template {template_id}")

    @router.put("/templates/{template_id}", dependencies=[Depends(require("admin"))])
    async def put_template(template_id: str, body: TemplateBody) -> dict[str, Any]:
        errors = validate_template(template_id, body.source)
        if errors:
            raise Problem(422, "the template is refused", errors=errors)
        async with engine.begin() as conn:
            row = (await conn.execute(text("""
                INSERT INTO template_overrides (template_id, source) VALUES (:t, :s)
                ON CONFLICT (template_id) DO UPDATE SET source = EXCLUDED.source,
                    updated_at = now()
                RETURNING updated_at"""), {"t": template_id, "s": body.source})).one()
        return {"template_id": template_id, "source": body.source, "builtin": False,
                "updated_at": row.updated_at.isoformat()}

    @router.post("/receipts/{provider}", dependencies=[Depends(require("receipts"))])
    async def receipt(provider: str, body: Receipt) -> dict[str, Any]:
        if provider not in PROVIDERS:
            raise Problem(404, f"unknown provider {provider}",
                          errors=[{"field": "provider", "message": "not a configured provider"}])
        async with engine.begin() as conn:
            last = (await conn.execute(text("""
                SELECT * FROM contacts WHERE contact_id = :c ORDER BY id DESC LIMIT 1
                FOR UPDATE"""), {"c": body.contact_id})).first()
            if last is None or last.channel != provider:
                raise Problem(404, "no such contact for this provider",
                              errors=[{"field": "contact_id", "message": "unknown contact"}])
            if last.status == body.status:
                return {"contact_id": body.contact_id, "status": body.status,
                        "duplicate": True}
            if last.status not in ("sent", "delivered", "failed"):
                raise Problem(409, f"contact is {last.status}, not sent",
                              errors=[{"field": "contact_id", "message": "not sent"}])
            now: datetime = await clock.now(conn)
            row = {"contact_id": last.contact_id, "loan_id": last.loan_id,
                   "borrower_id": last.borrower_id, "channel": last.channel,
                   "template": last.template, "stage": last.stage, "trigger": last.trigger,
                   "status": body.status, "reason": body.reason, "scheduled_for": None,
                   "decided_at": now, "attempt": {"receipt_message_id": body.message_id}}
            await store.append_log(conn, [row])
            ctx = BatchContext(conn, topics, source)
            publish(ctx, row)
            await outbox.write(conn, ctx.outbox, settings.relay_shards, settings.schema_name)
        return {"contact_id": body.contact_id, "status": body.status, "duplicate": False}

    return router
