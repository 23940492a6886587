"""The chaos test's event stream: a seeded book of loans played in phases and rounds, plus poison.

Shape (same seed, same stream):

- ``closes[0]`` is closed first; phase ``p`` (1..P) is played while staging's business date is
  ``closes[p-1]``, then ``closes[p]`` (``phase_days`` later) is closed. The sender waits until
  staging has consumed everything before each close, so every event is applied at a known
  business date and a replay with the staging domain is exact.
- Inside a phase, round ``r`` holds the ``r``-th event of that phase of every loan: one event per
  loan per round, and a round is sent only after the previous one was acknowledged. A re-post
  after a crash then never puts a loan's events out of order in Kafka (a copy that lands again
  later is a duplicate, which the inboxes drop).
- Loans: ``borrower.updated`` and ``loan.opened`` first, monthly instalments (due dates between
  the closes), ``instalment.upcoming`` a few days before a due date for a share of them,
  ``payment.missed`` once the due date is the business date, repayments (partial, full,
  top-ups) and some bounced auto-debits (``repayment.reversed``). Profiles: good payers (on
  time, an occasional slip), late payers (miss, then pay in parts), bad payers (small
  payments: they roll to intensive and legal). Most loans have a relationship manager.
- A share of the loans (``direct_share``) is produced straight to Kafka, as core banking would;
  the rest goes through ingest.
- Poison, produced straight to Kafka: bad JSON, JSON that is not a CloudEvent, an unknown type,
  a schema error (on ``loan-events``, and bad JSON on ``calendar``) and events of loans that do
  not exist (``unknown_loan``). Each knows which consumers must dead-letter it.
"""

from __future__ import annotations

import random
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import orjson

from shared.topics import CALENDAR, LOAN_EVENTS

__all__ = ["LOAN_EVENT_CONSUMERS", "Poison", "Stream", "StreamConfig", "build_stream"]

SOURCE = "urn:qingshou:chaos:core-banking"
# the services that consume each topic the poison goes to (their parse step dead-letters it)
LOAN_EVENT_CONSUMERS = ("staging", "notifier", "incentives")
CALENDAR_CONSUMERS = ("staging", "notifier")
PRODUCTS = ("credit_card", "consumer_loan", "mortgage", "housing_fund_loan", "business_loan")
ZONES = ("Asia/Shanghai", "Asia/Shanghai", "Asia/Shanghai", "Asia/Hong_Kong", "Asia/Singapore")
CENT = Decimal("0.01")


@dataclass(frozen=True)
class StreamConfig:
    loans: int
    events_per_loan: int
    seed: int = 7
    phases: int = 12
    phase_days: int = 10
    start: date = date(2026, 1, 2)
    direct_share: float = 0.2
    warning_share: float = 0.25
    poison_per_kind: int = 2
    tag: str = "X"

    def __post_init__(self) -> None:
        if self.loans < 1 or self.events_per_loan < 6 or self.phases < 3:
            raise ValueError("at least 1 loan, 6 events per loan and 3 phases")


@dataclass(frozen=True)
class Poison:
    """A message that must end in ``<topic>.dlq``, once per consumer named in ``consumers``."""

    ident: str  # the event id, or a marker inside a message that has no id
    kind: str
    topic: str  # base topic
    key: bytes
    value: bytes
    consumers: tuple[str, ...]
    reason: str
    round_no: int  # sent with this round of the whole stream (0-based)

    def matches(self, value: bytes | None) -> bool:
        return value is not None and self.ident.encode() in value


@dataclass
class Stream:
    config: StreamConfig
    closes: list[date]
    # rounds[p-1] = the rounds of phase p; a round = [(event, direct)], one event per loan
    rounds: list[list[list[tuple[dict[str, Any], bool]]]]
    phase_of: dict[str, int]  # event id -> phase
    loans: list[str]
    collectors: dict[str, str]  # team -> the one collector of that team in the roster
    poison: list[Poison] = field(default_factory=list)
    types: Counter[str] = field(default_factory=Counter)

    @property
    def events(self) -> int:
        """Events of the book (closes and poison not included)."""
        return len(self.phase_of)

    @property
    def round_count(self) -> int:
        return sum(len(r) for r in self.rounds)


def _money(value: Decimal) -> str:
    return str(value.quantize(CENT))


