"""Bad messages: the right dead-letter reason and the field at fault."""

import orjson
import pytest

from shared.events import (
    SAMPLES,
    EventError,
    check_envelope,
    new_event,
    parse_event,
    sample_cloudevent,
)
from shared.events import types as t


def _fails(envelope_or_raw) -> EventError:
    raw = envelope_or_raw
    if isinstance(raw, dict):
        raw = orjson.dumps(raw)
    with pytest.raises(EventError) as info:
        parse_event(raw)
    _envelope_check_agrees(raw, info.value)
    return info.value


def _envelope_check_agrees(raw, error: EventError) -> None:
    """``check_envelope`` (what a consumer runs on a type it skips) refuses every message that
    ``parse_event`` refuses for its JSON, attributes or type, with the same reason and fields,
    and passes what only its data (or the subject's match with the data) gets wrong."""
    if error.reason == "schema_error":
        obj = orjson.loads(raw)
        assert check_envelope(raw) == (obj["type"], obj["source"], obj["id"])
        return
    with pytest.raises(EventError) as info:
        check_envelope(raw)
    assert (info.value.reason, info.value.errors) == (error.reason, error.errors)


def _with_data(event_type: str, **changes) -> dict:
    envelope = sample_cloudevent(event_type)
    envelope["data"].update(changes)
    return envelope


def _fields(error: EventError) -> list[str]:
    return [e["field"] for e in error.errors]


@pytest.mark.parametrize("raw", [b"{not json", b"", "\u00ff\u00fe", b'{"a": 1'])
def test_invalid_json(raw):
    assert _fails(raw).reason == "invalid_json"


@pytest.mark.parametrize("raw", [b"[]", b'"text"', b"42", b"null", b"{}"])
def test_not_an_object_or_empty(raw):
    assert _fails(raw).reason == "not_cloudevent"


def test_float_money_is_a_schema_error_on_data_amount():
    error = _fails(_with_data(t.REPAYMENT_RECEIVED, amount=5000.0))
    assert error.reason == "schema_error"
    assert _fields(error) == ["data.amount"]
    assert error.event_type == t.REPAYMENT_RECEIVED
    assert error.event_id == "sample-repayment.received"


def test_money_in_exponent_notation_is_refused():
    assert _fields(_fails(_with_data(t.REPAYMENT_RECEIVED, amount="5E+3"))) == ["data.amount"]


def test_non_positive_repayment_is_refused():
    assert _fields(_fails(_with_data(t.REPAYMENT_RECEIVED, amount="0.00"))) == ["data.amount"]


def test_naive_time_is_not_a_cloudevent():
    envelope = sample_cloudevent(t.LOAN_CLOSED) | {"time": "2024-06-14T18:05:00"}
    error = _fails(envelope)
    assert error.reason == "not_cloudevent"
    assert _fields(error) == ["time"]


@pytest.mark.parametrize("stamp", [1718359500, "2024-06-14", "yesterday", "2024-13-01T00:00:00Z"])
def test_other_bad_times(stamp):
    assert _fields(_fails(sample_cloudevent(t.LOAN_CLOSED) | {"time": stamp})) == ["time"]


def test_unknown_type():
    error = _fails(sample_cloudevent(t.LOAN_CLOSED) | {"type": "loan.exploded"})
    assert error.reason == "unknown_type"
    assert _fields(error) == ["type"]
    assert error.event_type == "loan.exploded"


def test_unknown_future_version_is_unknown_type():
    error = _fails(sample_cloudevent(t.LOAN_CLOSED) | {"dataversion": 9})
    assert error.reason == "unknown_type"


@pytest.mark.parametrize(
    ("attribute", "value"),
    [
        ("specversion", "0.3"),
        ("id", ""),
        ("source", ""),
        ("source", "has space"),
        ("source", "urn:" + "x" * 253),  # 257 characters: too long to key an inbox row
        ("subject", ""),
        ("datacontenttype", "text/xml"),
        ("dataschema", "not a uri"),
        ("data", "a string"),
        ("data", None),
        ("id", 17),
        ("dataversion", "two"),
    ],
)
def test_bad_envelope_attribute_names_the_attribute(attribute, value):
    error = _fails(sample_cloudevent(t.LOAN_CLOSED) | {attribute: value})
    assert error.reason == "not_cloudevent"
    assert _fields(error) == [attribute]


def test_json_data_may_name_its_charset():
    envelope = sample_cloudevent(t.LOAN_CLOSED) | {
        "datacontenttype": "application/json; charset=utf-8"}
    event = parse_event(orjson.dumps(envelope))
    assert event.datacontenttype == "application/json; charset=utf-8"
    assert orjson.loads(event.to_json())["datacontenttype"] == "application/json; charset=utf-8"


