"""The end-of-demo summary a collections manager wants, from the services' own APIs.

- loans and arrears per stage (and per product): staging ``GET /v1/portfolio``;
- the roll-rate matrix between the last two closed business dates: same answer;
- contacts by channel and status, deferred/suppressed with reasons: the notifier has no
  aggregate endpoint and services never share tables, so the summary reads the
  ``contact-outcomes`` topic from the beginning with a group-less consumer (nothing committed)
  and counts the decisions of this run's loans (``loan_prefix``), each event id once;
- the leaderboard of every team for the last period: incentives ``GET /v1/leaderboard``.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx
import orjson
from rich.console import Console, Group
from rich.table import Table

from shared.demo.generator import TEAMS

__all__ = ["STAGES", "Summary", "collect", "count_contacts", "render"]

STAGES = ("current", "early", "negotiation", "intensive", "legal", "write_off", "special")


@dataclass
class Summary:
    business_date: str | None
    portfolio: dict[str, Any]
    contacts: Counter[tuple[str, str, str]]
    period: str | None
    leaderboards: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    urls: dict[str, str] = field(default_factory=dict)


async def count_contacts(bootstrap: str, topic: str, loan_prefix: str,
                         timeout: float = 60.0) -> Counter[tuple[str, str, str]]:
    """(channel, status, reason) -> decisions, for loans whose id starts with ``loan_prefix``,
    read from the start of ``topic`` up to its end offsets at the time of the call."""
    from aiokafka import AIOKafkaConsumer

    counts: Counter[tuple[str, str, str]] = Counter()
    seen: set[str] = set()
    kafka = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                             enable_auto_commit=False, auto_offset_reset="earliest",
                             client_id="qingshou-demo-summary")
    try:
        await kafka.start()
        if topic not in await kafka.topics():
            return counts
        kafka.subscribe([topic])  # no group: every partition, nothing committed
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not kafka.assignment():
            if loop.time() > deadline:
                return counts
            await asyncio.sleep(0.05)
        tps = list(kafka.assignment())
        await kafka.seek_to_beginning(*tps)
        ends = await kafka.end_offsets(tps)
        pending = set(tps)
        while loop.time() < deadline:
            for tp in list(pending):
                if await kafka.position(tp) >= ends[tp]:
                    pending.discard(tp)
            if not pending:
                break
            batch = await kafka.getmany(*pending, timeout_ms=500, max_records=10_000)
            for tp, records in batch.items():
                for m in records:
                    if m.offset >= ends[tp]:
                        break
                    _count(m.value, loan_prefix, seen, counts)
    finally:
        await kafka.stop()
    return counts


def _count(value: bytes | None, loan_prefix: str, seen: set[str],
           counts: Counter[tuple[str, str, str]]) -> None:
    try:
        event = orjson.loads(value or b"")
        data = event["data"]
        if not str(data.get("loan_id", "")).startswith(loan_prefix):
            return
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
        return
    key = f"{event.get('source')}|{event.get('id')}"
    if key not in seen:
        seen.add(key)
        counts[(str(data.get("channel")), str(data.get("status")),
                str(data.get("reason") or ""))] += 1


async def collect(client: httpx.AsyncClient, urls: dict[str, str], bootstrap: str,
                  contacts_topic: str, loan_prefix: str) -> Summary:
    r = await client.get(f"{urls['staging']}/v1/portfolio")
    r.raise_for_status()
    portfolio = r.json()
    business_date = portfolio.get("business_date")
    period = business_date[:7] if business_date else None
    contacts = await count_contacts(bootstrap, contacts_topic, loan_prefix)
    boards: dict[str, list[dict[str, Any]]] = {}
    for team in TEAMS:
        r = await client.get(f"{urls['incentives']}/v1/leaderboard",
                             params={"period": period, "team": team, "limit": 10}
                             if period else {"team": team, "limit": 10})
        boards[team] = r.json().get("items", []) if r.status_code == 200 else []
    return Summary(business_date, portfolio, contacts, period, boards, urls)


def _stage_table(portfolio: dict[str, Any]) -> Table:
    products: dict[str, dict[str, dict[str, Any]]] = portfolio.get("products") or {}
    table = Table("stage", "loans", "arrears", *(p for p in sorted(products)),
                  title="Open loans and arrears per stage (loans per product)")
    for stage in STAGES:
        n, arrears = 0, Decimal(0)
        per: list[str] = []
        for product in sorted(products):
            cell = products[product].get(stage)
            per.append(str(cell["count"]) if cell else "")
            if cell:
                n += int(cell["count"])
                arrears += Decimal(cell["arrears"])
        if n:
            table.add_row(stage, str(n), f"{arrears:,.2f}", *per)
    table.caption = "arrears summed across currencies (CNY, HKD, SGD, GBP, USD)"
    return table


def _roll_table(portfolio: dict[str, Any]) -> Table | str:
    roll = portfolio.get("roll_rates")
    if not roll:
        return "Roll rates: need two completed ends of day."
    matrix: dict[str, dict[str, str]] = roll["matrix"]
    tos = [s for s in STAGES if any(s in row for row in matrix.values())]
    tos += sorted({t for row in matrix.values() for t in row} - set(tos))
    table = Table("from \\ to", "base", *tos,
                  title=f"Roll rates {roll['from_business_date']} → {roll['to_business_date']}")
    for stage in [s for s in STAGES if s in matrix] + sorted(set(matrix) - set(STAGES)):
        row = matrix[stage]
        table.add_row(stage, str(roll["base_counts"].get(stage, 0)),
                      *(f"{Decimal(row[t]) * 100:.1f}%" if t in row else "" for t in tos))
    return table


def _contacts_table(counts: Counter[tuple[str, str, str]]) -> Table:
    by: Counter[tuple[str, str]] = Counter()
    reasons: dict[tuple[str, str], Counter[str]] = {}
    for (channel, status, reason), n in counts.items():
        by[(channel, status)] += n
        if status in ("deferred", "suppressed", "failed"):
            reasons.setdefault((channel, status), Counter())[reason or "?"] += n
    table = Table("channel", "status", "decisions", "reasons",
                  title=f"Contacts by channel and status ({sum(counts.values())} decisions)")
    for (channel, status), n in sorted(by.items()):
        why = ", ".join(f"{r} {k}" for r, k in
                        reasons.get((channel, status), Counter()).most_common())
        table.add_row(channel, status, str(n), why)
    return table


def _leaderboard_tables(s: Summary) -> list[Table]:
    out = []
    for team, rows in s.leaderboards.items():
        table = Table("rank", "collector", "composite", "payout",
                      title=f"Leaderboard {s.period or ''} — {team}")
        for r in rows:
            table.add_row(str(r["rank"]), r["collector_id"], r["composite_score"], r["payout"])
        if not rows:
            table.add_row("", "(no scorecards yet)", "", "")
        out.append(table)
    return out


def render(s: Summary, console: Console) -> None:
    console.rule(f"Qingshou demo summary — business date {s.business_date}")
    console.print(Group(_stage_table(s.portfolio), _roll_table(s.portfolio),
                        _contacts_table(s.contacts), *_leaderboard_tables(s)))
    urls = Table("service", "url", title="The stack stays up (stop it with `make down`)")
    for name, url in s.urls.items():
        urls.add_row(name, f"{url}  (docs: {url}/docs)" if name != "sandbox" else url)
    console.print(urls)
