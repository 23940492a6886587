"""SQL of the notifier: state read for decisions, the contact log, the two queues.

Reads take whole arrays of ids. Multi-row writes take one JSON parameter that orjson writes
in one call, where a typed array per column cost the driver an encoding step per element: the
hot ones (contact log, both queues) an array of arrays read by position from jsonb, the
cheapest form for PostgreSQL too; loans and borrowers objects through ``json_to_recordset``,
which turns their JSON lists into text arrays in order. A consumed batch or a scheduler tick
costs a handful of round trips whatever its size.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import orjson
from prometheus_client import Counter as MetricCounter
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.notifier.domain import (
    DEFAULT_CONTACT_POLICY,
    BorrowerProfile,
    ContactPolicy,
    ContactRecord,
    ContactRequest,
    parse_contact_policy,
)
from shared.db import JSON_ROWS, rows_json


@dataclass(frozen=True, slots=True)
class LoanState:
    """A row of `loans` as the notifier knows it (flags in stored order)."""

    loan_id: str
    borrower_id: str | None = None
    stage: str = "current"
    closed: bool = False
    flags: tuple[str, ...] = ()
    owner_id: str | None = None
    stage_entered_on: date | None = None
    dpd: int = 0
    arrears: Decimal = Decimal("0.0000")  # the column's default, as it reads back
    currency: str | None = None


@dataclass(frozen=True, slots=True)
class BorrowerRow:
    """A `borrower.updated` snapshot as stored; `profile` is what decisions read."""

    borrower_id: str
    name: str
    phone: str | None
    email: str | None
    timezone: str
    language: str
    opted_out_channels: tuple[str, ...]
    vulnerable: bool

    @property
    def profile(self) -> BorrowerProfile:
        return BorrowerProfile(
            borrower_id=self.borrower_id, timezone=self.timezone, language=self.language,
            opted_out_channels=frozenset(self.opted_out_channels), vulnerable=self.vulnerable,
            has_phone=bool(self.phone), has_email=bool(self.email), has_address=True)


CONTACTS_LOGGED = MetricCounter(
    "qs_contacts_logged_total", "Rows appended to the contact log (counted before commit)",
    ["channel", "status"])


def request_doc(req: ContactRequest) -> dict[str, Any]:
    """A request as the queues store it (JSON-ready but for odd variables, which orjson's
    ``default=str`` writes)."""
    return {
        "contact_id": req.contact_id, "loan_id": req.loan_id, "borrower_id": req.borrower_id,
        "channel": req.channel, "template": req.template, "trigger": req.trigger,
        "stage": req.stage, "created_at": req.created_at.isoformat(),
        "requires_stage": req.requires_stage, "loan_stage_now": req.loan_stage_now,
        "loan_closed": req.loan_closed,
        "valid_until": req.valid_until.isoformat() if req.valid_until else None,
        # a dict as is (orjson writes it; nothing mutates a request's variables), any other
        # mapping copied into one
        "variables": v if (v := req.variables).__class__ is dict else dict(v),
    }


def request_to_json(req: ContactRequest) -> str:
    return orjson.dumps(request_doc(req), default=str).decode()


def request_from_json(doc: dict[str, Any]) -> ContactRequest:
    valid = doc.get("valid_until")
    return ContactRequest(
        contact_id=doc["contact_id"], loan_id=doc["loan_id"], borrower_id=doc["borrower_id"],
        channel=doc["channel"], template=doc["template"], trigger=doc["trigger"],
        stage=doc["stage"], created_at=datetime.fromisoformat(doc["created_at"]),
        requires_stage=doc["requires_stage"], loan_stage_now=doc["loan_stage_now"],
        loan_closed=doc["loan_closed"], valid_until=date.fromisoformat(valid) if valid else None,
        variables=doc.get("variables") or {},
    )


# The document last parsed (a copy of its own) and its policy: every consumed batch reads the
# policy, and parsing it cost more than the read; a document equal to the last one is the
# same policy (parsing is pure).
_last_parsed: tuple[dict[str, Any], ContactPolicy] | None = None


def _parsed(document: dict[str, Any]) -> ContactPolicy:
    global _last_parsed
    last = _last_parsed
    if last is not None and last[0] == document:
        return last[1]
    policy = parse_contact_policy(document)
    _last_parsed = (orjson.loads(orjson.dumps(document)), policy)
    return policy


_LOAD_POLICY = text(
    "SELECT version, document FROM contact_policies ORDER BY version DESC LIMIT 1")


async def load_policy(conn: AsyncConnection) -> tuple[int, dict[str, Any], ContactPolicy]:
    row = (await conn.execute(_LOAD_POLICY)).first()
    if row is None:
        return 0, DEFAULT_CONTACT_POLICY, _parsed(DEFAULT_CONTACT_POLICY)
    return row.version, row.document, _parsed(row.document)


# numeric(18, 4) rounds half away from zero; keep in memory exactly what the column holds
_ARREARS_PLACES = Decimal("0.0001")


def as_stored_arrears(amount: Decimal) -> Decimal:
    return amount.quantize(_ARREARS_PLACES, rounding=ROUND_HALF_UP)


def loan_from_row(row: Any) -> LoanState:
    return LoanState(row.loan_id, row.borrower_id, row.stage, row.closed, tuple(row.flags),
                     row.owner_id, row.stage_entered_on, row.dpd, row.arrears, row.currency)


def _loan_from_tuple(t: Sequence[Any]) -> LoanState:
    """A row selected with ``_LOAN_COLUMNS``, by position (attribute access per column costs
    more than the rest of the conversion)."""
    lid, borrower, stage, closed, flags, owner, entered, dpd, arrears, currency = t
    return LoanState(lid, borrower, stage, closed, tuple(flags), owner, entered, dpd, arrears,
                     currency)


_LOAN_COLUMNS = ("loan_id, borrower_id, stage, closed, flags, owner_id, stage_entered_on, dpd, "
                 "arrears, currency")


async def create_loans(conn: AsyncConnection, loan_ids: Iterable[str]) -> set[str]:
    """Insert a default row for each id not stored yet; returns the ids inserted.

    The batch then locks every row it may write, new or old, so two notifier instances that
    touch one loan from different topics serialise on the row instead of overwriting each
    other's columns.
    """
    ids = sorted(set(loan_ids))
    if not ids:
        return set()
    rows = await conn.execute(text("""
        INSERT INTO loans (loan_id) SELECT id FROM unnest(CAST(:ids AS text[])) AS u(id)
        ORDER BY id ON CONFLICT (loan_id) DO NOTHING RETURNING loan_id"""), {"ids": ids})
    return {r.loan_id for r in rows}


async def load_loans(conn: AsyncConnection, loan_ids: Iterable[str], *,
                     lock: bool = False) -> dict[str, LoanState]:
    """The stored loans among ``loan_ids``; ``lock`` takes their row locks in id order."""
    ids = sorted(set(loan_ids))
    if not ids:
        return {}
    sql = (f"SELECT {_LOAN_COLUMNS} FROM loans WHERE loan_id = ANY(CAST(:ids AS text[])) "
           "ORDER BY loan_id" + (" FOR UPDATE" if lock else ""))
    rows = await conn.execute(text(sql), {"ids": ids})
    return {t[0]: _loan_from_tuple(t) for t in rows}


_SAVE_LOANS = text("""
UPDATE loans SET borrower_id = u.borrower_id, stage = u.stage, closed = u.closed,
    flags = u.flags, owner_id = u.owner_id, stage_entered_on = u.entered, dpd = u.dpd,
    arrears = u.arrears, currency = u.currency, updated_at = now()
