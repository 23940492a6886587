"""Scorecards: a pure fold of one collector's ledger entries for one period.

payout = (commission of each credit at the rate of the scheme in effect on its value date for its
stage + cure bonuses + promise-kept bonuses) x multiplier, floored at zero and rounded once, at the
end, with `shared.money.round_money` (half-even to the currency's minor unit).

Decisions where PRODUCT.md is silent:

- Bonuses use the scheme in effect on the cure date / promise due date. Complaint penalties and
  composite weights are period-level: the scheme in effect on the period's last day.
- Rates are reported raw (4 places, half-even): recovery rate may exceed 1 (recoveries on cases
  assigned in earlier months) or go below 0 (claw-backs of earlier months landing here). The
  composite clamps each component to [0, 1], so it always lies in [0, 1].
- Kept rate = kept / (kept + broken): promises still open do not count against the collector.
- Average days to cure is None when there is no cure. It averages the cures dated in the period
  that still stand: a cure and its reversal move the count and the bonus of the period they
  land in, but only a cure dated in the period (and its reversal) moves the average, so a
  reversal of a closed month's cure landing here cannot make it wrong or negative.
- A payout is never negative: claw-backs beyond the period's earnings are not carried forward.
- Entries in another currency than the scorecard's are ignored and counted in `foreign_entries`;
  entries without a currency (promises, complaints, credits when staging omits it) count.
- Summation is exact Decimal arithmetic (no rounding before the end), so the order of entries
  does not change any figure.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, Final

from services.incentives.domain.ledger import CreditEntry, EntryKind
from services.incentives.domain.periods import check_period, period_bounds, period_of
from services.incentives.domain.scheme import Scheme, SchemeBook
from shared.money import round_money

ZERO: Final = Decimal(0)
ONE: Final = Decimal(1)
_RATIO_PLACES: Final = Decimal("0.0001")
_DAYS_PLACES: Final = Decimal("0.01")
_MONEY_KINDS: Final = frozenset(
    {
        EntryKind.CREDIT,
        EntryKind.CLAWBACK,
        EntryKind.CASE_ASSIGNED,
        EntryKind.CURE,
        EntryKind.CURE_REVERSED,
    }
)


@dataclass(frozen=True, slots=True)
class Scorecard:
    collector_id: str
    period: str
    currency: str
    team: str | None
    cases_assigned: int
    arrears_assigned: Decimal
    recovered: Decimal
    recovery_rate: Decimal
    cures: int
    cure_rate: Decimal
    avg_days_to_cure: Decimal | None
    promises_made: int
    promises_kept: int
    promises_broken: int
    kept_rate: Decimal
    complaints_minor: int
    complaints_major: int
    multiplier: Decimal
    commission: Decimal
    bonuses: Decimal
    payout: Decimal
    composite: Decimal
    scheme_version: int
    foreign_entries: int = 0

    def as_doc(self) -> dict[str, Any]:
        """JSON-ready: decimals as strings (never floats), the rest as is."""
        return {
            k: (format(v, "f") if isinstance(v, Decimal) else v) for k, v in asdict(self).items()
        }


def _ratio(numerator: Decimal, denominator: Decimal) -> Decimal:
    return numerator / denominator if denominator > 0 else ZERO


def _clamp01(value: Decimal) -> Decimal:
    return min(ONE, max(ZERO, value))


def _places(value: Decimal, places: Decimal = _RATIO_PLACES) -> Decimal:
    return value.quantize(places, rounding=ROUND_HALF_EVEN)


class ScorecardTally:
    """Running totals of one collector's period; `add` one entry at a time, `scorecard()` any time.

    Add an entry only once: after the storage layer accepted it as new (a duplicate entry id is
    already counted). `compute_scorecard` does the same fold from scratch.
    """

    __slots__ = (
        "_book",
        "_day_schemes",
        "_team_key",
        "arrears",
        "broken",
        "cases",
        "collector_id",
        "commission",
        "cure_bonus",
        "cure_days",
        "cures",
        "currency",
        "currency_known",
        "foreign",
        "kept",
        "kept_bonus",
        "made",
        "major",
        "minor",
        "period",
        "recovered",
        "team",
        "timed_cures",
    )

    def __init__(
        self, collector_id: str, period: str, currency: str, schemes: Iterable[Scheme] | SchemeBook
    ) -> None:
        self.collector_id = collector_id
        self.period = check_period(period)
        self.currency = currency
        # False until an entry with a currency is counted: till then `currency` is a default.
        self.currency_known = False
        self._book = schemes if isinstance(schemes, SchemeBook) else SchemeBook(schemes)
        self._day_schemes: dict[date, Scheme] = {}
        self._team_key: tuple[date, str] | None = None
        self.team: str | None = None
        self.cases = self.cures = self.cure_days = self.timed_cures = 0
        self.made = self.kept = self.broken = self.minor = self.major = self.foreign = 0
        self.arrears = self.recovered = self.commission = ZERO
        self.cure_bonus = self.kept_bonus = ZERO

    def _scheme(self, day: date) -> Scheme:
        scheme = self._day_schemes.get(day)
        if scheme is None:
            scheme = self._day_schemes[day] = self._book.on(day)
        return scheme

    def add(self, entry: CreditEntry) -> None:
        kind = entry.kind
        if kind in _MONEY_KINDS and entry.currency is not None:
            if entry.currency != self.currency:
                self.foreign += 1
                return
            self.currency_known = True
        if kind is EntryKind.CREDIT or kind is EntryKind.CLAWBACK:
            self.recovered += entry.amount
            self.commission += entry.amount * self._scheme(entry.on).rate(entry.stage)
        elif kind is EntryKind.CASE_ASSIGNED:
            self.cases += 1
            self.arrears += entry.amount
            self._note_team(entry)
        elif kind is EntryKind.CURE or kind is EntryKind.CURE_REVERSED:
            sign = 1 if kind is EntryKind.CURE else -1
            self.cures += sign
            if period_of(entry.on) == self.period:
                self.timed_cures += sign
                self.cure_days += sign * (entry.days_to_cure or 0)
            self.cure_bonus += sign * self._scheme(entry.on).cure_bonus
        elif kind is EntryKind.PROMISE_MADE:
            self.made += 1
        elif kind is EntryKind.PROMISE_KEPT:
            self.kept += 1
            self.kept_bonus += self._scheme(entry.on).promise_kept_bonus
        elif kind is EntryKind.PROMISE_KEPT_REVERSED:
            self.kept -= 1
            self.kept_bonus -= self._scheme(entry.on).promise_kept_bonus
        elif kind is EntryKind.PROMISE_BROKEN:
            self.broken += 1
        elif kind is EntryKind.COMPLAINT:
            if entry.severity == "major":
                self.major += 1
            else:
                self.minor += 1

    def _note_team(self, entry: CreditEntry) -> None:
        # The team of the latest assignment in the period; ties by entry id, so order-free.
        key = (entry.on, entry.entry_id)
        if entry.team is not None and (self._team_key is None or key > self._team_key):
            self._team_key, self.team = key, entry.team

    def scorecard(self, team: str | None = None) -> Scorecard:
        closing = self._scheme(period_bounds(self.period)[1])
        penalties = self.minor * closing.penalty("minor") + self.major * closing.penalty("major")
        multiplier = max(ZERO, ONE - penalties)
        bonuses = self.cure_bonus + self.kept_bonus
        payout = max(ZERO, (self.commission + bonuses) * multiplier)
        recovery_rate = _ratio(self.recovered, self.arrears)
        cure_rate = _ratio(Decimal(self.cures), Decimal(self.cases))
        kept_rate = _ratio(Decimal(self.kept), Decimal(self.kept + self.broken))
        weights = closing.weights
        composite = (
            weights["recovery_rate"] * _clamp01(recovery_rate)
            + weights["cure_rate"] * _clamp01(cure_rate)
            + weights["kept_rate"] * _clamp01(kept_rate)
            + weights["quality"] * multiplier
        )
        avg_days = (
            _places(Decimal(self.cure_days) / self.timed_cures, _DAYS_PLACES)
            if self.timed_cures > 0
            else None
        )
        return Scorecard(
            collector_id=self.collector_id,
            period=self.period,
            currency=self.currency,
            team=team if team is not None else self.team,
            cases_assigned=self.cases,
            arrears_assigned=round_money(self.arrears, self.currency),
            recovered=round_money(self.recovered, self.currency),
            recovery_rate=_places(recovery_rate),
            cures=self.cures,
            cure_rate=_places(cure_rate),
            avg_days_to_cure=avg_days,
            promises_made=self.made,
            promises_kept=self.kept,
            promises_broken=self.broken,
            kept_rate=_places(kept_rate),
            complaints_minor=self.minor,
            complaints_major=self.major,
            multiplier=_places(multiplier),
            commission=round_money(self.commission, self.currency),
            bonuses=round_money(bonuses, self.currency),
            payout=round_money(payout, self.currency),
            composite=_places(_clamp01(composite)),
            scheme_version=closing.version,
            foreign_entries=self.foreign,
        )


def compute_scorecard(
    collector_id: str,
    period: str,
    entries: Iterable[CreditEntry],
    scheme_versions: Iterable[Scheme] | SchemeBook,
    currency: str,
    *,
    team: str | None = None,
) -> Scorecard:
    """The scorecard of `collector_id` for `period` from the ledger (entries of other collectors
    and periods are skipped; a repeated entry id counts once). `commission` and `bonuses` are
    shown rounded; the payout is computed from the unrounded figures and rounded once.
    """
    tally = ScorecardTally(collector_id, period, currency, scheme_versions)
    seen: set[str] = set()
    for entry in entries:
        if entry.collector_id != collector_id or entry.period != period:
            continue
        if entry.entry_id in seen:
            continue
        seen.add(entry.entry_id)
        tally.add(entry)
    return tally.scorecard(team)
