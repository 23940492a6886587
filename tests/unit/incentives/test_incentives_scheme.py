from datetime import date
from decimal import Decimal

import pytest

from services.incentives.domain import (
    DEFAULT_SCHEME,
    SchemeInvalid,
    scheme_from_doc,
    scheme_on,
    scheme_to_doc,
    validate_scheme,
)
from services.incentives.domain.periods import latest_closed_reached


def doc(**changes):
    base = scheme_to_doc(DEFAULT_SCHEME)
    base["effective_from"] = "2025-01-01"
    base.update(changes)
    return base


def fields(errors):
    return {e["field"] for e in errors}


def test_defaults_match_the_product_spec():
    assert DEFAULT_SCHEME.rate("early") == Decimal("0.005")
    assert DEFAULT_SCHEME.rate("negotiation") == Decimal("0.01")
    assert DEFAULT_SCHEME.rate("intensive") == Decimal("0.02")
    assert DEFAULT_SCHEME.rate("legal") == Decimal("0.03")
    assert DEFAULT_SCHEME.rate("write_off") == Decimal("0.03")
    assert DEFAULT_SCHEME.rate("special") == 0
    assert DEFAULT_SCHEME.rate("current") == 0
    assert DEFAULT_SCHEME.rate("a_future_stage") == 0
    assert DEFAULT_SCHEME.rate(None) == 0
    assert sum(DEFAULT_SCHEME.weights.values()) == 1
    assert DEFAULT_SCHEME.complaint_penalty == {"minor": Decimal("0.05"), "major": Decimal("0.25")}


def test_default_document_is_valid_and_round_trips():
    assert validate_scheme(doc()) == []
    scheme = scheme_from_doc(doc())
    assert scheme.effective_from == date(2025, 1, 1)
    assert scheme_to_doc(scheme) == doc()


@pytest.mark.parametrize("bad", ["-0.01", "1.5", 0.01, "abc", "NaN", "Infinity", True, None])
def test_commission_rate_must_be_a_decimal_fraction(bad):
    d = doc()
    d["commission"]["early"] = bad
    assert fields(validate_scheme(d)) == {"commission.early"}


def test_missing_and_unknown_stages_are_named():
    d = doc()
    del d["commission"]["legal"]
    d["commission"]["collections"] = "0.01"
    assert fields(validate_scheme(d)) == {"commission.legal", "commission.collections"}


def test_weights_must_sum_to_one():
    d = doc(
        weights={"recovery_rate": "0.5", "cure_rate": "0.3", "kept_rate": "0.2", "quality": "0.1"}
    )
    errors = validate_scheme(d)
    assert fields(errors) == {"weights"}
    assert "1.1" in errors[0]["message"]


def test_weight_outside_unit_interval():
    d = doc(weights={"recovery_rate": "1.2", "cure_rate": "-0.2", "kept_rate": "0", "quality": "0"})
    assert fields(validate_scheme(d)) == {"weights.recovery_rate", "weights.cure_rate"}


def test_penalties_and_bonuses_must_not_be_negative():
    d = doc(
        cure_bonus="-1",
        promise_kept_bonus=10.5,
        complaint_penalty={"minor": "-0.05", "major": "0.25"},
    )
    assert fields(validate_scheme(d)) == {
        "cure_bonus",
        "promise_kept_bonus",
        "complaint_penalty.minor",
    }


def test_penalty_above_one_is_allowed_the_multiplier_floors_it():
    assert validate_scheme(doc(complaint_penalty={"minor": "0.5", "major": "1.5"})) == []


@pytest.mark.parametrize("bad", ["2025-13-01", "yesterday", None, 20250101])
def test_effective_from_must_be_a_date(bad):
    assert fields(validate_scheme(doc(effective_from=bad))) == {"effective_from"}


@pytest.mark.parametrize("bad", [0, -1, "2", 1.0, True, None])
def test_version_must_be_a_positive_integer(bad):
    assert fields(validate_scheme(doc(version=bad))) == {"version"}


def test_unknown_top_level_field_and_non_object():
    assert fields(validate_scheme(doc(bonus_pool="1"))) == {"bonus_pool"}
    assert fields(validate_scheme([])) == {""}
    d = doc()
    d["weights"] = "even"
    assert fields(validate_scheme(d)) == {"weights"}


def test_scheme_from_doc_raises_with_every_error():
    with pytest.raises(SchemeInvalid) as info:
        scheme_from_doc(doc(version=0, cure_bonus="x"))
    assert fields(info.value.errors) == {"version", "cure_bonus"}


def test_scheme_on_picks_the_version_in_effect():
    v1 = scheme_from_doc(doc(version=1, effective_from="2025-01-01"))
    v2 = scheme_from_doc(doc(version=2, effective_from="2025-03-15"))
    v3 = scheme_from_doc(doc(version=3, effective_from="2025-03-15"))
    versions = [v3, v1, v2]
    assert scheme_on(versions, date(2025, 3, 14)) is v1
    assert scheme_on(versions, date(2025, 3, 15)) is v3  # same date: the higher version
    assert scheme_on(versions, date(2026, 1, 1)) is v3
    with pytest.raises(LookupError):
        scheme_on(versions, date(2024, 12, 31))


def test_a_scheme_may_not_reach_into_a_closed_period():
    closed = {"2026-01", "2026-03"}
    assert latest_closed_reached(date(2026, 3, 31), closed) == "2026-03"
    assert latest_closed_reached(date(2026, 2, 10), closed) == "2026-03"
    assert latest_closed_reached(date(2026, 4, 1), closed) is None
    assert latest_closed_reached(date(2026, 4, 1), set()) is None
