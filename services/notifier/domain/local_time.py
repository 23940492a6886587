"""Local wall time in the borrower's IANA zone, daylight saving included.

Wall times that do not exist (the spring-forward gap) resolve to the first instant whose
wall time is at or after them, i.e. the transition itself; wall times that happen twice
(fall back) resolve to their first occurrence.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from .policy import QuietHours

_MINUTE = timedelta(minutes=1)


def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)  # ZoneInfo keeps its own cache of zones


def ceil_minute(instant: datetime) -> datetime:
    floor = instant.replace(second=0, microsecond=0)
    return floor if floor == instant else floor + _MINUTE


# A batch asks for the same few (day, wall time, zone) again and again (every request's end of
# day, every deferral to the end of quiet hours): the answer is a pure function of the three
# immutable values, computed once each.
@lru_cache(maxsize=4096)
def first_instant_at(day: date, wall: time, tz: ZoneInfo) -> datetime:
    """The first UTC instant at which the local clock shows `day wall` or later."""
    naive = datetime.combine(day, wall)
    early = naive.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if early.astimezone(tz).replace(tzinfo=None) == naive:
        return early
    # In a gap: the two folds bracket the transition; find it to the minute.
    late = naive.replace(tzinfo=tz, fold=1).astimezone(UTC)
    lo, hi = min(early, late), max(early, late)
    while hi - lo > _MINUTE:
        mid = ceil_minute(lo + (hi - lo) / 2)
        if mid >= hi:
            break
        if mid.astimezone(tz).replace(tzinfo=None) >= naive:
            hi = mid
        else:
            lo = mid
    return hi


def is_quiet(instant: datetime, tz: ZoneInfo, quiet: QuietHours) -> bool:
    return quiet.is_quiet(instant.astimezone(tz).time())


def next_allowed(instant: datetime, tz: ZoneInfo, quiet: QuietHours) -> datetime:
    """`instant` itself when outside quiet hours, else the first minute they end (UTC)."""
    local = instant.astimezone(tz)
    wall = local.time()
    if not quiet.is_quiet(wall):
        return instant
    day = local.date() if wall < quiet.end else local.date() + timedelta(days=1)
    return first_instant_at(day, quiet.end, tz)


_MIDNIGHT = time(0, 0)


@lru_cache(maxsize=4096)
def end_of_local_day(day: date, tz: ZoneInfo) -> datetime:
    """The first instant of the next local day: `day` is over from then on."""
    return first_instant_at(day + timedelta(days=1), _MIDNIGHT, tz)
