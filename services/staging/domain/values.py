"""Parsing of the plain values found in event data: money, dates, identifiers.

Event data reaches the domain as dicts, either already typed (Decimal, date) by the schema
layer or still as JSON strings; both are accepted so the domain can be driven by plain values.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from services.staging.domain.errors import Rejected

ZERO = Decimal("0")


def money(value: Any, field: str) -> Decimal:
    """A finite decimal amount; floats are refused because they cannot carry money exactly."""
    if isinstance(value, Decimal):
        amount = value
    elif isinstance(value, (str, int)) and not isinstance(value, bool):
        try:
            amount = Decimal(value)
        except InvalidOperation as exc:
            raise Rejected("invalid_amount", f"{field} is not a decimal") from exc
    else:
        raise Rejected("invalid_amount", f"{field} must be a decimal string")
    if not amount.is_finite():
        raise Rejected("invalid_amount", f"{field} must be finite")
    return amount


def business_date(value: Any, field: str) -> date:
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError as exc:
            raise Rejected("invalid_date", f"{field} is not YYYY-MM-DD") from exc
    raise Rejected("invalid_date", f"{field} must be a date")


def optional_date(value: Any, field: str) -> date | None:
    return None if value is None else business_date(value, field)


def text(data: dict[str, Any], field: str) -> str:
    value = data.get(field)
    if not isinstance(value, str) or not value:
        raise Rejected("invalid_field", f"{field} is required")
    return value


def iso(value: date | None) -> str | None:
    return None if value is None else value.isoformat()


def from_iso(value: str | None) -> date | None:
    return None if value is None else date.fromisoformat(value)
