"""Pieces every service's API shares: authentication, health, readiness, metrics."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Depends, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from shared.auth import KeyRing, Principal
from shared.metrics import render_metrics
from shared.problems import Problem

_bearer = HTTPBearer(auto_error=False, description="API key issued by the bank's ops team")


def principal(request: Request,
              creds: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> Principal:
    """The caller, authenticated by its bearer API key (401 otherwise)."""
    ring: KeyRing = request.app.state.keyring
    found = ring.authenticate(creds.credentials if creds else None)
    if found is None:
        raise Problem(401, "a valid bearer API key is required",
                      headers={"WWW-Authenticate": "Bearer"})
    return found


def require(scope: str) -> Callable[..., Principal]:
    """A dependency that admits only callers holding ``scope`` (403 otherwise)."""

    def check(who: Principal = Depends(principal)) -> Principal:
        if not who.allows(scope):
            raise Problem(403, f"the API key lacks the scope '{scope}'")
        return who

    return check


ReadyCheck = Callable[[], Awaitable[dict[str, bool]]]


def ops_router(ready: ReadyCheck) -> APIRouter:
    """``/healthz``, ``/readyz`` and ``/metrics``: open, for load balancers and Prometheus."""
    router = APIRouter(tags=["operations"])

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz", responses={503: {
        "description": "Not ready: a dependency failed its check (see `checks`)",
        "content": {"application/json": {"example": {
            "status": "not_ready", "checks": {"database": True, "kafka": False}}}}}})
    async def readyz(response: Response) -> dict[str, object]:
        checks = await ready()
        ok = all(checks.values())
        response.status_code = 200 if ok else 503
        return {"status": "ready" if ok else "not_ready", "checks": checks}

    @router.get("/metrics", response_class=Response, responses={200: {
        "description": "Prometheus text exposition format",
        "content": {"text/plain": {"schema": {"type": "string"}}}}})
    async def metrics() -> Response:
        body, content_type = render_metrics()
        return Response(body, media_type=content_type)

    return router