class _Builder:
    def __init__(self, cfg: StreamConfig):
        self.cfg = cfg
        self.rng = random.Random(cfg.seed)
        self.closes = [cfg.start + timedelta(days=cfg.phase_days * p)
                       for p in range(cfg.phases + 1)]

    def new_id(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def event(self, type_: str, subject: str, data: dict[str, Any], day: date) -> dict[str, Any]:
        return {"specversion": "1.0", "id": self.new_id(), "source": SOURCE, "type": type_,
                "time": f"{day.isoformat()}T10:00:00+08:00", "subject": subject, "data": data}

    def phase_of(self, day: date) -> int | None:
        """The first phase whose business date is on or after ``day``."""
        for p in range(1, self.cfg.phases + 1):
            if self.closes[p - 1] >= day:
                return p
        return None

    def business_date(self, phase: int) -> date:
        return self.closes[phase - 1]


def _loan(b: _Builder, i: int, profile: str,
          budget: int) -> tuple[str, list[tuple[int, dict[str, Any]]]]:
    """One loan's id and events as (phase, event), in the order they must be applied."""
    cfg, rng = b.cfg, b.rng
    loan, borrower = f"{cfg.tag}L{i:06d}", f"{cfg.tag}B{i:06d}"
    currency = "CNY"  # a scorecard has one currency: credits in another are not counted
    instalment = Decimal(rng.randint(30_000, 300_000)) * CENT
    rm = f"{cfg.tag}RM{rng.randrange(20):02d}" if rng.random() < 0.6 else None
    out: list[tuple[int, dict[str, Any]]] = []
    start = b.closes[0]
    out.append((1, b.event("borrower.updated", borrower, {
        "borrower_id": borrower, "name": f"Borrower {i}", "phone": f"+86139{i % 10**8:08d}",
        "email": f"b{i}@example.com", "timezone": rng.choice(ZONES),
        "language": rng.choice(("zh-CN", "zh-CN", "en")),
        "opted_out_channels": ["sms"] if rng.random() < 0.05 else [],
        "vulnerable": rng.random() < 0.03}, start)))
    opened = {"loan_id": loan, "borrower_id": borrower, "product": rng.choice(PRODUCTS),
              "currency": currency, "principal": _money(instalment * 24),
              "opened_on": (start - timedelta(days=rng.randint(30, 400))).isoformat()}
    if rm is not None:
        opened["relationship_manager_id"] = rm
    out.append((1, b.event("loan.opened", loan, opened, start)))
    warned = rng.random() < cfg.warning_share
    payments: list[tuple[int, str]] = []  # (phase, payment id) of auto-debits
    first_missed: int | None = None
    n_pay = 0

    def pay(phase: int, amount: Decimal, value_date: date, channel: str) -> None:
        nonlocal n_pay
        n_pay += 1
        payment_id = f"{loan}P{n_pay}"
        out.append((phase, b.event("repayment.received", loan, {
            "loan_id": loan, "payment_id": payment_id, "amount": _money(amount),
            "currency": currency, "value_date": value_date.isoformat(), "channel": channel},
            value_date)))
        if channel == "auto_debit":
            payments.append((phase, payment_id))

    offset = rng.randint(1, 6)
    for n in range(1, 12):
        due = start + timedelta(days=offset + 30 * (n - 1))
        phase = b.phase_of(due)
        if phase is None:
            break
        if warned and phase > 1:
            out.append((phase - 1, b.event("instalment.upcoming", loan, {
                "loan_id": loan, "instalment_no": n, "due_date": due.isoformat(),
                "amount_due": _money(instalment)}, due - timedelta(days=3))))
        slip = profile != "good" or rng.random() < 0.1
        if not slip:
            pay(phase, instalment, due, "auto_debit")
            continue
        out.append((phase, b.event("payment.missed", loan, {
            "loan_id": loan, "instalment_no": n, "due_date": due.isoformat(),
            "amount_due": _money(instalment), "amount_unpaid": _money(instalment)},
            b.business_date(phase))))
        first_missed = phase if first_missed is None else first_missed
        if profile == "good" and phase < cfg.phases:
            pay(phase + 1, instalment, b.business_date(phase + 1), "transfer")
    # repayments (and bounced auto-debits) up to the loan's budget of events
    share = {"good": (Decimal("0.05"), Decimal("0.3")), "late": (Decimal("0.2"), Decimal("0.6")),
             "bad": (Decimal("0.01"), Decimal("0.06"))}[profile]
    earliest = first_missed or 1
    load = Counter(phase for phase, _ in out)
    while len(out) < budget:
        # the emptier of two random phases: a loan's events spread evenly over the phases,
        # which keeps the number of rounds (sequential posts) per phase small
        phase = min(rng.randint(earliest, cfg.phases), rng.randint(earliest, cfg.phases),
                    key=lambda p: load[p])
        load[phase] += 1
        fraction = share[0] + (share[1] - share[0]) * Decimal(rng.random())
        amount = max(CENT, (instalment * fraction).quantize(CENT))
        day = b.business_date(phase) - timedelta(days=rng.randint(0, 2))
        pay(phase, amount, max(day, start), rng.choice(("auto_debit", "transfer", "card",
                                                        "agency")))
        if len(out) < budget and payments and rng.random() < 0.08:
            paid_in, payment_id = payments.pop(rng.randrange(len(payments)))
            when = rng.randint(paid_in, cfg.phases)
            out.append((when, b.event("repayment.reversed", loan, {
                "loan_id": loan, "payment_id": payment_id, "reason": "auto-debit bounced"},
                b.business_date(when))))
    # a stable sort by phase keeps each phase's events in the order they were made, and a
    # reversal after its payment (same phase: made later; later phase: sorted later)
    return loan, sorted(out, key=lambda pe: pe[0])


def _poison(b: _Builder, rounds: int) -> list[Poison]:
    cfg, rng = b.cfg, b.rng
    out: list[Poison] = []
    for k in range(cfg.poison_per_kind):
        marker = f"chaos-poison-{b.new_id()}"
        out.append(Poison(marker, "invalid_json", LOAN_EVENTS, b"poison",
                          f'{{"id": "{marker}", "type": '.encode(), LOAN_EVENT_CONSUMERS,
                          "invalid_json", rng.randrange(rounds)))
        marker = f"chaos-poison-{b.new_id()}"
        out.append(Poison(marker, "not_cloudevent", LOAN_EVENTS, b"poison",
                          orjson.dumps({"hello": marker}), LOAN_EVENT_CONSUMERS,
                          "not_cloudevent", rng.randrange(rounds)))
        loan = f"{cfg.tag}NOLOAN{k}"
        day = b.closes[1]
        for kind, event, consumers in (
                ("unknown_type", b.event("loan.teleported", loan, {"loan_id": loan}, day),
                 LOAN_EVENT_CONSUMERS),
                # bad data is judged by the consumers of its type: only staging reads
                # repayment.received (the others check its envelope and pass over it)
                ("schema_error", b.event("repayment.received", loan, {
                    "loan_id": loan, "payment_id": "P1", "amount": "-5.00",
                    "currency": "CNY", "value_date": day.isoformat(), "channel": "card"}, day),
                 ("staging",)),
                ("unknown_loan", b.event("repayment.received", loan, {
                    "loan_id": loan, "payment_id": "P1", "amount": "5.00",
                    "currency": "CNY", "value_date": day.isoformat(), "channel": "card"}, day),
                 ("staging",))):
            out.append(Poison(event["id"], kind, LOAN_EVENTS, loan.encode(),
                              orjson.dumps(event), consumers, kind, rng.randrange(rounds)))
    marker = f"chaos-poison-{b.new_id()}"
    out.append(Poison(marker, "invalid_json", CALENDAR, b"calendar",
                      f"[{marker}".encode(), CALENDAR_CONSUMERS, "invalid_json",
                      rng.randrange(rounds)))
    return out


def build_stream(cfg: StreamConfig) -> Stream:
    """The whole stream for ``cfg``; ``events_per_loan`` is the average per loan."""
    b = _Builder(cfg)
    weights = {"good": 1, "late": 3, "bad": 4}
    # budgets: the book's events spread over the loans, more for the ones in trouble
    total = cfg.loans * cfg.events_per_loan
    kinds = [b.rng.choices(list(weights), weights=(55, 30, 15))[0] for _ in range(cfg.loans)]
    scale = total / sum(weights[k] for k in kinds)
    budgets = [max(6, round(weights[k] * scale)) for k in kinds]
    for _ in range(abs(total - sum(budgets))):  # the rounding, one event at a time
        i = b.rng.randrange(cfg.loans)
        budgets[i] = max(6, budgets[i] + (1 if total > sum(budgets) else -1))
    per_phase: list[list[list[tuple[dict[str, Any], bool]]]] = [[] for _ in range(cfg.phases)]
    phase_of: dict[str, int] = {}
    loans: list[str] = []
    types: Counter[str] = Counter()
    for i in range(cfg.loans):
        direct = b.rng.random() < cfg.direct_share
        loan, events = _loan(b, i, kinds[i], budgets[i])
        loans.append(loan)
        by_phase: dict[int, list[dict[str, Any]]] = {}
        for phase, event in events:
            by_phase.setdefault(phase, []).append(event)
            phase_of[event["id"]] = phase
            types[event["type"]] += 1
        for phase, evs in by_phase.items():
            rounds = per_phase[phase - 1]
            while len(rounds) < len(evs):
                rounds.append([])
            for r, event in enumerate(evs):
                rounds[r].append((event, direct))
    stream = Stream(cfg, b.closes, per_phase, phase_of, loans,
                    {team: f"{cfg.tag}C-{team}" for team in
                     ("negotiation", "intensive", "legal", "recovery")}, types=types)
    stream.poison = _poison(b, max(1, stream.round_count))
    return stream
