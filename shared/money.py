"""Money and currencies: Decimal only, never float.

On the wire money is a decimal string ("1234.50"). JSON numbers are refused on purpose: a producer
that sends 0.1 as a float has already lost precision before we see it, so accepting it would
hide the bug. `round_money` is the project's one rounding rule (banker's rounding to the
currency's minor unit); every service rounds through it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Annotated, Any, Final

from pydantic import PlainSerializer, PlainValidator, WithJsonSchema
from pydantic_core import CoreSchema, PydanticCustomError
from pydantic_core import core_schema as cs

__all__ = [
    "CURRENCY_MINOR_UNITS",
    "MONEY_PATTERN",
    "Currency",
    "Money",
    "NonNegativeMoney",
    "NonNegativeRatio",
    "PositiveMoney",
    "is_currency",
    "minor_units",
    "parse_money",
    "round_money",
]

# At most 15 integer digits and 4 decimals: fits NUMERIC(19, 4) and any real balance.
MONEY_PATTERN: Final = r"^-?[0-9]{1,15}(\.[0-9]{1,4})?$"
_MONEY_RE: Final = re.compile(MONEY_PATTERN)

# Ratios, rates and scores (recovery rate, multiplier, composite score): more decimals than money.
RATIO_PATTERN: Final = r"^[0-9]{1,9}(\.[0-9]{1,8})?$"
_RATIO_RE: Final = re.compile(RATIO_PATTERN)


def _table(minor: int, codes: str) -> dict[str, int]:
    return dict.fromkeys(codes.split(), minor)


# ISO 4217 active alphabetic codes and their minor units. Fund codes and precious metals are
# left out on purpose: no loan is booked in them.
CURRENCY_MINOR_UNITS: Final[dict[str, int]] = {
    **_table(
        2,
        """
        AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BRL BSD BTN BWP BYN
        BZD CAD CDF CHF CNY COP CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS
        GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS KHR KPW KYD KZT LAK LBP LKR
        LRD LSL MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD
        PAB PEN PGK PHP PKR PLN QAR RON RSD RUB SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN
        SVC SYP SZL THB TJS TMT TOP TRY TTD TWD TZS UAH USD UYU UZS VED VES WST XCD XCG YER ZAR
        ZMW ZWG
        """,
    ),
    **_table(0, "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF"),
    **_table(3, "BHD IQD JOD KWD LYD OMR TND"),
    **_table(4, "CLF UYW"),
}

# One quantum per minor-unit count, built once: quantize() is on every money computation.
_QUANTUM: Final = {n: Decimal(1).scaleb(-n) for n in set(CURRENCY_MINOR_UNITS.values())}


def is_currency(code: object) -> bool:
    """True when `code` is a known ISO 4217 alphabetic code (upper case, as on the wire)."""
    return isinstance(code, str) and code in CURRENCY_MINOR_UNITS


def minor_units(currency: str) -> int:
    """Number of decimals of `currency` (JPY 0, CNY 2, BHD 3). ValueError if unknown."""
    try:
        return CURRENCY_MINOR_UNITS[currency]
    except KeyError:
        raise ValueError(f"unknown ISO 4217 currency {currency!r}") from None


def round_money(amount: Decimal, currency: str) -> Decimal:
    """Round to the currency's minor unit, half to even. The project's only rounding rule."""
    if not isinstance(amount, Decimal):
        raise TypeError(f"money must be Decimal, got {type(amount).__name__}")
    return amount.quantize(_QUANTUM[minor_units(currency)], rounding=ROUND_HALF_EVEN)


def _as_plain_string(value: Decimal) -> str:
    # format 'f' never uses exponent notation, unlike str(Decimal("1E+3")).
    return format(value, "f")


def _check_decimal(value: object, regex: re.Pattern[str], kind: str) -> Decimal:
    if isinstance(value, str):
        text = value
    elif isinstance(value, Decimal):
        if not value.is_finite():
            raise PydanticCustomError(f"{kind}_format", f"{kind} must be finite")
        text = _as_plain_string(value)
    else:
        # bool and int and float all land here: a JSON number is never money.
        raise PydanticCustomError(
            f"{kind}_type",
            f"{kind} must be a decimal string like '1234.50', not {{got}}",
            {"got": type(value).__name__},
        )
    if regex.fullmatch(text) is None:
        raise PydanticCustomError(
            f"{kind}_format",
            f"{kind} must be a decimal string matching {{pattern}}",
            {"pattern": regex.pattern},
        )
    return value if isinstance(value, Decimal) else Decimal(text)


def parse_money(value: object) -> Decimal:
    """Parse a money value (decimal string or Decimal) with the wire rules; ValueError if bad."""
    try:
        return _check_decimal(value, _MONEY_RE, "money")
    except PydanticCustomError as exc:
        raise ValueError(str(exc)) from None


def _money(value: object) -> Decimal:
    return _check_decimal(value, _MONEY_RE, "money")


def _non_negative_money(value: object) -> Decimal:
    amount = _check_decimal(value, _MONEY_RE, "money")
    if amount < 0:
        raise PydanticCustomError("money_negative", "money must be zero or more")
    return amount


def _positive_money(value: object) -> Decimal:
    amount = _check_decimal(value, _MONEY_RE, "money")
    if amount <= 0:
        raise PydanticCustomError("money_not_positive", "money must be more than zero")
    return amount


def _ratio(value: object) -> Decimal:
    return _check_decimal(value, _RATIO_RE, "ratio")


def _currency(value: object) -> str:
    if not is_currency(value):
        raise PydanticCustomError(
            "currency", "currency must be an ISO 4217 code like 'CNY', got {got!r}", {"got": value}
        )
    return value  # type: ignore[return-value]  # is_currency proved it is a str


def _json_schema(pattern: str, example: str, description: str) -> WithJsonSchema:
    return WithJsonSchema(
        {"type": "string", "pattern": pattern, "examples": [example], "description": description}
    )


_SERIALISE_DECIMAL: Final = PlainSerializer(_as_plain_string, return_type=str, when_used="json")

Money = Annotated[
    Decimal,
    PlainValidator(_money),
    _SERIALISE_DECIMAL,
    _json_schema(MONEY_PATTERN, "1234.50", "Amount as a decimal string, never a JSON number"),
]
NonNegativeMoney = Annotated[
    Decimal,
    PlainValidator(_non_negative_money),
    _SERIALISE_DECIMAL,
    _json_schema(MONEY_PATTERN, "0.00", "Amount >= 0 as a decimal string"),
]
PositiveMoney = Annotated[
    Decimal,
    PlainValidator(_positive_money),
    _SERIALISE_DECIMAL,
    _json_schema(MONEY_PATTERN, "1234.50", "Amount > 0 as a decimal string"),
]
NonNegativeRatio = Annotated[
    Decimal,
    PlainValidator(_ratio),
    _SERIALISE_DECIMAL,
    _json_schema(RATIO_PATTERN, "0.8125", "Non-negative ratio or score as a decimal string"),
]

_CURRENCY_SCHEMA: Final[dict[str, Any]] = {
    "type": "string",
    "enum": sorted(CURRENCY_MINOR_UNITS),
    "examples": ["CNY"],
    "description": "ISO 4217 alphabetic code",
}
Currency = Annotated[str, PlainValidator(_currency), WithJsonSchema(_CURRENCY_SCHEMA)]


def _wire_string(*patterns: str) -> CoreSchema:
    """A JSON string matching every pattern, checked inside pydantic-core."""
    steps: list[CoreSchema] = [cs.str_schema(strict=True, pattern=p) for p in patterns]
    return steps[0] if len(steps) == 1 else cs.chain_schema(steps)


_UNSIGNED: Final = r"^[0-9]{1,15}(\.[0-9]{1,4})?$"
# For shared.events.bulk: each validator above as a native check that accepts only wire values
# it accepts too (never more), so a checker built from them may vouch without calling Python.
WIRE_CHECKS: Final[dict[Callable[[object], object], CoreSchema]] = {
    _money: _wire_string(MONEY_PATTERN),
    _non_negative_money: _wire_string(_UNSIGNED),
    _positive_money: _wire_string(_UNSIGNED, "[1-9]"),  # some digit is not zero
    _ratio: _wire_string(RATIO_PATTERN),
    _currency: cs.literal_schema(sorted(CURRENCY_MINOR_UNITS)),
}
# the validators above whose value is the Decimal of the text their check accepts
DECIMAL_VALIDATORS: Final = frozenset({_money, _non_negative_money, _positive_money, _ratio})
