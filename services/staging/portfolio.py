"""The portfolio view: counts and arrears per product and stage, and the roll-rate matrix.

Decision (counts): open loans and arrears per product and stage are kept as a sum of moves
(``portfolio_moves``): every transaction that saves loans appends, per product and stage it
touched, the change in open loans and arrears (:func:`moves_of`, :func:`add_moves`). Rows are
only ever inserted, so concurrent writers never wait for each other, and a reader's snapshot
sees exactly the moves of the loans it sees, so the sums equal a count over ``loans`` (a test
checks it) at the cost of a few hundred rows instead of a scan of the whole book. Each end of
day records its snapshot from these sums and folds them into one row per product and stage
(:func:`snapshot`).

Decision (roll rates): each completed end of day records the last stage-history id
(``eod_runs.history_upto``) and a snapshot of counts per product and stage. The matrix between
the last two completed business dates takes, for every loan with history rows between the two
marks, its first ``from`` stage and last ``to`` stage (its net move over the day); loans without
rows stayed. Rates are over the earlier snapshot's count of the ``from`` stage. Loans opened
in between are not in the earlier snapshot; their moves count in the numerators only.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date
from decimal import Decimal
from typing import Any, Protocol

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

_CURRENT = text("""
SELECT product, stage, sum(loans) AS loans, sum(arrears) AS arrears FROM portfolio_moves
GROUP BY product, stage HAVING sum(loans) > 0 ORDER BY product, stage
""")

_ADD = text("""
INSERT INTO portfolio_moves (product, stage, loans, arrears)
SELECT p, s, n, CAST(a AS numeric)
FROM unnest(CAST(:product AS text[]), CAST(:stage AS text[]), CAST(:loans AS bigint[]),
            CAST(:arrears AS text[])) AS u(p, s, n, a)
""")

# One statement: rows committed meanwhile are not in its snapshot, so they are neither
# deleted nor counted, and stay as they are.
_FOLD = text("""
WITH folded AS (DELETE FROM portfolio_moves RETURNING product, stage, loans, arrears)
INSERT INTO portfolio_moves (product, stage, loans, arrears)
SELECT product, stage, sum(loans), sum(arrears) FROM folded GROUP BY product, stage
HAVING sum(loans) <> 0 OR sum(arrears) <> 0
""")

Moves = dict[tuple[str, str], tuple[int, Decimal]]
_ZERO = Decimal(0)


class Counted(Protocol):
    """A loan as the portfolio counts it (a LoanState, or a due loan's columns)."""

    @property
    def product(self) -> str: ...
    @property
    def stage(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def arrears(self) -> Decimal: ...


def moves_of(pairs: Iterable[tuple[Counted | None, Counted]],
             shifts: Iterable[tuple[str, str, str, Decimal]] = ()) -> Moves:
    """The portfolio moves of loans going from ``before`` (None: new) to ``after``, and of
    open loans shifting stage: ``(product, from_stage, to_stage, arrears)``."""
    moves: Moves = {}

    def add(product: str, stage: str, sign: int, arrears: Decimal) -> None:
        count, amount = moves.get((product, stage), (0, _ZERO))
        moves[product, stage] = (count + sign, amount + sign * arrears)

    for before, after in pairs:
        if before is not None and before.status == "open":
            add(before.product, before.stage, -1, before.arrears)
        if after.status == "open":
            add(after.product, after.stage, 1, after.arrears)
    for product, before_stage, after_stage, arrears in shifts:
        add(product, before_stage, -1, arrears)
        add(product, after_stage, 1, arrears)
    return {k: v for k, v in moves.items() if v[0] or v[1]}


async def add_moves(conn: AsyncConnection, moves: Moves) -> None:
    if not moves:
        return
    keys = sorted(moves)
    await conn.execute(_ADD, {"product": [k[0] for k in keys], "stage": [k[1] for k in keys],
                              "loans": [moves[k][0] for k in keys],
                              "arrears": [str(moves[k][1]) for k in keys]})


async def snapshot(conn: AsyncConnection, business_date: date) -> None:
    """Record the portfolio of ``business_date`` and fold the moves (end of day)."""
    await conn.execute(_FOLD)
    await conn.execute(text("""
        INSERT INTO portfolio_snapshots (business_date, product, stage, loans, arrears)
        SELECT :d, product, stage, sum(loans), sum(arrears) FROM portfolio_moves
        GROUP BY product, stage HAVING sum(loans) > 0
        ON CONFLICT DO NOTHING"""), {"d": business_date})

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
        products.setdefault(r.product, {})[r.stage] = {"count": int(r.loans),
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
