"""REST API of staging: loans, the portfolio, the policy and the collector roster.

Decisions:

- ``GET /v1/loans/{id}`` shows the loan aged to the current business date (display only): end
  of day skips loans that time alone does not change, but their DPD still moves. The list
  shows the stored DPD with the date it is as of (``dpd_as_of``).
- ``PUT /v1/policy`` stores the next version and marks every open loan for re-evaluation
  (``next_transition_date`` no later than its business date + 1): the next end of day, or the
  loan's next event, applies the new policy to it.
- ``PUT /v1/collectors/{id}`` with ``active: false`` (or another team) reassigns the
  collector's open cases in the same transaction; a relationship manager who only changes team
  keeps their customers. Each case is first aged to the business date (as any event would),
  so the new owner starts today, not at the date end of day last touched the loan. A case
  assigned to them by a batch running at the same moment can escape the sweep; repeating the
  PUT sweeps it.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from fastapi import APIRouter, Body, Depends, Query
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.staging import store
from services.staging.casework import Casework
from services.staging.domain.handlers import age_to, request_reassignment
from services.staging.domain.loan import LoanState
from services.staging.domain.policy import TEAMS, validate_policy
from services.staging.portfolio import history, portfolio
from shared import outbox
from shared.api import require
from shared.context import BatchContext
from shared.paging import decode_cursor, encode_cursor
from shared.problems import Problem
from shared.service import Runtime

READ, ADMIN = [Depends(require("read"))], [Depends(require("admin"))]


class CollectorIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    team: str
    capacity: int = Field(ge=0, le=100_000)
    active: bool = True


def loan_view(s: LoanState) -> dict[str, Any]:
    oldest = s.oldest_unpaid_due_date
    return {
        "loan_id": s.loan_id, "borrower_id": s.borrower_id, "product": s.product,
        "currency": s.currency, "status": s.status, "stage": s.stage, "dpd": s.dpd,
        "arrears": str(s.arrears), "oldest_due_date": oldest.isoformat() if oldest else None,
        "business_date": s.business_date.isoformat(),
        "flags": s.flags.to_dict()["active"],
        "owner": {"collector_id": s.owner.collector_id, "team": s.owner.team},
        "relationship_manager_id": s.relationship_manager_id,
        "promises": [p.to_dict() for p in s.promises],
        "open_promises": [p.to_dict() for p in s.open_promises],
        "history": [h.to_dict() for h in s.history],
        "next_transition_date": (s.next_transition_date.isoformat()
                                 if s.next_transition_date else None),
    }


def _amount(value: Decimal) -> str:
    """A stored NUMERIC(20,4) as the events show money: two decimals unless it needs more."""
    cents = value.quantize(Decimal("0.01"))
    return format(cents if cents == value else value.normalize(), "f")


async def list_loans(engine: AsyncEngine, stage: str | None, collector_id: str | None,
                     limit: int, cursor: str | None) -> dict[str, Any]:
    after = decode_cursor(cursor, str, "")
    async with engine.connect() as conn:
        rows = (await conn.execute(text("""
            SELECT loan_id, product, status, stage, dpd, arrears, currency, collector_id, team,
                   business_date
            FROM loans
            WHERE loan_id > :after
              AND (CAST(:stage AS text) IS NULL OR stage = :stage)
              AND (CAST(:collector AS text) IS NULL OR collector_id = :collector)
            ORDER BY loan_id LIMIT :n"""), {"after": after, "stage": stage,
                                            "collector": collector_id, "n": limit + 1})).all()
    page = rows[:limit]
    items = [{"loan_id": r.loan_id, "product": r.product, "status": r.status,
              "stage": r.stage, "dpd": r.dpd, "arrears": _amount(r.arrears),
              "currency": r.currency, "collector_id": r.collector_id, "team": r.team,
              "dpd_as_of": r.business_date.isoformat()}
             for r in page]
    more = len(rows) > limit
    return {"items": items, "next_cursor": encode_cursor(page[-1].loan_id) if more else None}


async def put_policy(engine: AsyncEngine, doc: dict[str, Any]) -> dict[str, Any]:
    doc = dict(doc)
    async with engine.begin() as conn:
        await conn.execute(text("LOCK TABLE policy_versions IN EXCLUSIVE MODE"))
        following = max(await store.policy_versions(conn), default=0) + 1
        doc.setdefault("version", following)
        errors = validate_policy(doc)
        if not errors and doc["version"] != following:
            errors = [{"field": "version", "message": f"must be {following}, the next version"}]
        if errors:
            fields = ", ".join(dict.fromkeys(e["field"] for e in errors))
            raise Problem(422, f"invalid policy: {fields}", errors=errors)
        await store.add_policy(conn, doc)
        marked = await store.mark_all_for_review(conn)
    return {"policy": doc, "loans_to_review": marked}


async def put_collector(runtime: Runtime, engine: AsyncEngine, collector_id: str,
                        body: CollectorIn) -> dict[str, Any]:
    if body.team not in TEAMS:
        raise Problem(422, "unknown team", errors=[
            {"field": "team", "message": f"must be one of {', '.join(TEAMS)}"}])
    async with engine.begin() as conn:
        # lock order: loans, then the roster (as the consumer and end of day do)
        loans = await store.loans_of_collector(conn, collector_id)
        ctx = BatchContext(conn, runtime.topics, runtime.source)
        today = (await store.calendar(conn)).business_date  # read, not locked
        work = Casework(ctx, await store.load_policy(conn), today,
                        {s.loan_id: s for s in loans})
        roster = await work.lock_roster()
        old = roster.get(collector_id)
        new = store.Collector(collector_id, body.name, body.team, body.capacity, body.active,
                              old.open_cases if old else 0)
        await store.upsert_collector(conn, new)
        roster[collector_id] = new
        leaving = old is not None and (not new.active or new.team != old.team)
        for state in loans if leaving else ():
            # First aged to the business date, as every event does: end of day skips a loan
            # nothing is due on, and a reassignment dated at its stale date would give the
            # new owner the days the leaving one owned it (their credits, their history).
            policy = work.policy(state)
            state = await work.record(age_to(state, work.date_for(state), policy))
            request = request_reassignment(state, policy)
            if state.owner.collector_id != collector_id or request is None or (
                    request.owner_kind == "relationship_manager" and new.active):
                continue  # moved by the aging, or a relationship manager moving team keeps
                # their own customers
            await work.assign(state, request)
        moved = sum(work.loans[s.loan_id].owner.collector_id != collector_id for s in loans)
        await work.flush()
        s = runtime.settings
        await outbox.write(conn, ctx.outbox, s.relay_shards, s.schema_name)
        stored = await store.read_collector(conn, collector_id)
    assert stored is not None
    return {**stored.view(), "reassigned": moved}


def build_router(runtime: Runtime) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["staging"])

    def engine() -> AsyncEngine:
        assert runtime.engine is not None
        return runtime.engine

    @router.get("/loans/{loan_id}", dependencies=READ)
    async def get_loan(loan_id: str) -> dict[str, Any]:
        async with engine().connect() as conn:
            state = await store.read_loan(conn, loan_id)
            if state is None:
                raise Problem(404, f"no loan {loan_id}")
            cal = await store.calendar(conn)
            if cal.business_date is not None and cal.business_date > state.business_date:
                # End of day skips loans time alone does not change; their DPD still moves.
                # Aged here for display only (nothing is stored or published).
                policy = (await store.load_policy(conn)).for_product(state.product)
                state = age_to(state, cal.business_date, policy).state
        return loan_view(state)

    @router.get("/loans", dependencies=READ)
    async def get_loans(stage: str | None = None, collector_id: str | None = None,
                        limit: int = Query(100, ge=1, le=1000),
                        cursor: str | None = None) -> dict[str, Any]:
        return await list_loans(engine(), stage, collector_id, limit, cursor)

    @router.get("/portfolio/history", dependencies=READ)
    async def get_portfolio_history(limit: int = Query(30, ge=1, le=366)) -> dict[str, Any]:
        """Loans and arrears per stage at each of the last ``limit`` closed business days."""
        async with engine().connect() as conn:
            return {"items": await history(conn, limit)}

    @router.get("/portfolio", dependencies=READ)
    async def get_portfolio() -> dict[str, Any]:
        async with engine().connect() as conn:
            view = await portfolio(conn)
            cal = await store.calendar(conn)
        view["business_date"] = cal.business_date.isoformat() if cal.business_date else None
        return view

    @router.get("/policy", dependencies=READ)
    async def get_policy() -> dict[str, Any]:
        async with engine().connect() as conn:
            policy = await store.load_policy(conn)
            versions = await store.policy_versions(conn)
        return {"policy": policy.to_dict(), "versions": versions}

    @router.put("/policy", dependencies=ADMIN)
    async def replace_policy(doc: dict[str, Any] = Body(...)) -> dict[str, Any]:
        return await put_policy(engine(), doc)

    @router.get("/collectors/{collector_id}", dependencies=READ)
    async def get_collector(collector_id: str) -> dict[str, Any]:
        async with engine().connect() as conn:
            found = await store.read_collector(conn, collector_id)
        if found is None:
            raise Problem(404, f"no collector {collector_id}")
        return found.view()

    @router.put("/collectors/{collector_id}", dependencies=ADMIN)
    async def replace_collector(collector_id: str, body: CollectorIn) -> dict[str, Any]:
        return await put_collector(runtime, engine(), collector_id, body)

    @router.get("/collectors/{collector_id}/cases", dependencies=READ)
    async def collector_cases(collector_id: str, limit: int = Query(100, ge=1, le=1000),
                              cursor: str | None = None) -> dict[str, Any]:
        return await list_loans(engine(), None, collector_id, limit, cursor)

    return router
