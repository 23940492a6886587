"""What every service knows of one loan, asked through their REST APIs.

Each section is fetched on its own: a service that is down, refuses the key or does not know
the loan is reported as such in its section, never as an exception.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

__all__ = ["LOAN_SOURCES", "Section", "loan_report"]

# (section, service, path template): what each service serves about a loan (PRODUCT.md §5)
LOAN_SOURCES: tuple[tuple[str, str, str], ...] = (
    ("loan", "staging", "/v1/loans/{loan_id}"),
    ("contacts", "notifier", "/v1/loans/{loan_id}/contacts"),
)


@dataclass(frozen=True, slots=True)
class Section:
    """One service's answer about a loan.

    ``status`` is ``ok``, ``not_found`` (404), ``down`` (no connection or a timeout),
    ``unauthorized`` (401/403) or ``error`` (any other answer); ``body`` is the JSON answer when
    there is one.
    """

    name: str
    service: str
    url: str
    status: str
    http_status: int | None = None
    body: Any = None
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "service": self.service, "url": self.url,
                "status": self.status, "http_status": self.http_status, "body": self.body,
                "detail": self.detail}


def _classify(code: int) -> str:
    if code == 200:
        return "ok"
    if code == 404:
        return "not_found"
    if code in (401, 403):
        return "unauthorized"
    return "error"


async def _fetch(client: httpx.AsyncClient, name: str, service: str, url: str) -> Section:
    try:
        r = await client.get(url)
    except httpx.HTTPError as exc:
        return Section(name, service, url, "down", detail=f"{type(exc).__name__}: {exc}".strip())
    try:
        body: Any = r.json()
    except ValueError:
        body = None
    detail = ""
    if r.status_code != 200:
        detail = (body.get("title") or body.get("detail") or "") if isinstance(body, dict) else ""
        detail = str(detail or r.reason_phrase)
    return Section(name, service, url, _classify(r.status_code), r.status_code, body, detail)


async def loan_report(loan_id: str, base_urls: dict[str, str], api_key: str, *,
                      timeout: float = 5.0,
                      transport: httpx.AsyncBaseTransport | None = None) -> list[Section]:
    """Ask each service in :data:`LOAN_SOURCES` (at ``base_urls[service]``) about ``loan_id``,
    concurrently; one :class:`Section` each, in the order of :data:`LOAN_SOURCES`."""
    headers = {"Authorization": f"Bearer {api_key}", "Accept": "application/json"}
    async with httpx.AsyncClient(headers=headers, timeout=timeout,
                                 transport=transport) as client:
        jobs = [
            _fetch(client, name, service,
                   base_urls[service].rstrip("/") + path.format(loan_id=quote(loan_id, safe="")))
            for name, service, path in LOAN_SOURCES
        ]
        return list(await asyncio.gather(*jobs))
