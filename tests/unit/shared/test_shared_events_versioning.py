"""The versioning hook: a made-up type gets a breaking v2 and v1 payloads are upcast."""

from decimal import Decimal

import orjson
import pytest

from shared.events import EventError, Registry, new_event, parse_event
from shared.events.base import EventData
from shared.events.fields import Id
from shared.money import Currency, Money


class FeeChargedV1(EventData):
    loan_id: Id
    fee: Money  # v1: amount only, the loan's currency implied


class FeeChargedV2(EventData):
    loan_id: Id
    amount: Money
    currency: Currency
    kind: str


class FeeChargedV3(EventData):
    loan_id: Id
    amount: Money
    currency: Currency
    kind: str
    waived: bool


def _v1_to_v2(data: dict) -> dict:
    data = dict(data)
    data["amount"] = data.pop("fee")
    data.setdefault("currency", "CNY")
    data.setdefault("kind", "late_fee")
    return data


def _v2_to_v3(data: dict) -> dict:
    return data | {"waived": False}


@pytest.fixture
def fees() -> Registry:
    reg = Registry()
    reg.register("test.fee.charged", FeeChargedV1, topic="t", direction="inbound",
                 subject_field="loan_id")  # fmt: skip
    reg.register("test.fee.charged", FeeChargedV2, topic="t", direction="inbound", version=2,
                 subject_field="loan_id", upcaster=_v1_to_v2)  # fmt: skip
    reg.register("test.fee.charged", FeeChargedV3, topic="t", direction="inbound", version=3,
                 subject_field="loan_id", upcaster=_v2_to_v3)  # fmt: skip
    return reg


def _envelope(data: dict, **attributes) -> bytes:
    return orjson.dumps(
        {
            "specversion": "1.0",
            "id": "fee-1",
            "source": "urn:test",
            "type": "test.fee.charged",
            "time": "2024-06-01T00:00:00Z",
            "subject": "LN-1",
            "data": data,
            **attributes,
        }
    )


def test_v1_payload_without_dataversion_is_upcast_to_latest(fees):
    event = parse_event(_envelope({"loan_id": "LN-1", "fee": "50.00"}), registry=fees)
    assert event.version == 3
    assert event.data == FeeChargedV3(
        loan_id="LN-1", amount=Decimal("50.00"), currency="CNY", kind="late_fee", waived=False
    )
    wire = orjson.loads(event.to_json())
    assert wire["dataversion"] == 3
    assert parse_event(event.to_json(), registry=fees) == event


def test_v2_payload_takes_only_the_remaining_steps(fees):
    data = {"loan_id": "LN-1", "amount": "9", "currency": "USD", "kind": "annual"}
    event = parse_event(_envelope(data, dataversion="2"), registry=fees)
    assert event.data.currency == "USD"
    assert event.data.waived is False


def test_upcast_result_is_still_validated(fees):
    with pytest.raises(EventError) as info:
        parse_event(_envelope({"loan_id": "LN-1", "fee": 50.0}), registry=fees)
    assert info.value.reason == "schema_error"
    assert info.value.errors[0]["field"] == "data.amount"


def test_upcaster_failure_is_a_schema_error(fees):
    with pytest.raises(EventError) as info:
        parse_event(_envelope({"loan_id": "LN-1"}), registry=fees)  # no "fee" to rename
    assert info.value.reason == "schema_error"
    assert info.value.errors[0]["field"] == "data"


def test_producers_build_the_latest_version(fees):
    event = new_event(
        "test.fee.charged",
        source="urn:test",
        data={"loan_id": "LN-1", "amount": "1", "currency": "CNY", "kind": "k", "waived": True},
        registry=fees,
    )
    assert event.version == 3
    assert event.subject == "LN-1"


def test_registration_rules():
    reg = Registry()
    with pytest.raises(ValueError):
        reg.register("x", FeeChargedV2, topic="t", direction="inbound", version=2)
    reg.register("x", FeeChargedV1, topic="t", direction="inbound")
    with pytest.raises(ValueError):  # v2 without an upcaster
        reg.register("x", FeeChargedV2, topic="t", direction="inbound", version=2)
    with pytest.raises(ValueError):  # subject field that the model lacks
        reg.register("y", FeeChargedV1, topic="t", direction="inbound", subject_field="nope")