def test_source_of_256_characters_is_accepted():
    envelope = sample_cloudevent(t.LOAN_CLOSED) | {"source": "urn:" + "x" * 252}
    assert parse_event(orjson.dumps(envelope)).source == envelope["source"]


@pytest.mark.parametrize(
    "missing", ["specversion", "id", "source", "type", "time", "subject", "data"]
)
def test_missing_required_attribute(missing):
    envelope = sample_cloudevent(t.LOAN_CLOSED)
    del envelope[missing]
    error = _fails(envelope)
    assert error.reason == "not_cloudevent"
    assert _fields(error) == [missing]


@pytest.mark.parametrize(
    ("name", "value"),
    [("Upper", "x"), ("has_underscore", "x"), ("waytoolongextensionname", "x"), ("ext", 1.5),
     ("ext", {"a": 1}), ("ext", None), ("ext", 2**40)],
)  # fmt: skip
def test_bad_extension_attributes(name, value):
    error = _fails(sample_cloudevent(t.LOAN_CLOSED) | {name: value})
    assert error.reason == "not_cloudevent"
    assert _fields(error) == [name]


def test_subject_must_equal_the_loan_id():
    error = _fails(sample_cloudevent(t.REPAYMENT_RECEIVED) | {"subject": "LN-OTHER"})
    assert error.reason == "schema_error"
    assert _fields(error) == ["subject"]


def test_borrower_subject_is_the_borrower_id():
    assert _fields(
        _fails(sample_cloudevent(t.BORROWER_UPDATED) | {"subject": "LN-2024-000123"})
    ) == ["subject"]


def test_calendar_subject_is_calendar():
    assert _fields(_fails(sample_cloudevent(t.BUSINESS_DAY_CLOSED) | {"subject": "x"})) == [
        "subject"
    ]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("phone", "13812345678"),
        ("phone", "+0123456789"),
        ("phone", "+86 138 1234 5678"),
        ("phone", "+٨٦١٣٨١٢٣٤٥٦٧٨"),
        ("email", "no-at-sign"),
        ("email", "a@b"),
        ("email", "a..b@example.com"),
        ("email", "a b@example.com"),
        ("timezone", "Mars/Olympus"),
        ("timezone", "../../etc/passwd"),
        ("timezone", ""),
        ("language", "fr"),
        ("vulnerable", "no"),
        ("vulnerable", 0),
        ("name", ""),
    ],
)
def test_bad_borrower_fields(field, value):
    error = _fails(_with_data(t.BORROWER_UPDATED, **{field: value}))
    assert error.reason == "schema_error"
    assert _fields(error) == [f"data.{field}"]


def test_opted_out_channels_are_known_and_unique():
    error = _fails(_with_data(t.BORROWER_UPDATED, opted_out_channels=["sms", "pigeon"]))
    assert _fields(error) == ["data.opted_out_channels.1"]
    error = _fails(_with_data(t.BORROWER_UPDATED, opted_out_channels=["sms", "sms"]))
    assert _fields(error) == ["data.opted_out_channels"]


def test_extra_data_field_is_refused():
    error = _fails(_with_data(t.LOAN_CLOSED, surprise=True))
    assert error.reason == "schema_error"
    assert _fields(error) == ["data.surprise"]


def test_missing_data_field():
    envelope = sample_cloudevent(t.REPAYMENT_RECEIVED)
    del envelope["data"]["currency"]
    assert _fields(_fails(envelope)) == ["data.currency"]


