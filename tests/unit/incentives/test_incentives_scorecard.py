from dataclasses import replace
from datetime import date
from decimal import Decimal

import pytest
from incentive_events import (
    applied,
    assigned,
    complaint,
    promise,
    stage_changed,
    unapplied,
)

from services.incentives.domain import (
    DEFAULT_SCHEME,
    SchemeBook,
    ScorecardTally,
    assignment_from_assigned,
    clawback_for_unapplied,
    compute_scorecard,
    credit_for_applied,
    cure_for_stage_changed,
    cure_reversal_for_stage_changed,
    entries_for_assigned,
    entry_for_complaint,
    entry_for_promise,
)
from services.incentives.tallies import tally_from_json, tally_to_json

MARCH = "2025-03"
SCHEMES = [DEFAULT_SCHEME]


def card(entries, schemes=SCHEMES, currency="CNY", period=MARCH, collector="c1"):
    return compute_scorecard(collector, period, entries, schemes, currency)


def credits(*specs):
    return [
        e
        for amount, day, stage in specs
        for e in credit_for_applied(applied(amount, day, stage=stage))
    ]


def test_empty_scorecard_is_all_zero():
    sc = card([])
    assert sc.payout == Decimal("0.00")
    assert sc.recovery_rate == sc.cure_rate == sc.kept_rate == 0
    assert sc.multiplier == 1
    assert sc.composite == Decimal("0.1000")  # quality alone
    assert sc.avg_days_to_cure is None


def test_commission_by_stage_and_recovery_rate():
    arrears = entries_for_assigned(assigned("c1", date(2025, 3, 3)), Decimal("2000.00"), "CNY")
    entries = arrears + credits(
        ("1000.00", date(2025, 3, 4), "early"),
        ("400.00", date(2025, 3, 5), "legal"),
    )
    sc = card(entries)
    assert sc.cases_assigned == 1
    assert sc.arrears_assigned == Decimal("2000.00")
    assert sc.recovered == Decimal("1400.00")
    assert sc.recovery_rate == Decimal("0.7000")
    assert sc.commission == Decimal("17.00")  # 5.00 + 12.00
    assert sc.payout == Decimal("17.00")
    assert sc.team == "negotiation"


def test_payout_is_rounded_once_half_even():
    # 0.5% of 1.01 is 0.00505 twice: 0.0101 rounds to 0.01; rounding each would give 0.02.
    entries = credits(("1.01", date(2025, 3, 4), "early"), ("1.01", date(2025, 3, 5), "early"))
    assert card(entries).payout == Decimal("0.01")
    # half-even at the minor unit: 0.5% of 5.00 = 0.025 -> 0.02
    assert card(credits(("5.00", date(2025, 3, 4), "early"))).payout == Decimal("0.02")
    # JPY has no minor unit
    assert card(credits(("300", date(2025, 3, 4), "early")), currency="JPY").payout == Decimal("2")


def test_clawback_nets_recovered_and_commission():
    original = applied("1000.00", date(2025, 3, 4), stage="intensive")
    entries = credit_for_applied(original) + clawback_for_unapplied(
        unapplied(original), set(), MARCH
    )
    sc = card(entries)
    assert sc.recovered == 0 and sc.payout == 0


def test_late_clawback_lowers_arrival_month_and_payout_floors_at_zero():
    original = applied("1000.00", date(2025, 2, 27), stage="intensive")
    back = clawback_for_unapplied(unapplied(original), {"2025-02"}, MARCH)
    assert card(credit_for_applied(original), period="2025-02").payout == Decimal("20.00")
    march = card(back + credits(("100.00", date(2025, 3, 4), "early")))
    assert march.recovered == Decimal("-900.00")
    assert march.commission == Decimal("-19.50")
    assert march.payout == Decimal("0.00")
    assert 0 <= march.composite <= 1


def test_cures_bonus_rate_and_days():
    entries = []
    for loan, start, cured in (
        ("L1", date(2025, 3, 3), date(2025, 3, 5)),
        ("L2", date(2025, 3, 3), date(2025, 3, 10)),
    ):
        event = assigned("c1", start, loan_id=loan)
        entries += entries_for_assigned(event, Decimal("100.00"), "CNY")
        entries += cure_for_stage_changed(
            stage_changed("early", "current", cured, loan_id=loan), assignment_from_assigned(event)
        )
    entries += entries_for_assigned(assigned("c1", date(2025, 3, 3), loan_id="L3"), None, None)
    sc = card(entries)
    assert sc.cures == 2 and sc.cases_assigned == 3
    assert sc.cure_rate == Decimal("0.6667")
    assert sc.avg_days_to_cure == Decimal("3.50")  # (2 + 5) / 2
    assert sc.bonuses == Decimal("100.00")
    assert sc.payout == Decimal("100.00")


def test_promises_kept_rate_and_bonus():
    due = date(2025, 3, 10)
    entries = [
        e
        for t in ("promise.made",) * 4 + ("promise.kept",) * 2 + ("promise.broken",)
        for e in entry_for_promise(promise(t, due))
    ]
    sc = card(entries)
    assert (sc.promises_made, sc.promises_kept, sc.promises_broken) == (4, 2, 1)
    assert sc.kept_rate == Decimal("0.6667")
    assert sc.payout == Decimal("20.00")


