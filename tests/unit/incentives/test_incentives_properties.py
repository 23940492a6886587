"""Property tests of the incentive rules (hypothesis)."""

import random
from dataclasses import replace
from datetime import date, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st
from incentive_events import applied, complaint, unapplied

from services.incentives.domain import (
    DEFAULT_SCHEME,
    EntryKind,
    clawback_for_unapplied,
    compute_scorecard,
    credit_for_applied,
    entry_for_complaint,
    period_of,
)
from services.incentives.domain.ledger import CreditEntry

STAGES = ["current", "early", "negotiation", "intensive", "legal", "write_off", "special"]
MONTH_DAYS = 28

amounts = st.decimals(min_value=0, max_value=Decimal("9999999.99"), places=2)
days = st.dates(min_value=date(2024, 1, 1), max_value=date(2026, 12, 31))
collectors = st.sampled_from(["c1", "c2", None])
repayments = st.lists(
    st.tuples(amounts, days, collectors, st.sampled_from(STAGES), st.booleans()), max_size=25
)


def ledger_for(specs, closed=frozenset(), arrival="2027-01"):
    """Entries of applied repayments; those flagged are then unapplied."""
    entries = []
    for amount, day, collector, stage, reversed_ in specs:
        event = applied(amount, day, collector_id=collector, stage=stage)
        entries += credit_for_applied(event)
        if reversed_:
            entries += clawback_for_unapplied(unapplied(event), closed, arrival)
    return entries


@given(repayments)
def test_sum_of_credits_is_applied_minus_clawbacks(specs):
    entries = ledger_for(specs)
    expected = sum(
        (amount for amount, _, collector, _, reversed_ in specs if collector and not reversed_),
        Decimal(0),
    )
    assert sum((e.amount for e in entries), Decimal(0)) == expected
    applied_total = sum((e.amount for e in entries if e.kind is EntryKind.CREDIT), Decimal(0))
    assert applied_total == sum(
        (amount for amount, _, collector, _, _ in specs if collector), Decimal(0)
    )


@given(repayments)
def test_per_collector_scorecards_add_up_to_the_ledger(specs):
    entries = ledger_for(specs)
    total = Decimal(0)
    for collector in ("c1", "c2"):
        for period in {e.period for e in entries}:
            total += compute_scorecard(
                collector, period, entries, [DEFAULT_SCHEME], "CNY"
            ).recovered
    assert total == sum((e.amount for e in entries), Decimal(0))


@given(
    amount=st.decimals(min_value=Decimal("0.01"), max_value=10**6, places=2),
    value_date=days,
    delay=st.integers(min_value=1, max_value=400),
    original_closed=st.booleans(),
)
def test_reversal_after_a_period_boundary(amount, value_date, delay, original_closed):
    event = applied(amount, value_date, stage="legal")
    arrival = period_of(value_date + timedelta(days=MONTH_DAYS + delay))
    original = period_of(value_date)
    closed = {original} if original_closed else set()
    [back] = clawback_for_unapplied(unapplied(event), closed, arrival)
    assert back.period == (arrival if original_closed else original)
    assert back.amount == -amount
    # the commission reverses at the original rate: the two periods net to zero
    [credit] = credit_for_applied(event)
    schemes = [DEFAULT_SCHEME]
    cards = {
        p: compute_scorecard("c1", p, [credit, back], schemes, "CNY")
        for p in {original, back.period}
    }
    assert sum((c.commission for c in cards.values()), Decimal(0)) == 0


@given(
    specs=st.lists(st.tuples(amounts, st.integers(0, 30), st.sampled_from(STAGES)), max_size=20),
    change_day=st.integers(1, 31),
    old_rate=st.decimals(min_value=0, max_value=1, places=3),
    new_rate=st.decimals(min_value=0, max_value=1, places=3),
)
def test_scheme_change_mid_month_applies_from_effective_date(specs, change_day, old_rate, new_rate):
    old = replace(DEFAULT_SCHEME, commission=dict.fromkeys(STAGES, old_rate))
    new = replace(
        DEFAULT_SCHEME,
        version=2,
        effective_from=date(2025, 3, change_day),
        commission=dict.fromkeys(STAGES, new_rate),
    )
    entries, expected = [], Decimal(0)
    for amount, offset, stage in specs:
        day = date(2025, 3, 1) + timedelta(days=offset)
        entries += credit_for_applied(applied(amount, day, stage=stage))
        expected += amount * (new_rate if day >= new.effective_from else old_rate)
    sc = compute_scorecard("c1", "2025-03", entries, [new, old], "CNY")
    assert sc.commission == expected.quantize(Decimal("0.01"))
    assert sc.payout == sc.commission


def _entry_strategy():
    kinds = st.sampled_from(list(EntryKind))
    return st.builds(
        lambda i, kind, amount, day, stage, severity, days_to_cure: CreditEntry(
            entry_id=f"e{i}",
            kind=kind,
            collector_id="c1",
            period="2025-03",
            loan_id="L1",
            on=day,
            amount=amount if kind is not EntryKind.CLAWBACK else -amount,
            stage=stage,
            severity=severity,
            days_to_cure=days_to_cure,
            team="legal",
        ),
        st.integers(0, 10**9),
        kinds,
        amounts,
        st.dates(min_value=date(2025, 3, 1), max_value=date(2025, 3, 31)),
        st.sampled_from(STAGES),
        st.sampled_from(["minor", "major"]),
        st.integers(0, 60),
    )


ledgers = st.lists(_entry_strategy(), max_size=40, unique_by=lambda e: e.entry_id)


@given(ledgers)
def test_payout_never_negative_and_composite_in_unit_interval(entries):
    sc = compute_scorecard("c1", "2025-03", entries, [DEFAULT_SCHEME], "CNY")
    assert sc.payout >= 0
    assert 0 <= sc.composite <= 1
    assert 0 <= sc.multiplier <= 1


@given(
    minor=st.integers(0, 30),
    major=st.integers(0, 10),
    minor_penalty=st.decimals(min_value=0, max_value=2, places=2),
    major_penalty=st.decimals(min_value=0, max_value=2, places=2),
)
def test_multiplier_floored_at_zero(minor, major, minor_penalty, major_penalty):
    scheme = replace(
        DEFAULT_SCHEME, complaint_penalty={"minor": minor_penalty, "major": major_penalty}
    )
    entries = credit_for_applied(applied("1000.00", date(2025, 3, 3), stage="legal"))
    for severity, count in (("minor", minor), ("major", major)):
        for _ in range(count):
            entries += entry_for_complaint(complaint(severity), None, "2025-03")
    sc = compute_scorecard("c1", "2025-03", entries, [scheme], "CNY")
    expected = max(Decimal(0), 1 - minor * minor_penalty - major * major_penalty)
    assert sc.multiplier == expected.quantize(Decimal("0.0001"))
    assert sc.payout == (Decimal("30.00") * expected).quantize(Decimal("0.01"))
    assert sc.payout >= 0


@settings(max_examples=50)
@given(ledgers, st.randoms(use_true_random=False))
def test_recomputation_from_a_shuffled_ledger_is_identical(entries, rnd: random.Random):
    shuffled = list(entries)
    rnd.shuffle(shuffled)
    assert compute_scorecard("c1", "2025-03", shuffled, [DEFAULT_SCHEME], "CNY") == (
        compute_scorecard("c1", "2025-03", entries, [DEFAULT_SCHEME], "CNY")
    )
