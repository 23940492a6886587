from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st
from staging_builders import day

from services.staging.domain.assignment import (
    AssignmentRequest,
    CollectorLoad,
    choose_collector,
    resolve_assignment,
)


def load(cid, open_cases, capacity=10, team="legal", active=True):
    return CollectorLoad(cid, team, capacity, active, open_cases)


def test_least_loaded_relative_to_capacity():
    candidates = [load("a", 5, 10), load("b", 6, 20), load("c", 0, 10, team="intensive")]
    assert choose_collector(candidates, "legal") == "b"


def test_ties_by_collector_id_and_inactive_or_zero_capacity_skipped():
    candidates = [load("z", 1, 2), load("m", 2, 4), load("a", 0, 10, active=False),
                  load("b", 0, 0)]
    assert choose_collector(candidates, "legal") == "m"
    assert choose_collector([load("a", 0, active=False)], "legal") is None
    assert choose_collector([], "legal") is None


def test_full_collectors_still_take_cases():
    assert choose_collector([load("a", 12, 10), load("b", 30, 20)], "legal") == "a"


def test_resolve_relationship_manager_or_fallback_team():
    request = AssignmentRequest("L1", "negotiation", "relationship_manager", "negotiation",
                                "rm-9", None, day(0))
    assert resolve_assignment(request, []) == ("rm-9", None)
    request = AssignmentRequest("L1", "negotiation", "relationship_manager", "negotiation",
                                None, None, day(0))
    pool = [load("n1", 1, team="negotiation")]
    assert resolve_assignment(request, pool) == ("n1", "negotiation")


@given(st.lists(st.tuples(st.integers(0, 60), st.integers(0, 25), st.booleans()),
                max_size=12))
def test_choice_is_the_exact_least_load_ratio_then_id(loads):
    """Cross-multiplied comparison == comparing Fraction(open_cases, capacity)."""
    candidates = [load(f"c{i:02d}", open_cases, capacity, active=active)
                  for i, (open_cases, capacity, active) in enumerate(loads)]
    eligible = [c for c in candidates if c.active and c.capacity > 0]
    expected = min(eligible, key=lambda c: (Fraction(c.open_cases, c.capacity), c.collector_id),
                   default=None)
    chosen = choose_collector(reversed(candidates), "legal")
    assert chosen == (expected.collector_id if expected else None)


def test_a_current_owner_who_fits_the_team_keeps_the_case():
    request = AssignmentRequest("L1", "negotiation", "team", "negotiation", None, "n2",
                                day(0))
    pool = [load("n1", 0, team="negotiation"), load("n2", 1, team="negotiation")]
    assert resolve_assignment(request, pool) == ("n2", "negotiation")
    # not when they left the team, or are inactive: then the least loaded
    for gone in (load("n2", 1, team="legal"), load("n2", 1, team="negotiation", active=False)):
        assert resolve_assignment(request, [pool[0], gone]) == ("n1", "negotiation")
