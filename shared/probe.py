"""The runtime's own probe consumer, used by the runner's tests and benchmark.

It is the smallest realistic service: for every ``repayment.received`` it upserts one row per
loan (total paid, event count) and writes one outbox event. Rows of one batch are aggregated
in memory and written by one multi-row upsert in ``after_batch`` — the batching pattern the
real services follow. ``per_event=True`` writes each event with its own statement instead
(used as the baseline in the benchmark, together with a batch size of one).
"""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.consumer import ConsumerSpec
from shared.context import BatchContext
from shared.db import JSON_ROWS, rows_json
from shared.events import Event
from shared.migrations import OUTBOX_QUARANTINED_INDEX, RUNTIME_TABLES, runtime_statistics_sql
from shared.topics import LOAN_EVENTS, REPAYMENTS_APPLIED

PROBE_TABLE = """
CREATE TABLE IF NOT EXISTS probe_loans (
    loan_id text PRIMARY KEY,
    paid    numeric(18, 4) NOT NULL,
    events  int NOT NULL
)
"""

# one JSON parameter read by position (shared.db.rows_json), as the services write their rows
_UPSERT_MANY = text(f"""
INSERT INTO probe_loans (loan_id, paid, events)
SELECT r->>0, CAST(r->>1 AS numeric), CAST(r->>2 AS int)
FROM {JSON_ROWS}
ORDER BY n
ON CONFLICT (loan_id) DO UPDATE
SET paid = probe_loans.paid + EXCLUDED.paid, events = probe_loans.events + EXCLUDED.events
""")

_UPSERT_ONE = text("""
INSERT INTO probe_loans (loan_id, paid, events) VALUES (:id, :paid, 1)
ON CONFLICT (loan_id) DO UPDATE
SET paid = probe_loans.paid + EXCLUDED.paid, events = probe_loans.events + 1
""")


async def create_probe_schema(engine: AsyncEngine, schema: str) -> None:
    """Runtime tables plus the probe's table, in ``schema`` (for tests and benchmarks)."""
    async with engine.begin() as conn:
        await conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        await conn.execute(text(f'SET LOCAL search_path TO "{schema}"'))
        for statement in RUNTIME_TABLES.split(";"):
            if statement.strip():
                await conn.execute(text(statement))
        await conn.execute(text(PROBE_TABLE))
        await conn.execute(text(OUTBOX_QUARANTINED_INDEX))
        for statement in runtime_statistics_sql():  # as the services' migrations leave them
            await conn.execute(text(statement))


def _applied(ctx: BatchContext, event: Event) -> None:
    d = event.data
    ctx.emit(REPAYMENTS_APPLIED, "repayment.applied", d.loan_id, {
        "loan_id": d.loan_id, "payment_id": d.payment_id, "amount": d.amount,
        "to_arrears": d.amount, "excess": Decimal("0"), "currency": d.currency,
        "value_date": d.value_date, "stage": "early", "dpd_before": 0, "dpd_after": 0})


async def _batched(ctx: BatchContext, event: Event) -> None:
    totals: dict[str, list] = ctx.state.setdefault("totals", {})
    row = totals.setdefault(event.data.loan_id, [Decimal("0"), 0])
    row[0] += event.data.amount
    row[1] += 1
    _applied(ctx, event)


async def _flush(ctx: BatchContext) -> None:
    totals: dict[str, list] = ctx.state.get("totals", {})
    if totals:
        await ctx.conn.execute(_UPSERT_MANY, {"rows": rows_json(
            (loan_id, format(paid, "f"), n) for loan_id, (paid, n) in totals.items())})


async def _single(ctx: BatchContext, event: Event) -> None:
    await ctx.conn.execute(_UPSERT_ONE, {"id": event.data.loan_id, "paid": event.data.amount})
    _applied(ctx, event)


def probe_spec(name: str = "probe", per_event: bool = False) -> ConsumerSpec:
    if per_event:
        return ConsumerSpec(name=name, topics=[LOAN_EVENTS],
                            handlers={"repayment.received": _single})
    return ConsumerSpec(name=name, topics=[LOAN_EVENTS],
                        handlers={"repayment.received": _batched}, after_batch=_flush)
