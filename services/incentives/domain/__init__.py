"""Pure rules of the incentives service: scheme, credit ledger, scorecards, leaderboard.

Nothing here does I/O or reads a clock; every function is a pure function of its arguments.
"""

from services.incentives.domain.assignment import (
    Assignment,
    assignment_from_assigned,
    end_assignment,
)
from services.incentives.domain.events import MalformedEvent
from services.incentives.domain.leaderboard import LeaderboardRow, rank
from services.incentives.domain.ledger import (
    CreditEntry,
    EntryKind,
    clawback_for_unapplied,
    credit_for_applied,
    cure_for_stage_changed,
    cure_reversal_for_stage_changed,
    entries_for_assigned,
    entry_for_complaint,
    entry_for_promise,
    entry_id_for,
    known_arrears,
    promise_entry_id,
)
from services.incentives.domain.periods import (
    business_days_between,
    first_open_period,
    period_at,
    period_bounds,
    period_of,
)
from services.incentives.domain.scheme import (
    DEFAULT_SCHEME,
    Scheme,
    SchemeBook,
    SchemeInvalid,
    scheme_from_doc,
    scheme_on,
    scheme_to_doc,
    validate_scheme,
)
from services.incentives.domain.scorecard import Scorecard, ScorecardTally, compute_scorecard

__all__ = [
    "DEFAULT_SCHEME",
    "Assignment",
    "CreditEntry",
    "EntryKind",
    "LeaderboardRow",
    "MalformedEvent",
    "Scheme",
    "SchemeBook",
    "SchemeInvalid",
    "Scorecard",
    "ScorecardTally",
    "assignment_from_assigned",
    "business_days_between",
    "clawback_for_unapplied",
    "compute_scorecard",
    "credit_for_applied",
    "cure_for_stage_changed",
    "cure_reversal_for_stage_changed",
    "end_assignment",
    "entries_for_assigned",
    "entry_for_complaint",
    "entry_for_promise",
    "entry_id_for",
    "first_open_period",
    "known_arrears",
    "period_at",
    "period_bounds",
    "period_of",
    "promise_entry_id",
    "rank",
    "scheme_from_doc",
    "scheme_on",
    "scheme_to_doc",
    "validate_scheme",
]
