"""SQL of the staging service: multi-row reads and writes on the service schema.

Loans are stored as one JSON document (``LoanState.to_dict``, as ``json`` text: never queried
inside) plus the columns that queries filter on. Every statement takes whole batches (one JSON
array of rows, or arrays), so a batch costs a few round trips whatever its size. Lock order,
everywhere: loans (by loan_id), then the whole roster (by collector_id), then the calendar
row; keeping one order means no deadlock between the consumer, the end-of-day worker and the
API.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.staging.domain.loan import LoanState, StageChange
from services.staging.domain.policy import PolicySet, parse_policy
from shared.db import JSON_ROWS, rows_json


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


# --- loans ------------------------------------------------------------------------------------

_LOAD = ("SELECT loan_id, state::text AS state FROM loans "
         "WHERE loan_id = ANY(CAST(:ids AS text[])) ORDER BY loan_id")


async def load_loans(conn: AsyncConnection, loan_ids: Iterable[str]) -> dict[str, LoanState]:
    """The stored loans among ``loan_ids``, locked for this transaction (in loan_id order)."""
    ids = sorted(set(loan_ids))
    if not ids:
        return {}
    rows = await conn.execute(text(_LOAD + " FOR UPDATE"), {"ids": ids})
    return {r.loan_id: LoanState.from_dict(orjson.loads(r.state)) for r in rows}


async def read_loan(conn: AsyncConnection, loan_id: str) -> LoanState | None:
    row = (await conn.execute(text(_LOAD), {"ids": [loan_id]})).first()
    return None if row is None else LoanState.from_dict(orjson.loads(row.state))


async def count_due(conn: AsyncConnection, on: date) -> int:
    row = await conn.execute(text("SELECT count(*) FROM loans WHERE next_transition_date <= :on"),
                             {"on": on})
    return int(row.scalar_one())


async def loans_of_collector(conn: AsyncConnection, collector_id: str) -> list[LoanState]:
    rows = await conn.execute(text("""
        SELECT state::text AS state FROM loans WHERE collector_id = :c
        ORDER BY loan_id FOR UPDATE"""), {"c": collector_id})
    return [LoanState.from_dict(orjson.loads(r.state)) for r in rows]


_SAVE = text(f"""
INSERT INTO loans (loan_id, product, status, stage, dpd, arrears, currency, collector_id, team,
                   next_transition_date, business_date, oldest_due_date, state, updated_at)
SELECT r->>0, r->>1, r->>2, r->>3, CAST(r->>4 AS int), CAST(r->>5 AS numeric), r->>6, r->>7,
       r->>8, CAST(r->>9 AS date), CAST(r->>10 AS date), CAST(r->>11 AS date),
       CAST(d.doc AS json), now()
FROM {JSON_ROWS}
JOIN unnest(CAST(:docs AS text[])) WITH ORDINALITY AS d(doc, m) ON d.m = u.n
ORDER BY n
ON CONFLICT (loan_id) DO UPDATE SET status = EXCLUDED.status, stage = EXCLUDED.stage,
    dpd = EXCLUDED.dpd, arrears = EXCLUDED.arrears, collector_id = EXCLUDED.collector_id,
    team = EXCLUDED.team, next_transition_date = EXCLUDED.next_transition_date,
    business_date = EXCLUDED.business_date, oldest_due_date = EXCLUDED.oldest_due_date,
    state = EXCLUDED.state, updated_at = now()