FROM json_to_recordset(CAST(:rows AS json))
     AS u(loan_id text, borrower_id text, stage text, closed boolean, flags text[],
          owner_id text, entered date, dpd int, arrears numeric, currency text)
WHERE loans.loan_id = u.loan_id
""")


async def save_loans(conn: AsyncConnection, loans: Sequence[LoanState]) -> None:
    """Write back loans whose rows exist and are locked by this transaction (one statement;
    one JSON parameter, flags as JSON arrays in stored order, arrears as exact strings)."""
    if not loans:
        return
    loans = sorted(loans, key=lambda s: s.loan_id)
    await conn.execute(_SAVE_LOANS, {"rows": orjson.dumps([
        {"loan_id": s.loan_id, "borrower_id": s.borrower_id, "stage": s.stage,
         "closed": s.closed, "flags": s.flags, "owner_id": s.owner_id,
         "entered": s.stage_entered_on, "dpd": s.dpd, "arrears": str(s.arrears),
         "currency": s.currency} for s in loans]).decode()})


async def delete_loans(conn: AsyncConnection, loan_ids: Iterable[str]) -> None:
    ids = sorted(set(loan_ids))
    if ids:
        await conn.execute(text("DELETE FROM loans WHERE loan_id = ANY(CAST(:ids AS text[]))"),
                           {"ids": ids})


# What a batch reads in one round trip: the loans it only reads (not locked), the borrowers
# it needs (those named and those of the loans read) and the contact policy in force. Loan
# rows carry a loan id; borrower rows a NULL loan id and, after the loan's columns, those of
# ``load_profiles``; the policy row neither id and, in the last two columns, what
# ``load_policy`` reads.
_BATCH_STATE = text(f"""
WITH r AS MATERIALIZED (
    SELECT {_LOAN_COLUMNS} FROM loans WHERE loan_id = ANY(CAST(:loans AS text[]))
)
SELECT {_LOAN_COLUMNS}, CAST(NULL AS text), CAST(NULL AS text), CAST(NULL AS text[]),
       CAST(NULL AS boolean), CAST(NULL AS boolean), CAST(NULL AS boolean),
       CAST(NULL AS int), CAST(NULL AS jsonb)
