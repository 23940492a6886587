from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from shared.money import (
    CURRENCY_MINOR_UNITS,
    Currency,
    Money,
    NonNegativeMoney,
    PositiveMoney,
    minor_units,
    parse_money,
    round_money,
)


class Amounts(BaseModel):
    any_amount: Money | None = None
    non_negative: NonNegativeMoney | None = None
    positive: PositiveMoney | None = None
    currency: Currency | None = None


@pytest.mark.parametrize("text", ["0", "1234.50", "-12.3456", "999999999999999.9999", "-0"])
def test_money_accepts_decimal_strings(text):
    assert Amounts.model_validate({"any_amount": text}).any_amount == Decimal(text)


@pytest.mark.parametrize(
    "value",
    [
        12.5,  # float
        12,  # JSON integer
        True,
        "12.34567",  # too many decimals
        "1e3",
        "1E+3",
        "NaN",
        "Infinity",
        "-Infinity",
        " 12.00",
        "12.",
        ".5",
        "+1.00",
        "1,000.00",
        "1234567890123456",  # 16 integer digits
        "",
        "12.00\n",
        "١٢.٠٠",  # Arabic-Indic digits: Decimal() would take them, we do not
        Decimal("NaN"),
        Decimal("Infinity"),
        Decimal("0.00001"),
        None,
    ],
)
def test_money_rejects_anything_but_decimal_strings(value):
    with pytest.raises(ValidationError) as info:
        Amounts.model_validate({"any_amount": value} if value is not None else {"any_amount": []})
    assert info.value.errors()[0]["loc"] == ("any_amount",)


def test_decimal_instances_are_accepted_from_python_code():
    assert Amounts(any_amount=Decimal("10.50")).any_amount == Decimal("10.50")


def test_sign_variants():
    assert Amounts.model_validate({"non_negative": "0.00"}).non_negative == 0
    with pytest.raises(ValidationError):
        Amounts.model_validate({"non_negative": "-0.01"})
    with pytest.raises(ValidationError):
        Amounts.model_validate({"positive": "0.00"})
    assert Amounts.model_validate({"positive": "0.01"}).positive == Decimal("0.01")


def test_money_serialises_as_string_without_exponent():
    model = Amounts(any_amount=Decimal("1E+3"), positive=Decimal("0.0001"))
    dumped = model.model_dump(mode="json")
    assert dumped["any_amount"] == "1000"
    assert dumped["positive"] == "0.0001"
    # Python mode keeps the Decimal for arithmetic and the database.
    assert isinstance(model.model_dump()["any_amount"], Decimal)


money_values = st.decimals(
    min_value=Decimal("-999999999999999.9999"),
    max_value=Decimal("999999999999999.9999"),
    places=4,
    allow_nan=False,
    allow_infinity=False,
)


@given(money_values)
def test_any_decimal_in_range_round_trips_exactly_through_its_string(amount):
    dumped = Amounts(any_amount=amount).model_dump_json()
    assert '"any_amount":"' in dumped  # a JSON string, never a number
    back = Amounts.model_validate_json(dumped).any_amount
    assert back == amount
    assert back.as_tuple() == amount.as_tuple()  # same digits and scale: "1.50" stays "1.50"


@given(st.from_regex(r"\A-?[1-9][0-9]{0,14}(\.[0-9]{1,4})?\Z"))
def test_canonical_money_strings_round_trip_character_for_character(text):
    assert (
        Amounts.model_validate({"any_amount": text}).model_dump(mode="json")["any_amount"] == text
    )


def test_currency_table_and_validation():
    assert minor_units("CNY") == 2
    assert minor_units("JPY") == 0
    assert minor_units("KRW") == 0
    assert minor_units("VND") == 0
    for code in ("BHD", "KWD", "JOD", "OMR", "TND"):
        assert minor_units(code) == 3
    for code in (
        "USD",
        "EUR",
        "GBP",
        "HKD",
        "INR",
        "SGD",
        "AUD",
        "CAD",
        "CHF",
        "TWD",
        "MOP",
        "THB",
        "MYR",
        "IDR",
        "PHP",
    ):
        assert CURRENCY_MINOR_UNITS[code] == 2
    assert Amounts.model_validate({"currency": "HKD"}).currency == "HKD"
    for bad in ("cny", "XXX", "RMB", "", 156):
        with pytest.raises(ValidationError):
            Amounts.model_validate({"currency": bad})
    with pytest.raises(ValueError):
        minor_units("RMB")


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        ("2.345", "CNY", "2.34"),
        ("2.355", "CNY", "2.36"),
        ("-2.345", "USD", "-2.34"),
        ("2.5", "JPY", "2"),
        ("3.5", "JPY", "4"),
        ("1234.5", "KRW", "1234"),
        ("1.0005", "BHD", "1.000"),
        ("1.0015", "BHD", "1.002"),
        ("10", "KWD", "10.000"),
        ("7", "CNY", "7.00"),
    ],
)
def test_round_money_is_half_even_to_the_minor_unit(amount, currency, expected):
    rounded = round_money(Decimal(amount), currency)
    assert str(rounded) == expected


def test_round_money_refuses_floats():
    with pytest.raises(TypeError):
        round_money(2.5, "CNY")  # type: ignore[arg-type]


def test_parse_money_helper():
    assert parse_money("1.50") == Decimal("1.50")
    with pytest.raises(ValueError):
        parse_money(1.5)
