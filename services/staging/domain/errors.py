"""The one exception the staging domain raises for an event it refuses."""

from __future__ import annotations


class Rejected(Exception):
    """An inbound event breaks a business rule; the service dead-letters it with ``reason``.

    Handlers build a new state and never mutate the one they were given, so a rejection
    leaves nothing half-applied: the caller simply keeps the state it had.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