FROM r
UNION ALL
SELECT NULL, borrower_id, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
       timezone, language, opted_out_channels, vulnerable,
       coalesce(phone, '') <> '', coalesce(email, '') <> '', NULL, NULL
FROM borrowers
-- one array, not "= ANY(...) OR IN (SELECT ...)": an OR of the two read every borrower
WHERE borrower_id = ANY(CAST(:borrowers AS text[]) || ARRAY(SELECT borrower_id FROM r))
UNION ALL
(SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
        NULL, NULL, NULL, NULL, NULL, NULL, version, document
 FROM contact_policies ORDER BY version DESC LIMIT 1)
""")


@dataclass(slots=True)
class BatchState:
    loans: dict[str, LoanState]
    profiles: dict[str, BorrowerProfile]
    policy: ContactPolicy


async def load_batch_state(conn: AsyncConnection, loan_ids: Iterable[str],
                           borrower_ids: Iterable[str]) -> BatchState:
    """In one statement: the stored loans among ``loan_ids`` (read, not locked), the profiles
    (:func:`load_profiles`) of the stored borrowers among ``borrower_ids`` and of those
    loans' borrowers, and the contact policy in force (:func:`load_policy`)."""
    loans: dict[str, LoanState] = {}
    profiles: dict[str, BorrowerProfile] = {}
    document = DEFAULT_CONTACT_POLICY  # none stored yet
    for t in await conn.execute(_BATCH_STATE, {"loans": sorted(set(loan_ids)),
                                               "borrowers": sorted(set(borrower_ids))}):
        if t[0] is not None:
            loans[t[0]] = _loan_from_tuple(t[:10])
        elif t[1] is not None:
            profiles[t[1]] = BorrowerProfile(t[1], t[10], t[11], frozenset(t[12]), t[13],
                                             t[14], t[15], True)
        else:
            document = t[17]
    return BatchState(loans, profiles, _parsed(document))


async def load_profiles(conn: AsyncConnection,
                        borrower_ids: Iterable[str]) -> dict[str, BorrowerProfile]:
    """What decisions read of the stored borrowers among ``borrower_ids``: the profile
    :attr:`BorrowerRow.profile` gives, built straight from the row (a borrower only read is
    never written back, so its full row is not needed)."""
    ids = sorted(set(borrower_ids))
    if not ids:
        return {}
    rows = await conn.execute(text("""
        SELECT borrower_id, timezone, language, opted_out_channels, vulnerable,
               coalesce(phone, '') <> '', coalesce(email, '') <> ''
        FROM borrowers WHERE borrower_id = ANY(CAST(:ids AS text[]))"""), {"ids": ids})
    # by position, as loans are read (attribute access per column cost more than the rest)
    return {t[0]: BorrowerProfile(t[0], t[1], t[2], frozenset(t[3]), t[4], t[5], t[6], True)
            for t in rows}


