"""Days past due, stage selection and the date of the next change by time alone.

Decisions (where PRODUCT.md 4.1 is silent):

- DPD counts calendar days between business dates: ``D - oldest unpaid due date`` minus the
  days paused by hardship (see ``flags``), never below 0; 0 when arrears <= tolerance.
- The stage is a function of the previous stage and (DPD, arrears, flags, policy):
  1. ``bankruptcy``/``deceased``/``fraud`` in force -> ``special``; once they are all cleared the
     stage is selected by the rules below as if the special period had not happened: from a
     sticky stage held before ``special`` (rule 3), kept or raised while arrears > 0, released
     by arrears of exactly 0 (paid while special or not), and capped by a dispute in force
     (rule 4) at the stage held before ``special``; a non-sticky stage held before ``special``
     is remembered only while a dispute is in force (whose cap needs it), otherwise the stage
     is then recomputed from DPD;
  2. otherwise the stage whose DPD range holds DPD;
  3. a sticky previous stage is kept, or raised, while arrears > 0: only arrears of exactly 0
     (not merely under tolerance) release it, and the loan then goes back by DPD, i.e. current;
  4. while ``dispute`` is in force the stage may go down but never above the previous stage;
  5. ``wilful_default`` in force lifts the stage to at least ``legal``, even under dispute: it is
     a deliberate decision by the bank (the emergency path), not automatic escalation.
- When a payment moved the loan down, its reversal passes the stage the payment found as a
  ``floor`` for rules 3 and 4, so a loan the payment had cured from a sticky stage, or moved
  down before a dispute, returns where it would have stayed had the payment never come. This
  is the one piece of stage memory that is not recomputed from the surviving events: if
  something else lowered the stage in between (a special flag cleared from a non-sticky stage,
  say), the floor may restore a stage a full replay would not; ledger, DPD and promises are
  always exact.
- The memory of rule 1 (``LoanState.stage_before_special``, see :func:`stage_before_special`)
  is the stage the loan would hold had the special flags never been raised, kept when the
  rules after ``special`` need it: a sticky stage, or any stage under dispute. It is
  re-evaluated, like the stage, at every evaluation while ``special`` (rule 3 on the loan's DPD
  and arrears then, a reversal's ``floor`` included), so DPD crossing into ``write_off`` while
  ``special`` raises it and arrears of exactly 0 drop it. No aging date is indexed while
  ``special``, and none is needed: DPD only falls through an event, and every event first
  evaluates the loan at its business date. It is None whenever no special flag is in force.
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

from services.staging.domain.flags import (
    DISPUTE,
    HARDSHIP,
    SPECIAL_FLAGS,
    WILFUL_DEFAULT,
    Flags,
    Interval,
)
from services.staging.domain.ledger import Ledger
from services.staging.domain.policy import LEGAL, SPECIAL, Policy, stage_for_dpd

if TYPE_CHECKING:
    from services.staging.domain.loan import LoanState


def _merge(intervals: tuple[Interval, ...]) -> list[Interval]:
    merged: list[Interval] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def days_past_due(ledger: Ledger, flags: Flags, tolerance: Decimal, on: date) -> int:
    """DPD on business date ``on``."""
    oldest = ledger.oldest_unpaid_due_date
    if oldest is None or ledger.arrears <= tolerance or on <= oldest:
        return 0
    days = (on - oldest).days
    if not flags.pauses and HARDSHIP not in flags.active:
        return days  # no pause, closed or open: the usual loan
    for start, end in _merge(flags.pause_intervals(on)):
        low, high = max(start, oldest), min(end, on)
        if high > low:
            days -= (high - low).days
    return max(days, 0)


def _higher(policy: Policy, a: str | None, b: str | None) -> str | None:
    ranks = [(policy.rank(s), s) for s in (a, b) if policy.rank(s) is not None]
    return max(ranks)[1] if ranks else None


def select_stage(previous: str | None, dpd: int, arrears: Decimal, flags: Flags, policy: Policy,
                 *, floor: str | None = None, before_special: str | None = None) -> str:
    """The stage after an evaluation; see the module docstring for the rules and their order.

    ``before_special`` is the loan's memory of rule 1 (:func:`stage_before_special`): when
    ``previous`` is ``special`` and no special flag is in force any more, it stands for
    ``previous``."""
    candidate = stage_for_dpd(policy, dpd)
    if not flags.active and floor is None and previous != SPECIAL:
        # no flag in force, no floor (the usual evaluation): rule 3 alone
        held_rank, candidate_rank = policy.rank(previous), policy.rank(candidate)
        if (held_rank is not None and candidate_rank is not None and held_rank > candidate_rank
                and arrears > 0 and policy.stage(previous).sticky):  # type: ignore[arg-type]
            return previous  # type: ignore[return-value]
        return candidate
    if flags.special:
        return SPECIAL
    if previous == SPECIAL and before_special is not None:
        previous = before_special
    rank = policy.rank
    held = _higher(policy, previous, floor)
    if held is not None:
        held_rank, candidate_rank = rank(held) or 0, rank(candidate) or 0
        if policy.stage(held).sticky and arrears > 0 and held_rank > candidate_rank:
            candidate = held
        if flags.has(DISPUTE) and candidate_rank > held_rank:
            candidate = held
    if flags.has(WILFUL_DEFAULT) and (rank(candidate) or 0) < (rank(LEGAL) or 0):
        candidate = LEGAL
    return candidate


def _sticky(policy: Policy, stage: str | None) -> bool:
    return stage is not None and policy.rank(stage) is not None and policy.stage(stage).sticky


def stage_before_special(previous: str | None, remembered: str | None, dpd: int,
                         arrears: Decimal, flags: Flags, policy: Policy, *,
                         floor: str | None = None) -> str | None:
    """The memory of rule 1 after an evaluation: the stage the loan would hold had its special
    flags never been raised, when the rules need it once they are cleared (a sticky stage, or
    any stage while a dispute is in force: rule 4 caps at it); None otherwise, and whenever no
    special flag is in force.

    ``previous`` is the stage before the evaluation and ``remembered`` the memory it left;
    a loan entering ``special`` remembers ``previous`` if sticky or disputed. Without a
    dispute, only a sticky stage (or a reversal's ``floor``) starts a memory: from a
    non-sticky one, clearing recomputes from DPD.
    """
    if not flags.special:
        return None
    held = remembered if previous == SPECIAL else previous
    disputed = flags.has(DISPUTE)
    if floor is None and not disputed and not _sticky(policy, held):
        return None
    ordinary = Flags({k: f for k, f in flags.active.items() if k not in SPECIAL_FLAGS},
                     flags.pauses)
    stage = select_stage(held, dpd, arrears, ordinary, policy, floor=floor)
    return stage if disputed or _sticky(policy, stage) else None


def _next_aging_date(state: LoanState, policy: Policy) -> date | None:
    flags, ledger = state.flags, state.ledger
    if flags.active and (flags.special or flags.has(DISPUTE) or flags.has(HARDSHIP)):
        return None  # no escalation by time; an `until` is covered by the flag's expiry date
    oldest = ledger.oldest_unpaid_due_date
    if oldest is None or ledger.arrears <= policy.tolerance:
        return None
    current_rank = policy.rank(state.stage)
    if current_rank is None or current_rank + 1 >= len(policy.ranged):
        return None
    above = policy.ranged[current_rank + 1]
    if above.dpd_min is None:
        return None
    # From `base` on, DPD grows by one a day (no pause in force).
    base = max(state.business_date, oldest)
    dpd_at_base = days_past_due(ledger, flags, policy.tolerance, base)
    return base + timedelta(days=max(above.dpd_min - dpd_at_base, 1))


def next_transition_date(state: LoanState, policy: Policy) -> date | None:
    """The first business date on which time alone changes the loan: its stage by aging, a
    flag's expiry or a promise's deadline. End of day only needs the loans whose date is on or
    before the new business date."""
    if state.status != "open":
        return None
    aging = _next_aging_date(state, policy)
    if not state.flags.active and not state.promises:  # the common case, without the lists
        return aging
    grace = timedelta(days=policy.promise_grace_days + 1)
    dates = [
        *state.flags.expiry_dates,
        *(p.due_on + grace for p in state.promises if p.status == "open"),
    ]
    if aging is not None:
        dates.append(aging)
    return min(dates, default=None)
