import copy

import pytest

from services.notifier.domain.policy import (
    DEFAULT_CONTACT_POLICY,
    DEFAULT_POLICY,
    ContactPolicyError,
    parse_contact_policy,
    validate_contact_policy,
)


def _doc():
    return copy.deepcopy(DEFAULT_CONTACT_POLICY)


def _fields(doc):
    return {e["field"] for e in validate_contact_policy(doc)}


def test_default_policy_is_valid_and_has_the_product_defaults():
    assert validate_contact_policy(DEFAULT_CONTACT_POLICY) == []
    caps = {ch: [(c.max, c.window.total_seconds() / 3600) for c in cs]
            for ch, cs in DEFAULT_POLICY.caps.items()}
    assert caps["voice"] == [(6, 24), (7, 168)]
    assert caps["sms"] == [(1, 24), (3, 168)]
    assert caps["email"] == [(1, 24)]
    assert caps["letter"] == [(1, 168)]
    assert str(DEFAULT_POLICY.quiet_hours.start) == "21:00:00"
    assert str(DEFAULT_POLICY.quiet_hours.end) == "08:00:00"
    assert DEFAULT_POLICY.stages["early"].channels == ("sms", "email")
    assert not DEFAULT_POLICY.stages["write_off"].automated


def test_cap_errors_name_the_field_with_an_index():
    doc = _doc()
    doc["caps"]["sms"][0]["max"] = 0
    doc["caps"]["voice"][1]["window_hours"] = "168"
    assert _fields(doc) == {"caps.sms[0].max", "caps.voice[1].window_hours"}


def test_an_uncapped_channel_is_refused():
    doc = _doc()
    doc["caps"]["email"] = []
    assert _fields(doc) == {"caps.email"}
    del doc["caps"]["email"]
    assert _fields(doc) == {"caps.email"}


def test_unknown_and_missing_fields():
    doc = _doc()
    doc["colour"] = "blue"
    del doc["staleness"]
    doc["quiet_hours"]["lunch"] = "12:00"
    assert _fields(doc) == {"colour", "staleness", "quiet_hours.lunch"}


@pytest.mark.parametrize("value", ["25:00", "8:00", "08:60", 800, None])
def test_quiet_hours_must_be_hh_mm(value):
    doc = _doc()
    doc["quiet_hours"]["end"] = value
    assert "quiet_hours.end" in _fields(doc)


def test_quiet_hours_start_and_end_differ():
    doc = _doc()
    doc["quiet_hours"] = {"start": "08:00", "end": "08:00"}
    assert _fields(doc) == {"quiet_hours.end"}


def test_mandatory_protections_cannot_be_removed():
    doc = _doc()
    doc["blocking_flags"] = ["dispute", "bankruptcy", "deceased", "fraud"]
    doc["vulnerable"]["blocked_channels"] = []
    errors = validate_contact_policy(doc)
    assert {e["field"] for e in errors} == {"blocking_flags", "vulnerable.blocked_channels"}
    assert any("cease_contact" in e["message"] for e in errors)


def test_stage_and_trigger_errors():
    doc = _doc()
    doc["stages"]["early"]["channels"] = ["sms", "email", "fax"]
    doc["stages"]["legal"]["cadence_business_days"] = 0
    doc["stages"]["write_off"]["channels"] = ["letter"]
    doc["triggers"]["promise_reminder"]["days_before"] = 30
    doc["triggers"]["early_warning"]["stages"] = ["nowhere"]
    assert _fields(doc) == {
        "stages.early.channels[2]",
        "stages.legal.cadence_business_days",
        "stages.write_off",
        "triggers.promise_reminder.days_before",
        "triggers.early_warning.stages[0]",
    }


def test_repeated_channel_and_language_errors():
    doc = _doc()
    doc["stages"]["early"]["channels"] = ["sms", "sms"]
    doc["languages"] = ["en"]
    assert _fields(doc) == {"stages.early.channels[1]", "default_language"}


def test_a_document_that_is_not_an_object():
    assert validate_contact_policy([1, 2]) == [{"field": "$", "message": "must be an object"}]


def test_booleans_are_not_integers():
    doc = _doc()
    doc["staleness"]["max_deferral_hours"] = True
    assert _fields(doc) == {"staleness.max_deferral_hours"}


def test_parse_refuses_an_invalid_document():
    doc = _doc()
    doc["version"] = 0
    with pytest.raises(ContactPolicyError) as info:
        parse_contact_policy(doc)
    assert info.value.errors[0]["field"] == "version"


def test_extra_blocking_flags_come_after_the_mandatory_ones():
    doc = _doc()
    doc["blocking_flags"] = ["hardship", *doc["blocking_flags"]]
    policy = parse_contact_policy(doc)
    assert policy.blocking_flags[0] == "cease_contact"
    assert policy.blocking_flags[-1] == "hardship"


def test_the_store_parses_a_policy_document_once_until_it_changes():
    from services.notifier import store

    doc = _doc()
    first = store._parsed(doc)
    assert first == parse_contact_policy(doc)
    assert store._parsed(_doc()) is first  # an equal document: the same policy
    doc["quiet_hours"]["start"] = "22:00"  # the caller's dict changed after the parse
    changed = store._parsed(doc)
    assert changed is not first and changed == parse_contact_policy(doc)
    assert str(changed.quiet_hours.start) == "22:00:00"
    assert store._parsed(_doc()) == first  # and back
