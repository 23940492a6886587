"""The staging adapter's unit of work with a fake roster: events match the shared models,
owners are resolved and open-case counts follow the owners."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import orjson
import pytest

from services.staging import store
from services.staging.casework import Casework
from services.staging.consumer import plain
from services.staging.domain import handlers
from services.staging.domain.policy import DEFAULT_POLICY, DEFAULT_POLICY_SET
from shared.context import BatchContext
from shared.events import parse_event
from shared.topics import TopicNames


@pytest.fixture
def roster(monkeypatch: pytest.MonkeyPatch) -> dict[str, store.Collector]:
    members = {
        "rm1": store.Collector("rm1", "RM", "negotiation", 10, False, 0),
        "n1": store.Collector("n1", "N1", "negotiation", 10, True, 3),
        "n2": store.Collector("n2", "N2", "negotiation", 5, True, 1),
    }

    async def lock(conn: object) -> dict[str, store.Collector]:
        return members

    monkeypatch.setattr(store, "lock_roster", lock)
    return members


def _loan(rm: str | None = None):
    data = {"loan_id": "L1", "borrower_id": "B1", "product": "consumer_loan",
            "currency": "CNY", "principal": "1000.00", "opened_on": "2026-01-01",
            "relationship_manager_id": rm}
    state = handlers.open_loan(data, date(2026, 1, 1), DEFAULT_POLICY).state
    return handlers.apply_payment_missed(state, {
        "instalment_no": 1, "due_date": "2026-01-05", "amount_due": "100.00",
        "amount_unpaid": "100.00"}, date(2026, 1, 5), DEFAULT_POLICY).state


def _sent(ctx: BatchContext) -> list[tuple[str, dict]]:
    events = [parse_event(m.value) for m in ctx.outbox]
    return [(e.type, orjson.loads(e.to_json())["data"]) for e in events]


async def test_inactive_relationship_manager_falls_back_to_least_loaded(roster):
    ctx = BatchContext(None, TopicNames(""), "urn:test")  # type: ignore[arg-type]
    work = Casework(ctx, DEFAULT_POLICY_SET, date(2026, 2, 5), {})
    state = await work.record(handlers.age_to(_loan(rm="rm1"), date(2026, 2, 5),
                                              DEFAULT_POLICY))
    assert state.stage == "negotiation" and state.owner.collector_id == "n2"
    assert work.deltas == {"n2": 1} and roster["n2"].open_cases == 2
    # aged a month at once: early is entered on its own date, then negotiation
    sent = _sent(ctx)
    assert [t for t, _ in sent] == ["stage.changed", "stage.changed", "case.assigned"]
    assert [d["to_stage"] for t, d in sent if t == "stage.changed"] == ["early", "negotiation"]


async def test_closed_loan_and_repayment_events_fit_the_shared_models(roster):
    ctx = BatchContext(None, TopicNames(""), "urn:test")  # type: ignore[arg-type]
    work = Casework(ctx, DEFAULT_POLICY_SET, date(2026, 2, 5), {})
    state = await work.record(handlers.age_to(_loan(rm="rm9"), date(2026, 2, 5),
                                              DEFAULT_POLICY))
    assert state.owner.collector_id == "rm9"
    state = await work.record(handlers.apply_repayment_received(state, {
        "payment_id": "P1", "amount": "30.00", "currency": "CNY", "value_date": "2026-02-05"},
        date(2026, 2, 5), DEFAULT_POLICY))
    await work.record(handlers.apply_loan_closed(state, {"reason": "sold"}, date(2026, 2, 5),
                                                 DEFAULT_POLICY))
    sent = _sent(ctx)[1:]  # [0] is the entry into early on its own date
    assert [t for t, _ in sent] == ["stage.changed", "case.assigned", "repayment.applied",
                                    "stage.changed", "case.unassigned"]
    assert sent[1][1]["team"] == "negotiation"  # the relationship manager's fallback team
    assert sent[2][1]["collector_id"] == "rm9" and "instalments" not in sent[2][1]
    assert (sent[3][1]["to_stage"], sent[3][1]["reason"]) == ("current", "closed")
    assert work.deltas == {"rm9": 0}


async def test_fallback_owner_of_an_inactive_relationship_manager_keeps_the_case(roster):
    """The case of an inactive relationship manager went to the fallback team; later events
    must not move it between that team's collectors (each move was a case.assigned, and the
    owner's load made the least-loaded choice flip on every event)."""
    roster["n1"].open_cases = roster["n2"].open_cases = 0
    roster["n2"].capacity = 10
    ctx = BatchContext(None, TopicNames(""), "urn:test")  # type: ignore[arg-type]
    work = Casework(ctx, DEFAULT_POLICY_SET, date(2026, 2, 5), {})
    state = await work.record(handlers.age_to(_loan(rm="rm1"), date(2026, 2, 5),
                                              DEFAULT_POLICY))
    assert state.owner.collector_id == "n1"
    for n in range(3):
        state = await work.record(handlers.apply_repayment_received(state, {
            "payment_id": f"P{n}", "amount": "1.00", "currency": "CNY",
            "value_date": "2026-02-05"}, date(2026, 2, 5), DEFAULT_POLICY))
        assert state.owner.collector_id == "n1"
    assert [t for t, _ in _sent(ctx)].count("case.assigned") == 1
    assert work.deltas == {"n1": 1}


