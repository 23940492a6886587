"""Leaderboard per team and period.

Decisions: order by composite score (desc), then payout (desc), then collector id (asc) so the
order is total and stable. Ranks use standard competition ranking ("1224"): collectors with the
same composite and payout share a rank and the next rank skips; the collector id only orders the
rows of a tie, it does not split the rank.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import NamedTuple

from services.incentives.domain.scorecard import Scorecard


class LeaderboardRow(NamedTuple):
    rank: int
    collector_id: str
    composite: Decimal
    payout: Decimal


def rank(scorecards: Iterable[Scorecard], team: str | None) -> list[LeaderboardRow]:
    """Rank the scorecards of `team` (all teams when None). ValueError if they mix periods or
    repeat a collector.
    """
    cards = [c for c in scorecards if team is None or c.team == team]
    if len({c.period for c in cards}) > 1:
        raise ValueError("a leaderboard ranks one period")
    if len({c.collector_id for c in cards}) != len(cards):
        raise ValueError("a collector appears twice")
    cards.sort(key=lambda c: (-c.composite, -c.payout, c.collector_id))
    rows: list[LeaderboardRow] = []
    for position, card in enumerate(cards, start=1):
        previous = rows[-1] if rows else None
        tied = previous is not None and (previous.composite, previous.payout) == (
            card.composite,
            card.payout,
        )
        rows.append(
            LeaderboardRow(
                previous.rank if tied and previous else position,
                card.collector_id,
                card.composite,
                card.payout,
            )
        )
    return rows
