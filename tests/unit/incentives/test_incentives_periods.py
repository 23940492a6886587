"""Periods of instants and the first open month: the pure rules behind arrival months."""

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from services.incentives.domain import first_open_period, period_at

SHANGHAI = ZoneInfo("Asia/Shanghai")


def test_an_instant_belongs_to_the_month_of_the_banks_zone():
    instant = datetime(2026, 3, 31, 20, 0, tzinfo=UTC)  # 1 April, 04:00 in Shanghai
    assert period_at(instant, SHANGHAI) == "2026-04"
    same = instant.astimezone(timezone(timedelta(hours=-5)))
    assert period_at(same, SHANGHAI) == "2026-04"
    assert period_at(instant, UTC) == "2026-03"


def test_closed_months_and_months_not_after_are_skipped_across_the_year_end():
    assert first_open_period("2026-05", set()) == "2026-05"
    assert first_open_period("2026-11", {"2026-11", "2026-12"}) == "2027-01"
    assert first_open_period("2026-03", {"2026-05"}, after="2026-04") == "2026-06"


def test_a_malformed_period_is_refused():
    with pytest.raises(ValueError):
        first_open_period("2026-13", set())
