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
