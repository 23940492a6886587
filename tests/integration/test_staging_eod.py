"""End of day on PostgreSQL: the shortcut (set-based writes for plain loans) gives exactly what
the general path gives, loan by loan, and the portfolio kept as moves equals a count of the
loans. Two schemas get the same generated book; one ages it with the shortcut, one without."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import orjson
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.staging import eod as eod_module
from services.staging import portfolio, store
from services.staging.domain import handlers
from services.staging.domain.assignment import CollectorLoad, resolve_assignment
from services.staging.domain.errors import Rejected
from services.staging.domain.handlers import Outcome
from services.staging.domain.loan import LoanState
from services.staging.domain.policy import DEFAULT_POLICY_DOCUMENT, PolicySet, parse_policy
from services.staging.eod import EndOfDay
from services.staging.service import DEFINITION
from shared.db import make_engine
from shared.migrations import migrate
from shared.topics import TopicNames
from tests.conftest import DB_URL

pytestmark = pytest.mark.integration

ON = date(2026, 3, 2)  # a Monday: loans last aged on Friday cross thresholds on the weekend
D0 = date(2025, 10, 1)
ROSTER = [  # collector, team, capacity, active
    ("n1", "negotiation", 5, True), ("n2", "negotiation", 3, True),
    ("i1", "intensive", 4, True), ("i2", "intensive", 4, True), ("i0", "intensive", 0, True),
    ("g1", "legal", 10, True), ("r1", "recovery", 2, True),
    ("rm-off", "negotiation", 5, False), ("rm1", "negotiation", 8, True),
]


def policy_set() -> PolicySet:
    def stage(name: str, low: int | None, high: int | None, owner: str,
              team: str | None = None, sticky: bool = False) -> dict[str, Any]:
        return {"name": name, "dpd_min": low, "dpd_max": high, "owner": owner, "team": team,
                "sticky": sticky}

    doc = dict(DEFAULT_POLICY_DOCUMENT, version=2, products={
        "mortgage": {"tolerance": "0", "promise_grace_days": 2, "stages": [
            stage("current", 0, 0, "none"), stage("early", 1, 15, "automated"),
            stage("negotiation", 16, 45, "relationship_manager"),  # no fallback team
            stage("intensive", 46, 75, "team", "intensive"),
            stage("legal", 76, None, "team", "legal", sticky=True),
            stage("special", None, None, "team", "legal")]},
        "business_loan": {"stages": [
            stage("current", 0, 2, "none"), stage("early", 3, 10, "relationship_manager",
                                                  "negotiation"),
            stage("intensive", 11, 20, "team", "intensive"),
            stage("legal", 21, 30, "team", "legal", sticky=True),
            stage("write_off", 31, None, "team", "recovery", sticky=True),
            stage("special", None, None, "team", "legal")]}})
    return parse_policy(doc)


def resolve(outcome: Outcome, policies: PolicySet) -> LoanState:
    """Owners while the book is built: a fixed roster, no load counting (it is a fixture)."""
    state = outcome.state
    if outcome.assignment is None:
        return state
    loads = [CollectorLoad(c, team, cap, active, 0) for c, team, cap, active in ROSTER]
    collector_id, team = resolve_assignment(outcome.assignment, loads)
    return handlers.apply_assignment(state, collector_id, team,
                                     policies.for_product(state.product)).state


def one_loan(rng: random.Random, n: int, current: PolicySet, old: PolicySet) -> LoanState:
    """A loan with a random past: missed instalments near the stage thresholds, sometimes a
    payment, a reversal, a flag, a promise; last aged a few days before ON."""
    policies = old if rng.random() < 0.1 else current
    product = rng.choice(["credit_card", "consumer_loan", "mortgage", "business_loan"])
    policy = policies.for_product(product)
    state = handlers.open_loan({
        "loan_id": f"L{n:05d}", "borrower_id": f"B{n}", "product": product,
        "currency": "CNY", "principal": "9000.00", "opened_on": D0.isoformat(),
        "relationship_manager_id": rng.choice([None, "rm1", "rm-off", "rm-out", ""])},
        D0, policy).state
    seen = ON - timedelta(days=rng.choice([1, 1, 1, 3, 3, 4, 9]))
    crossing = rng.choice([1, 3, 11, 16, 21, 31, 46, 61, 76, 91, 181])
    due = ON - timedelta(days=crossing + rng.choice([-2, -1, 0, 0, 0, 1, 2]))
    amount = rng.choice(["500.00", "12.5", "8.00", "0.75", "1200"])
    today = min(due, seen)
    steps: list[tuple[str, Any]] = [("miss", (1, due, amount))]
    if rng.random() < 0.3:
        steps.append(("miss", (2, due + timedelta(days=rng.choice([5, 30])), "80.00")))
    if rng.random() < 0.2:
        steps.append(("pay", rng.choice(["100.00", "500.00", "1300"])))
    if rng.random() < 0.1:
        steps.append(("flag", rng.choice(["hardship", "dispute", "cease_contact", "fraud"])))
    if rng.random() < 0.1:
        steps.append(("promise", rng.choice([-3, 0, 2])))
    for kind, arg in steps:
        today = max(today, min(seen, (arg[1] if kind == "miss" else today)))
        data: dict[str, Any] = {"loan_id": state.loan_id}
        try:
            if kind == "miss":
                data.update(instalment_no=arg[0], due_date=arg[1].isoformat(),
                            amount_due=arg[2], amount_unpaid=arg[2])
                outcome = handlers.apply_payment_missed(state, data, today, policy)
            elif kind == "pay":
                data.update(payment_id=f"P{n}", amount=arg, currency="CNY",
                            value_date=today.isoformat())
                outcome = handlers.apply_repayment_received(state, data, today, policy)
            elif kind == "flag":
                data.update(flag=arg, note="n", until=None)
                outcome = handlers.apply_flag_raised(state, data, today, policy)
            else:
                data.update(promise_id=f"R{n}", collector_id="n1", amount="50.00",
                            due_on=(seen + timedelta(days=arg)).isoformat())
                outcome = handlers.apply_promise_made(state, data, today, policy)
        except Rejected:
            continue
        state = resolve(outcome, policies)
    return resolve(handlers.age_to(state, seen, policy), policies)


def book(seed: int, size: int) -> list[LoanState]:
    rng = random.Random(seed)
    current = policy_set()
    old = parse_policy(DEFAULT_POLICY_DOCUMENT)
    return [one_loan(rng, n, current, old) for n in range(size)]


async def prepare(engine: AsyncEngine, loans: list[LoanState]) -> None:
    async with engine.begin() as conn:
        await store.add_policy(conn, policy_set().to_dict())
        for cid, team, capacity, active in ROSTER:
            await store.upsert_collector(conn, store.Collector(cid, cid, team, capacity, active,
                                                               0))
        await store.save_loans(conn, loans)
        await portfolio.add_moves(conn, portfolio.moves_of((None, s) for s in loans))
        await store.set_calendar(conn, ON, ON)


async def contents(engine: AsyncEngine) -> dict[str, Any]:
    async with engine.connect() as conn:
        async def rows(sql: str) -> list[tuple[Any, ...]]:
            return [tuple(r) for r in await conn.execute(text(sql))]

        events: dict[str, list[tuple[str, Any]]] = {}
        for key, value in await rows("SELECT key, value FROM outbox ORDER BY id"):
            event = orjson.loads(value)
            events.setdefault(key.decode(), []).append((event["type"], event["data"]))
        loans = await rows(
            "SELECT loan_id, product, status, stage, dpd, arrears::text, currency, "
            "collector_id, team, next_transition_date, business_date, oldest_due_date, "
            "state::text FROM loans ORDER BY loan_id")
        return {
            "loans": [(*r[:-1], orjson.loads(r[-1])) for r in loans],
            "history": await rows(
                "SELECT loan_id, product, from_stage, to_stage, dpd, reason, business_date "
                "FROM stage_history ORDER BY loan_id, id"),
            "events": events,
            "roster": await rows("SELECT collector_id, open_cases FROM collectors "
                                 "ORDER BY collector_id"),
            "snapshot": await rows("SELECT product, stage, loans, arrears FROM "
                                   "portfolio_snapshots ORDER BY product, stage"),
            "runs": await rows("SELECT business_date, aged FROM eod_runs"),
            "counted": await rows("SELECT product, stage, count(*), sum(arrears) FROM loans "
                                  "WHERE status = 'open' GROUP BY 1, 2 ORDER BY 1, 2"),
            "moves": await rows("SELECT product, stage, sum(loans), sum(arrears) FROM "
                                "portfolio_moves GROUP BY 1, 2 HAVING sum(loans) > 0 "
                                "ORDER BY 1, 2"),
        }


Schema = tuple[AsyncEngine, str]


@pytest.fixture
async def two_schemas(uid: str) -> AsyncIterator[tuple[Schema, Schema]]:
    schemas: list[Schema] = []
    try:
        for name in (f"t_{uid}_short", f"t_{uid}_full"):
            await migrate(DB_URL, name, DEFINITION.migrations)  # type: ignore[arg-type]
            schemas.append((make_engine(DB_URL, name, pool_size=4), name))
        yield schemas[0], schemas[1]
    finally:
        for engine, name in schemas:
            async with engine.begin() as conn:
                await conn.execute(text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
            await engine.dispose()


def worker(schema: Schema, uid: str, **options: Any) -> EndOfDay:
    engine, name = schema
    return EndOfDay(engine, TopicNames(f"t{uid}"), "urn:test:staging", name, 4, **options)


async def test_the_shortcut_gives_what_the_general_path_gives(two_schemas, uid, monkeypatch):
    short, full = two_schemas
    loans = book(seed=7, size=1500)
    taken: list[str] = []
    plain_step = eod_module.plain_step

    def counting(loan, on, policy):  # type: ignore[no-untyped-def]
        step = plain_step(loan, on, policy)
        if step is not None:
            taken.append(loan.loan_id)
        return step

    monkeypatch.setattr(eod_module, "plain_step", counting)
    results = []
    for schema, shortcut in ((short, True), (full, False)):
        await prepare(schema[0], loans)
        assert await worker(schema, uid, chunk=10_000, shortcut=shortcut).run_pending() > 0
        results.append(await contents(schema[0]))
    with_shortcut, general = results
    due = sum(1 for s in loans if s.next_transition_date and s.next_transition_date <= ON)
    assert len(taken) > due // 3, (len(taken), due)  # the common case takes the shortcut
    for name in ("loans", "history", "roster", "snapshot", "runs", "counted", "moves"):
        assert with_shortcut[name] == general[name], name
    assert with_shortcut["events"] == general["events"]
    for result in results:
        assert result["moves"] == result["counted"]
        assert [r[:3] for r in result["snapshot"]] == [r[:3] for r in result["counted"]]


async def test_workers_sharing_small_chunks_age_every_due_loan_once(two_schemas, uid):
    schema, _ = two_schemas
    engine = schema[0]
    loans = book(seed=11, size=600)
    await prepare(engine, loans)
    workers = [worker(schema, uid, chunk=23) for _ in range(3)]
    aged = await asyncio.gather(*[w.run_pending() for w in workers])
    result = await contents(engine)
    due = {s.loan_id for s in loans if s.next_transition_date and s.next_transition_date <= ON}
    assert sum(aged) == len(due)
    assert {r[0] for r in result["loans"] if r[10] == ON} == due
    assert result["moves"] == result["counted"]
    changed = sum(len(v) for k, v in result["events"].items())
    assert changed >= len(result["history"])
    assert all(Decimal(r[3]) >= 0 for r in result["counted"])


async def test_saved_loans_read_back_exactly(two_schemas):
    (engine, _), _ = two_schemas
    loans = book(seed=3, size=300)
    async with engine.begin() as conn:
        await store.save_loans(conn, loans)
        await store.save_loans(conn, loans)  # the update path
        back = await store.load_loans(conn, [s.loan_id for s in loans])
        columns = [tuple(r) for r in await conn.execute(text(
            "SELECT loan_id, product, status, stage, dpd, arrears::text, currency, "
            "collector_id, team, next_transition_date, business_date, oldest_due_date "
            "FROM loans ORDER BY loan_id"))]
    assert back == {s.loan_id: s for s in loans}
    assert columns == [(s.loan_id, s.product, s.status, s.stage, s.dpd, str(s.arrears),
                        s.currency, s.owner.collector_id, s.owner.team, s.next_transition_date,
                        s.business_date, s.oldest_unpaid_due_date) for s in loans]
