"""SQL of the incentives service: multi-row reads and writes on the service schema.

Every statement takes whole arrays (unnest) so a consumed batch costs a handful of round trips
whatever its size.

Locks (transaction-scoped advisory locks, so a crash or a rollback frees them):

- ``SCORECARD_LOCK``: a scheme change takes it exclusively for its whole transaction (it reads
  the schemes and closed periods, then rebuilds every scorecard), and so does a period close
  (no batch that read the open months is still in flight); a consumed batch takes it
  shared from its first statement, so the scheme book and closed periods it read stay the ones
  in force until it commits, while batches of other instances go on beside it.
- ``TALLY_LOCK``: a batch takes it exclusively just before it reads the stored tallies it will
  fold its new entries into, and holds it until it commits: two batches never read the same
  tally and both write it back (a lost update). Taken last, after the batch's other writes, so
  instances overlap on everything else (parsing, the rules, the ledger) and queue only for the
  fold and the commit. A scheme change needs no tally lock: no batch holds the shared lock
  while it runs.

Order, so no two of them wait for each other: the shared scorecard lock, then the batch's own
rows (loans, collectors, ledger), then the tally lock. Row writes are in key order.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from datetime import date
from decimal import Decimal
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.incentives.domain import (
    Assignment,
    CreditEntry,
    EntryKind,
    Scheme,
    SchemeBook,
    scheme_from_doc,
)
from shared.db import JSON_ROWS, rows_json

SCORECARD_LOCK = zlib.crc32(b"incentives:scorecards") & 0x7FFFFFFF
TALLY_LOCK = zlib.crc32(b"incentives:tallies") & 0x7FFFFFFF


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


async def lock_scorecards(conn: AsyncConnection) -> None:
    """A scheme change's or a period close's lock: no batch is between its first statement and
    its commit."""
    await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": SCORECARD_LOCK})


async def share_scorecards(conn: AsyncConnection) -> None:
    """A consumed batch's lock: no scheme change until it commits; other batches go on."""
    await conn.execute(text("SELECT pg_advisory_xact_lock_shared(:k)"), {"k": SCORECARD_LOCK})


async def lock_tallies(conn: AsyncConnection) -> None:
    """A batch's turn to read and rewrite stored tallies, until it commits."""
    await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": TALLY_LOCK})


# --- reference data ---------------------------------------------------------------------------


async def load_schemes(conn: AsyncConnection) -> list[Scheme]:
    rows = await conn.execute(text("SELECT doc FROM scheme_versions ORDER BY version"))
    return [scheme_from_doc(r.doc) for r in rows]


async def load_closed_periods(conn: AsyncConnection) -> set[str]:
    rows = await conn.execute(text("SELECT period FROM closed_periods"))
    return {r.period for r in rows}


async def close_period(conn: AsyncConnection, period: str) -> Any:
    await conn.execute(text("INSERT INTO closed_periods (period) VALUES (:p) "
                            "ON CONFLICT (period) DO NOTHING"), {"p": period})
    row = await conn.execute(text("SELECT closed_at FROM closed_periods WHERE period = :p"),
                             {"p": period})
    return row.scalar_one()


async def add_scheme(conn: AsyncConnection, doc: dict[str, Any]) -> None:
    await conn.execute(
        text("INSERT INTO scheme_versions (version, effective_from, doc) "
             "VALUES (:v, :f, CAST(:d AS jsonb))"),
        {"v": doc["version"], "f": date.fromisoformat(doc["effective_from"]), "d": _json(doc)})


# --- per-loan state ---------------------------------------------------------------------------

_LOANS = text("""
SELECT k.loan_id, a.collector_id, a.team, a.stage, a.assigned_on, a.ended_on,
       s.arrears, s.currency,
       c.entry_id AS c_entry_id, c.kind AS c_kind, c.collector_id AS c_collector_id,
       c.period AS c_period, c.on_date AS c_on_date, c.amount AS c_amount,
       c.currency AS c_currency, c.stage AS c_stage, c.team AS c_team,
       c.days_to_cure AS c_days_to_cure, c.event_source AS c_event_source,
       c.event_id AS c_event_id
FROM unnest(CAST(:ids AS text[])) AS k(loan_id)
LEFT JOIN assignments a ON a.loan_id = k.loan_id
LEFT JOIN loan_state s ON s.loan_id = k.loan_id
LEFT JOIN credit_ledger c ON c.entry_id = s.last_cure_entry_id
""")


class LoanFacts:
    """What the batch knows about its loans; handlers update it, `save_loans` writes it back."""

    def __init__(self) -> None:
        self.assignments: dict[str, Assignment | None] = {}
        self.arrears: dict[str, tuple[Decimal | None, str | None]] = {}
        self.last_cure: dict[str, CreditEntry | None] = {}
        self.dirty_assignments: set[str] = set()
        self.dirty_state: set[str] = set()


