"""Contact providers over HTTP (SMS gateway, e-mail API, dialer, letter house).

Payload (JSON, POST to the channel's URL, header `Idempotency-Key: <contact_id>`,
`Authorization: Bearer <token>`):

    {"contact_id": "...", "channel": "sms", "to": "+8613800000000", "language": "zh-CN",
     "template_id": "early.sms.zh-CN", "subject": null, "body": "...", "loan_id": "...",
     "borrower_id": "..."}

Batch mode (`provider_batch_size` > 1): `POST <url>/batch` with `{"messages": [payload, ...]}`;
each payload's `contact_id` is its idempotency key. The answer is `{"results": [{"contact_id",
"status": "accepted" | "refused" | "retry", "message_id", "error"}]}`; a non-2xx answer
retries the whole batch. Bulk APIs of SMS gateways and e-mail services work this way, and it
is what lets one process dispatch thousands of contacts per second.

A 2xx answer means accepted (`{"message_id": ...}` optional); 4xx other than 408/429 is a
permanent refusal; anything else is retried with exponential backoff and full jitter. A
circuit breaker per provider stops calling a provider that keeps failing and lets one call
through after a cool-down.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from typing import Any

import httpx

from services.notifier.settings import NotifierSettings


@dataclass(frozen=True, slots=True)
class Outcome:
    ok: bool
    attempts: int
    status_code: int | None = None
    error: str = ""
    message_id: str | None = None
    retry_later: bool = False  # the breaker is open: not tried, keep it queued


class CircuitBreaker:
    """Closed until `failures` in a row; open for `cooldown` s; then one trial call."""

    def __init__(self, failures: int, cooldown: float) -> None:
        self.failures = failures
        self.cooldown = cooldown
        self.consecutive = 0
        self.opened_at: float | None = None

    def allow(self) -> bool:
        if self.opened_at is None:
            return True
        return time.monotonic() - self.opened_at >= self.cooldown

    def success(self) -> None:
        self.consecutive = 0
        self.opened_at = None

    def failure(self) -> None:
        self.consecutive += 1
        if self.consecutive >= self.failures:
            self.opened_at = time.monotonic()

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        return "half_open" if self.allow() else "open"


def backoff_delay(attempt: int, first: float, ceiling: float) -> float:
    """Full jitter: uniform in [0, min(ceiling, first * 2**attempt)]."""
    return random.uniform(0, min(ceiling, first * (2 ** attempt)))


class Provider:
    def __init__(self, channel: str, url: str, settings: NotifierSettings,
                 client: httpx.AsyncClient) -> None:
        self.channel = channel
        self.url = url
        self.settings = settings
        self.client = client
        self.breaker = CircuitBreaker(settings.breaker_failures, settings.breaker_cooldown_s)

    async def send(self, payload: dict[str, Any]) -> Outcome:
        s = self.settings
        headers = {"Idempotency-Key": payload["contact_id"],
                   "Authorization": f"Bearer {s.provider_token}"}
        last = Outcome(False, 0, error="not_attempted")
        for attempt in range(s.provider_max_attempts):
            if not self.breaker.allow():
                if attempt == 0:
                    return Outcome(False, 0, error="circuit_open", retry_later=True)
                return Outcome(False, attempt, error=f"circuit_open_after:{last.error}",
                               retry_later=True)
            try:
                resp = await self.client.post(self.url, json=payload, headers=headers,
                                              timeout=s.provider_timeout_s)
            except httpx.HTTPError as exc:
                self.breaker.failure()
                last = Outcome(False, attempt + 1, error=type(exc).__name__)
            else:
                if resp.is_success:
                    self.breaker.success()
                    message_id = None
                    if resp.headers.get("content-type", "").startswith("application/json"):
                        message_id = resp.json().get("message_id")
                    return Outcome(True, attempt + 1, resp.status_code, message_id=message_id)
                if 400 <= resp.status_code < 500 and resp.status_code not in (408, 429):
                    # the provider refuses this contact; retrying will not change it
                    return Outcome(False, attempt + 1, resp.status_code,
                                   error=f"refused_{resp.status_code}")
                self.breaker.failure()
                last = Outcome(False, attempt + 1, resp.status_code,
                               error=f"http_{resp.status_code}")
            if attempt + 1 < s.provider_max_attempts:
                await asyncio.sleep(backoff_delay(attempt, s.provider_backoff_first_s,
                                                  s.provider_backoff_ceiling_s))
        return last


    async def send_many(self, payloads: list[dict[str, Any]]) -> list[Outcome]:
        """Batch mode: one request for many contacts; per-contact outcomes, same order."""
        s = self.settings
        pending = {p["contact_id"]: p for p in payloads}
        done: dict[str, Outcome] = {}
        last_error = "not_attempted"
        for attempt in range(s.provider_max_attempts):
            if not self.breaker.allow():
                for cid in pending:
                    done[cid] = Outcome(False, attempt, error="circuit_open", retry_later=True)
                pending = {}
                break
            try:
                resp = await self.client.post(
                    f"{self.url}/batch", json={"messages": list(pending.values())},
                    headers={"Authorization": f"Bearer {s.provider_token}"},
                    timeout=s.provider_timeout_s)
                ok = resp.is_success
                last_error = f"http_{resp.status_code}"
            except httpx.HTTPError as exc:
                ok, last_error = False, type(exc).__name__
            if ok:
                self.breaker.success()
                for item in resp.json().get("results", []):
                    cid = item.get("contact_id")
                    if cid not in pending or item.get("status") == "retry":
                        continue
                    accepted = item.get("status") == "accepted"
                    done[cid] = Outcome(accepted, attempt + 1, resp.status_code,
                                        error="" if accepted else str(item.get("error")),
                                        message_id=item.get("message_id"))
                    del pending[cid]
            else:
                self.breaker.failure()
            if not pending:
                break
            if attempt + 1 < s.provider_max_attempts:
                await asyncio.sleep(backoff_delay(attempt, s.provider_backoff_first_s,
                                                  s.provider_backoff_ceiling_s))
        for cid in pending:
            done[cid] = Outcome(False, s.provider_max_attempts, error=last_error)
        return [done[p["contact_id"]] for p in payloads]


def build_providers(settings: NotifierSettings,
                    client: httpx.AsyncClient) -> dict[str, Provider]:
    return {ch: Provider(ch, settings.provider_url(ch), settings, client)
            for ch in ("sms", "email", "voice", "letter")}