_SAVE_BORROWERS = text("""
INSERT INTO borrowers (borrower_id, name, phone, email, timezone, language,
                       opted_out_channels, vulnerable)
SELECT u.id, u.name, u.phone, u.email, u.tz, u.lang, u.opt, u.vul
FROM json_to_recordset(CAST(:rows AS json))
     AS u(id text, name text, phone text, email text, tz text, lang text, opt text[],
          vul boolean)
ORDER BY u.id
ON CONFLICT (borrower_id) DO UPDATE SET name = EXCLUDED.name,
    phone = EXCLUDED.phone, email = EXCLUDED.email, timezone = EXCLUDED.timezone,
    language = EXCLUDED.language, opted_out_channels = EXCLUDED.opted_out_channels,
    vulnerable = EXCLUDED.vulnerable, updated_at = now()
""")


async def save_borrowers(conn: AsyncConnection, borrowers: Sequence[BorrowerRow]) -> None:
    """Upsert full borrower snapshots (one per id; the caller keeps the latest)."""
    if not borrowers:
        return
    await conn.execute(_SAVE_BORROWERS, {"rows": orjson.dumps([
        {"id": b.borrower_id, "name": b.name, "phone": b.phone, "email": b.email,
         "tz": b.timezone, "lang": b.language, "opt": b.opted_out_channels,
         "vul": b.vulnerable} for b in borrowers]).decode()})


def history_span(policy: ContactPolicy) -> timedelta:
    """How far back a decision looks: the longest cap window."""
    windows = [c.window for caps in policy.caps.values() for c in caps]
    return max(windows) if windows else timedelta(days=7)


# The decisions' two reads in one round trip: which of the batch's contact ids the log already
# has (rows without a channel), and per loan one row per contact that went out after :since
# (its first send time, its latest status).
_DECISION_STATE = text("""
SELECT DISTINCT contact_id, NULL::text, NULL::timestamptz, NULL::text
FROM contacts WHERE contact_id = ANY(CAST(:ids AS text[]))
UNION ALL
SELECT loan_id, channel,
       min(decided_at) FILTER (WHERE status IN ('sent', 'failed')),
       (array_agg(status ORDER BY id DESC))[1]
FROM contacts
WHERE loan_id = ANY(CAST(:loans AS text[])) AND status IN ('sent', 'delivered', 'failed')
  AND decided_at > :since
GROUP BY loan_id, contact_id, channel
""")


async def decision_state(conn: AsyncConnection, contact_ids: Iterable[str],
                         loan_ids: Iterable[str], since: datetime,
                         ) -> tuple[set[str], dict[str, list[ContactRecord]]]:
    """The ids among ``contact_ids`` that already have a row in the contact log, and per loan
    of ``loan_ids`` one record per contact that went out after ``since`` (its first send time,
    its latest status); one statement."""
    seen: set[str] = set()
    history: dict[str, list[ContactRecord]] = {}
    ids, loans = sorted(set(contact_ids)), sorted(set(loan_ids))
    if not ids and not loans:
        return seen, history
    # by position (a Row's attribute access costs more than the record it makes)
    for key, channel, sent_at, status in await conn.execute(
            _DECISION_STATE, {"ids": ids, "loans": loans, "since": since}):
        if channel is None:
            seen.add(key)
        elif sent_at:
            found = history.get(key)
            if found is None:
                found = history[key] = []
            found.append(ContactRecord(channel, sent_at, status))
    return seen, history


