"""The provider sandbox: accepts the notifier's payload on every channel and records it.

- `POST /v1/{channel}`: accept one contact (deduplicated by the `Idempotency-Key` header, or
  the body's `contact_id`); answers `{"message_id", "duplicate"}`.
- `POST /v1/{channel}/batch`: `{"messages": [payload, ...]}` -> `{"results": [...]}`, each
  deduplicated by its `contact_id`.
- `POST /control`: `{"fail_next": N, "fail_status": 503, "latency_ms": 0}` makes the next N
  requests fail and/or every request wait; `{"reset": true}` forgets everything.
- `GET /v1/messages?channel=`: what was accepted, in order; `GET /v1/stats` counts requests.
- `GET /v1/received`: every idempotency key (contact id) answered, with how many requests
  carried it (a retry after a crash carries it again: accepted once, then answered as a
  duplicate). The chaos test reads it to count the re-sends.

State lives in memory: this is a development and test tool, not a provider.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from fastapi import FastAPI, Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

CHANNELS = ("sms", "email", "voice", "letter")


class Control(BaseModel):
    fail_next: int | None = Field(default=None, ge=0)
    fail_status: int | None = Field(default=None, ge=400, le=599)
    latency_ms: int | None = Field(default=None, ge=0, le=60_000)
    reset: bool = False


class SandboxState:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.by_key: dict[str, str] = {}
        self.received: dict[str, int] = {}  # key -> requests that carried it
        self.fail_next = 0
        self.fail_status = 503
        self.latency_ms = 0
        self.requests = 0
        self.failed = 0
        self._ids = itertools.count(1)

    def next_id(self) -> str:
        return f"sbx-{next(self._ids)}"


def create_app() -> FastAPI:
    app = FastAPI(title="Qingshou provider sandbox", version="0.1.0")
    state = SandboxState()
    app.state.sandbox = state

    @app.get("/healthz")
    @app.get("/readyz")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/control")
    async def control(body: Control) -> dict[str, Any]:
        if body.reset:
            state.reset()
        if body.fail_next is not None:
            state.fail_next = body.fail_next
        if body.fail_status is not None:
            state.fail_status = body.fail_status
        if body.latency_ms is not None:
            state.latency_ms = body.latency_ms
        return {"fail_next": state.fail_next, "fail_status": state.fail_status,
                "latency_ms": state.latency_ms}

    @app.get("/v1/messages")
    async def messages(channel: str | None = None) -> dict[str, Any]:
        items = [m for m in state.messages if channel is None or m["channel"] == channel]
        return {"items": items, "count": len(items)}

    @app.get("/v1/received")
    async def received() -> dict[str, Any]:
        items = [{"idempotency_key": key, "requests": n, "message_id": state.by_key.get(key)}
                 for key, n in state.received.items()]
        return {"items": items, "count": len(items),
                "resent": sum(n - 1 for n in state.received.values())}

    @app.get("/v1/stats")
    async def stats() -> dict[str, int]:
        return {"requests": state.requests, "failed": state.failed,
                "accepted": len(state.messages)}

    @app.post("/v1/{channel}/batch")
    async def accept_batch(channel: str, request: Request) -> JSONResponse:
        state.requests += 1
        if channel not in CHANNELS:
            return JSONResponse({"error": f"unknown channel {channel}"}, status_code=404)
        if state.latency_ms:
            await asyncio.sleep(state.latency_ms / 1000)
        if state.fail_next > 0:
            state.fail_next -= 1
            state.failed += 1
            return JSONResponse({"error": "sandbox told to fail"}, status_code=state.fail_status)
        try:
            messages = (await request.json())["messages"]
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"error": "body is not {messages: [...]}"}, status_code=400)
        results = []
        for payload in messages:
            key = payload.get("contact_id") if isinstance(payload, dict) else None
            if not key:
                results.append({"contact_id": None, "status": "refused",
                                "error": "contact_id is required"})
                continue
            results.append({"contact_id": key, "status": "accepted",
                            **record(channel, key, payload)})
        return JSONResponse({"results": results})

    def record(channel: str, key: str, payload: dict[str, Any]) -> dict[str, Any]:
        state.received[key] = state.received.get(key, 0) + 1
        if key in state.by_key:
            return {"message_id": state.by_key[key], "duplicate": True}
        message_id = state.next_id()
        state.by_key[key] = message_id
        state.messages.append({"message_id": message_id, "channel": channel,
                               "idempotency_key": key, "payload": payload})
        return {"message_id": message_id, "duplicate": False}

    @app.post("/v1/{channel}")
    async def accept(channel: str, request: Request,
                     idempotency_key: str | None = Header(default=None)) -> JSONResponse:
        state.requests += 1
        if channel not in CHANNELS:
            return JSONResponse({"error": f"unknown channel {channel}"}, status_code=404)
        if state.latency_ms:
            await asyncio.sleep(state.latency_ms / 1000)
        if state.fail_next > 0:
            state.fail_next -= 1
            state.failed += 1
            return JSONResponse({"error": "sandbox told to fail"}, status_code=state.fail_status)
        try:
            payload = await request.json()
        except ValueError:
            return JSONResponse({"error": "body is not JSON"}, status_code=400)
        if not isinstance(payload, dict):
            return JSONResponse({"error": "body is not an object"}, status_code=400)
        key = idempotency_key or payload.get("contact_id")
        if not key:
            return JSONResponse({"error": "Idempotency-Key is required"}, status_code=400)
        result = record(channel, key, payload)
        return JSONResponse(result, status_code=200 if result["duplicate"] else 202)

    return app
