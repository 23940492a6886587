"""The incentive scheme: versioned, effective from a business date, validated as a document.

Decisions where PRODUCT.md 4.3 is silent (defaults of version 1):

- Commission by the stage tagged on the credit: current 0, early 0.5%, negotiation 1.0%,
  intensive 2.0%, legal 3.0%, write_off 3.0% (a recovery after write-off is at least as hard as
  a legal one), special 0 (bankruptcy, deceased, fraud: the bank does not pay anyone to press
  those borrowers). A stage the scheme does not name earns 0 until a new version names it.
- Cure bonus 50.00 per loan cured while assigned; promise-kept bonus 10.00 per kept promise; both
  in the payout currency of the scorecard.
- Complaint penalties minor 0.05, major 0.25: multiplier = max(0, 1 - sum of penalties).
- Composite weights recovery_rate 0.40, cure_rate 0.30, kept_rate 0.20, quality 0.10; they must
  sum to exactly 1.
- The version in effect on a day is the one with the latest `effective_from` on or before it;
  equal dates go to the higher version number.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from types import MappingProxyType
from typing import Any, Final

STAGES: Final = ("current", "early", "negotiation", "intensive", "legal", "write_off", "special")
SEVERITIES: Final = ("minor", "major")
WEIGHT_KEYS: Final = ("recovery_rate", "cure_rate", "kept_rate", "quality")
_DOC_KEYS: Final = frozenset(
    {
        "version",
        "effective_from",
        "commission",
        "cure_bonus",
        "promise_kept_bonus",
        "complaint_penalty",
        "weights",
    }
)
ZERO: Final = Decimal(0)
ONE: Final = Decimal(1)


def _frozen(values: Mapping[str, Decimal]) -> Mapping[str, Decimal]:
    return MappingProxyType(dict(values))


@dataclass(frozen=True, slots=True)
class Scheme:
    """One version of the incentive scheme. Rates and weights are fractions (0.005 = 0.5%)."""

    version: int
    effective_from: date
    commission: Mapping[str, Decimal]
    cure_bonus: Decimal
    promise_kept_bonus: Decimal
    complaint_penalty: Mapping[str, Decimal]
    weights: Mapping[str, Decimal]

    def rate(self, stage: str | None) -> Decimal:
        """Commission rate for a credit tagged with `stage` (0 for a stage not named)."""
        return self.commission.get(stage or "", ZERO)

    def penalty(self, severity: str) -> Decimal:
        return self.complaint_penalty.get(severity, ZERO)


DEFAULT_WEIGHTS: Final = {
    "recovery_rate": Decimal("0.40"),
    "cure_rate": Decimal("0.30"),
    "kept_rate": Decimal("0.20"),
    "quality": Decimal("0.10"),
}

DEFAULT_SCHEME: Final = Scheme(
    version=1,
    effective_from=date.min,
    commission=_frozen(
        {
            "current": Decimal("0"),
            "early": Decimal("0.005"),
            "negotiation": Decimal("0.010"),
            "intensive": Decimal("0.020"),
            "legal": Decimal("0.030"),
            "write_off": Decimal("0.030"),
            "special": Decimal("0"),
        }
    ),
    cure_bonus=Decimal("50.00"),
    promise_kept_bonus=Decimal("10.00"),
    complaint_penalty=_frozen({"minor": Decimal("0.05"), "major": Decimal("0.25")}),
    weights=_frozen(DEFAULT_WEIGHTS),
)


class SchemeInvalid(ValueError):
    """A scheme document broke the rules; `errors` names each field at fault."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__("; ".join(f"{e['field']}: {e['message']}" for e in errors))
        self.errors = errors


# --- validation ------------------------------------------------------------------------------


def _decimal(value: object) -> Decimal | None:
    """A finite Decimal from a decimal string, an int or a Decimal; None for anything else.

    Floats (JSON numbers with a fraction) and bools are refused: 0.1 as a float is already wrong.
    """
    if isinstance(value, bool) or isinstance(value, float):
        return None
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            return None
    else:
        return None
    return number if number.is_finite() else None


class _Collector:
    def __init__(self) -> None:
        self.errors: list[dict[str, str]] = []

    def add(self, field_name: str, message: str) -> None:
        self.errors.append({"field": field_name, "message": message})

    def number(self, doc: Mapping[str, Any], key: str, path: str) -> Decimal | None:
        if key not in doc:
            self.add(path, "is required")
            return None
        number = _decimal(doc[key])
        if number is None:
            self.add(path, "must be a decimal string like '0.005', not a float or text")
        return number

    def section(self, doc: Mapping[str, Any], key: str, keys: Iterable[str]) -> dict[str, Decimal]:
        raw = doc.get(key)
        if not isinstance(raw, Mapping):
            self.add(key, "is required and must be an object")
            return {}
        expected = tuple(keys)
        for extra in sorted(set(raw) - set(expected)):
            self.add(f"{key}.{extra}", f"is not one of {', '.join(expected)}")
        found = {}
        for name in expected:
            number = self.number(raw, name, f"{key}.{name}")
            if number is not None:
                found[name] = number
        return found


