"""A seeded, pure generator of a synthetic overdue-loan portfolio, as core banking would publish it.

``generate(DemoConfig(...))`` yields one list of structured-mode CloudEvent dicts per business
day: the day's loan events, then ``business_day.closed`` (topic ``calendar``, subject
``calendar``). Same configuration, same events, byte for byte: no clock, no UUIDs, one
``random.Random(seed)`` consumed in a fixed order.

Decisions:

- Business days are the weekdays from ``start`` (no holiday calendar). Every event's ``time`` is
  inside its business day (08:00-19:59 Asia/Shanghai, +08:00), the close at 20:00.
- Day 0 opens every loan (``borrower.updated``, ``loan.opened``) and loads a back book: about
  one loan in eight is already behind, with 1-7 monthly instalments missed before ``start``,
  so every stage is populated from the first days.
- Each loan has an instalment every 21 business days (about a month) at its own offset, warned
  by ``instalment.upcoming`` three business days before. A paid instalment publishes nothing
  (staging only tracks what is missed); a missed one is ``payment.missed``.
- Borrowers are good, fair or poor payers (miss and repay probabilities differ), so loans cure,
  roll forward, and some reach legal.
- The generator keeps its own little ledger per loan: a repayment never exceeds the arrears it
  knows (no excess, no negative amounts); a reversal only takes back an earlier, unreversed
  payment (auto-debits, 1-3 business days later) and puts the amount back into arrears.
- Promises, complaints and flags name the collector the generator expects to own the case
  (by its own DPD estimate); staging's real owner may differ, as on a real desk.
- Ids are prefixed with ``tag`` (loans ``<tag>-LN-000001``, borrowers ``<tag>-BR-000001``,
  events ``<tag>-E<day>-<n>``) so that several runs can share one stack; collectors are not
  (one roster, upserted).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Final

__all__ = [
    "PRODUCTS",
    "SOURCE",
    "TEAMS",
    "Collector",
    "DemoConfig",
    "add_business_days",
    "business_days",
    "generate",
    "roster",
]

SOURCE: Final = "urn:qingshou:demo:core-banking"
PRODUCTS: Final = ("credit_card", "consumer_loan", "mortgage", "housing_fund_loan",
                   "business_loan")
TEAMS: Final = ("negotiation", "intensive", "legal", "recovery")
CYCLE: Final = 21          # business days between two instalments of one loan
WARN_AHEAD: Final = 3      # instalment.upcoming this many business days before the due date
CST: Final = timezone(timedelta(hours=8))
CENT: Final = Decimal("0.01")

# zone -> (currency, phone prefix, digits after the prefix, languages with weights)
_ZONES: Final[dict[str, tuple[str, str, int, tuple[tuple[str, int], ...]]]] = {
    "Asia/Shanghai": ("CNY", "+861", 10, (("zh-CN", 95), ("en", 5))),
    "Asia/Hong_Kong": ("HKD", "+8526", 7, (("zh-CN", 60), ("en", 40))),
    "Asia/Singapore": ("SGD", "+659", 7, (("zh-CN", 40), ("en", 60))),
    "Europe/London": ("GBP", "+447", 9, (("en", 85), ("zh-CN", 15))),
    "America/New_York": ("USD", "+1212", 7, (("en", 85), ("zh-CN", 15))),
}
_ZONE_WEIGHTS: Final = (55, 15, 12, 10, 8)

# product -> (principal low, high, term in months, weight)
_PRODUCT_TERMS: Final[dict[str, tuple[int, int, int, int]]] = {
    "credit_card": (5_000, 60_000, 12, 35),
    "consumer_loan": (20_000, 200_000, 36, 30),
    "mortgage": (500_000, 3_000_000, 300, 12),
    "housing_fund_loan": (300_000, 1_500_000, 240, 10),
    "business_loan": (100_000, 2_000_000, 60, 13),
}

# payer profile -> (weight, P(miss an instalment), P(repay on a day in arrears), P(keep promise))
_PROFILES: Final[dict[str, tuple[int, float, float, float]]] = {
    "good": (62, 0.04, 0.30, 0.9),
    "fair": (25, 0.30, 0.07, 0.6),
    "poor": (13, 0.75, 0.012, 0.25),
}

_ZH_SURNAMES: Final = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
_ZH_GIVEN: Final = ("伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳",
                    "杰", "娟", "涛", "明", "超", "秀英", "小明", "建华", "海燕", "志强")
_EN_FIRST: Final = ("Olivia", "James", "Amelia", "Noah", "Grace", "Oliver", "Chloe", "Ethan",
                    "Emily", "Daniel", "Sophie", "Lucas", "Hannah", "Ryan", "Mei", "Wei")
_EN_LAST: Final = ("Smith", "Jones", "Taylor", "Brown", "Wilson", "Chan", "Wong", "Tan",
                   "Lee", "Evans", "Walker", "Lim", "Clarke", "Ng", "Hughes", "Patel")
_REVERSAL_REASONS: Final = ("auto-debit returned: insufficient funds",
                            "auto-debit returned: account closed", "card chargeback")


@dataclass(frozen=True)
class DemoConfig:
    loans: int = 2000
    days: int = 120
    seed: int = 7
    start: date = date(2025, 1, 6)
    tag: str = "DEMO"
    source: str = SOURCE

    def __post_init__(self) -> None:
        if self.loans < 1 or self.days < 1:
            raise ValueError("loans and days must be at least 1")
        if not self.tag or any(c.isspace() for c in self.tag):
            raise ValueError("tag must be non-empty without whitespace")


@dataclass(frozen=True)
class Collector:
    collector_id: str
    name: str
    team: str
    capacity: int

    def body(self) -> dict[str, Any]:
        """The staging ``PUT /v1/collectors/{id}`` body."""
        return {"name": self.name, "team": self.team, "capacity": self.capacity, "active": True}


def business_days(start: date, n: int) -> list[date]:
    """The first ``n`` weekdays on or after ``start``."""
    out: list[date] = []
    d = start
    while len(out) < n:
        if d.weekday() < 5:
            out.append(d)
        d += timedelta(days=1)
    return out


def add_business_days(d: date, n: int) -> date:
    """The ``n``-th weekday after ``d`` (n >= 1)."""
    while n > 0:
        d += timedelta(days=1)
        if d.weekday() < 5:
            n -= 1
    return d


def roster(cfg: DemoConfig) -> list[Collector]:
    """Collectors of every team, scaled with the book (about one per 150 loans in all)."""
    per_team = {"negotiation": 4, "intensive": 4, "legal": 3, "recovery": 2}
    scale = max(1.0, cfg.loans / 2000)
    out: list[Collector] = []
    n = 0
    for team in TEAMS:
        for k in range(1, int(per_team[team] * scale) + 1):
            n += 1
            name = f"{_EN_FIRST[n % len(_EN_FIRST)]} {_EN_LAST[(n * 7) % len(_EN_LAST)]}"
            out.append(Collector(f"C-{team[:3].upper()}-{k:02d}", name, team, 150))
    return out


def _money(x: Decimal) -> str:
    return str(x.quantize(CENT))


@dataclass
class _Payment:
    amount: Decimal
    day: int
    reversed: bool = False


@dataclass
class _Loan:
    loan_id: str
    borrower_id: str
    product: str
    currency: str
    instalment: Decimal
    profile: str
    offset: int
    next_no: int
    rm: str | None
    opened_on: date
    instalments: list[tuple[date, Decimal]] = field(default_factory=list)
    payments: dict[str, _Payment] = field(default_factory=dict)
    flags: dict[str, tuple[int, int | None]] = field(default_factory=dict)  # -> raised, until
    promise_day: int | None = None                        # due day index of the open promise
    scheduled: dict[int, Decimal] = field(default_factory=dict)   # day -> repayment amount
    reversals: dict[int, list[str]] = field(default_factory=dict)  # day -> payment ids
    n_payments: int = 0

    def arrears(self) -> Decimal:
        owed = sum((u for _, u in self.instalments), Decimal(0))
        paid = sum((p.amount for p in self.payments.values() if not p.reversed), Decimal(0))
        return max(owed - paid, Decimal(0))

    def dpd(self, on: date) -> int:
        """DPD as staging would count it (oldest due date first, tolerance 10.00)."""
        if self.arrears() <= 10:
            return 0
        pool = sum((p.amount for p in self.payments.values() if not p.reversed), Decimal(0))
        for due, unpaid in sorted(self.instalments):
            if pool >= unpaid:
                pool -= unpaid
                continue
            return max((on - due).days, 0)
        return 0


class _Day:
    """The events of one business day; ids and times are given when the day is sealed."""

    def __init__(self, cfg: DemoConfig, index: int, day: date) -> None:
        self.cfg, self.index, self.day = cfg, index, day
        self.items: list[tuple[str, str, dict[str, Any]]] = []

    def add(self, type_: str, subject: str, data: dict[str, Any]) -> None:
        self.items.append((type_, subject, data))

    def seal(self) -> list[dict[str, Any]]:
        base = datetime(self.day.year, self.day.month, self.day.day, 8, tzinfo=CST)
        n = max(len(self.items), 1)
        out = [self._event(k, t, s, d, base + timedelta(seconds=k * 43_199 // n))
               for k, (t, s, d) in enumerate(self.items)]
        out.append(self._event(len(self.items), "business_day.closed", "calendar",
                               {"business_date": self.day.isoformat()},
                               base + timedelta(hours=12)))
        return out

    def _event(self, k: int, type_: str, subject: str, data: dict[str, Any],
               at: datetime) -> dict[str, Any]:
        return {
            "specversion": "1.0",
            "id": f"{self.cfg.tag}-E{self.index:04d}-{k:06d}",
            "source": self.cfg.source,
            "type": type_,
            "time": at.isoformat(),
            "subject": subject,
            "datacontenttype": "application/json",
            "data": data,
        }


class _Generator:
    def __init__(self, cfg: DemoConfig) -> None:
        self.cfg = cfg
        self.rng = random.Random(cfg.seed)
        self.days = business_days(cfg.start, cfg.days)
        self.collectors: dict[str, list[str]] = {}
        for c in roster(cfg):
            self.collectors.setdefault(c.team, []).append(c.collector_id)
        self.rms = [f"RM-{k:03d}" for k in range(1, max(3, cfg.loans // 100) + 1)]
        self.loans: list[_Loan] = []
        self.n_promises = self.n_complaints = 0

    # -- day 0 -------------------------------------------------------------------------------

    def open_book(self, out: _Day) -> None:
        rng, start = self.rng, self.cfg.start
        for i in range(1, self.cfg.loans + 1):
            loan_id, borrower_id = f"{self.cfg.tag}-LN-{i:06d}", f"{self.cfg.tag}-BR-{i:06d}"
            zone = rng.choices(list(_ZONES), weights=_ZONE_WEIGHTS)[0]
            currency, prefix, digits, langs = _ZONES[zone]
            language = rng.choices([lang for lang, _ in langs], [w for _, w in langs])[0]
            if language == "zh-CN":
                name = rng.choice(_ZH_SURNAMES) + rng.choice(_ZH_GIVEN)
            else:
                name = f"{rng.choice(_EN_FIRST)} {rng.choice(_EN_LAST)}"
            opted_out = []
            if rng.random() < 0.08:
                opted_out.append("sms")
            if rng.random() < 0.04:
                opted_out.append("voice")
            out.add("borrower.updated", borrower_id, {
                "borrower_id": borrower_id, "name": name,
                "phone": prefix + "".join(str(rng.randrange(10)) for _ in range(digits)),
                "email": f"{borrower_id.lower()}@example.com", "timezone": zone,
                "language": language, "opted_out_channels": opted_out,
                "vulnerable": rng.random() < 0.05,
            })
            product = rng.choices(list(_PRODUCT_TERMS),
                                  [w for *_, w in _PRODUCT_TERMS.values()])[0]
            low, high, term, _ = _PRODUCT_TERMS[product]
            principal = Decimal(rng.randrange(low, high + 1, 100))
            rm_share = 0.7 if product in ("mortgage", "business_loan") else 0.2
            rm = rng.choice(self.rms) if rng.random() < rm_share else None
            months_open = rng.randrange(8, 60)
            opened_on = start - timedelta(days=30 * months_open + rng.randrange(30))
            profile = rng.choices(list(_PROFILES), [p[0] for p in _PROFILES.values()])[0]
            loan = _Loan(loan_id, borrower_id, product, currency,
                         (principal / term).quantize(CENT), profile, rng.randrange(CYCLE),
                         months_open + 1, rm, opened_on)
            self.loans.append(loan)
            opened: dict[str, Any] = {
                "loan_id": loan_id, "borrower_id": borrower_id, "product": product,
                "currency": currency, "principal": _money(principal),
                "opened_on": opened_on.isoformat(),
                "branch_id": f"BR-{zone.split('/')[1].upper()[:3]}-{rng.randrange(1, 9):02d}"}
            if rm:
                opened["relationship_manager_id"] = rm
            out.add("loan.opened", loan_id, opened)
            behind = rng.random() < (0.3 if profile == "poor" else 0.08)
            if behind:  # the back book: instalments already missed before the start
                missed = rng.randrange(1, 8)
                first_no = loan.next_no - missed
                for j in range(missed):
                    due = start - timedelta(days=30 * (missed - j) - rng.randrange(0, 10))
                    self.miss(out, loan, first_no + j, max(due, opened_on + timedelta(days=30)),
                              partial=False)

    # -- every day ---------------------------------------------------------------------------

    def miss(self, out: _Day, loan: _Loan, no: int, due: date, partial: bool) -> None:
        unpaid = loan.instalment
        if partial:
            unpaid = (loan.instalment * Decimal(self.rng.randrange(30, 91)) / 100).quantize(CENT)
        loan.instalments.append((due, unpaid))
        out.add("payment.missed", loan.loan_id, {
            "loan_id": loan.loan_id, "instalment_no": no, "due_date": due.isoformat(),
            "amount_due": _money(loan.instalment), "amount_unpaid": _money(unpaid)})

    def owner_guess(self, loan: _Loan, dpd: int) -> str | None:
        if dpd <= 30:
            return None
        team = ("negotiation" if dpd <= 60 else "intensive" if dpd <= 90 else
                "legal" if dpd <= 180 else "recovery")
        if team == "negotiation" and loan.rm:
            return loan.rm
        people = self.collectors[team]
        return people[int(loan.loan_id.rsplit("-", 1)[1]) % len(people)]

    def pay(self, out: _Day, loan: _Loan, i: int, amount: Decimal) -> None:
        rng = self.rng
        amount = min(amount, loan.arrears()).quantize(CENT)
        if amount <= 0:
            return
        loan.n_payments += 1
        payment_id = f"{loan.loan_id}-P{loan.n_payments:03d}"
        channel = rng.choices(("transfer", "card", "cash", "auto_debit", "agency", "other"),
                              (35, 15, 5, 35, 7, 3))[0]
        loan.payments[payment_id] = _Payment(amount, i)
        out.add("repayment.received", loan.loan_id, {
            "loan_id": loan.loan_id, "payment_id": payment_id, "amount": _money(amount),
            "currency": loan.currency, "value_date": self.days[i].isoformat(),
            "channel": channel})
        if channel in ("auto_debit", "card") and rng.random() < 0.06:
            later = i + rng.randrange(1, 4)
            if later < len(self.days):
                loan.reversals.setdefault(later, []).append(payment_id)

    def step(self, out: _Day, loan: _Loan, i: int) -> None:
        rng, today = self.rng, self.days[i]
        _, p_miss, p_repay, p_keep = _PROFILES[loan.profile]
        for payment_id in loan.reversals.pop(i, ()):
            loan.payments[payment_id].reversed = True
            out.add("repayment.reversed", loan.loan_id, {
                "loan_id": loan.loan_id, "payment_id": payment_id,
                "reason": rng.choice(_REVERSAL_REASONS)})
        if (i + WARN_AHEAD) % CYCLE == loan.offset and i + WARN_AHEAD < len(self.days):
            out.add("instalment.upcoming", loan.loan_id, {
                "loan_id": loan.loan_id, "instalment_no": loan.next_no,
                "due_date": self.days[i + WARN_AHEAD].isoformat(),
                "amount_due": _money(loan.instalment)})
        missed_today = False
        if i % CYCLE == loan.offset:
            if rng.random() < p_miss:
                self.miss(out, loan, loan.next_no, today, partial=rng.random() < 0.15)
                missed_today = True
            loan.next_no += 1
        arrears = loan.arrears()
        scheduled = loan.scheduled.pop(i, None)
        if scheduled is not None and arrears > 0:
            self.pay(out, loan, i, scheduled)
        elif arrears > 0 and not missed_today and rng.random() < p_repay:
            full = rng.random() < 0.55
            share = Decimal(1) if full else Decimal(rng.randrange(20, 80)) / 100
            self.pay(out, loan, i, arrears * share)
        arrears = loan.arrears()
        dpd = loan.dpd(today)
        owner = self.owner_guess(loan, dpd)
        if loan.promise_day is not None and loan.promise_day < i:
            loan.promise_day = None
        if owner and arrears > 10 and loan.promise_day is None and rng.random() < 0.05:
            ahead = rng.randrange(2, 7)
            amount = arrears if rng.random() < 0.5 else (arrears / 2).quantize(CENT)
            self.n_promises += 1
            out.add("promise.made", loan.loan_id, {
                "loan_id": loan.loan_id, "promise_id": f"{loan.loan_id}-PR{self.n_promises:05d}",
                "collector_id": owner, "amount": _money(amount),
                "due_on": add_business_days(today, ahead).isoformat()})
            loan.promise_day = i + ahead
            if rng.random() < p_keep:
                loan.scheduled[i + rng.randrange(1, ahead + 1)] = amount
        self.flags(out, loan, i, dpd)
        if owner and rng.random() < 0.002:
            self.n_complaints += 1
            severity = "major" if rng.random() < 0.2 else "minor"
            out.add("complaint.recorded", loan.loan_id, {
                "loan_id": loan.loan_id, "complaint_id": f"{self.cfg.tag}-CMP-"
                                                         f"{self.n_complaints:05d}",
                "collector_id": owner, "severity": severity,
                "note": "called repeatedly at work" if severity == "major" else
                        "tone of the reminder call"})

    def flags(self, out: _Day, loan: _Loan, i: int, dpd: int) -> None:
        rng, today = self.rng, self.days[i]
        for flag, (since, until) in list(loan.flags.items()):
            if until is not None and i > until:
                del loan.flags[flag]  # expired in staging on until + 1: nothing to clear
            elif i - since >= 5 and rng.random() < 0.04:
                del loan.flags[flag]
                out.add("case.flag.cleared", loan.loan_id, {
                    "loan_id": loan.loan_id, "flag": flag, "note": f"{flag} resolved"})
        if dpd == 0:
            return
        for flag, p, note in (("hardship", 0.003, "lost job; hardship plan under review"),
                              ("dispute", 0.0015, "borrower disputes the instalment amount"),
                              ("cease_contact", 0.001, "borrower asked us to stop contacting")):
            if flag not in loan.flags and rng.random() < p:
                data: dict[str, Any] = {"loan_id": loan.loan_id, "flag": flag, "note": note}
                until = None
                if flag == "hardship":
                    until = i + rng.randrange(10, 40)
                    data["until"] = add_business_days(today, until - i).isoformat()
                loan.flags[flag] = (i, until)
                out.add("case.flag.raised", loan.loan_id, data)


def generate(cfg: DemoConfig) -> Iterator[list[dict[str, Any]]]:
    """One list per business day: the day's CloudEvents (dicts), ``business_day.closed`` last."""
    gen = _Generator(cfg)
    for i, day in enumerate(gen.days):
        out = _Day(cfg, i, day)
        if i == 0:
            gen.open_book(out)
        for loan in gen.loans:
            gen.step(out, loan, i)
        yield out.seal()