# The three tables a batch of decisions writes, each read from its own JSON parameter
# (:func:`shared.db.rows_json`, rows as arrays read back by position: ``json_to_recordset``
# over objects cost PostgreSQL more than ``->>`` on jsonb). ``{rows}`` is the FROM item.
_LOG_SQL = """
INSERT INTO contacts (contact_id, loan_id, borrower_id, channel, template, stage, trigger,
                      status, reason, scheduled_for, decided_at, attempt)
SELECT r->>0, r->>1, r->>2, r->>3, r->>4, r->>5, r->>6, r->>7, r->>8,
       CAST(r->>9 AS timestamptz), CAST(r->>10 AS timestamptz), NULLIF(r->11, 'null')
FROM {rows}
ORDER BY n"""

_DISPATCH_SQL = """
INSERT INTO dispatch_queue (contact_id, channel, template_id, request)
SELECT r->>0, r->>1, r->>2, r->3
FROM {rows}
ORDER BY n
ON CONFLICT (contact_id) DO NOTHING"""

_DEFERRED_SQL = """
INSERT INTO deferred_contacts (contact_id, due_at, request)
SELECT r->>0, CAST(r->>1 AS timestamptz), r->2
FROM {rows}
ORDER BY r->>0
ON CONFLICT (contact_id) DO UPDATE SET due_at = EXCLUDED.due_at"""

_WRITES = {"log": _LOG_SQL, "dispatch": _DISPATCH_SQL, "deferred": _DEFERRED_SQL}
_write_statements: dict[tuple[str, ...], Any] = {}


def _write_statement(parts: tuple[str, ...]) -> Any:
    """One statement writing ``parts`` (keys of ``_WRITES``, in that order): the first ones as
    data-modifying CTEs, the last as the statement itself, so a batch's log rows and queue
    rows cost one round trip. No part reads what another writes (they share a snapshot)."""
    found = _write_statements.get(parts)
    if found is None:
        bodies = [_WRITES[p].format(rows=JSON_ROWS.replace(":rows", f":{p}")) for p in parts]
        ctes = ", ".join(f"w{i} AS ({body})" for i, body in enumerate(bodies[:-1]))
        found = _write_statements[parts] = text(
            (f"WITH {ctes}" if ctes else "") + bodies[-1])
    return found


async def write_contacts(conn: AsyncConnection, log: Sequence[dict[str, Any]],
                         dispatch: Sequence[tuple[ContactRequest, str]] = (),
                         deferred: Sequence[tuple[ContactRequest, datetime]] = ()) -> None:
    """In one statement: append decisions to the contact log in order (never updated, never
    deleted but by retention); queue (request, template id) for dispatch, a contact already
    queued staying as is; queue (request, due_at) as deferred, a contact already queued moving
    to the new time (the last one given wins). The requests travel nested as JSON objects; an
    absent ``attempt`` of a log row is JSON null, which ``NULLIF`` turns back into SQL NULL."""
    params: dict[str, str] = {}
    if log:
        # one labels() look-up per channel and status, not per row (it costs more than the row)
        for (channel, status), n in Counter((r["channel"], r["status"]) for r in log).items():
            CONTACTS_LOGGED.labels(channel, status).inc(n)
        params["log"] = rows_json(
            [r["contact_id"], r["loan_id"], r["borrower_id"], r["channel"], r["template"],
             r["stage"], r["trigger"], r["status"], r["reason"], r["scheduled_for"],
             r["decided_at"], r["attempt"] or None] for r in log)
    if dispatch:
        params["dispatch"] = rows_json(
            (req.contact_id, req.channel, template, request_doc(req))
            for req, template in dispatch)
    latest = {req.contact_id: (req, due) for req, due in deferred}
    if latest:
        params["deferred"] = rows_json(
            (cid, due, request_doc(req)) for cid, (req, due) in latest.items())
    if params:
        await conn.execute(_write_statement(tuple(params)), params)


async def append_log(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> None:
    """Append decisions to the contact log (:func:`write_contacts`)."""
    await write_contacts(conn, rows)


async def purge_contacts(conn: AsyncConnection, older_than: datetime) -> int:
    """Retention: the one deletion the contact log allows, by age only."""
    result = await conn.execute(text("DELETE FROM contacts WHERE recorded_at < :t"),
                                {"t": older_than})
    return result.rowcount or 0