def _entry_from_row(row: Any, prefix: str = "") -> CreditEntry:
    def get(name: str) -> Any:
        return getattr(row, prefix + name)

    return CreditEntry(
        entry_id=get("entry_id").hex, kind=EntryKind(get("kind")),
        collector_id=get("collector_id"), period=get("period"), loan_id=row.loan_id,
        on=get("on_date"), amount=get("amount"), currency=get("currency"), stage=get("stage"),
        team=get("team"), severity=getattr(row, prefix + "severity", None),
        days_to_cure=get("days_to_cure"), event_source=get("event_source"),
        event_id=get("event_id"))


async def load_loans(conn: AsyncConnection, loan_ids: Iterable[str]) -> LoanFacts:
    facts = LoanFacts()
    ids = sorted(set(loan_ids))
    if not ids:
        return facts
    for row in await conn.execute(_LOANS, {"ids": ids}):
        facts.assignments[row.loan_id] = (
            Assignment(row.loan_id, row.collector_id, row.team, row.stage, row.assigned_on,
                       row.ended_on) if row.collector_id is not None else None)
        facts.arrears[row.loan_id] = (row.arrears, row.currency)
        facts.last_cure[row.loan_id] = (
            _entry_from_row(row, "c_") if row.c_entry_id is not None else None)
    return facts


# Multi-row writes take one JSON parameter read by position (see _INSERT_ENTRIES below).
_SAVE_ASSIGNMENTS = text(f"""
INSERT INTO assignments (loan_id, collector_id, team, stage, assigned_on, ended_on)
SELECT r->>0, r->>1, r->>2, r->>3, CAST(r->>4 AS date), CAST(r->>5 AS date)
FROM {JSON_ROWS}
ORDER BY n
ON CONFLICT (loan_id) DO UPDATE SET collector_id = EXCLUDED.collector_id,
    team = EXCLUDED.team, stage = EXCLUDED.stage, assigned_on = EXCLUDED.assigned_on,
    ended_on = EXCLUDED.ended_on
""")

_SAVE_STATE = text(f"""
INSERT INTO loan_state (loan_id, arrears, currency, last_cure_entry_id)
SELECT r->>0, CAST(r->>1 AS numeric), r->>2, CAST(r->>3 AS uuid)
FROM {JSON_ROWS}
ORDER BY n
ON CONFLICT (loan_id) DO UPDATE SET arrears = EXCLUDED.arrears,
    currency = EXCLUDED.currency, last_cure_entry_id = EXCLUDED.last_cure_entry_id
""")


async def save_loans(conn: AsyncConnection, facts: LoanFacts) -> None:
    held = [a for k in sorted(facts.dirty_assignments)
            if (a := facts.assignments.get(k)) is not None]
    if held:
        await conn.execute(_SAVE_ASSIGNMENTS, {"rows": rows_json(
            (a.loan_id, a.collector_id, a.team, a.stage, a.assigned_on, a.ended_on)
            for a in held)})
    loans = sorted(facts.dirty_state)
    if loans:
        rows = []
        for k in loans:
            arrears, currency = facts.arrears.get(k, (None, None))
            cure = facts.last_cure.get(k)
            rows.append((k, None if arrears is None else format(arrears, "f"), currency,
                         cure.entry_id if cure is not None else None))
        await conn.execute(_SAVE_STATE, {"rows": rows_json(rows)})


async def save_teams(conn: AsyncConnection, teams: dict[str, str]) -> None:
    if teams:
        ids = sorted(teams)
        await conn.execute(text("""
            INSERT INTO collectors (collector_id, team)
            SELECT * FROM unnest(CAST(:ids AS text[]), CAST(:teams AS text[]))
            ON CONFLICT (collector_id) DO UPDATE SET team = EXCLUDED.team, updated_at = now()
        """), {"ids": ids, "teams": [teams[i] for i in ids]})


# --- the ledger -------------------------------------------------------------------------------

# The rows travel as one JSON array of arrays read back by position (shared.db.rows_json),
# every column cast by the server: fourteen typed arrays cost asyncpg an encoding step and a few
# abstract isinstance checks per element, orjson one call for the batch. The hot statement.
_INSERT_ENTRIES = text(f"""
INSERT INTO credit_ledger (entry_id, kind, collector_id, period, loan_id, on_date, amount,
                           currency, stage, team, severity, days_to_cure, event_source, event_id)
SELECT CAST(r->>0 AS uuid), r->>1, r->>2, r->>3, r->>4, CAST(r->>5 AS date),
       CAST(r->>6 AS numeric), r->>7, r->>8, r->>9, r->>10, CAST(r->>11 AS int), r->>12, r->>13
FROM {JSON_ROWS}
ORDER BY n
ON CONFLICT (entry_id) DO NOTHING
RETURNING entry_id
""")


