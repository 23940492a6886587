import pytest

from shared import topics
from shared.topics import ALL_TOPICS, TopicNames, dlq


def test_base_names_and_dlq():
    assert topics.LOAN_EVENTS == "loan-events"
    assert dlq(topics.CALENDAR) == "calendar.dlq"
    assert len(ALL_TOPICS) == 8 == len(set(ALL_TOPICS))


def test_no_prefix_is_identity():
    names = TopicNames()
    assert names.loan_events == "loan-events"
    assert names.collector_scores == "collector-scores"
    assert names.name("x") == "x"
    assert names.base("loan-events") == "loan-events"


def test_prefix_applies_to_every_name_and_its_dlq():
    names = TopicNames(prefix="t1234")
    assert names.loan_events == "t1234.loan-events"
    assert names.calendar == "t1234.calendar"
    assert names.collection_stages == "t1234.collection-stages"
    assert names.collection_assignments == "t1234.collection-assignments"
    assert names.repayments_applied == "t1234.repayments-applied"
    assert names.promise_outcomes == "t1234.promise-outcomes"
    assert names.contact_outcomes == "t1234.contact-outcomes"
    assert names.dlq(topics.LOAN_EVENTS) == "t1234.loan-events.dlq"
    assert TopicNames(prefix="t1234.").loan_events == "t1234.loan-events"
    assert names.base("t1234.loan-events.dlq") == "loan-events.dlq"
    with pytest.raises(ValueError):
        names.base("t9.loan-events")


def test_all_includes_dlq_twins():
    every = TopicNames(prefix="p").all()
    assert len(every) == 16 == len(set(every))
    for base in ALL_TOPICS:
        assert f"p.{base}" in every
        assert f"p.{base}.dlq" in every
