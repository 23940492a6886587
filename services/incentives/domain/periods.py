"""Incentive periods (calendar months, "YYYY-MM") and business-day counting."""

from __future__ import annotations

import re
from calendar import monthrange
from collections.abc import Collection, Iterable
from datetime import date, datetime, timedelta, tzinfo

_PERIOD_RE = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
_WEEK = 7
_WORKDAYS_PER_WEEK = 5
_SATURDAY = 5


def period_of(day: date) -> str:
    """The incentive period (month) a business date belongs to."""
    return f"{day.year:04d}-{day.month:02d}"


def period_at(instant: datetime, zone: tzinfo) -> str:
    """The period an instant falls in, read in the bank's zone (whatever offset it carries)."""
    return period_of(instant.astimezone(zone).date())


def first_open_period(period: str, closed: Collection[str], after: str | None = None) -> str:
    """``period`` itself, or the first month after it that is open and later than ``after``:
    nothing ever lands in a closed month (a closed month is what was paid)."""
    year, month = (int(part) for part in check_period(period).split("-"))
    while period in closed or (after is not None and period <= after):
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
        period = f"{year:04d}-{month:02d}"
    return period


def period_bounds(period: str) -> tuple[date, date]:
    """First and last day of a "YYYY-MM" period; ValueError if malformed."""
    match = _PERIOD_RE.match(period) if isinstance(period, str) else None
    if match is None:
        raise ValueError(f"period must be YYYY-MM, got {period!r}")
    year, month = int(match.group(1)), int(match.group(2))
    return date(year, month, 1), date(year, month, monthrange(year, month)[1])


def check_period(period: str) -> str:
    """Return `period` unchanged if it is a valid "YYYY-MM", else raise ValueError."""
    period_bounds(period)
    return period


def business_days_between(start: date, end: date, holidays: frozenset[date] = frozenset()) -> int:
    """Weekdays d with start < d <= end, minus `holidays` among them; 0 if end <= start.

    Assigned on a Friday and cured the next Monday is 1 business day; cured the same day is 0.
    """
    if end <= start:
        return 0
    span = (end - start).days
    weeks, rest = divmod(span, _WEEK)
    count = weeks * _WORKDAYS_PER_WEEK
    day = start + timedelta(days=weeks * _WEEK)
    for _ in range(rest):
        day += timedelta(days=1)
        if day.weekday() < _SATURDAY:
            count += 1
    if holidays:
        count -= sum(1 for h in holidays if start < h <= end and h.weekday() < _SATURDAY)
    return count


def latest_closed_reached(day: date, closed_periods: Iterable[str]) -> str | None:
    """The latest closed period that ends on or after `day` (a scheme effective from `day` would
    change it), or None."""
    reached = [p for p in closed_periods if period_bounds(p)[1] >= day]
    return max(reached, default=None)