def _text(value: object) -> str | None:
    return None if value is None else str(value)


async def insert_entries(conn: AsyncConnection, entries: Sequence[CreditEntry]) -> set[str]:
    """Append `entries`; returns the ids that were new (a known id is a no-op)."""
    if not entries:
        return set()
    rows = await conn.execute(_INSERT_ENTRIES, {"rows": rows_json(
        (e.entry_id, str(e.kind), e.collector_id, e.period, e.loan_id, e.on.isoformat(),
         format(e.amount, "f"), e.currency, _text(e.stage), e.team, _text(e.severity),
         e.days_to_cure, e.event_source, e.event_id) for e in entries)})
    return {r.entry_id.hex for r in rows}


async def existing_entries(conn: AsyncConnection, entry_ids: Iterable[str]) -> set[str]:
    """Which of `entry_ids` the ledger holds."""
    ids = sorted(set(entry_ids))
    if not ids:
        return set()
    rows = await conn.execute(text("SELECT entry_id FROM credit_ledger "
                                   "WHERE entry_id = ANY(CAST(:ids AS uuid[]))"), {"ids": ids})
    return {r.entry_id.hex for r in rows}


async def ledger_entries(conn: AsyncConnection, periods: Iterable[str]) -> list[CreditEntry]:
    rows = await conn.execute(text("""
        SELECT entry_id, kind, collector_id, period, loan_id, on_date, amount, currency, stage,
               team, severity, days_to_cure, event_source, event_id
        FROM credit_ledger WHERE period = ANY(CAST(:p AS text[]))
    """), {"p": sorted(set(periods))})
    return [_entry_from_row(r) for r in rows]


# --- scorecards -------------------------------------------------------------------------------

_STORED = text("""
SELECT k.collector_id, k.period, s.currency, s.doc, s.tally, c.team AS roster_team
FROM unnest(CAST(:collector AS text[]), CAST(:period AS text[])) AS k(collector_id, period)
LEFT JOIN scorecards s ON s.collector_id = k.collector_id AND s.period = k.period
LEFT JOIN collectors c ON c.collector_id = k.collector_id
""")


async def stored_scorecards(conn: AsyncConnection,
                            keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], Any]:
    """Stored row (currency, doc, tally, roster_team) per (collector, period); None columns
    for a scorecard not stored yet."""
    wanted = sorted(set(keys))
    if not wanted:
        return {}
    rows = await conn.execute(_STORED, {"collector": [k[0] for k in wanted],
                                        "period": [k[1] for k in wanted]})
    return {(r.collector_id, r.period): r for r in rows}


_UPSERT_SCORECARDS = text(f"""
INSERT INTO scorecards (collector_id, period, team, currency, doc, tally, updated_at)
SELECT r->>0, r->>1, r->>2, r->>3, r->4, r->5, now()
FROM {JSON_ROWS}
ORDER BY n
ON CONFLICT (collector_id, period) DO UPDATE SET team = EXCLUDED.team,
    currency = EXCLUDED.currency, doc = EXCLUDED.doc, tally = EXCLUDED.tally,
    updated_at = now()
""")


async def upsert_scorecards(conn: AsyncConnection,
                            rows: Sequence[tuple[str, str, str | None, str, dict, dict]]) -> None:
    """rows: (collector_id, period, team, currency, doc, tally)."""
    if rows:
        # doc and tally nest as JSON objects
        await conn.execute(_UPSERT_SCORECARDS, {"rows": rows_json(rows)})


async def scorecard_doc(conn: AsyncConnection, collector_id: str, period: str) -> Any:
    row = await conn.execute(text("SELECT doc FROM scorecards WHERE collector_id = :c "
                                  "AND period = :p"), {"c": collector_id, "p": period})
    return row.scalar_one_or_none()


async def period_docs(conn: AsyncConnection, period: str, team: str | None) -> list[dict]:
    rows = await conn.execute(text("SELECT doc FROM scorecards WHERE period = :p "
                                   "AND (CAST(:t AS text) IS NULL OR team = :t)"),
                              {"p": period, "t": team})
    return [r.doc for r in rows]


async def periods_from(conn: AsyncConnection, first: str) -> list[str]:
    """Periods with a ledger entry, from `first` on."""
    rows = await conn.execute(text("SELECT DISTINCT period FROM credit_ledger "
                                   "WHERE period >= :p"), {"p": first})
    return sorted(r.period for r in rows)


def book_of(schemes: Iterable[Scheme]) -> SchemeBook:
    return SchemeBook(schemes)
