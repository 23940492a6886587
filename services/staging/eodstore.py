"""SQL of end of day: claim the due loans by their columns, write the shortcut's steps at once.

A due loan is claimed without its document: its columns and a few facts read from the
document in the database (:class:`DueLoan`) are what the shortcut (``domain.shortcut``) needs.
Loans the shortcut takes are written with one UPDATE per chunk that patches their documents in
place (stage, DPD, dates, owner, one history entry appended); the others are read whole and
take the general path.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.staging.domain.loan import Owner
from services.staging.domain.shortcut import DueLoan, PlainStep

# The document's flags when none is in force and no hardship ever paused the clock
# (Flags().to_dict()), and a promise still open.
_NO_FLAGS = '{"active": [], "pauses": []}'
_OPEN_PROMISE = '[{"status": "open"}]'

_CLAIM = text("""
SELECT loan_id, product, status, stage, arrears, currency, business_date, oldest_due_date,
       collector_id, team, state->>'borrower_id' AS borrower_id,
       state->>'relationship_manager_id' AS rm,
       CAST(state->>'policy_version' AS int) AS policy_version,
       (state->'flags' = CAST(:no_flags AS jsonb)
        AND NOT state->'promises' @> CAST(:open_promise AS jsonb)) AS quiet
FROM loans
WHERE next_transition_date <= :on
LIMIT :n FOR UPDATE SKIP LOCKED
""")


async def claim_due(conn: AsyncConnection, on: date, limit: int) -> list[DueLoan]:
    """Up to ``limit`` loans whose next transition is due by ``on``, locked, in loan_id order.

    No ORDER BY in SQL: the scan of the index stops after ``limit`` rows instead of sorting
    every due loan per chunk. SKIP LOCKED never waits, so this lock order cannot deadlock with
    the consumer's (loan_id order)."""
    rows = await conn.execute(_CLAIM, {"on": on, "n": limit, "no_flags": _NO_FLAGS,
                                       "open_promise": _OPEN_PROMISE})
    due = [DueLoan(r.loan_id, r.borrower_id, r.product, r.currency, r.status, r.stage,
                   r.arrears, r.business_date, r.oldest_due_date, r.policy_version,
                   r.collector_id, r.team, r.rm, r.quiet) for r in rows]
    due.sort(key=lambda d: d.loan_id)
    return due


_PLAIN = text("""
UPDATE loans AS l SET
    stage = u.stage, dpd = CAST(u.dpd AS int), collector_id = u.collector, team = u.team,
    next_transition_date = CAST(u.next AS date), business_date = CAST(u.bdate AS date),
    updated_at = now(),
    state = l.state || jsonb_build_object(
        'stage', u.stage, 'dpd', CAST(u.dpd AS int), 'business_date', u.bdate,
        'next_transition_date', u.next,
        'history', l.state->'history' || jsonb_build_array(jsonb_build_object(
            'from', u.from_stage, 'to', u.stage, 'dpd', CAST(u.change_dpd AS int),
            'reason', u.reason, 'business_date', u.change_date)),
        'owner', jsonb_build_object('collector_id', u.collector, 'team', u.team),
        'owner_history', CASE WHEN u.collector IS NULL THEN l.state->'owner_history'
            ELSE l.state->'owner_history' || jsonb_build_array(jsonb_build_array(u.bdate,
                                                                                 u.collector))
            END)
FROM unnest(CAST(:loan AS text[]), CAST(:from_stage AS text[]), CAST(:stage AS text[]),
            CAST(:dpd AS text[]), CAST(:change_dpd AS text[]), CAST(:reason AS text[]),
            CAST(:change_date AS text[]), CAST(:bdate AS text[]), CAST(:next AS text[]),
            CAST(:collector AS text[]), CAST(:team AS text[]))
     AS u(loan_id, from_stage, stage, dpd, change_dpd, reason, change_date, bdate, next,
          collector, team)
WHERE l.loan_id = u.loan_id
""")


async def apply_plain_steps(conn: AsyncConnection,
                            steps: Sequence[tuple[PlainStep, Owner]]) -> None:
    """Write the shortcut's steps (each with the owner resolved for it) with one statement.

    The document is patched as the general path would rewrite it: the top-level values that
    ageing changes, the stage change appended to ``history``, the owner, and the owner's start
    appended to ``owner_history`` (the loan had none and its history ends before this date,
    see ``domain.shortcut``). The loans are locked by this transaction (``claim_due``)."""
    if not steps:
        return
    steps = sorted(steps, key=lambda s: s[0].loan.loan_id)
    result = await conn.execute(_PLAIN, {
        "loan": [s.loan.loan_id for s, _ in steps],
        "from_stage": [s.change.from_stage for s, _ in steps],
        "stage": [s.change.to_stage for s, _ in steps],
        "dpd": [str(s.dpd) for s, _ in steps],
        "change_dpd": [str(s.change.dpd) for s, _ in steps],
        "reason": [s.change.reason for s, _ in steps],
        "change_date": [s.change.business_date.isoformat() for s, _ in steps],
        "bdate": [s.business_date.isoformat() for s, _ in steps],
        "next": [None if s.next_transition_date is None else s.next_transition_date.isoformat()
                 for s, _ in steps],
        "collector": [o.collector_id for _, o in steps],
        "team": [o.team for _, o in steps]})
    if result.rowcount != len(steps):
        raise RuntimeError(f"end of day wrote {result.rowcount} of {len(steps)} loans")