""")


async def save_loans(conn: AsyncConnection, loans: Sequence[LoanState]) -> None:
    """Insert or update ``loans`` with one statement, in loan_id order (the lock order)."""
    if not loans:
        return
    ordered = sorted(loans, key=lambda s: s.loan_id)
    await conn.execute(_SAVE, {"rows": rows_json(
        (s.loan_id, s.product, s.status, s.stage, s.dpd, s.arrears, s.currency,
         s.owner.collector_id, s.owner.team, s.next_transition_date, s.business_date,
         s.oldest_unpaid_due_date) for s in ordered),
        "docs": [_json(s.to_dict()) for s in ordered]})


_HISTORY = text(f"""
INSERT INTO stage_history (loan_id, product, from_stage, to_stage, dpd, reason, business_date)
SELECT r->>0, r->>1, r->>2, r->>3, CAST(r->>4 AS int), r->>5, CAST(r->>6 AS date)
FROM {JSON_ROWS}
ORDER BY n
""")


async def append_history(conn: AsyncConnection,
                         rows: Sequence[tuple[str, str, StageChange]]) -> None:
    """rows: (loan_id, product, change), appended in order."""
    if not rows:
        return
    await conn.execute(_HISTORY, {"rows": rows_json(
        (loan_id, product, c.from_stage, c.to_stage, c.dpd, c.reason, c.business_date)
        for loan_id, product, c in rows)})


# --- policy and calendar ----------------------------------------------------------------------


async def load_policy(conn: AsyncConnection) -> PolicySet:
    row = await conn.execute(text(
        "SELECT doc::text AS doc FROM policy_versions ORDER BY version DESC LIMIT 1"))
    return parse_policy(orjson.loads(row.scalar_one()))


async def policy_versions(conn: AsyncConnection) -> list[int]:
    rows = await conn.execute(text("SELECT version FROM policy_versions ORDER BY version"))
    return [r.version for r in rows]


async def add_policy(conn: AsyncConnection, doc: dict[str, Any]) -> None:
    await conn.execute(text("INSERT INTO policy_versions (version, doc) "
                            "VALUES (:v, CAST(:d AS jsonb))"),
                       {"v": doc["version"], "d": _json(doc)})


async def mark_all_for_review(conn: AsyncConnection) -> int:
    """After a policy change: every open loan is re-evaluated by the next end of day (or its
    next event, whichever comes first) under the new policy."""
    result = await conn.execute(text("""
        UPDATE loans SET next_transition_date = LEAST(next_transition_date, business_date + 1)
        WHERE status = 'open'"""))
    return int(result.rowcount or 0)


@dataclass(frozen=True)
class Calendar:
    business_date: date | None
    eod_pending: date | None


async def calendar(conn: AsyncConnection, lock: bool = False) -> Calendar:
    sql = "SELECT business_date, eod_pending FROM calendar WHERE id = 1"
    row = (await conn.execute(text(sql + (" FOR UPDATE" if lock else "")))).one()
    return Calendar(row.business_date, row.eod_pending)


async def set_calendar(conn: AsyncConnection, business_date: date | None,
                       eod_pending: date | None) -> None:
    await conn.execute(text("UPDATE calendar SET business_date = :d, eod_pending = :p "
                            "WHERE id = 1"), {"d": business_date, "p": eod_pending})


# --- roster -----------------------------------------------------------------------------------


@dataclass
class Collector:
    collector_id: str
    name: str
    team: str
    capacity: int
    active: bool
    open_cases: int

    def view(self) -> dict[str, Any]:
        return {"collector_id": self.collector_id, "name": self.name, "team": self.team,
                "capacity": self.capacity, "active": self.active,
                "open_cases": self.open_cases}


_ROSTER = "SELECT collector_id, name, team, capacity, active, open_cases FROM collectors"


async def lock_roster(conn: AsyncConnection) -> dict[str, Collector]:
    """The whole roster, locked in collector_id order (it is small: hundreds of rows)."""
    rows = await conn.execute(text(_ROSTER + " ORDER BY collector_id FOR UPDATE"))
    return {r.collector_id: Collector(*r) for r in rows}


async def read_collector(conn: AsyncConnection, collector_id: str) -> Collector | None:
    row = (await conn.execute(text(_ROSTER + " WHERE collector_id = :c"),
                              {"c": collector_id})).first()
    return None if row is None else Collector(*row)


async def upsert_collector(conn: AsyncConnection, c: Collector) -> None:
    await conn.execute(text("""
        INSERT INTO collectors (collector_id, name, team, capacity, active, open_cases)
        VALUES (:id, :name, :team, :capacity, :active, :open)
        ON CONFLICT (collector_id) DO UPDATE SET name = EXCLUDED.name, team = EXCLUDED.team,
            capacity = EXCLUDED.capacity, active = EXCLUDED.active, updated_at = now()"""),
        {"id": c.collector_id, "name": c.name, "team": c.team, "capacity": c.capacity,
         "active": c.active, "open": c.open_cases})


async def add_open_cases(conn: AsyncConnection, deltas: dict[str, int]) -> None:
    """Apply open-case deltas to roster members (others, e.g. relationship managers outside
    the roster, are not counted)."""
    changed = sorted(k for k, v in deltas.items() if v)
    if changed:
        await conn.execute(text("""
            UPDATE collectors c SET open_cases = c.open_cases + u.d
            FROM unnest(CAST(:ids AS text[]), CAST(:d AS int[])) AS u(id, d)
            WHERE c.collector_id = u.id"""),
            {"ids": changed, "d": [deltas[k] for k in changed]})
