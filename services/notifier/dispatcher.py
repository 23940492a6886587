"""Dispatch: render queued contacts and hand them to their channel's provider.

A tick claims due rows of `dispatch_queue` with `FOR UPDATE SKIP LOCKED`, sends them
concurrently, and in the same transaction removes them from the queue and appends the
outcome to the contact log (`sent`/provider_accepted with attempt data; `failed` is also
published as `contact.attempted`). A crash mid-tick leaves the rows queued; the resend carries
the same idempotency key, so the provider sends once. The claimed rows stay locked while
their HTTP calls run (bounded by claim size, attempts and the provider timeout), which is what
keeps a second dispatcher from sending them at the same time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.notifier import store
from services.notifier.clock import Clock
from services.notifier.contacts import log_row, publish
from services.notifier.domain.builtin_templates import BUILTIN_TEMPLATES
from services.notifier.domain.templates import TemplateRenderError, render
from services.notifier.providers import Outcome, Provider, build_providers
from services.notifier.settings import NotifierSettings
from shared import outbox
from shared.context import BatchContext
from shared.db import KeptConnection
from shared.topics import TopicNames

log = logging.getLogger("qingshou.notifier.dispatcher")


def _loan_ref(loan_id: str) -> str:
    return "****" + loan_id[-4:]


class Dispatcher:
    def __init__(self, engine: AsyncEngine, settings: NotifierSettings, topics: TopicNames,
                 clock: Clock, client: httpx.AsyncClient | None = None,
                 source: str = "urn:qingshou:notifier") -> None:
        self.engine = engine
        self._kept = KeptConnection(engine)  # ticks every 0.2 s: no pool ping each time
        self.settings = settings
        self.topics = topics
        self.clock = clock
        self.source = source
        self.client = client or httpx.AsyncClient(
            limits=httpx.Limits(max_connections=settings.dispatch_concurrency,
                                max_keepalive_connections=settings.dispatch_concurrency))
        self.providers: dict[str, Provider] = build_providers(settings, self.client)
        self._stopping = asyncio.Event()

    async def _context(self, conn: AsyncConnection, rows: list[Any]) -> tuple[dict, dict, dict]:
        borrowers = {r.borrower_id: r for r in await conn.execute(text(
            "SELECT * FROM borrowers WHERE borrower_id = ANY(:ids)"),
            {"ids": list({r.request["borrower_id"] for r in rows})})}
        currencies = {r.loan_id: r.currency for r in await conn.execute(text(
            "SELECT loan_id, currency FROM loans WHERE loan_id = ANY(:ids)"),
            {"ids": list({r.request["loan_id"] for r in rows})})}
        overrides = {r.template_id: r.source for r in await conn.execute(text(
            "SELECT template_id, source FROM template_overrides WHERE template_id = ANY(:ids)"),
            {"ids": list({r.template_id for r in rows})})}
        return borrowers, currencies, overrides

    def _payload(self, row: Any, borrower: Any, currency: str | None,
                 source: str | None) -> dict[str, Any]:
        req = row.request
        if borrower is None or source is None:
            raise TemplateRenderError("borrower or template missing")
        s = self.settings
        variables = {"borrower_name": borrower.name, "bank_name": s.bank_name,
                     "help_phone": s.help_phone, "help_url": s.help_url,
                     "opt_out_url": s.opt_out_url, "loan_ref": _loan_ref(req["loan_id"]),
                     "currency": currency or "CNY", **req.get("variables", {})}
        rendered = render(row.template_id, source, variables)
        to = {"sms": borrower.phone, "voice": borrower.phone, "email": borrower.email,
              "letter": borrower.name}[row.channel]
        return {"contact_id": row.contact_id, "channel": row.channel, "to": to,
                "language": row.template_id.split(".")[2], "template_id": row.template_id,
                "subject": rendered.subject, "body": rendered.body, "loan_id": req["loan_id"],
                "borrower_id": req["borrower_id"]}

    async def _send_all(self, rows: list[Any],
                        payloads: list[tuple[dict[str, Any] | None, str]]) -> list[Outcome]:
        """Per-contact outcomes in `rows` order; single requests or provider batches."""
        outcomes: dict[int, Outcome] = {}
        by_channel: dict[str, list[int]] = {}
        for i, (row, (payload, error)) in enumerate(zip(rows, payloads, strict=True)):
            if payload is None:
                outcomes[i] = Outcome(False, 0, error=error)
            else:
                by_channel.setdefault(row.channel, []).append(i)
        size = self.settings.provider_batch_size
        sem = asyncio.Semaphore(self.settings.dispatch_concurrency)

        async def one(i: int) -> None:
            async with sem:
                outcomes[i] = await self.providers[rows[i].channel].send(payloads[i][0] or {})

        async def many(channel: str, chunk: list[int]) -> None:
            async with sem:
                got = await self.providers[channel].send_many(
                    [payloads[i][0] or {} for i in chunk])
            outcomes.update(zip(chunk, got, strict=True))

        jobs: list[Awaitable[None]] = []
        for channel, idx in by_channel.items():
            if size == 1:
                jobs.extend(one(i) for i in idx)
            else:
                jobs.extend(many(channel, idx[k:k + size]) for k in range(0, len(idx), size))
        await asyncio.gather(*jobs)
        return [outcomes[i] for i in range(len(rows))]

    async def tick(self) -> int:
        """Send what is queued; returns how many rows were claimed."""
        async with self._kept.begin() as conn:
            rows = (await conn.execute(text("""
                SELECT contact_id, channel, template_id, request, attempts FROM dispatch_queue
                WHERE next_attempt_at <= now() ORDER BY next_attempt_at
                LIMIT :n FOR UPDATE SKIP LOCKED"""), {"n": self.settings.dispatch_batch})).all()
            rows = list(rows)
            if not rows:
                return 0
            borrowers, currencies, overrides = await self._context(conn, rows)
            payloads: list[tuple[dict[str, Any] | None, str]] = []
            for row in rows:
                source = overrides.get(row.template_id, BUILTIN_TEMPLATES.get(row.template_id))
                try:
                    payloads.append((self._payload(
                        row, borrowers.get(row.request["borrower_id"]),
                        currencies.get(row.request["loan_id"]), source), ""))
                except TemplateRenderError as exc:
                    payloads.append((None, f"render_error:{exc}"[:400]))
            outcomes = await self._send_all(rows, payloads)
            await self._record(conn, rows, outcomes)
        return len(rows)

    async def _record(self, conn: AsyncConnection, rows: list[Any],
                      outcomes: list[Outcome]) -> None:
        ctx = BatchContext(conn, self.topics, self.source)
        now = await self.clock.now(conn)
        log_rows: list[dict[str, Any]] = []
        done: list[str] = []
        for row, out in zip(rows, outcomes, strict=True):
            req = store.request_from_json(row.request)
            attempt = {"attempts": row.attempts + out.attempts, "status_code": out.status_code,
                       "message_id": out.message_id, "error": out.error or None,
                       "provider": row.channel}
            if out.retry_later:
                await conn.execute(text("""
                    UPDATE dispatch_queue SET attempts = attempts + :a, next_attempt_at = :t
                    WHERE contact_id = :c"""), {"a": out.attempts, "c": row.contact_id,
                    "t": datetime.now(UTC) + timedelta(seconds=self.settings.breaker_cooldown_s)})
                continue
            done.append(row.contact_id)
            if out.ok:
                log_rows.append(log_row(req, "sent", "provider_accepted", now,
                                        template=row.template_id, attempt=attempt))
            else:
                failed = log_row(req, "failed", out.error or "provider_error", now,
                                 template=row.template_id, attempt=attempt)
                log_rows.append(failed)
                publish(ctx, failed)
        await conn.execute(text("DELETE FROM dispatch_queue WHERE contact_id = ANY(:ids)"),
                           {"ids": done})
        await store.append_log(conn, log_rows)
        await outbox.write(conn, ctx.outbox, self.settings.relay_shards,
                           self.settings.schema_name)

    async def run(self) -> None:
        while not self._stopping.is_set():
            try:
                claimed = await self.tick()
            except Exception:
                log.exception("dispatch tick failed; retrying")
                claimed = 0
            if claimed < self.settings.dispatch_batch:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(),
                                           self.settings.dispatch_interval_s)

    async def stop(self) -> None:
        self._stopping.set()

    async def close(self) -> None:
        await self._kept.close()
        await self.client.aclose()
