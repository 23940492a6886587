"""REST API of incentives: scorecards, leaderboards, the scheme and period closing.

A scheme change is applied at once: in the transaction that stores the new version, every
scorecard of a period that ends on or after its `effective_from` is recomputed from the ledger
and the ones that changed are published as `scorecard.updated` through the outbox.

Decision: a closed period is paid and final, so a scheme may not take effect on or before the
last day of a closed period (422 on `effective_from`): it would recompute that month's payouts
and change the rate at which its credits are later clawed back. Closing is for months that
have ended (422 on `period` otherwise): a month closed early, or a future one closed by a typo,
would send all its credits to the next month, and a period cannot be reopened.
"""

from __future__ import annotations

from datetime import date, datetime, tzinfo
from typing import Any

from fastapi import APIRouter, Body, Depends, Query
from sqlalchemy.ext.asyncio import AsyncEngine

from services.incentives import scoring, store
from services.incentives.domain import (
    SchemeBook,
    period_at,
    period_of,
    rank,
    scheme_to_doc,
    validate_scheme,
)
from services.incentives.domain.periods import (
    check_period,
    latest_closed_reached,
    period_bounds,
)
from services.incentives.tallies import scorecard_from_doc
from shared import outbox
from shared.api import require
from shared.context import BatchContext
from shared.paging import decode_cursor, encode_cursor
from shared.problems import Problem
from shared.service import Runtime


def _period(value: str | None, zone: tzinfo, name: str = "period") -> str:
    """`value` checked, or the current month in the bank's zone when it is omitted."""
    if value is None:
        return period_at(datetime.now(zone), zone)
    try:
        return check_period(value)
    except ValueError:
        raise Problem(422, f"{name} must be YYYY-MM",
                      errors=[{"field": name, "message": "must be YYYY-MM"}]) from None


async def scheme_view(engine: AsyncEngine, zone: tzinfo) -> dict[str, Any]:
    async with engine.connect() as conn:
        schemes = await store.load_schemes(conn)
    today = datetime.now(zone).date()
    current = SchemeBook(schemes).on(today)
    return {"current": scheme_to_doc(current),
            "versions": [scheme_to_doc(s) for s in schemes]}


async def put_scheme(runtime: Runtime, engine: AsyncEngine, doc: dict[str, Any],
                     zone: tzinfo) -> dict:
    doc = dict(doc)
    async with engine.begin() as conn:
        await store.lock_scorecards(conn)
        schemes = await store.load_schemes(conn)
        following = max((s.version for s in schemes), default=0) + 1
        doc.setdefault("version", following)
        errors = validate_scheme(doc)
        if not errors and doc["version"] != following:
            errors = [{"field": "version", "message": f"must be {following}, the next version"}]
        if not errors:
            reached = latest_closed_reached(date.fromisoformat(str(doc["effective_from"])),
                                            await store.load_closed_periods(conn))
            if reached is not None:
                errors = [{"field": "effective_from",
                           "message": f"must be after {reached}, a closed period"}]
        if errors:
            fields = ", ".join(dict.fromkeys(e["field"] for e in errors))
            raise Problem(422, f"invalid scheme: {fields}", errors=errors)
        await store.add_scheme(conn, doc)
        book = SchemeBook(await store.load_schemes(conn))
        first = period_of(date.fromisoformat(str(doc["effective_from"])))
        periods = await store.periods_from(conn, first)
        updated = await scoring.rebuild(conn, book, periods)
        ctx = BatchContext(conn, runtime.topics, runtime.source)
        scoring.publish(ctx, updated)
        s = runtime.settings
        await outbox.write(conn, ctx.outbox, s.relay_shards, s.schema_name)
    view = await scheme_view(engine, zone)
    view["recomputed_periods"] = periods
    return view


def build_router(runtime: Runtime, zone: tzinfo) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["incentives"])

    def engine() -> AsyncEngine:
        assert runtime.engine is not None
        return runtime.engine

    @router.get("/scorecards/{collector_id}", dependencies=[Depends(require("read"))])
    async def get_scorecard(collector_id: str, period: str | None = None) -> dict[str, Any]:
        wanted = _period(period, zone)
        async with engine().connect() as conn:
            doc = await store.scorecard_doc(conn, collector_id, wanted)
        if doc is None:
            raise Problem(404, f"no scorecard for collector {collector_id} in {wanted}")
        return dict(doc)

    @router.get("/leaderboard", dependencies=[Depends(require("read"))])
    async def leaderboard(period: str | None = None, team: str | None = None,
                          limit: int = Query(100, ge=1, le=1000),
                          cursor: str | None = None) -> dict[str, Any]:
        wanted, offset = _period(period, zone), decode_cursor(cursor, int, 0)
        async with engine().connect() as conn:
            cards = [scorecard_from_doc(d) for d in await store.period_docs(conn, wanted, team)]
        rows = rank(cards, None)
        teams = {c.collector_id: c.team for c in cards}
        page = rows[offset:offset + limit]
        more = offset + limit < len(rows)
        return {
            "period": wanted, "team": team,
            "items": [{"rank": r.rank, "collector_id": r.collector_id,
                       "team": teams[r.collector_id],
                       "composite_score": format(r.composite, "f"),
                       "payout": format(r.payout, "f")} for r in page],
            "next_cursor": encode_cursor(offset + limit) if more else None,
        }

    @router.get("/scheme", dependencies=[Depends(require("read"))])
    async def get_scheme() -> dict[str, Any]:
        return await scheme_view(engine(), zone)

    @router.put("/scheme", dependencies=[Depends(require("admin"))])
    async def replace_scheme(doc: dict[str, Any] = Body(...)) -> dict[str, Any]:
        return await put_scheme(runtime, engine(), doc, zone)

    @router.post("/periods/{period}/close", dependencies=[Depends(require("admin"))])
    async def close(period: str) -> dict[str, Any]:
        wanted = _period(period, zone)
        if period_bounds(wanted)[1] >= datetime.now(zone).date():
            raise Problem(422, f"period {wanted} has not ended",
                          errors=[{"field": "period", "message": "must be a month that has "
                                   "ended in the bank's time zone"}])
        async with engine().begin() as conn:
            # after every batch in flight (each read the closed months when it began): nothing
            # lands in a month once it is closed
            await store.lock_scorecards(conn)
            closed_at = await store.close_period(conn, wanted)
        return {"period": wanted, "closed": True, "closed_at": closed_at.isoformat()}

    return router
