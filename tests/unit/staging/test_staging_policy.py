import copy

import pytest

from services.staging.domain.policy import (
    DEFAULT_POLICY,
    DEFAULT_POLICY_DOCUMENT,
    PolicyInvalid,
    PolicySet,
    parse_policy,
    stage_for_dpd,
    validate_policy,
)


def doc():
    return copy.deepcopy(DEFAULT_POLICY_DOCUMENT)


def fields(errors):
    return {e["field"] for e in errors}


def test_default_policy_is_valid_and_matches_the_product_table():
    assert validate_policy(DEFAULT_POLICY_DOCUMENT) == []
    assert DEFAULT_POLICY.tolerance == pytest.approx(10) and DEFAULT_POLICY.promise_grace_days == 1
    assert [r.name for r in DEFAULT_POLICY.ranged] == [
        "current", "early", "negotiation", "intensive", "legal", "write_off"]
    assert DEFAULT_POLICY.stage("legal").sticky and DEFAULT_POLICY.stage("write_off").sticky
    assert DEFAULT_POLICY.stage("negotiation").owner == "relationship_manager"
    assert DEFAULT_POLICY.stage("special").team == "legal"


@pytest.mark.parametrize(("dpd", "stage"), [
    (0, "current"), (1, "early"), (30, "early"), (31, "negotiation"), (60, "negotiation"),
    (61, "intensive"), (90, "intensive"), (91, "legal"), (180, "legal"), (181, "write_off"),
    (5000, "write_off"),
])
def test_stage_for_dpd_boundaries(dpd, stage):
    assert stage_for_dpd(DEFAULT_POLICY, dpd) == stage


def test_gap_is_refused_naming_the_field():
    d = doc()
    d["stages"][2]["dpd_min"] = 35
    errors = validate_policy(d)
    assert fields(errors) == {"stages[2].dpd_min"}
    assert "gap: DPD 31-34" in errors[0]["message"]


def test_overlap_is_refused_naming_the_field():
    d = doc()
    d["stages"][3]["dpd_min"] = 55
    assert fields(validate_policy(d)) == {"stages[3].dpd_min"}


def test_open_ended_range_in_the_middle_is_refused():
    d = doc()
    d["stages"][4]["dpd_max"] = None
    assert "stages[4].dpd_max" in fields(validate_policy(d))


def test_last_range_must_be_open_ended():
    d = doc()
    d["stages"][5]["dpd_max"] = 365
    assert fields(validate_policy(d)) == {"stages[5].dpd_max"}


def test_coverage_must_start_at_zero():
    d = doc()
    d["stages"][0]["dpd_min"] = 1
    d["stages"][0]["dpd_max"] = 1
    d["stages"][1]["dpd_min"] = 2
    assert "stages[0].dpd_min" in fields(validate_policy(d))


def test_unknown_team_stage_owner_and_field_are_refused():
    d = doc()
    d["stages"][3]["team"] = "bailiffs"
    d["stages"][2]["name"] = "haggling"
    d["stages"][1]["owner"] = "robot"
    d["stages"][0]["colour"] = "green"
    assert fields(validate_policy(d)) >= {
        "stages[3].team", "stages[2].name", "stages[1].owner", "stages[0].colour"}


def test_team_owner_needs_a_team_and_automated_has_none():
    d = doc()
    d["stages"][3]["team"] = None
    d["stages"][1]["team"] = "negotiation"
    assert fields(validate_policy(d)) == {"stages[3].team", "stages[1].team"}


def test_missing_current_and_duplicates_are_refused():
    d = doc()
    del d["stages"][0]
    d["stages"][0]["dpd_min"] = 0
    d["stages"].append(copy.deepcopy(d["stages"][1]))
    errors = validate_policy(d)
    assert any(e["field"] == "stages" and "current" in e["message"] for e in errors)
    assert any("duplicate" in e["message"] for e in errors)


def test_special_has_no_range_and_stages_follow_severity_order():
    d = doc()
    d["stages"][6]["dpd_min"] = 400
    assert fields(validate_policy(d)) == {"stages[6].dpd_min"}
    d = doc()
    d["stages"][1]["name"], d["stages"][2]["name"] = "negotiation", "early"
    d["stages"][1]["owner"], d["stages"][1]["team"] = "automated", None
    d["stages"][2]["owner"], d["stages"][2]["team"] = "relationship_manager", "negotiation"
    assert "stages[2].name" in fields(validate_policy(d))


@pytest.mark.parametrize(("key", "value"), [
    ("version", 0), ("version", "1"), ("tolerance", "-1"), ("tolerance", 1.5),
    ("tolerance", "ten"), ("promise_grace_days", -1), ("promise_grace_days", True),
    ("stages", []),
])
def test_top_level_schema(key, value):
    d = doc()
    d[key] = value
    assert key in fields(validate_policy(d))


def test_not_an_object():
    assert validate_policy([1]) == [{"field": "", "message": "the policy must be a JSON object"}]


def test_product_override():
    d = doc()
    stages = copy.deepcopy(d["stages"])
    del stages[2]  # mortgages skip negotiation
    stages[1]["dpd_max"] = 60
    d["products"] = {"mortgage": {"tolerance": "50.00", "stages": stages}}
    policies = parse_policy(d)
    mortgage = policies.for_product("mortgage")
    assert mortgage.tolerance == 50 and stage_for_dpd(mortgage, 45) == "early"
    assert policies.for_product("credit_card") == policies.default
    assert PolicySet.from_dict(policies.to_dict()) == policies


def test_product_override_errors_name_the_field():
    d = doc()
    d["products"] = {"mortgage": {"stages": [{"name": "current", "dpd_min": 0, "owner": "none"}]},
                     "yacht": {}}
    found = fields(validate_policy(d))
    assert "products.yacht" in found
    assert "products.mortgage.stages" in found  # missing legal and special


def test_parse_refuses_invalid_document():
    d = doc()
    d["stages"][2]["dpd_min"] = 40
    with pytest.raises(PolicyInvalid) as info:
        parse_policy(d)
    assert info.value.errors[0]["field"] == "stages[2].dpd_min"


@pytest.mark.parametrize(("path", "value", "field"), [
    (("stages", 5, "dpd_min"), 10_000_000, "stages[5].dpd_min"),
    (("stages", 4, "dpd_max"), 10_000_000, "stages[4].dpd_max"),
    (("promise_grace_days",), 1_000_000_000, "promise_grace_days"),
])
def test_day_counts_beyond_any_calendar_are_refused(path, value, field):
    """Such a policy used to validate, then every evaluation of a loan near the threshold (or
    with a promise) raised OverflowError: each of its events dead-lettered, end of day stuck."""
    bad = doc()
    target = bad
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    if path == ("stages", 5, "dpd_min"):
        bad["stages"][4]["dpd_max"] = value - 1
    assert field in fields(validate_policy(bad))
