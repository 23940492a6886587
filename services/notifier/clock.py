"""Where "now" comes from: the wall clock in production, the business calendar in simulation.

Simulation (QS_SIMULATION_CLOCK=true): closing business date D moves the clock to the start of
the next day (`simulation_day_start` in `simulation_timezone`), so everything due during D is
released and a compressed replay of months behaves like real days. Tests inject a
`ManualClock` instead so they do not wait real hours.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection


class Clock(Protocol):
    simulated: bool

    async def now(self, conn: AsyncConnection) -> datetime: ...


class WallClock:
    simulated = False

    async def now(self, conn: AsyncConnection) -> datetime:
        return datetime.now(UTC)


class SimulationClock:
    simulated = True

    def __init__(self, timezone: str, day_start: str) -> None:
        self.zone = ZoneInfo(timezone)
        hours, minutes = day_start.split(":")
        self.day_start = time(int(hours), int(minutes))

    def after_close(self, business_date: date) -> datetime:
        nxt = business_date + timedelta(days=1)
        return datetime.combine(nxt, self.day_start, self.zone).astimezone(UTC)

    async def now(self, conn: AsyncConnection) -> datetime:
        row = (await conn.execute(text("SELECT sim_now FROM calendar WHERE id = 1"))).first()
        if row is None or row.sim_now is None:
            return datetime.now(UTC)
        return row.sim_now


class ManualClock:
    """A clock the caller sets (tests, replays)."""

    simulated = False

    def __init__(self, at: datetime) -> None:
        self.at = at

    async def now(self, conn: AsyncConnection) -> datetime:
        return self.at
