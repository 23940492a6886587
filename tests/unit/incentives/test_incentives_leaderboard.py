from decimal import Decimal

import pytest

from services.incentives.domain import DEFAULT_SCHEME, compute_scorecard, rank


def sc(collector, composite, payout, team="legal", period="2025-03"):
    base = compute_scorecard(collector, period, [], [DEFAULT_SCHEME], "CNY", team=team)
    from dataclasses import replace

    return replace(base, composite=Decimal(composite), payout=Decimal(payout))


def test_orders_by_composite_then_payout_then_id_with_competition_ranks():
    cards = [
        sc("d", "0.5000", "10.00"),
        sc("b", "0.9000", "10.00"),
        sc("a", "0.5000", "10.00"),
        sc("c", "0.5000", "99.00"),
        sc("e", "0.1000", "0.00"),
        sc("x", "1.0000", "0.00", team="intensive"),
    ]
    rows = rank(cards, "legal")
    assert [(r.rank, r.collector_id) for r in rows] == [
        (1, "b"),
        (2, "c"),
        (3, "a"),
        (3, "d"),
        (5, "e"),
    ]
    assert rows[0] == (1, "b", Decimal("0.9000"), Decimal("10.00"))


def test_ranking_is_independent_of_input_order():
    cards = [sc(c, "0.5000", "1.00") for c in "qwerty"]
    assert rank(cards, "legal") == rank(list(reversed(cards)), "legal")
    assert {r.rank for r in rank(cards, "legal")} == {1}


def test_all_teams_empty_team_and_errors():
    cards = [sc("a", "0.1", "1"), sc("b", "0.2", "1", team="intensive")]
    assert [r.collector_id for r in rank(cards, None)] == ["b", "a"]
    assert rank(cards, "recovery") == []
    with pytest.raises(ValueError):
        rank([sc("a", "0.1", "1"), sc("a", "0.2", "1")], "legal")
    with pytest.raises(ValueError):
        rank([sc("a", "0.1", "1"), sc("b", "0.2", "1", period="2025-04")], "legal")
