from datetime import date
from decimal import Decimal

import pytest

from services.staging.domain.errors import Rejected
from services.staging.domain.ledger import (
    Ledger,
    record_missed_payment,
    record_repayment,
    reverse_repayment,
)

D = date(2026, 3, 1)


def ledger_with(*instalments):
    ledger = Ledger("CNY")
    for no, due, amount in instalments:
        ledger = record_missed_payment(ledger, no, due, Decimal(amount)).ledger
    return ledger


def pay(ledger, pid, amount, seq=1, currency="CNY"):
    return record_repayment(ledger, pid, Decimal(amount), currency, D, received_on=D, seq=seq)


def test_arrears_and_oldest_unpaid_due_date():
    ledger = ledger_with((2, date(2026, 2, 1), "80"), (1, date(2026, 1, 1), "100"))
    assert ledger.arrears == 180
    assert ledger.oldest_unpaid_due_date == date(2026, 1, 1)
    assert Ledger("CNY").oldest_unpaid_due_date is None


def test_repayment_pays_oldest_due_date_first_and_the_rest_is_excess():
    ledger = ledger_with((2, date(2026, 2, 1), "80"), (1, date(2026, 1, 1), "100"))
    change = pay(ledger, "p1", "200")
    assert change.applied.instalments == ((1, Decimal(100)), (2, Decimal(80)))
    assert change.applied.to_arrears == 180 and change.applied.excess == 20
    assert change.ledger.arrears == 0 and change.ledger.oldest_unpaid_due_date is None


def test_partial_repayment_moves_oldest_unpaid_due_date():
    ledger = ledger_with((1, date(2026, 1, 1), "100"), (2, date(2026, 2, 1), "100"))
    after = pay(ledger, "p1", "100").ledger
    assert after.oldest_unpaid_due_date == date(2026, 2, 1) and after.arrears == 100


def test_excess_is_not_carried_forward():
    ledger = pay(Ledger("CNY"), "p1", "50").ledger
    ledger = record_missed_payment(ledger, 1, date(2026, 1, 1), Decimal(100)).ledger
    assert ledger.arrears == 100
    assert ledger.allocation("p1").excess == 50


def test_repeat_missed_payment_corrects_in_place_and_reallocates():
    ledger = ledger_with((1, date(2026, 1, 1), "100"))
    ledger = pay(ledger, "p1", "100").ledger
    change = record_missed_payment(ledger, 1, date(2026, 1, 1), Decimal(80))
    assert change.ledger.arrears == 0
    (moved,) = change.reallocations
    assert moved.before.excess == 0 and moved.after.excess == 20
    assert len(change.ledger.instalments) == 1


def test_reversal_unapplies_exactly_and_reallocates_later_payments():
    # P1 pays the arrears, P2 comes as excess; without P1, P2 would have paid arrears.
    ledger = ledger_with((1, date(2026, 1, 1), "100"))
    ledger = pay(ledger, "p1", "100", seq=1).ledger
    ledger = pay(ledger, "p2", "50", seq=2).ledger
    assert ledger.allocation("p2").excess == 50
    change = reverse_repayment(ledger, "p1")
    assert change.unapplied.to_arrears == 100 and change.unapplied.instalments == ((1, 100),)
    (moved,) = change.reallocations
    assert moved.before.payment_id == "p2"
    assert (moved.before.to_arrears, moved.after.to_arrears) == (0, 50)
    assert change.ledger.arrears == 50
    replay = pay(ledger_with((1, date(2026, 1, 1), "100")), "p2", "50", seq=2).ledger
    assert change.ledger.entries == replay.entries
    assert change.ledger.allocations == replay.allocations


@pytest.mark.parametrize(("amount", "currency", "reason"), [
    ("0", "CNY", "invalid_amount"), ("-5", "CNY", "invalid_amount"),
    ("10", "USD", "currency_mismatch"),
])
def test_invalid_repayments_are_rejected(amount, currency, reason):
    with pytest.raises(Rejected) as info:
        pay(Ledger("CNY"), "p1", amount, currency=currency)
    assert info.value.reason == reason


def test_duplicate_payment_and_unknown_or_repeated_reversal():
    ledger = pay(Ledger("CNY"), "p1", "10").ledger
    with pytest.raises(Rejected, match="duplicate_payment"):
        pay(ledger, "p1", "10")
    with pytest.raises(Rejected, match="unknown_payment"):
        reverse_repayment(ledger, "nope")
    reversed_ledger = reverse_repayment(ledger, "p1").ledger
    with pytest.raises(Rejected, match="already_reversed"):
        reverse_repayment(reversed_ledger, "p1")
    with pytest.raises(Rejected, match="duplicate_payment"):
        pay(reversed_ledger, "p1", "10")


def test_invalid_missed_payments():
    with pytest.raises(Rejected, match="invalid_amount"):
        record_missed_payment(Ledger("CNY"), 1, D, Decimal(0))
    with pytest.raises(Rejected, match="invalid_amount"):
        record_missed_payment(Ledger("CNY"), 1, D, Decimal(-1))
    with pytest.raises(Rejected, match="invalid_instalment"):
        record_missed_payment(Ledger("CNY"), 0, D, Decimal(1))
    # a correction down to zero is core banking saying nothing was unpaid after all
    ledger = ledger_with((1, D, "10"))
    assert record_missed_payment(ledger, 1, D, Decimal(0)).ledger.arrears == 0


def test_serialisation_round_trip():
    ledger = ledger_with((1, date(2026, 1, 1), "100.50"))
    ledger = pay(ledger, "p1", "30.25").ledger
    ledger = reverse_repayment(pay(ledger, "p2", "1", seq=2).ledger, "p2").ledger
    data = ledger.to_dict()
    assert data["entries"][0] == {"instalment_no": 1, "due_date": "2026-01-01",
                                  "amount_unpaid": "100.50"}
    assert Ledger.from_dict(data) == ledger
    assert Ledger.from_dict(data).arrears == Decimal("70.25")
