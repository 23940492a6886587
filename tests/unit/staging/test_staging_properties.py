"""Property tests of the staging domain (hypothesis)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from staging_builders import D0, age, day, flag, missed, new_loan, promise, repay, reverse, unflag

from services.staging.domain.delinquency import days_past_due, select_stage
from services.staging.domain.errors import Rejected
from services.staging.domain.ledger import (
    Ledger,
    _change,
    record_missed_payment,
    record_repayment,
    reverse_repayment,
)
from services.staging.domain.policy import DEFAULT_POLICY as P
from services.staging.domain.policy import STAGE_NAMES, validate_policy

FAST = settings(max_examples=100, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])

amounts = st.integers(min_value=1, max_value=50_000).map(lambda c: Decimal(c) / 100)

ledger_ops = st.lists(
    st.one_of(
        st.tuples(st.just("miss"), st.integers(1, 5), st.integers(0, 60), amounts),
        st.tuples(st.just("pay"), amounts),
        st.tuples(st.just("rev"), st.integers(0, 20)),
    ),
    max_size=25,
)


def run_ledger(ops):
    """Apply ops; return the ledger and the surviving ops (reversed payments removed)."""
    ledger, log, live, n = Ledger("CNY"), [], [], 0
    for op in ops:
        if op[0] == "miss":
            change = record_missed_payment(ledger, op[1], D0 + timedelta(days=op[2]), op[3])
            log.append(op)
        elif op[0] == "pay":
            n += 1
            pid = f"p{n}"
            change = record_repayment(ledger, pid, op[1], "CNY", D0, received_on=D0, seq=n)
            a = change.applied
            assert a.to_arrears + a.excess == a.amount and a.excess >= 0
            log.append(("pay", op[1], pid))
            live.append(pid)
        else:
            if not live:
                continue
            pid = live.pop(op[1] % len(live))
            change = reverse_repayment(ledger, pid)
            log = [e for e in log if not (e[0] == "pay" and e[2] == pid)]
        ledger = change.ledger
        assert ledger.arrears >= 0
        assert all(ledger.unpaid(i.instalment_no) >= 0 for i in ledger.instalments)
        for moved in change.reallocations:
            assert moved.after.to_arrears + moved.after.excess == moved.after.amount
    return ledger, log


def reference_arrears(log):
    """An independent model: corrections count from an instalment's first report."""
    final = {}
    for op in log:
        if op[0] == "miss":
            final[op[1]] = (op[2], op[3])
    unpaid, seen, paid = {}, set(), {}
    for op in log:
        if op[0] == "miss" and op[1] not in seen:
            seen.add(op[1])
            unpaid[op[1]] = final[op[1]][1]
        elif op[0] == "pay":
            left = op[1]
            for no in sorted(unpaid, key=lambda n: (final[n][0], n)):
                take = min(left, unpaid[no])
                unpaid[no] -= take
                left -= take
            paid[op[2]] = op[1] - left
    return sum(unpaid.values(), Decimal(0)), paid


@FAST
@given(ledger_ops)
def test_ledger_equals_a_replay_of_the_surviving_events(ops):
    ledger, log = run_ledger(ops)
    replayed, _ = run_ledger([op if op[0] == "miss" else op[:2] for op in log])
    assert replayed.arrears == ledger.arrears
    assert replayed.oldest_unpaid_due_date == ledger.oldest_unpaid_due_date
    by_amounts = [(a.amount, a.instalments, a.excess) for a in ledger.allocations.values()]
    assert by_amounts == [(a.amount, a.instalments, a.excess)
                          for a in replayed.allocations.values()]
    arrears, paid = reference_arrears(log)
    assert ledger.arrears == arrears
    assert {pid: a.to_arrears for pid, a in ledger.allocations.items()} == paid


def _exact(ledger):
    """Everything the view holds, Decimals as text (so 300 and 300.00 differ)."""
    view = ledger._view
    return ({no: str(u) for no, u in view.unpaid.items()}, dict(view.due),
            {pid: a.to_dict() for pid, a in view.allocations.items()}, str(view.arrears),
            view.oldest_unpaid_due_date)


@FAST
@given(ledger_ops)
def test_an_appended_entry_extends_the_view_exactly_as_a_replay_would(ops):
    """A new payment or a new instalment extends the ledger's view without replaying it
    (``Ledger._with``); at every step it is the view a replay of the same entries builds,
    to the exponent of every amount, and no earlier allocation moved."""
    ledger, n = Ledger("CNY"), 0
    for op in ops:
        if op[0] == "rev":
            continue
        if op[0] == "miss":
            change = record_missed_payment(ledger, op[1], D0 + timedelta(days=op[2]), op[3])
        else:
            n += 1
            change = record_repayment(ledger, f"p{n}", op[1], "CNY", D0, received_on=D0, seq=n)
        replayed = Ledger("CNY", change.ledger.entries, change.ledger.reversed_ids)
        assert _exact(change.ledger) == _exact(replayed)
        assert change.reallocations == _change(ledger, replayed).reallocations
        ledger = change.ledger


# --- loans: history paths ------------------------------------------------------------------

loan_ops = st.lists(
    st.one_of(
        st.tuples(st.just("miss"), st.integers(0, 15), st.integers(1, 4), st.integers(0, 30),
                  amounts),
        st.tuples(st.just("pay"), st.integers(0, 15), amounts, st.integers(0, 3)),
        st.tuples(st.just("rev"), st.integers(0, 15), st.integers(0, 20)),
        st.tuples(st.just("flag"), st.integers(0, 15),
                  st.sampled_from(["hardship", "dispute", "wilful_default", "fraud"]),
                  st.booleans(), st.none() | st.integers(0, 20)),
        st.tuples(st.just("promise"), st.integers(0, 15), amounts, st.integers(0, 5)),
    ),
    max_size=20,
)


