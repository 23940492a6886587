"""Routing and scopes of the gateway: every inbound type to its topic and scope."""

from __future__ import annotations

import pytest

from services.ingest.routing import (
    CALENDAR,
    CORE,
    DESK,
    NotAccepted,
    Router,
    base_topic,
    inbound_types,
    scope_for,
)
from shared.events import registry
from shared.topics import TopicNames

EXPECTED_SCOPE = {
    "loan.opened": CORE, "borrower.updated": CORE, "instalment.upcoming": CORE,
    "payment.missed": CORE, "repayment.received": CORE, "repayment.reversed": CORE,
    "loan.closed": CORE, "promise.made": DESK, "case.flag.raised": DESK,
    "case.flag.cleared": DESK, "complaint.recorded": DESK, "business_day.closed": CALENDAR,
}


def test_every_inbound_type_has_the_scope_of_the_issue() -> None:
    assert set(inbound_types()) == set(EXPECTED_SCOPE)
    for event_type, scope in EXPECTED_SCOPE.items():
        assert scope_for(event_type) == scope, event_type


def test_business_day_goes_to_calendar_and_everything_else_to_loan_events() -> None:
    for event_type in inbound_types():
        expected = "calendar" if event_type == "business_day.closed" else "loan-events"
        assert base_topic(event_type) == expected


@pytest.mark.parametrize("event_type", registry.type_names("outbound"))
def test_outbound_types_are_refused(event_type: str) -> None:
    with pytest.raises(NotAccepted, match="outbound"):
        base_topic(event_type)


def test_unknown_type_is_refused() -> None:
    with pytest.raises(NotAccepted):
        base_topic("loan.teleported")


def test_router_applies_the_topic_prefix_and_caches() -> None:
    router = Router(TopicNames("t42"))
    assert router.resolve("repayment.received") == ("t42.loan-events", "loan-events", CORE)
    assert router.resolve("business_day.closed") == ("t42.calendar", "calendar", CALENDAR)
    assert router.resolve("promise.made") == ("t42.loan-events", "loan-events", DESK)
    with pytest.raises(NotAccepted):
        Router(TopicNames()).resolve("stage.changed")
