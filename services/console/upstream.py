"""The console's only way to data: GET requests to the services' REST APIs with its own key.

A failure never raises into a page: :meth:`Upstreams.get` returns a :class:`Reply` whose
``error`` says what went wrong in words a manager can read (not reachable, timed out, HTTP
status), and the page shows that message beside whatever else it could load.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import httpx
from prometheus_client import Counter

UPSTREAM_ERRORS = Counter("qs_console_upstream_errors_total",
                          "Console requests to a service that failed", ["service", "kind"])
UPSTREAM_REQUESTS = Counter("qs_console_upstream_requests_total",
                            "Console requests to a service", ["service"])


@dataclass(frozen=True)
class Reply:
    service: str
    data: Any = None
    status: int | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.status == 200


class Upstreams:
    """One pooled HTTP client for staging, notifier and incentives."""

    def __init__(self, urls: dict[str, str], api_key: str, timeout: float,
                 transport: httpx.AsyncBaseTransport | None = None):
        self.urls = urls
        self._client = httpx.AsyncClient(
            timeout=timeout, transport=transport, follow_redirects=False,
            headers={"Authorization": f"Bearer {api_key}", "Accept": "application/json"})

    async def get(self, service: str, path: str, **params: Any) -> Reply:
        query = {k: v for k, v in params.items() if v is not None}
        UPSTREAM_REQUESTS.labels(service).inc()
        try:
            r = await self._client.get(f"{self.urls[service]}{path}", params=query)
        except httpx.TimeoutException:
            UPSTREAM_ERRORS.labels(service, "timeout").inc()
            return Reply(service, error="no answer in time")
        except httpx.HTTPError as exc:
            UPSTREAM_ERRORS.labels(service, "unreachable").inc()
            return Reply(service, error=f"not reachable ({type(exc).__name__})")
        if r.status_code == 404:
            return Reply(service, status=404)
        if r.status_code in (401, 403):
            UPSTREAM_ERRORS.labels(service, "refused").inc()
            return Reply(service, status=r.status_code,
                         error=f"it refused the console's API key (HTTP {r.status_code})")
        if r.status_code != 200:
            UPSTREAM_ERRORS.labels(service, "status").inc()
            return Reply(service, status=r.status_code,
                         error=f"it answered HTTP {r.status_code}")
        try:
            return Reply(service, data=r.json(), status=200)
        except ValueError:
            UPSTREAM_ERRORS.labels(service, "body").inc()
            return Reply(service, status=200, error="it answered something that is not JSON")

    async def reachable(self) -> dict[str, bool]:
        """Each service's ``/healthz`` answers 200 (what ``/readyz`` of the console checks)."""

        async def one(name: str) -> bool:
            try:
                r = await self._client.get(f"{self.urls[name]}/healthz", timeout=3)
            except httpx.HTTPError:
                return False
            return r.status_code == 200

        names = list(self.urls)
        results = await asyncio.gather(*(one(n) for n in names))
        return {f"{n}_reachable": ok for n, ok in zip(names, results, strict=True)}

    async def aclose(self) -> None:
        await self._client.aclose()
