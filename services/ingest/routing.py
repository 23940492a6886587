"""Which topic an inbound type goes to and which scope may post it. Pure: no I/O.

The registry in ``shared.events`` is the single source of truth for topics and directions;
this module only adds the scope rule of the gateway (PRODUCT.md 3.2, issue 4):

- ``events:calendar``: ``business_day.closed``
- ``events:desk``: ``promise.made``, ``case.flag.*``, ``complaint.recorded`` (collector desktop)
- ``events:core``: every other inbound type (loan, borrower, instalment, payment, repayment,
  ``loan.closed``) — core banking

Outbound types (``stage.changed``...) are written by Qingshou's own services through their
outboxes; a client posting one is refused, so nobody can forge a stage change through ingest.
"""

from __future__ import annotations

from typing import Final

from shared.events.registry import DEFAULT, Registry, UnknownEventType
from shared.topics import TopicNames

CORE: Final = "events:core"
DESK: Final = "events:desk"
CALENDAR: Final = "events:calendar"
EVENT_SCOPES: Final = (CORE, DESK, CALENDAR)

_DESK_TYPES: Final = frozenset({"promise.made", "complaint.recorded"})
_DESK_PREFIXES: Final = ("case.flag.",)


class NotAccepted(LookupError):
    """The type is unknown, or outbound (produced by Qingshou, never posted to ingest)."""


def scope_for(event_type: str) -> str:
    """The scope a key needs to post ``event_type`` (any string; unknown types go to core)."""
    if event_type == "business_day.closed":
        return CALENDAR
    if event_type in _DESK_TYPES or event_type.startswith(_DESK_PREFIXES):
        return DESK
    return CORE


def inbound_types(reg: Registry = DEFAULT) -> list[str]:
    """Every type ingest accepts, in registry order."""
    return reg.type_names("inbound")


def base_topic(event_type: str, reg: Registry = DEFAULT) -> str:
    """The base topic of an inbound type; NotAccepted for unknown or outbound types."""
    try:
        spec = reg.get(event_type)
    except UnknownEventType as exc:
        raise NotAccepted(str(exc)) from None
    if spec.direction != "inbound":
        raise NotAccepted(
            f"{event_type!r} is an outbound type, published by Qingshou itself; "
            "ingest accepts inbound types only")
    return spec.topic


class Router:
    """Per-type topic and scope, resolved once per type and cached (the hot path)."""

    def __init__(self, topics: TopicNames, reg: Registry = DEFAULT) -> None:
        self._topics = topics
        self._reg = reg
        self._cache: dict[str, tuple[str, str, str]] = {}

    def resolve(self, event_type: str) -> tuple[str, str, str]:
        """``(real topic, base topic, scope)``; NotAccepted for unknown or outbound types."""
        hit = self._cache.get(event_type)
        if hit is None:
            base = base_topic(event_type, self._reg)
            hit = (self._topics.name(base), base, scope_for(event_type))
            self._cache[event_type] = hit
        return hit


__all__ = ["CALENDAR", "CORE", "DESK", "EVENT_SCOPES", "NotAccepted", "Router", "base_topic",
           "inbound_types", "scope_for"]
