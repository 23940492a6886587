"""Keeping the `scorecards` table current: fold new ledger entries in, or rebuild from the ledger.

Both paths end in one multi-row upsert and report the scorecards whose document changed, which
the caller publishes as `scorecard.updated` (once per collector and period per call).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy.ext.asyncio import AsyncConnection

from services.incentives import store
from services.incentives.domain import CreditEntry, SchemeBook, Scorecard, ScorecardTally
from services.incentives.tallies import (
    event_data,
    scorecard_doc,
    tally_from_json,
    tally_to_json,
)
from shared.context import BatchContext
from shared.topics import COLLECTOR_SCORES

# Decision: a scorecard's currency is that of its first money entry with a currency. Until one
# arrives (only promises, complaints, cases of unknown arrears) it is CNY provisionally: the
# first entry with a currency replaces it, so a USD collector whose month starts with a promise
# does not see every USD recovery set aside as foreign.
DEFAULT_CURRENCY: Final = "CNY"
NO_TEAM: Final = "unassigned"


@dataclass(frozen=True, slots=True)
class Updated:
    card: Scorecard
    team: str


def _currency(stored: Any, entries: Iterable[CreditEntry]) -> str:
    if stored is not None and stored.currency is not None and (
            stored.tally is None or stored.tally.get("currency_known", True)):
        return str(stored.currency)
    for entry in entries:
        if entry.currency is not None:
            return entry.currency
    if stored is not None and stored.currency is not None:
        return str(stored.currency)
    return DEFAULT_CURRENCY


def _grouped(entries: Iterable[CreditEntry]) -> dict[tuple[str, str], list[CreditEntry]]:
    groups: dict[tuple[str, str], list[CreditEntry]] = defaultdict(list)
    for entry in entries:
        groups[(entry.collector_id, entry.period)].append(entry)
    return groups


async def _write(conn: AsyncConnection, tallies: dict[tuple[str, str], ScorecardTally],
                 stored: dict[tuple[str, str], Any]) -> list[Updated]:
    rows = []
    updated: list[Updated] = []
    for key in sorted(tallies):
        tally, row = tallies[key], stored.get(key)
        roster = row.roster_team if row is not None else None
        card = tally.scorecard(tally.team or roster)
        doc = scorecard_doc(card)
        rows.append((card.collector_id, card.period, card.team, card.currency, doc,
                     tally_to_json(tally)))
        if row is None or row.doc != doc:
            updated.append(Updated(card, card.team or NO_TEAM))
    await store.upsert_scorecards(conn, rows)
    return updated


async def fold_in(conn: AsyncConnection, book: SchemeBook,
                  entries: Iterable[CreditEntry]) -> list[Updated]:
    """Add new (never counted) ledger entries to their stored tallies."""
    groups = _grouped(entries)
    stored = await store.stored_scorecards(conn, groups)
    tallies = {}
    for key, group in groups.items():
        row = stored.get(key)
        tally = tally_from_json(key[0], key[1], _currency(row, group), book,
                                row.tally if row is not None else None)
        for entry in group:
            tally.add(entry)
        tallies[key] = tally
    return await _write(conn, tallies, stored)


async def rebuild(conn: AsyncConnection, book: SchemeBook,
                  periods: Iterable[str]) -> list[Updated]:
    """Recompute every scorecard of `periods` from the ledger alone."""
    groups = _grouped(await store.ledger_entries(conn, periods))
    stored = await store.stored_scorecards(conn, groups)
    tallies = {}
    for key, group in groups.items():
        group.sort(key=lambda e: e.entry_id)
        tally = ScorecardTally(key[0], key[1], _currency(stored.get(key), group), book)
        for entry in group:
            tally.add(entry)
        tallies[key] = tally
    return await _write(conn, tallies, stored)


def publish(ctx: BatchContext, updated: Iterable[Updated]) -> None:
    for item in updated:
        ctx.emit(COLLECTOR_SCORES, "scorecard.updated", item.card.collector_id,
                 event_data(item.card, item.team))
