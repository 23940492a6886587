"""Reading the fields the incentive rules need from a CloudEvent given as a mapping.

The consumer hands the domain the parsed envelope (`id`, `source`, `type`, `data`). A field that is
missing or of the wrong shape raises MalformedEvent, which the consumer sends to the dead letters.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from decimal import Decimal
from typing import Any

from shared.money import parse_money

Event = Mapping[str, Any]


class MalformedEvent(ValueError):
    """The event lacks a field the incentive rules need, or the field is malformed."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


def data_of(event: Event) -> Mapping[str, Any]:
    data = event.get("data")
    if not isinstance(data, Mapping):
        raise MalformedEvent("data", "must be an object")
    return data


def identity(event: Event) -> tuple[str, str]:
    """The event's (source, id): its identity under CloudEvents."""
    source, event_id = event.get("source"), event.get("id")
    if not isinstance(source, str) or not isinstance(event_id, str) or not source or not event_id:
        raise MalformedEvent("id", "source and id must be non-empty strings")
    return source, event_id


def text(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise MalformedEvent(f"data.{key}", "must be a non-empty string")
    return value


def optional_text(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise MalformedEvent(f"data.{key}", "must be a string")
    return value


def money(data: Mapping[str, Any], key: str) -> Decimal:
    try:
        return parse_money(data.get(key))
    except ValueError as exc:
        raise MalformedEvent(f"data.{key}", str(exc)) from None


def day(data: Mapping[str, Any], key: str) -> date:
    value = data.get(key)
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise MalformedEvent(f"data.{key}", "must be a date YYYY-MM-DD") from None
