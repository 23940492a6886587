"""Case flags and the hardship pauses they leave behind.

Decisions:

- A flag is in force from the business date it is raised through the business date it is
  cleared, or through ``until`` inclusive; on ``until + 1`` it has expired.
- Raising a flag already in force updates its ``note`` and ``until`` and keeps its start.
- Hardship pauses the clock by *dates*, not by a frozen number: the days ``d`` with
  ``raised_on < d <= end`` do not count toward DPD. DPD is then a pure function of the ledger,
  these intervals and the business date, so a repayment or reversal during hardship moves DPD
  exactly as it would have without the pause, and a reversal restores it exactly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from typing import Any

from services.staging.domain.values import day, from_iso, iso
from shared.frozen import quick_init

FLAG_NAMES = frozenset(
    {"dispute", "hardship", "cease_contact", "bankruptcy", "deceased", "fraud", "wilful_default"}
)
SPECIAL_FLAGS = frozenset({"bankruptcy", "deceased", "fraud"})
HARDSHIP, DISPUTE, WILFUL_DEFAULT = "hardship", "dispute", "wilful_default"

Interval = tuple[date, date]  # (start, end]: days after start through end


@quick_init
@dataclass(frozen=True)
class Flag:
    name: str
    raised_on: date
    until: date | None = None
    note: str = ""


@quick_init
@dataclass(frozen=True)
class Flags:
    active: Mapping[str, Flag] = field(default_factory=dict)
    pauses: tuple[Interval, ...] = ()  # closed hardship pauses

    def has(self, name: str) -> bool:
        return name in self.active

    @property
    def special(self) -> bool:
        return not SPECIAL_FLAGS.isdisjoint(self.active)

    def pause_intervals(self, on: date) -> tuple[Interval, ...]:
        """Every hardship pause as of business date ``on``, the open one cut at ``on``."""
        hardship = self.active.get(HARDSHIP)
        if hardship is None:
            return self.pauses
        end = on if hardship.until is None else min(on, hardship.until)
        return (*self.pauses, (hardship.raised_on, end))

    @property
    def expiry_dates(self) -> tuple[date, ...]:
        return tuple(f.until + timedelta(days=1) for f in self.active.values() if f.until)

    def to_dict(self) -> dict[str, Any]:
        return {
            "active": [
                {"flag": f.name, "raised_on": iso(f.raised_on), "until": iso(f.until),
                 "note": f.note}
                for f in sorted(self.active.values(), key=lambda f: f.name)
            ],
            "pauses": [[iso(start), iso(end)] for start, end in self.pauses],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Flags:
        active = {
            f["flag"]: Flag(f["flag"], day(f["raised_on"]), from_iso(f["until"]),
                            f.get("note", ""))
            for f in data.get("active", ())
        }
        pauses = tuple((day(s), day(e)) for s, e in data["pauses"])
        return cls(active, pauses)


def _close(flags: Flags, name: str, end: date) -> Flags:
    flag = flags.active[name]
    active = {k: v for k, v in flags.active.items() if k != name}
    pauses = flags.pauses
    if name == HARDSHIP and end > flag.raised_on:
        pauses = (*pauses, (flag.raised_on, end))
    return Flags(active, pauses)


def raise_flag(flags: Flags, name: str, on: date, until: date | None, note: str) -> Flags:
    current = flags.active.get(name)
    flag = Flag(name, on, until, note) if current is None else replace(current, until=until,
                                                                        note=note)
    return Flags({**flags.active, name: flag}, flags.pauses)


def clear_flag(flags: Flags, name: str, on: date) -> Flags:
    """Clear a flag; clearing a flag not in force changes nothing."""
    flag = flags.active.get(name)
    if flag is None:
        return flags
    end = on if flag.until is None else min(on, flag.until)
    return _close(flags, name, end)


def expire_flags(flags: Flags, on: date) -> Flags:
    """Drop the flags whose ``until`` is before business date ``on``."""
    for flag in list(flags.active.values()):
        if flag.until is not None and flag.until < on:
            flags = _close(flags, flag.name, flag.until)
    return flags
