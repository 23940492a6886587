"""SQL of end of day: claim the due loans, write the shortcut's loans with one statement.

A due loan is claimed with its document and the two ledger-derived values kept beside it
(arrears, oldest unpaid due date), which is all the shortcut (``domain.shortcut``) needs to
decide; the loans it takes are written back with one UPDATE per chunk, the others go through
the general path (``Casework.record``, ``store.save_loans``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.staging.domain.loan import Owner
from services.staging.domain.shortcut import DueLoan, PlainStep, due_loan
from shared.db import rows_json

Claimed = tuple[DueLoan, dict[str, Any]]  # the loan's facts and its document


async def claim_due(conn: AsyncConnection, on: date, limit: int) -> list[Claimed]:
    """Up to ``limit`` loans whose next transition is due by ``on``, locked, in loan_id order.

    No ORDER BY in SQL: the scan of the index stops after ``limit`` rows instead of sorting
    every due loan per chunk. SKIP LOCKED never waits, so this lock order cannot deadlock with
    the consumer's (loan_id order)."""
    rows = await conn.execute(text("""
        SELECT arrears, oldest_due_date, state::text AS state FROM loans
        WHERE next_transition_date <= :on
        LIMIT :n FOR UPDATE SKIP LOCKED"""), {"on": on, "n": limit})
    claimed = []
    for r in rows:
        doc = orjson.loads(r.state)
        claimed.append((due_loan(doc, r.arrears, r.oldest_due_date), doc))
    claimed.sort(key=lambda c: c[0].loan_id)
    return claimed


_PLAIN = text("""
UPDATE loans AS l SET
    stage = u.r->>1, dpd = CAST(u.r->>2 AS int), collector_id = u.r->>3, team = u.r->>4,
    next_transition_date = CAST(u.r->>5 AS date), business_date = CAST(u.r->>6 AS date),
    state = CAST(u.r->>7 AS json), updated_at = now()
FROM jsonb_array_elements(CAST(:rows AS jsonb)) AS u(r)
WHERE l.loan_id = u.r->>0
""")


async def apply_plain_steps(conn: AsyncConnection,
                            steps: Sequence[tuple[PlainStep, Owner, dict[str, Any]]]) -> None:
    """Write the shortcut's loans (step, the owner resolved for it, the patched document) with
    one statement; only the columns ageing changes. The loans are locked by this transaction
    (:func:`claim_due`)."""
    if not steps:
        return
    result = await conn.execute(_PLAIN, {"rows": rows_json(
        (s.loan.loan_id, s.change.to_stage, s.dpd, owner.collector_id, owner.team,
         s.next_transition_date, s.business_date, orjson.dumps(doc).decode())
        for s, owner, doc in sorted(steps, key=lambda s: s[0].loan.loan_id))})
    if result.rowcount != len(steps):
        raise RuntimeError(f"end of day wrote {result.rowcount} of {len(steps)} loans")
