"""The portfolio view: counts and arrears per product and stage, and the roll-rate matrix.

Decision (roll rates): each completed end of day records the last stage-history id
(``eod_runs.history_upto``) and a snapshot of counts per product and stage. The matrix between
the last two completed business dates takes, for every loan with history rows between the two
marks, its first ``from`` stage and last ``to`` stage (its net move over the day); loans without
rows stayed. Rates are over the earlier snapshot's count of the ``from`` stage. Loans opened
in between are not in the earlier snapshot; their moves count in the numerators only.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

_CURRENT = text("""
SELECT product, stage, count(*) AS loans, sum(arrears) AS arrears FROM loans
WHERE status = 'open' GROUP BY product, stage ORDER BY product, stage
""")

_MOVES = text("""
SELECT first_from, last_to, count(*) AS n FROM (
    SELECT DISTINCT ON (loan_id) loan_id,
        first_value(from_stage) OVER w AS first_from,
        last_value(to_stage) OVER w AS last_to
    FROM stage_history WHERE id > :lo AND id <= :hi
    WINDOW w AS (PARTITION BY loan_id ORDER BY id
                 ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
) t GROUP BY first_from, last_to
""")


def _money(value: Decimal | None) -> str:
    return format((value or Decimal(0)).quantize(Decimal("0.01")), "f")


async def history(conn: AsyncConnection, limit: int) -> list[dict[str, Any]]:
    """The last ``limit`` finished end-of-day snapshots, oldest first: per business date and
    stage, loans and arrears summed over products (amounts as strings)."""
    rows = (await conn.execute(text("""
        SELECT s.business_date, s.stage, sum(s.loans) AS loans, sum(s.arrears) AS arrears
        FROM portfolio_snapshots s
        WHERE s.business_date IN (SELECT business_date FROM eod_runs
                                  ORDER BY business_date DESC LIMIT :n)
        GROUP BY s.business_date, s.stage ORDER BY s.business_date, s.stage"""),
        {"n": limit})).all()
    days: dict[str, dict[str, Any]] = {}
    for r in rows:
        day = days.setdefault(r.business_date.isoformat(),
                              {"business_date": r.business_date.isoformat(), "stages": {}})
        day["stages"][r.stage] = {"count": int(r.loans), "arrears": format(r.arrears, "f")}
    return list(days.values())


async def portfolio(conn: AsyncConnection) -> dict[str, Any]:
    rows = (await conn.execute(_CURRENT)).all()
    products: dict[str, dict[str, Any]] = {}
    for r in rows:
        products.setdefault(r.product, {})[r.stage] = {"count": r.loans,
                                                       "arrears": _money(r.arrears)}
    runs = (await conn.execute(text(
        "SELECT business_date, history_upto FROM eod_runs "
        "ORDER BY business_date DESC LIMIT 2"))).all()
    return {"products": products, "roll_rates": await _roll_rates(conn, runs)}


async def _roll_rates(conn: AsyncConnection, runs: Sequence[Any]) -> dict[str, Any] | None:
    if len(runs) < 2:
        return None
    latest, earlier = runs
    base: dict[str, int] = {}
    for r in await conn.execute(text(
            "SELECT stage, sum(loans) AS n FROM portfolio_snapshots WHERE business_date = :d "
            "GROUP BY stage"), {"d": earlier.business_date}):
        base[r.stage] = int(r.n)
    moved: dict[str, dict[str, int]] = {}
    for r in await conn.execute(_MOVES, {"lo": earlier.history_upto,
                                         "hi": latest.history_upto}):
        if r.first_from != r.last_to:
            moved.setdefault(r.first_from, {})[r.last_to] = int(r.n)
    matrix: dict[str, dict[str, str]] = {}
    for stage in sorted(set(base) | set(moved)):
        total = base.get(stage, 0)
        outs = moved.get(stage, {})
        row = {to: n for to, n in outs.items()}
        row[stage] = max(total - sum(outs.values()), 0)
        matrix[stage] = {to: (format(Decimal(n) / total, ".4f") if total else "0.0000")
                         for to, n in sorted(row.items())}
    return {"from_business_date": earlier.business_date.isoformat(),
            "to_business_date": latest.business_date.isoformat(),
            "base_counts": base, "matrix": matrix}