def test_complaints_lower_the_payout_and_floor_at_zero():
    base = credits(("10000.00", date(2025, 3, 4), "legal"))  # 300.00
    minor = entry_for_complaint(complaint("minor"), None, MARCH)
    major = entry_for_complaint(complaint("major"), None, MARCH)
    sc = card(base + minor + major)
    assert (sc.complaints_minor, sc.complaints_major) == (1, 1)
    assert sc.multiplier == Decimal("0.7000")
    assert sc.payout == Decimal("210.00")
    many = [e for _ in range(5) for e in entry_for_complaint(complaint("major"), None, MARCH)]
    floored = card(base + many)
    assert floored.multiplier == 0 and floored.payout == 0


def test_scheme_change_mid_month_applies_from_its_effective_date():
    v2 = replace(
        DEFAULT_SCHEME,
        version=2,
        effective_from=date(2025, 3, 15),
        commission={**DEFAULT_SCHEME.commission, "early": Decimal("0.02")},
    )
    entries = credits(
        ("1000.00", date(2025, 3, 14), "early"), ("1000.00", date(2025, 3, 15), "early")
    )
    sc = card(entries, schemes=[DEFAULT_SCHEME, v2])
    assert sc.payout == Decimal("25.00")  # 5.00 old rate + 20.00 new rate
    assert sc.scheme_version == 2


def test_other_collectors_periods_currencies_and_duplicates_are_skipped():
    mine = credits(("100.00", date(2025, 3, 4), "legal"))
    other = credit_for_applied(applied("100.00", date(2025, 3, 4), collector_id="c2"))
    april = credits(("100.00", date(2025, 4, 1), "legal"))
    usd = [replace(mine[0], entry_id="x", currency="USD")]
    sc = card(mine + mine + other + april + usd)
    assert sc.recovered == Decimal("100.00")
    assert sc.foreign_entries == 1


def test_tally_matches_compute_and_as_doc_has_no_floats():
    entries = credits(("100.00", date(2025, 3, 4), "legal"), ("3.33", date(2025, 3, 5), "early"))
    tally = ScorecardTally("c1", MARCH, "CNY", SCHEMES)
    for e in entries:
        tally.add(e)
    assert tally.scorecard() == card(entries)
    doc = tally.scorecard().as_doc()
    assert doc["payout"] == "3.02"
    assert not any(isinstance(v, float) for v in doc.values())


def test_no_scheme_in_effect_is_an_error():
    late = replace(DEFAULT_SCHEME, effective_from=date(2025, 4, 1))
    with pytest.raises(LookupError):
        card(credits(("1.00", date(2025, 3, 4), "legal")), schemes=[late])


def test_a_cure_reversed_from_a_closed_month_does_not_distort_average_days_to_cure():
    # February's cure (19 business days) is reversed after February closed: it lands in March
    feb_owner = assignment_from_assigned(assigned("c1", date(2025, 1, 31), loan_id="L9"))
    [feb_cure] = cure_for_stage_changed(
        stage_changed("early", "current", date(2025, 2, 27), loan_id="L9"), feb_owner
    )
    back = cure_reversal_for_stage_changed(
        stage_changed("current", "early", date(2025, 3, 4), reason="reversal", loan_id="L9"),
        feb_cure, {"2025-02"}, MARCH,
    )
    entries = list(back)
    for loan, cured in (("L1", date(2025, 3, 7)), ("L2", date(2025, 3, 17))):
        owner = assignment_from_assigned(assigned("c1", date(2025, 3, 3), loan_id=loan))
        entries += cure_for_stage_changed(
            stage_changed("early", "current", cured, loan_id=loan), owner
        )
    sc = card(entries)
    assert sc.cures == 1  # 2 of March's own, 1 of February's taken back
    assert sc.bonuses == Decimal("50.00")
    assert sc.avg_days_to_cure == Decimal("7.00")  # March's cures: (4 + 10) / 2
    # reversed in its own month, a cure leaves the average of the others
    [own] = cure_reversal_for_stage_changed(
        stage_changed("current", "early", date(2025, 3, 20), reason="reversal", loan_id="L2"),
        entries[-1], set(), MARCH,
    )
    assert card([*entries, own]).avg_days_to_cure == Decimal("4.00")


def test_a_stored_tally_restores_every_running_total():
    owner = assignment_from_assigned(assigned("c1", date(2025, 3, 3)))
    entries = entries_for_assigned(assigned("c1", date(2025, 3, 3)), Decimal("90.00"), "CNY")
    entries += cure_for_stage_changed(stage_changed("early", "current", date(2025, 3, 7)), owner)
    entries += credits(("30.00", date(2025, 3, 4), "legal"))
    entries += entry_for_promise(promise("promise.kept", date(2025, 3, 10)))
    tally = ScorecardTally("c1", MARCH, "CNY", SCHEMES)
    for e in entries:
        tally.add(e)
    restored = tally_from_json("c1", MARCH, "CNY", SchemeBook(SCHEMES), tally_to_json(tally))
    assert restored.scorecard() == tally.scorecard()
    assert restored.currency_known and restored.timed_cures == 1
