"""Scorecards as stored: the running tally (JSON) and the scorecard document, both ways.

The `scorecards` table keeps each collector-period's ScorecardTally totals next to its document,
so a batch adds only its new ledger entries instead of re-reading the period's ledger. The totals
are exact Decimals (as strings), so a tally restored and extended equals a fold from scratch.
"""

from __future__ import annotations

from dataclasses import fields
from datetime import date
from decimal import Decimal
from typing import Any, Final

from services.incentives.domain import SchemeBook, Scorecard, ScorecardTally

_INTS: Final = ("cases", "cures", "cure_days", "made", "kept", "broken", "minor", "major",
                "foreign")
_DECIMALS: Final = ("arrears", "recovered", "commission", "cure_bonus", "kept_bonus")
_TEAM_KEY: Final = "_team_key"  # the tally's own tie-break for the team of the period


def tally_to_json(tally: ScorecardTally) -> dict[str, Any]:
    out: dict[str, Any] = {name: getattr(tally, name) for name in _INTS}
    out.update({name: format(getattr(tally, name), "f") for name in _DECIMALS})
    out["team"] = tally.team
    out["timed_cures"] = tally.timed_cures
    out["currency_known"] = tally.currency_known
    team_key = getattr(tally, _TEAM_KEY)
    out["team_key"] = [team_key[0].isoformat(), team_key[1]] if team_key else None
    return out


def tally_from_json(collector_id: str, period: str, currency: str, book: SchemeBook,
                    stored: dict[str, Any] | None) -> ScorecardTally:
    """A tally with the stored totals (an empty one when `stored` is None)."""
    tally = ScorecardTally(collector_id, period, currency, book)
    if not stored:
        return tally
    for name in _INTS:
        setattr(tally, name, int(stored[name]))
    # Tallies stored before `timed_cures` existed averaged over every cure they counted.
    tally.timed_cures = int(stored.get("timed_cures", tally.cures))
    for name in _DECIMALS:
        setattr(tally, name, Decimal(stored[name]))
    tally.team = stored.get("team")
    # Tallies stored before the flag existed keep the currency they were stored with.
    tally.currency_known = bool(stored.get("currency_known", True))
    team_key = stored.get("team_key")
    if team_key:
        setattr(tally, _TEAM_KEY, (date.fromisoformat(team_key[0]), team_key[1]))
    return tally


_DECIMAL_FIELDS: Final = frozenset(
    f.name for f in fields(Scorecard) if "Decimal" in str(f.type)
)


_FIELDS: Final = tuple(f.name for f in fields(Scorecard))


def scorecard_doc(card: Scorecard) -> dict[str, Any]:
    """Same document as `Scorecard.as_doc`, without `dataclasses.asdict`'s deep copy (it is the
    hot part of writing a batch's scorecards)."""
    out: dict[str, Any] = {}
    for name in _FIELDS:
        value = getattr(card, name)
        out[name] = format(value, "f") if isinstance(value, Decimal) else value
    return out


def scorecard_from_doc(doc: dict[str, Any]) -> Scorecard:
    """The Scorecard a stored document (`Scorecard.as_doc`) describes."""
    values: dict[str, Any] = {
        k: (Decimal(v) if k in _DECIMAL_FIELDS and v is not None else v) for k, v in doc.items()
    }
    return Scorecard(**values)


def event_data(card: Scorecard, team: str) -> dict[str, Any]:
    """The `scorecard.updated` data (shared.events.outbound.ScorecardUpdated).

    The event's contract allows no negative figure: a period whose claw-backs exceed its
    recoveries publishes `recovered` and `recovery_rate` as 0, one whose reversed cures or kept
    promises (landed from a closed month) exceed its own publishes 0 (the API shows the signed
    value).
    """
    zero = Decimal(0)
    return {
        "collector_id": card.collector_id,
        "period": card.period,
        "team": team,
        "currency": card.currency,
        "cases_assigned": card.cases_assigned,
        "arrears_assigned": max(zero, card.arrears_assigned),
        "recovered": max(zero, card.recovered),
        "recovery_rate": max(zero, card.recovery_rate),
        "cures": max(0, card.cures),
        "cure_rate": max(zero, card.cure_rate),
        "avg_days_to_cure": (max(zero, card.avg_days_to_cure)
                             if card.avg_days_to_cure is not None else None),
        "promises_made": card.promises_made,
        "promises_kept": max(0, card.promises_kept),
        "kept_rate": card.kept_rate,
        "complaints_minor": card.complaints_minor,
        "complaints_major": card.complaints_major,
        "multiplier": card.multiplier,
        "payout": card.payout,
        "composite_score": card.composite,
    }
