"""The incentives service's settings: the shared ones plus the bank's time zone (prefix QS_)."""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import field_validator

from shared.settings import ServiceSettings

DEFAULT_TIMEZONE = "Asia/Shanghai"


class IncentivesSettings(ServiceSettings):
    service: str = "incentives"
    port: int = 8004

    # QS_INCENTIVES_TIMEZONE: the bank's IANA zone. Business dates (value dates, cure dates, due
    # dates) pick their month as they are; an instant (an event's `time`, "now" for a default
    # period) is read in this zone, so the same instant lands in the same month whatever offset
    # its producer wrote.
    incentives_timezone: str = DEFAULT_TIMEZONE

    @field_validator("incentives_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"not an IANA time zone: {value!r}") from None
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.incentives_timezone)