async def test_reversal_returns_the_case_to_the_collector_its_payment_released(roster):
    """A bounced payment that had cured a team case ends as if it never came: the case goes
    back to the collector who owned it, not to whoever is least loaded by then."""
    roster["i1"] = store.Collector("i1", "I1", "intensive", 10, True, 0)
    roster["i2"] = store.Collector("i2", "I2", "intensive", 10, True, 0)
    ctx = BatchContext(None, TopicNames(""), "urn:test")  # type: ignore[arg-type]
    on = date(2026, 3, 8)
    work = Casework(ctx, DEFAULT_POLICY_SET, on, {})
    state = await work.record(handlers.age_to(_loan(), on, DEFAULT_POLICY))
    assert (state.stage, state.owner.collector_id) == ("intensive", "i1")
    roster["i1"].open_cases += 3  # other cases meanwhile
    state = await work.record(handlers.apply_repayment_received(state, {
        "payment_id": "P1", "amount": "100.00", "currency": "CNY", "value_date": "2026-03-08"},
        on, DEFAULT_POLICY))
    assert (state.stage, state.owner.collector_id) == ("current", None)
    state = await work.record(handlers.apply_repayment_reversed(
        state, {"payment_id": "P1", "reason": "chargeback"}, on, DEFAULT_POLICY))
    assert (state.stage, state.owner.collector_id) == ("intensive", "i1")
    assert state.owner_history[-1].collector_id == "i1"


def test_the_domain_reads_every_enum_field_as_its_value_and_the_rest_as_parsed():
    """``plain`` converts only the fields whose model type holds an enum (``X | None``
    included), found once per model; the event keeps its own data."""
    closed = parse_event({
        "specversion": "1.0", "id": "e1", "source": "urn:core", "type": "loan.closed",
        "time": "2026-01-05T10:00:00+08:00",
        "subject": "L1", "data": {"loan_id": "L1", "reason": "sold"}})
    data = plain(closed)
    assert type(data["reason"]) is str and data["reason"] == "sold"
    assert data["loan_id"] == "L1"
    assert type(closed.data.reason) is not str  # the event's own value is still the enum
    received = parse_event({
        "specversion": "1.0", "id": "e2", "source": "urn:core", "type": "repayment.received",
        "time": "2026-01-05T10:00:00+08:00",
        "subject": "L1", "data": {"loan_id": "L1", "payment_id": "P1", "amount": "30.00",
                                  "currency": "CNY", "value_date": "2026-01-05",
                                  "channel": "auto_debit"}})
    data = plain(received)
    assert type(data["channel"]) is str and data["channel"] == "auto_debit"
    assert data["amount"] == Decimal("30.00")