@pytest.mark.parametrize(
    ("event_type", "field", "value"),
    [
        (t.LOAN_OPENED, "product", "payday_loan"),
        (t.LOAN_OPENED, "currency", "cny"),
        (t.LOAN_OPENED, "opened_on", "2024/01/15"),
        (t.LOAN_OPENED, "opened_on", "2024-02-30"),
        (t.LOAN_OPENED, "opened_on", "20240115"),
        (t.LOAN_OPENED, "opened_on", 1705276800),
        (t.LOAN_OPENED, "opened_on", "2024-01-15T00:00:00"),
        (t.LOAN_OPENED, "loan_id", ""),
        (t.LOAN_OPENED, "loan_id", 123),
        (t.INSTALMENT_UPCOMING, "instalment_no", 0),
        (t.INSTALMENT_UPCOMING, "instalment_no", "4"),
        (t.INSTALMENT_UPCOMING, "instalment_no", 4.0),
        (t.PAYMENT_MISSED, "amount_unpaid", "-1.00"),
        (t.PAYMENT_MISSED, "amount_unpaid", "10500.01"),  # more than amount_due
        (t.REPAYMENT_RECEIVED, "channel", "bitcoin"),
        (t.CASE_FLAG_RAISED, "flag", "angry"),
        (t.CASE_FLAG_RAISED, "until", "soon"),
        (t.COMPLAINT_RECORDED, "severity", "critical"),
        (t.LOAN_CLOSED, "reason", "forgotten"),
        (t.BUSINESS_DAY_CLOSED, "business_date", "2024-06-14T00:00:00Z"),
        (t.STAGE_CHANGED, "to_stage", "late"),
        (t.STAGE_CHANGED, "dpd", -1),
        (t.STAGE_CHANGED, "reason", "whim"),
        (t.CONTACT_ATTEMPTED, "channel", "fax"),
        (t.CONTACT_ATTEMPTED, "status", "lost"),
        (t.CONTACT_ATTEMPTED, "scheduled_for", "2024-05-17T08:00:00"),
        (t.CONTACT_ATTEMPTED, "scheduled_for", None),  # status is deferred
        (t.SCORECARD_UPDATED, "period", "2024-13"),
        (t.SCORECARD_UPDATED, "period", "2024-6"),
        (t.SCORECARD_UPDATED, "recovery_rate", 0.33),
        (t.SCORECARD_UPDATED, "multiplier", "-0.5"),
        (t.SCORECARD_UPDATED, "cases_assigned", -1),
    ],
)
def test_bad_data_field_is_named(event_type, field, value):
    error = _fails(_with_data(event_type, **{field: value}))
    assert error.reason == "schema_error"
    assert _fields(error) == [f"data.{field}"]


def test_repayment_split_must_add_up():
    error = _fails(_with_data(t.REPAYMENT_APPLIED, excess="1000.00"))
    assert error.reason == "schema_error"
    assert _fields(error) == ["data.amount"]


def test_every_error_has_field_and_message():
    error = _fails(_with_data(t.LOAN_OPENED, principal=1.5, product="x", extra=1))
    assert sorted(_fields(error)) == ["data.extra", "data.principal", "data.product"]
    assert all(e["message"] for e in error.errors)
    assert error.to_dict()["reason"] == "schema_error"
    assert "data.principal" in str(error)


def test_new_event_validates_too():
    with pytest.raises(EventError) as info:
        new_event(
            t.REPAYMENT_RECEIVED, source="s", data=SAMPLES[t.REPAYMENT_RECEIVED] | {"amount": 1}
        )
    assert info.value.reason == "schema_error"
    with pytest.raises(EventError) as info:
        new_event("nope", source="s", data={})
    assert info.value.reason == "unknown_type"
    with pytest.raises(EventError) as info:
        new_event(t.LOAN_CLOSED, source="s", data=SAMPLES[t.LOAN_CLOSED], subject="LN-OTHER")
    assert _fields(info.value) == ["subject"]
    with pytest.raises(EventError) as info:
        new_event(t.LOAN_CLOSED, source="", data=SAMPLES[t.LOAN_CLOSED])
    assert _fields(info.value) == ["source"]
    with pytest.raises(EventError) as info:
        new_event(t.LOAN_CLOSED, source="s", data=SAMPLES[t.LOAN_CLOSED], extensions={"id": "x"})
    assert _fields(info.value) == ["id"]
    with pytest.raises(EventError) as info:
        closed = new_event(t.LOAN_CLOSED, source="s", data=SAMPLES[t.LOAN_CLOSED]).data
        new_event(t.REPAYMENT_REVERSED, source="s", data=closed)
    assert _fields(info.value) == ["data"]


def test_new_event_refuses_naive_time():
    from datetime import datetime

    with pytest.raises(EventError) as info:
        new_event(t.LOAN_CLOSED, source="s", data=SAMPLES[t.LOAN_CLOSED], time=datetime(2024, 1, 1))
    assert info.value.reason == "not_cloudevent"
    assert _fields(info.value) == ["time"]


@pytest.mark.parametrize("event_type", sorted(SAMPLES))
def test_check_envelope_passes_every_valid_sample(event_type):
    envelope = sample_cloudevent(event_type)
    expected = (event_type, envelope["source"], envelope["id"])
    assert check_envelope(orjson.dumps(envelope)) == expected
    envelope["data"] = {"anything": "at all"}  # the data is not its business
    assert check_envelope(envelope) == expected
