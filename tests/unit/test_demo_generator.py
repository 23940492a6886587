"""The demo's synthetic portfolio generator: deterministic, valid, and sensible money."""

from __future__ import annotations

from collections import Counter
from datetime import date, datetime
from decimal import Decimal
from functools import cache
from typing import Any

import pytest

from shared.demo.generator import (
    PRODUCTS,
    TEAMS,
    DemoConfig,
    add_business_days,
    business_days,
    generate,
    roster,
)
from shared.demo.player import start_after
from shared.events import parse_event

CFG = DemoConfig(loans=250, days=45, seed=11, start=date(2025, 3, 3), tag="T1")
MONEY_FIELDS = ("principal", "amount_due", "amount_unpaid", "amount")


@cache
def _days(cfg: DemoConfig = CFG) -> tuple[tuple[dict[str, Any], ...], ...]:
    return tuple(tuple(day) for day in generate(cfg))


def _events() -> list[dict[str, Any]]:
    return [e for day in _days() for e in day]


def test_same_seed_same_events_other_seed_other_events() -> None:
    assert _days() == tuple(tuple(d) for d in generate(CFG))
    other = DemoConfig(loans=CFG.loans, days=CFG.days, seed=CFG.seed + 1, start=CFG.start,
                       tag=CFG.tag)
    assert _days() != tuple(tuple(d) for d in generate(other))


def test_every_event_parses() -> None:
    for e in _events():
        parsed = parse_event(e)
        assert parsed.type == e["type"]


def test_one_close_per_day_last_and_in_order() -> None:
    dates = business_days(CFG.start, CFG.days)
    assert len(_days()) == CFG.days
    for day, batch in zip(dates, _days(), strict=True):
        closes = [e for e in batch if e["type"] == "business_day.closed"]
        assert closes == [batch[-1]]
        assert batch[-1]["subject"] == "calendar"
        assert batch[-1]["data"] == {"business_date": day.isoformat()}
        assert day.weekday() < 5
        for e in batch:  # every event's time falls inside its business day
            assert datetime.fromisoformat(e["time"]).date() == day


def test_ids_are_unique_and_tagged() -> None:
    events = _events()
    assert len({(e["source"], e["id"]) for e in events}) == len(events)
    assert all(e["id"].startswith("T1-") for e in events)


def test_all_types_products_and_zones_appear() -> None:
    types = Counter(e["type"] for e in _events())
    for wanted in ("borrower.updated", "loan.opened", "instalment.upcoming", "payment.missed",
                   "repayment.received", "repayment.reversed", "promise.made",
                   "case.flag.raised", "complaint.recorded", "business_day.closed"):
        assert types[wanted] > 0, wanted
    assert types["loan.opened"] == types["borrower.updated"] == CFG.loans
    products = {e["data"]["product"] for e in _events() if e["type"] == "loan.opened"}
    assert products == set(PRODUCTS)
    borrowers = [e["data"] for e in _events() if e["type"] == "borrower.updated"]
    assert {b["language"] for b in borrowers} == {"zh-CN", "en"}
    assert len({b["timezone"] for b in borrowers}) == 5
    assert any(b["vulnerable"] for b in borrowers)
    assert any("sms" in b["opted_out_channels"] for b in borrowers)
    assert all(b["phone"].startswith("+") for b in borrowers)


def test_money_is_positive_decimal_strings() -> None:
    for e in _events():
        for name in MONEY_FIELDS:
            if name in e["data"]:
                value = e["data"][name]
                assert isinstance(value, str)
                amount = Decimal(value)
                assert amount == amount.quantize(Decimal("0.01"))
                assert amount >= 0 if name == "amount_unpaid" else amount > 0


def test_repayments_never_exceed_arrears_and_reversals_follow_their_payment() -> None:
    unpaid: Counter[str] = Counter()
    paid: dict[str, dict[str, tuple[Decimal, int]]] = {}
    reversed_ids: set[str] = set()
    opened: set[str] = set()
    for i, batch in enumerate(_days()):
        for e in batch:
            d = e["data"]
            if e["type"] == "loan.opened":
                opened.add(d["loan_id"])
            elif "loan_id" in d:
                assert d["loan_id"] in opened, "event for a loan not opened before"
            if e["type"] == "payment.missed":
                assert Decimal(d["amount_unpaid"]) <= Decimal(d["amount_due"])
                unpaid[d["loan_id"]] += Decimal(d["amount_unpaid"])  # type: ignore[assignment]
            elif e["type"] == "repayment.received":
                loan = paid.setdefault(d["loan_id"], {})
                live = sum((a for p, (a, _) in loan.items() if p not in reversed_ids),
                           Decimal(0))
                assert Decimal(d["amount"]) <= unpaid[d["loan_id"]] - live
                assert d["payment_id"] not in loan
                assert d["value_date"] == batch[-1]["data"]["business_date"]
                loan[d["payment_id"]] = (Decimal(d["amount"]), i)
            elif e["type"] == "repayment.reversed":
                made = paid.get(d["loan_id"], {}).get(d["payment_id"])
                assert made is not None, "reversal of a payment never made"
                assert made[1] < i, "reversal on the day of its payment or before"
                assert d["payment_id"] not in reversed_ids, "reversed twice"
                reversed_ids.add(d["payment_id"])
    assert reversed_ids


def test_promises_and_flags_are_sane() -> None:
    raised: set[tuple[str, str]] = set()
    for batch in _days():
        for e in batch:
            d = e["data"]
            if e["type"] == "promise.made":
                assert date.fromisoformat(d["due_on"]) > date.fromisoformat(
                    batch[-1]["data"]["business_date"])
            elif e["type"] == "case.flag.raised":
                assert (d["loan_id"], d["flag"]) not in raised
                raised.add((d["loan_id"], d["flag"]))
            elif e["type"] == "case.flag.cleared":
                assert (d["loan_id"], d["flag"]) in raised
                raised.discard((d["loan_id"], d["flag"]))


def test_roster_covers_every_team() -> None:
    people = roster(CFG)
    assert {c.team for c in people} == set(TEAMS)
    assert len({c.collector_id for c in people}) == len(people)
    assert people[0].body()["active"] is True


def test_business_day_helpers() -> None:
    assert business_days(date(2025, 1, 3), 3) == [date(2025, 1, 3), date(2025, 1, 6),
                                                  date(2025, 1, 7)]
    assert add_business_days(date(2025, 1, 3), 1) == date(2025, 1, 6)
    assert start_after(None) == date(2025, 1, 6)
    assert start_after("2025-01-31") == date(2025, 2, 3)


def test_config_is_checked() -> None:
    with pytest.raises(ValueError):
        DemoConfig(loans=0)
    with pytest.raises(ValueError):
        DemoConfig(tag="a b")


def test_cli_generate_writes_json_lines(tmp_path: Any) -> None:
    import orjson
    from typer.testing import CliRunner

    from shared.cli import app

    out = tmp_path / "book.jsonl"
    result = CliRunner().invoke(app, ["demo", "generate", "--out", str(out), "--loans", "20",
                                      "--days", "5", "--seed", "3", "--tag", "CLI"])
    assert result.exit_code == 0, result.output
    lines = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    expected = [e for day in generate(DemoConfig(loans=20, days=5, seed=3, tag="CLI"))
                for e in day]
    assert lines == expected
    assert sum(e["type"] == "business_day.closed" for e in lines) == 5