def run_loan(ops, skip=frozenset()):
    """Apply ops through the handlers, one business date after another."""
    state, today, n, live, reversed_ids = new_loan(), D0, 0, [], []
    for index, op in enumerate(ops):
        today += timedelta(days=op[1])
        state = age(state, today).state
        if index in skip:
            continue
        try:
            if op[0] == "miss":
                due = max(D0, today - timedelta(days=op[3]))
                state = missed(state, op[2], due, str(op[4])).state
            elif op[0] == "pay":
                n += 1
                vd = today - timedelta(days=op[3])
                state = repay(state, f"p{index}", str(op[2]), value_date=vd).state
                live.append(index)
            elif op[0] == "rev" and live:
                target = live.pop(op[2] % len(live))
                state = reverse(state, f"p{target}").state
                reversed_ids.append(target)
            elif op[0] == "flag":
                until = None if op[4] is None else today + timedelta(days=op[4])
                state = (flag(state, op[2], until=until) if op[3] else unflag(state, op[2])).state
            elif op[0] == "promise":
                state = promise(state, f"pr{index}", str(op[2]), today + timedelta(op[3])).state
        except Rejected:
            pass
    return state, reversed_ids, today


def core(state):
    # The stage is left out: a sticky stage the never-paid loan would have reached *later*
    # (after the payment, before its reversal) is not reconstructed; see README, "Reversals".
    return (state.arrears, state.dpd, state.business_date,
            [(p.promise_id, p.status, p.paid) for p in state.promises])


@FAST
@given(loan_ops)
def test_loan_after_reversals_equals_the_loan_that_never_saw_the_payments(ops):
    state, reversed_ids, _ = run_loan(ops)
    reversals = {i for i, op in enumerate(ops) if op[0] == "rev"}
    replayed, _, _ = run_loan(ops, skip=frozenset(reversed_ids) | reversals)
    assert core(state) == core(replayed), repr(ops)


@FAST
@given(loan_ops)
def test_dpd_and_stage_are_functions_of_ledger_flags_policy_and_date(ops):
    state, _, today = run_loan(ops)
    assert state.dpd == days_past_due(state.ledger, state.flags, P.tolerance, today)
    assert state.stage == select_stage(state.stage, state.dpd, state.arrears, state.flags, P)
    assert state.arrears >= 0
    # the same ledger and flags on a loan with no stage memory give the same DPD
    fresh = new_loan()
    fresh = fresh.__class__(**{**fresh.__dict__, "ledger": state.ledger, "flags": state.flags})
    assert age(fresh, today).state.dpd == state.dpd


@FAST
@given(loan_ops, st.integers(1, 250))
def test_end_of_day_index_gives_the_same_result_as_aging_every_loan(ops, horizon):
    state, _, today = run_loan(ops)
    daily, indexed = state, state
    daily_events, indexed_events = [], []
    for offset in range(1, horizon + 1):
        business_date = today + timedelta(days=offset)
        o = age(daily, business_date)
        daily, daily_events = o.state, daily_events + list(o.events)
        due = indexed.next_transition_date
        if due is not None and due <= business_date:
            o = age(indexed, business_date)
            indexed, indexed_events = o.state, indexed_events + list(o.events)
    end = today + timedelta(days=horizon)
    indexed_final = age(indexed, end)
    assert indexed_events + list(indexed_final.events) == daily_events
    assert indexed_final.state.history == daily.history
    assert indexed_final.state.stage == daily.stage and indexed_final.state.dpd == daily.dpd
    # no aging date is indexed while special: the memory of the stage before it still agrees
    assert indexed_final.state.stage_before_special == daily.stage_before_special


# --- policy partitions ---------------------------------------------------------------------

RANGED = [n for n in STAGE_NAMES if n != "special"]


@st.composite
def partitions(draw):
    names = ["current"] + [n for n in RANGED[1:] if n == "legal" or draw(st.booleans())]
    cuts = sorted(draw(st.sets(st.integers(1, 400), min_size=len(names) - 1,
                               max_size=len(names) - 1)))
    lows = [0, *cuts]
    stages = []
    for i, name in enumerate(names):
        high = lows[i + 1] - 1 if i + 1 < len(names) else None
        owner, team = ("none", None) if name == "current" else ("team", "legal")
        stages.append({"name": name, "dpd_min": lows[i], "dpd_max": high, "owner": owner,
                       "team": team, "sticky": draw(st.booleans())})
    stages.append({"name": "special", "dpd_min": None, "dpd_max": None, "owner": "team",
                   "team": "legal"})
    order = draw(st.permutations(range(len(stages))))
    return {"version": 1, "stages": [stages[i] for i in order]}


@FAST
@given(partitions())
def test_policy_accepts_every_contiguous_partition(doc):
    assert validate_policy(doc) == []


@FAST
@given(partitions(), st.data())
def test_policy_refuses_any_gap_or_overlap(doc, data):
    ranged = [s for s in doc["stages"] if s["name"] != "special" and s["dpd_min"] > 0]
    target = data.draw(st.sampled_from(ranged))
    target["dpd_min"] += data.draw(st.sampled_from([-1, 1]))
    errors = validate_policy(doc)
    assert errors
    assert all(".dpd_m" in e["field"] or e["field"].endswith(".name") for e in errors)


def test_day_helper_is_consistent():
    assert day(3) - day(0) == timedelta(days=3)
