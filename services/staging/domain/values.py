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


# Dates to and from ISO text, memoised: a loan document holds a dozen dates, read and
# written on every change, and they are few distinct days (a date is immutable: sharing one
# instance is safe). Bounded in case a process meets an unusual spread of dates.
_ISO: dict[date, str] = {}
_DAYS: dict[str, date] = {}
_MEMO = 100_000


def iso(value: date | None) -> str | None:
    if value is None:
        return None
    text = _ISO.get(value)
    if text is None:
        if len(_ISO) >= _MEMO:
            _ISO.clear()
        text = _ISO[value] = value.isoformat()
    return text


def day(text: str) -> date:
    """A date from a stored document (``YYYY-MM-DD``)."""
    value = _DAYS.get(text)
    if value is None:
        if len(_DAYS) >= _MEMO:
            _DAYS.clear()
        value = _DAYS[text] = date.fromisoformat(text)
    return value


def from_iso(value: str | None) -> date | None:
    return None if value is None else day(value)
