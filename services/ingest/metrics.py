"""Prometheus counters of the gateway, served at ``/metrics`` with the shared ones.

The shared metrics describe consumers and relays, which ingest has none of; without these its
``/metrics`` said nothing about what the gateway accepted, refused, throttled or failed to
publish. Counted once per request (a batch adds its totals), not once per event, so the hot
path pays a few dictionary look-ups per request.
"""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter

REQUESTS: Final = Counter(
    "qs_ingest_requests", "Event requests answered, by route (single, batch) and HTTP status",
    ["route", "status"])
EVENTS: Final = Counter(
    "qs_ingest_events",
    "Posted events by outcome: accepted (Kafka acknowledged), duplicate (accepted recently, "
    "not sent again), rejected (400/403/413/422, never sent), failed (503, not acknowledged)",
    ["route", "outcome"])
OUTCOMES: Final = ("accepted", "duplicate", "rejected", "failed")


def count_request(route: str, status: int) -> None:
    REQUESTS.labels(route, str(status)).inc()


def count_events(route: str, accepted: int = 0, duplicate: int = 0, rejected: int = 0,
                 failed: int = 0) -> None:
    for outcome, n in zip(OUTCOMES, (accepted, duplicate, rejected, failed), strict=True):
        if n:
            EVENTS.labels(route, outcome).inc(n)