def _check_version(doc: Mapping[str, Any], out: _Collector) -> None:
    version = doc.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        out.add("version", "must be an integer >= 1")


def _check_effective_from(doc: Mapping[str, Any], out: _Collector) -> None:
    value = doc.get("effective_from")
    if isinstance(value, date):
        return
    try:
        date.fromisoformat(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        out.add("effective_from", "must be a date YYYY-MM-DD")


def validate_scheme(doc: Mapping[str, Any]) -> list[dict[str, str]]:
    """Every rule a scheme document breaks, as [{"field": "commission.early", "message": ...}].

    An empty list means `scheme_from_doc(doc)` will succeed.
    """
    out = _Collector()
    if not isinstance(doc, Mapping):
        out.add("", "the scheme must be a JSON object")
        return out.errors
    for extra in sorted(set(doc) - _DOC_KEYS):
        out.add(extra, "is not a scheme field")
    _check_version(doc, out)
    _check_effective_from(doc, out)
    for name, rate in out.section(doc, "commission", STAGES).items():
        if not ZERO <= rate <= ONE:
            out.add(f"commission.{name}", "must be a fraction between 0 and 1 (0.005 = 0.5%)")
    for key in ("cure_bonus", "promise_kept_bonus"):
        bonus = out.number(doc, key, key)
        if bonus is not None and bonus < 0:
            out.add(key, "must be zero or more")
    for name, penalty in out.section(doc, "complaint_penalty", SEVERITIES).items():
        if penalty < 0:
            out.add(f"complaint_penalty.{name}", "must be zero or more")
    weights = out.section(doc, "weights", WEIGHT_KEYS)
    for name, weight in weights.items():
        if not ZERO <= weight <= ONE:
            out.add(f"weights.{name}", "must be between 0 and 1")
    if len(weights) == len(WEIGHT_KEYS) and sum(weights.values()) != ONE:
        out.add("weights", f"must sum to 1, they sum to {sum(weights.values())}")
    return out.errors


def scheme_from_doc(doc: Mapping[str, Any]) -> Scheme:
    """Build a Scheme from its document; SchemeInvalid lists every field at fault."""
    errors = validate_scheme(doc)
    if errors:
        raise SchemeInvalid(errors)
    effective = doc["effective_from"]

    def section(key: str) -> Mapping[str, Decimal]:
        return _frozen({k: _decimal(v) for k, v in doc[key].items()})  # type: ignore[misc]

    return Scheme(
        version=doc["version"],
        effective_from=effective if isinstance(effective, date) else date.fromisoformat(effective),
        commission=section("commission"),
        cure_bonus=_decimal(doc["cure_bonus"]),  # type: ignore[arg-type]
        promise_kept_bonus=_decimal(doc["promise_kept_bonus"]),  # type: ignore[arg-type]
        complaint_penalty=section("complaint_penalty"),
        weights=section("weights"),
    )


def scheme_to_doc(scheme: Scheme) -> dict[str, Any]:
    """The JSON document of a scheme: decimals as strings, the date as YYYY-MM-DD."""

    def strings(values: Mapping[str, Decimal]) -> dict[str, str]:
        return {k: format(v, "f") for k, v in values.items()}

    return {
        "version": scheme.version,
        "effective_from": scheme.effective_from.isoformat(),
        "commission": strings(scheme.commission),
        "cure_bonus": format(scheme.cure_bonus, "f"),
        "promise_kept_bonus": format(scheme.promise_kept_bonus, "f"),
        "complaint_penalty": strings(scheme.complaint_penalty),
        "weights": strings(scheme.weights),
    }


# --- which version applies --------------------------------------------------------------------


class SchemeBook:
    """Scheme versions ordered for fast look-up by day (bisect), built once per computation."""

    __slots__ = ("_schemes", "_starts")

    def __init__(self, schemes: Iterable[Scheme]) -> None:
        ordered = sorted(schemes, key=lambda s: (s.effective_from, s.version))
        self._schemes = tuple(ordered)
        self._starts = tuple(s.effective_from for s in ordered)

    def on(self, day: date) -> Scheme:
        index = bisect_right(self._starts, day) - 1
        if index < 0:
            raise LookupError(f"no incentive scheme in effect on {day.isoformat()}")
        return self._schemes[index]


def scheme_on(schemes: Iterable[Scheme], day: date) -> Scheme:
    """The version in effect on `day`: latest effective_from <= day, then highest version.

    LookupError if every version starts after `day`.
    """
    return SchemeBook(schemes).on(day)
