"""Provider client: retries with backoff, permanent refusals, the circuit breaker (no network)."""

from __future__ import annotations

import httpx
import pytest

from services.notifier.providers import CircuitBreaker, Provider, backoff_delay
from services.notifier.settings import NotifierSettings


def provider(answers: list[int], **overrides: object) -> tuple[Provider, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        status = answers.pop(0) if answers else 202
        return httpx.Response(status, json={"message_id": "m1"})

    settings = NotifierSettings(provider_backoff_first_s=0.0, **overrides)  # type: ignore[arg-type]
    client = httpx.AsyncClient(transport=httpx.MockTransport(handle))
    return Provider("sms", "http://provider/v1/sms", settings, client), seen


PAYLOAD = {"contact_id": "c-1", "channel": "sms", "body": "hello"}


async def test_retries_until_accepted_with_the_contact_id_as_idempotency_key():
    p, seen = provider([503, 500])
    out = await p.send(PAYLOAD)
    assert out.ok and out.attempts == 3 and out.message_id == "m1"
    assert {r.headers["Idempotency-Key"] for r in seen} == {"c-1"}


async def test_a_permanent_refusal_is_not_retried():
    p, seen = provider([400])
    out = await p.send(PAYLOAD)
    assert not out.ok and out.error == "refused_400" and len(seen) == 1


async def test_gives_up_after_max_attempts():
    p, seen = provider([503] * 10, provider_max_attempts=3, breaker_failures=100)
    out = await p.send(PAYLOAD)
    assert not out.ok and not out.retry_later and len(seen) == 3


async def test_open_breaker_keeps_the_contact_for_later():
    p, seen = provider([503] * 10, breaker_failures=2, breaker_cooldown_s=60)
    first = await p.send(PAYLOAD)
    assert first.retry_later and len(seen) == 2
    second = await p.send(PAYLOAD)
    assert second.retry_later and second.attempts == 0 and len(seen) == 2


def test_breaker_half_opens_after_cooldown(monkeypatch: pytest.MonkeyPatch):
    clock = [100.0]
    monkeypatch.setattr("services.notifier.providers.time.monotonic", lambda: clock[0])
    breaker = CircuitBreaker(failures=2, cooldown=5)
    breaker.failure()
    assert breaker.state == "closed"
    breaker.failure()
    assert breaker.state == "open" and not breaker.allow()
    clock[0] += 5
    assert breaker.state == "half_open" and breaker.allow()
    breaker.success()
    assert breaker.state == "closed"


def test_backoff_has_jitter_within_an_exponential_ceiling():
    delays = [backoff_delay(3, 0.1, 10.0) for _ in range(200)]
    assert all(0 <= d <= 0.8 for d in delays)
    assert len(set(delays)) > 100
    assert all(backoff_delay(30, 0.1, 2.0) <= 2.0 for _ in range(50))


async def test_batch_mode_retries_only_what_is_left():
    calls: list[int] = []

    def handle(request: httpx.Request) -> httpx.Response:
        import json
        messages = json.loads(request.content)["messages"]
        calls.append(len(messages))
        if len(calls) == 1:
            return httpx.Response(503)
        results = [{"contact_id": m["contact_id"],
                    "status": "retry" if m["contact_id"] == "b" and len(calls) == 2
                    else "accepted", "message_id": m["contact_id"]} for m in messages]
        return httpx.Response(200, json={"results": results})

    settings = NotifierSettings(provider_backoff_first_s=0.0)
    client = httpx.AsyncClient(transport=httpx.MockTransport(handle))
    p = Provider("sms", "http://provider/v1/sms", settings, client)
    outs = await p.send_many([{"contact_id": "a"}, {"contact_id": "b"}])
    assert [o.ok for o in outs] == [True, True]
    assert calls == [2, 2, 1]
