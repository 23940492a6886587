"""The stack benchmark's pure parts: the borrowers' zone, CPU accounting by role."""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from shared.ops.stack_bench import StackBenchResult, cpu_by_role, write_timeline, zone_for


@pytest.mark.parametrize("season", [datetime(2026, 1, 15, tzinfo=UTC),
                                    datetime(2026, 7, 15, tzinfo=UTC)])
def test_every_hour_of_the_year_has_a_night_zone_and_a_day_zone(season: datetime) -> None:
    for minutes in range(0, 24 * 60, 30):
        now = season + timedelta(minutes=minutes)
        night = now.astimezone(ZoneInfo(zone_for("night", now)))
        day = now.astimezone(ZoneInfo(zone_for("day", now)))
        assert 0 <= night.hour < 5, (now, night)
        assert 10 <= day.hour < 17, (now, day)


def test_a_named_zone_is_used_as_given_and_an_unknown_one_refused() -> None:
    assert zone_for("Europe/Paris") == "Europe/Paris"
    with pytest.raises(Exception):  # noqa: B017 - ZoneInfoNotFoundError or ValueError
        zone_for("Mars/Olympus_Mons")


def test_cpu_by_role_counts_what_live_processes_used_since_the_first_snapshot() -> None:
    before = {1: ("notifier", 10.0), 2: ("postgres", 5.0), 3: ("postgres", 50.0)}
    after = {1: ("notifier", 12.5), 2: ("postgres", 6.0), 4: ("postgres", 0.5),
             5: ("other", 1.0)}
    # pid 3 ended in between: left out, not subtracted; pid 4 started: all of it counts
    assert cpu_by_role(before, after) == {"notifier": 2.5, "postgres": 1.5, "other": 1.0}


def test_the_timeline_lists_each_loan_once_in_order_of_acceptance(tmp_path: Path) -> None:
    result = StackBenchResult(sent=2, decided=2, seconds=1.0, peak_rss_mb={},
                              timeline=[("L2", 20.5, 20.6, 20.75), ("L1", 10.0, 10.05, 10.125)])
    write_timeline(result, tmp_path / "t.csv")
    with (tmp_path / "t.csv").open() as f:
        rows = list(csv.reader(f))
    assert rows == [["loan_id", "accepted_at", "decided_at", "read_at"],
                    ["L1", "10.000000", "10.050000", "10.125000"],
                    ["L2", "20.500000", "20.600000", "20.750000"]]


def test_the_latency_columns_are_read_from_the_timeline() -> None:
    result = StackBenchResult(sent=2, decided=2, seconds=1.0, peak_rss_mb={},
                              timeline=[("L1", 10.0, 10.05, 10.125), ("L2", 20.5, 20.5, 20.4)])
    assert [round(x, 3) for x in result.latencies_ms] == [125.0, 0.0]  # a clock step: never < 0
    assert [round(x, 3) for x in result.to_decision_ms] == [50.0, 0.0]
    assert [round(x, 3) for x in result.to_topic_ms] == [75.0, -100.0]
