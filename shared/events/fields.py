"""Field types shared by the event models: ids, business dates, timestamps, contact details.

The validators are plain functions on purpose: they accept exactly the wire form (a date only as
"YYYY-MM-DD", a timestamp only with an offset) and skip pydantic's lax coercions, which would
let a Unix integer pass as a date.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, datetime
from functools import lru_cache
from typing import Annotated, Final
from zoneinfo import ZoneInfo

from pydantic import (
    AfterValidator,
    Field,
    PlainSerializer,
    PlainValidator,
    Strict,
    StringConstraints,
    WithJsonSchema,
)
from pydantic_core import CoreSchema, PydanticCustomError
from pydantic_core import core_schema as cs

__all__ = [
    "BusinessDate",
    "Count",
    "Email",
    "Id",
    "Note",
    "Period",
    "Phone",
    "PositiveInt",
    "Text",
    "TimeZoneName",
    "Timestamp",
    "parse_business_date",
    "parse_timestamp",
]

# Ids come from core banking; we only refuse what would break a Kafka key, a URL or a log line.
# No whitespace and no control characters (PostgreSQL text cannot even store NUL).
ID_PATTERN: Final = r"^[^\s\x00-\x1f\x7f]+$"
NO_NUL_PATTERN: Final = r"^[^\x00]*$"
Id = Annotated[str, Strict(), StringConstraints(min_length=1, max_length=128, pattern=ID_PATTERN)]
Text = Annotated[str, Strict(), StringConstraints(min_length=1, max_length=500,
                                                  pattern=NO_NUL_PATTERN)]
Note = Annotated[str, Strict(), StringConstraints(max_length=4000, pattern=NO_NUL_PATTERN)]
Count = Annotated[int, Strict(), Field(ge=0)]
PositiveInt = Annotated[int, Strict(), Field(ge=1)]

_DATE_RE: Final = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
_TIMESTAMP_RE: Final = re.compile(
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})$"
)


def parse_business_date(value: object) -> date:
    """A business date: a `date` or the string "YYYY-MM-DD", nothing else."""
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str):
        parsed = _date_from_text(value)
        if parsed is not None:
            return parsed
    raise PydanticCustomError("business_date", "date must be a real date written YYYY-MM-DD")


@lru_cache(maxsize=8192)
def _date_from_text(value: str) -> date | None:
    # a stream repeats few distinct business dates: parse each once (dates are immutable)
    if _DATE_RE.fullmatch(value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            return None
    return None


def parse_timestamp(value: object) -> datetime:
    """An RFC 3339 timestamp with offset (string or aware datetime); naive ones are refused."""
    if isinstance(value, datetime):
        if value.utcoffset() is None:
            raise PydanticCustomError("timestamp_naive", "timestamp must carry a UTC offset")
        return value
    if isinstance(value, str) and _TIMESTAMP_RE.fullmatch(value):
        try:
            return datetime.fromisoformat(value.upper())
        except ValueError:
            pass
    raise PydanticCustomError(
        "timestamp", "timestamp must be RFC 3339 with offset, e.g. 2024-05-01T09:30:00+08:00"
    )


# RFC 3339 with an offset in the one spelling that parse_timestamp needs not upper-case: for
# such a string it is the same C call, which refuses impossible dates and times alike
WIRE_TIMESTAMP_PATTERN: Final = (r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}"
                                 r"(\.[0-9]{1,6})?(Z|[+-][0-9]{2}:[0-9]{2})$")

# For shared.events.bulk and shared.events.native: the business date and the timestamp as
# native checks accepting only what their validators accept from the wire (a string), and
# giving the same value (date.fromisoformat, datetime.fromisoformat: the same C calls).
WIRE_CHECKS: Final[dict[Callable[[object], object], CoreSchema]] = {
    parse_business_date: cs.no_info_after_validator_function(
        date.fromisoformat, cs.str_schema(strict=True, pattern=_DATE_RE.pattern)),
    parse_timestamp: cs.no_info_after_validator_function(
        datetime.fromisoformat, cs.str_schema(strict=True, pattern=WIRE_TIMESTAMP_PATTERN)),
}

BusinessDate = Annotated[
    date,
    PlainValidator(parse_business_date),
    PlainSerializer(date.isoformat, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date", "examples": ["2024-05-01"]}),
]
Timestamp = Annotated[
    datetime,
    PlainValidator(parse_timestamp),
    PlainSerializer(datetime.isoformat, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time", "examples": ["2024-05-01T09:30:00Z"]}),
]

PHONE_PATTERN: Final = r"^\+[1-9][0-9]{6,14}$"
Phone = Annotated[str, Strict(), StringConstraints(pattern=PHONE_PATTERN)]

# Deliberately simple: dot-atom local part, a domain of LDH labels with at least one dot.
# It refuses the typos that matter (spaces, missing @, "a@b", "a..b@c.d") without a dependency.
_ATOM: Final = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL: Final = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
EMAIL_PATTERN: Final = rf"^{_ATOM}(?:\.{_ATOM})*@{_LABEL}(?:\.{_LABEL})+$"
Email = Annotated[str, Strict(), StringConstraints(max_length=254, pattern=EMAIL_PATTERN)]


@lru_cache(maxsize=1024)
def _is_timezone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ValueError, KeyError, OSError):  # ZoneInfoNotFoundError is a KeyError
        return False
    return True


def _timezone(name: str) -> str:
    if not _is_timezone(name):
        raise PydanticCustomError(
            "timezone",
            "timezone must be an IANA name like 'Asia/Shanghai', not {got!r}",
            {"got": name},
        )
    return name


TimeZoneName = Annotated[
    str,
    Strict(),
    StringConstraints(min_length=1, max_length=64),
    AfterValidator(_timezone),
    WithJsonSchema({"type": "string", "examples": ["Asia/Shanghai"], "description": "IANA zone"}),
]

PERIOD_PATTERN: Final = r"^[0-9]{4}-(0[1-9]|1[0-2])$"
Period = Annotated[
    str,
    Strict(),
    StringConstraints(pattern=PERIOD_PATTERN),
    WithJsonSchema({"type": "string", "pattern": PERIOD_PATTERN, "examples": ["2024-05"]}),
]
