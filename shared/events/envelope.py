"""CloudEvents 1.0 structured-mode envelope, as our contract tightens it (PRODUCT.md 3.1).

`Envelope` validates the attributes of a message and leaves `data` as the raw dict; the typed data
model is validated separately against the registry, so the envelope is parsed once per message
whatever its type. `Event` is what services hold: the attributes plus the typed data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Final, Generic, Literal, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, Strict, StringConstraints, model_validator
from pydantic_core import PydanticCustomError

from shared.events.fields import Timestamp
from shared.frozen import quick_init

__all__ = [
    "DATAVERSION",
    "SPECVERSION",
    "Envelope",
    "Event",
    "ExtensionValue",
]

SPECVERSION: Final = "1.0"
# Extension attribute carrying the schema version of `data`; absent means version 1.
DATAVERSION: Final = "dataversion"

ExtensionValue = str | int | bool

_EXTENSION_NAME_RE: Final = re.compile(r"^[a-z0-9]{1,20}$")
_INT32: Final = range(-(2**31), 2**31)

# URI-reference: we only refuse what cannot be one (empty, whitespace, control characters),
# and what is too long: with the id it keys every inbox row (a btree entry holds at most ~2.7 kB;
# 256 + 256 characters fit even as 4-byte UTF-8).
_UriReference = Annotated[str, Strict(),
                          StringConstraints(min_length=1, max_length=256,
                                            pattern=r"^[^\s\x00-\x1f\x7f]+$")]
_Uri = Annotated[str, Strict(), StringConstraints(pattern=r"^[A-Za-z][A-Za-z0-9+.\-]*:\S*$")]
# id, type and subject end up in Kafka keys, inbox rows and logs: no control characters
_NonEmpty = Annotated[str, Strict(), StringConstraints(min_length=1, max_length=256,
                                                       pattern=r"^[^\x00-\x1f\x7f]+$")]


def _check_extensions(extras: dict[str, Any]) -> None:
    for name, value in extras.items():
        if not _EXTENSION_NAME_RE.fullmatch(name):
            raise PydanticCustomError(
                "cloudevent_extension_name",
                "unknown attribute {field!r}: extension names are 1-20 lowercase letters/digits",
                {"field": name},
            )
        ok = isinstance(value, str) or (
            isinstance(value, int) and (isinstance(value, bool) or value in _INT32)
        )
        if not ok:
            raise PydanticCustomError(
                "cloudevent_extension_value",
                "extension {field!r} must be a string, a 32-bit integer or a boolean",
                {"field": name},
            )


class Envelope(BaseModel):
    """The attributes of a structured-mode CloudEvent; unknown keys are extension attributes."""

    model_config = ConfigDict(extra="allow", frozen=True)

    specversion: Literal["1.0"]
    id: _NonEmpty
    source: _UriReference
    type: _NonEmpty
    time: Timestamp
    subject: _NonEmpty
    # JSON is UTF-8 (RFC 8259); some CloudEvents SDKs name the charset all the same
    datacontenttype: Literal["application/json", "application/json; charset=utf-8"] | None = None
    dataschema: _Uri | None = None
    data: dict[str, Any]

    @model_validator(mode="after")
    def _extensions_are_cloudevents_shaped(self) -> Envelope:
        extras = self.__pydantic_extra__
        if extras:
            _check_extensions(extras)
        return self

    @property
    def extensions(self) -> dict[str, ExtensionValue]:
        """Extension attributes (everything that is not a CloudEvents core attribute)."""
        return dict(self.__pydantic_extra__ or {})


D = TypeVar("D", bound=BaseModel)


def _json_default(value: object) -> object:
    """What orjson cannot write (or would write differently from the models' serialisers)."""
    if isinstance(value, Decimal):
        return format(value, "f")  # never exponent notation, as shared.money serialises it
    if isinstance(value, date):  # dates and timestamps (a datetime is a date), as the models do
        return value.isoformat()
    if isinstance(value, BaseModel):  # a nested model, should one ever appear
        return value.__pydantic_serializer__.to_python(value, mode="json")
    raise TypeError(f"cannot serialise {type(value).__name__} in an event")


@quick_init
@dataclass(frozen=True)
class Event(Generic[D]):
    """One event: CloudEvents attributes plus its typed, validated `data`.

    Build with `shared.events.new_event`, parse with `shared.events.parse_event`. `version` is the
    schema version of `data` (after any upcasting); it travels as the `dataversion` extension
    when it is not 1.
    """

    type: str
    source: str
    id: str
    time: datetime
    subject: str
    data: D
    version: int = 1
    datacontenttype: str | None = "application/json"
    dataschema: str | None = None
    extensions: dict[str, ExtensionValue] = field(default_factory=dict)

    specversion = SPECVERSION  # class constant, not a field

    @property
    def key(self) -> bytes:
        """The Kafka message key: the subject, so one loan's events stay on one partition."""
        return self.subject.encode()

    def to_dict(self) -> dict[str, Any]:
        """The structured-mode CloudEvent as JSON-ready values (money and dates as strings)."""
        out = self.to_dict_without_data()
        out["data"] = self.data.model_dump(mode="json")
        return out

    def to_json(self) -> bytes:
        """The structured-mode CloudEvent as UTF-8 JSON bytes, ready to be a Kafka value.

        Hot path of every outbound event. The data models are flat (strings, enums, ints,
        Decimal, dates, lists of enums), so their field dict goes straight to orjson, with the
        models' own wire form for what orjson does not write: money as a plain decimal string.
        A test in
        ``tests/unit/shared/test_shared_events_contract.py`` proves the bytes equal pydantic's
        JSON of the model for every registered type.
        """
        if self.dataschema is None and not self.extensions and self.version == 1:
            # the usual shape of our own events, without the general dict building
            out: dict[str, Any] = {
                "specversion": SPECVERSION, "id": self.id, "source": self.source,
                "type": self.type, "time": self.time.isoformat(), "subject": self.subject}
            if self.datacontenttype is not None:
                out["datacontenttype"] = self.datacontenttype
        else:
            out = self.to_dict_without_data()
        out["data"] = self.data.__dict__
        # dates and aware timestamps written by orjson itself: the same text as isoformat
        # (the contract test checks it), but for an offset with seconds (local mean time
        # before about 1900), which orjson rounds to the minute, as RFC 3339 wants anyway
        return orjson.dumps(out, default=_json_default)

    def to_dict_without_data(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "specversion": SPECVERSION,
            "id": self.id,
            "source": self.source,
            "type": self.type,
            "time": self.time.isoformat(),
            "subject": self.subject,
        }
        if self.datacontenttype is not None:
            out["datacontenttype"] = self.datacontenttype
        if self.dataschema is not None:
            out["dataschema"] = self.dataschema
        out.update(self.extensions)
        if self.version != 1:
            out[DATAVERSION] = self.version
        return out
