"""The consumer's and the outbox's hot paths, checked inside pydantic-core.

Money, currencies, business dates and timestamps are checked by plain Python functions
(``shared.money``, ``shared.events.fields``) that give the contract's field-level messages.
Called from pydantic-core once per field per event, they, and the dozen Python steps of
``parse_event`` and ``new_event``, were most of a consumer's cost. Each validator has a native
twin (:func:`shared.events.bulk.native_schema`) that accepts only wire strings it accepts too
and gives the same value.

- :class:`BulkParser` parses a consumer's batch in one call: the usual event becomes the same
  :class:`Event` that ``parse_event`` makes of it.
- :class:`OutboundJson` writes our own outbound events: the JSON of the attributes and the
  handler's data, checked by one ``validate_json`` against the type's envelope.

Both are a fast first try, never the judge: what they do not vouch for (``None``) goes to
``parse_event`` / ``new_event``, which accept it or name the fields at fault.
``tests/unit/shared/test_shared_events_native.py`` holds them to giving what those give, and
to vouching for nothing those refuse.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Final, NamedTuple

import orjson
from pydantic import ValidationError
from pydantic_core import SchemaValidator

from shared import money
from shared.events import fields
from shared.events.bulk import build, envelopes, native_schema
from shared.events.codec import _source_ok, _subject_ok, new_event_id
from shared.events.envelope import Event, _json_default
from shared.events.registry import DEFAULT, EventSpec, Registry

__all__ = ["BulkParser", "OutboundJson"]


def _all_required(schema: Any) -> Any:
    """The model's own fields all required (its defaults stay for nested ones), through the
    wrappers :func:`_fields_of` lets through."""
    if schema.get("type") in ("definitions", "function-after"):
        return {**schema, "schema": _all_required(schema["schema"])}
    if schema.get("type") == "model":
        inner = schema["schema"]
        if inner.get("type") == "model-fields":
            fields_ = {name: {**f, "schema": f["schema"]["schema"]}
                       if f["schema"].get("type") == "default" else f
                       for name, f in inner["fields"].items()}
            return {**schema, "schema": {**inner, "fields": fields_}}
    return schema


def _data_validator(spec: EventSpec) -> SchemaValidator:
    """The type's data, natively checked (shared.events.bulk), with every field required."""
    return build(_all_required(native_schema(spec.model.__pydantic_core_schema__)))



# What a handler may hand over for a field of each wire validator: the JSON of anything else
# could pass the check while the model refuses the object itself (a Decimal in a text field
# is written as its digits)
_PYTHON_TYPES: Final[dict[Any, tuple[type, ...]]] = {
    **{function: (Decimal, str) for function in money.DECIMAL_VALIDATORS},
    **{function: (str,) for function in money.WIRE_CHECKS
       if function not in money.DECIMAL_VALIDATORS},
    fields.parse_business_date: (date, str),
    fields.parse_timestamp: (datetime, str),
}
_PLAIN: Final[dict[str, tuple[type, ...]]] = {"str": (str,), "int": (int,), "bool": (bool,)}


def _python_types(schema: Any, definitions: dict[str, Any]) -> tuple[type, ...] | None:
    """The exact Python types a field takes the fast way; None: a field the fast way leaves
    to ``new_event`` (lists, nested models, validator functions of its own)."""
    kind = schema["type"]
    if kind == "default":
        return _python_types(schema["schema"], definitions)
    if kind == "definition-ref":
        return _python_types(definitions[schema["schema_ref"]], definitions)
    if kind == "nullable":
        inner = _python_types(schema["schema"], definitions)
        return None if inner is None else (*inner, type(None))
    if kind == "function-plain" and isinstance(schema.get("function"), dict):
        return _PYTHON_TYPES.get(schema["function"].get("function"))
    if kind == "enum":
        return (schema["cls"], _PLAIN.get(schema.get("sub_type", ""), (str,))[0])
    return _PLAIN.get(kind)


def _fields_of(schema: Any) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """A model's fields and definitions, through its definitions and model validators."""
    definitions: dict[str, Any] = {}
    while schema["type"] in ("definitions", "function-after", "function-before",
                             "function-wrap", "function-plain"):
        if schema["type"] == "definitions":
            definitions.update((d["ref"], d) for d in schema["definitions"])
        elif schema["type"] != "function-after":  # a before or wrap function may transform
            return None
        schema = schema["schema"]
    if schema["type"] != "model" or schema["schema"]["type"] != "model-fields":
        return None
    return schema["schema"]["fields"], definitions


class _Outbound(NamedTuple):
    spec: EventSpec
    validator: SchemaValidator
    defaults: dict[str, Any]
    types: dict[str, tuple[type, ...]]  # per field, _python_types

    @classmethod
    def of(cls, spec: EventSpec) -> _Outbound | None:
        """None for a type that takes ``new_event`` always: a later version (its
        ``dataversion`` attribute), a default made by a factory, a field of a kind
        :func:`_python_types` does not know."""
        model_fields = spec.model.model_fields
        found = _fields_of(spec.model.__pydantic_core_schema__)
        if (spec.version != 1 or found is None
                or any(f.default_factory is not None for f in model_fields.values())):
            return None
        types = {name: _python_types(f["schema"], found[1]) for name, f in found[0].items()}
        if None in types.values() or set(types) != set(model_fields):
            return None
        defaults = {name: f.default for name, f in model_fields.items() if not f.is_required()}
        return cls(spec, _data_validator(spec), defaults, types)  # type: ignore[arg-type]


class OutboundJson:
    """The bytes of our own outbound events of version 1, checked against the contract natively.

    Stricter than ``new_event``, never looser: the attributes by ``new_event``'s own rule
    (``_source_ok``, ``_subject_ok`` of shared.events.codec), every data field present (a
    field the data leaves out gets the model's default first, as the model would write it), no
    coercion (strict JSON types: ``1.0`` is not a count). The time is always this process's
    own aware UTC clock.

    What is checked per event is what the handler hands over: the data (one strict
    ``validate_json`` of its JSON against the type's model, natively) and the subject. The
    other attributes are this class's own: a new id, the time, the type it looked up, and the
    source, the consumer's configuration (its check is memoised). Checking the whole envelope
    per event (its patterns) had cost as much as the data.
    """

    def __init__(self, registry: Registry = DEFAULT) -> None:
        # every type at once (tens of milliseconds, on the first emit: shared.context)
        self._validators = {name: _Outbound.of(registry.get(name))
                            for name in registry.type_names()}
        self._millisecond = -1
        self._time = ""

    def _now(self) -> str:
        """The time now to the millisecond, in UTC, written once per millisecond (events of
        one batch are made within a few: ``isoformat`` of each was 6 % of a consumer's CPU)."""
        millisecond = time.time_ns() // 1_000_000
        if millisecond != self._millisecond:
            self._millisecond = millisecond
            self._time = datetime.fromtimestamp(millisecond / 1000, UTC).isoformat(
                timespec="milliseconds")
        return self._time

    def dumps(self, event_type: str, source: str, subject: str, data: Any) -> bytes | None:
        """The event, with a new id and the time now (to the millisecond), as structured-mode
        JSON (what ``new_event(...).to_json()`` writes, but for the order of the data's keys),
        or None when not vouched for here: the caller builds it with ``new_event``, which
        judges it."""
        found = self._validators.get(event_type)
        if (found is None or type(data) is not dict or type(subject) is not str
                or not _subject_ok(subject) or type(source) is not str
                or not _source_ok(source)):
            return None
        spec, validator, defaults, types = found
        for name, value in data.items():
            kinds = types.get(name)
            if kinds is None or type(value) not in kinds:
                return None
        if len(data) < len(types):
            data = {**defaults, **data}  # what the model would fill in and write
        if not spec.subject_fits(subject, data):
            return None
        try:
            written = orjson.dumps(data, default=_json_default)
        except TypeError:
            return None
        try:
            validator.validate_json(written, strict=True)
        except Exception:  # a validation error, or a model's own code failing: new_event judges
            return None
        attributes = orjson.dumps({
            "specversion": "1.0", "id": new_event_id(), "source": source, "type": event_type,
            "time": self._now(), "subject": subject, "datacontenttype": "application/json"})
        return b"".join((attributes[:-1], b',"data":', written, b"}"))


class BulkParser:
    """Parse a consumer's batch of decoded CloudEvents in one pydantic-core call.

    ``handled`` types become :class:`Event` s, as ``parse_event`` would make them; the other
    types of the registry have only their envelope checked (as ``check_envelope`` does) and
    give ``(source, id)``. An item gets ``None`` when it is not vouched for here (the stricter
    envelope of :mod:`shared.events.bulk`, data natively checked): the caller hands it to
    ``parse_event`` or ``check_envelope``, which judge it and name the fields at fault.
    """

    def __init__(self, handled: Sequence[str], registry: Registry = DEFAULT) -> None:
        specs = [registry.get(name) for name in handled]
        specs = [spec for spec in specs if spec.version == 1]  # later ones need upcasting
        skipped = [name for name in registry.type_names()
                   if name not in handled and registry.get(name).version == 1]
        self._specs = {spec.type: spec for spec in specs}
        self._validator = envelopes(specs, native_schema, skipped)

    def parse(self, items: list[Any]) -> list[Event[Any] | tuple[str, str] | None]:
        """Per item (each what ``orjson.loads`` gave), its Event, its ``(source, id)`` or None."""
        out: list[Event[Any] | tuple[str, str] | None] = [None] * len(items)
        try:
            done = self._validator.validate_python(items)
            places: Sequence[int] = range(len(items))
        except ValidationError as exc:
            bad = {err["loc"][0] for err in exc.errors(include_url=False, include_context=False,
                                                       include_input=False)}
            places = [n for n in range(len(items)) if n not in bad]
            # the others alone: each item is judged on its own, so they pass again
            done = self._validator.validate_python([items[n] for n in places])
        except Exception:  # a model's own code failing oddly: judge them one by one
            return out
        specs = self._specs
        for n, attributes in zip(places, done, strict=True):
            spec = specs.get(attributes["type"])
            if spec is None:  # a type not handled here: its envelope is good
                out[n] = (attributes["source"], attributes["id"])
                continue
            data, subject = attributes["data"], attributes["subject"]
            expected = spec.expected_subject(data)
            if expected is not None and subject != expected:
                continue  # parse_event says why
            out[n] = Event(type=spec.type, source=attributes["source"], id=attributes["id"],
                           time=attributes["time"], subject=subject, data=data,
                           datacontenttype=attributes.get("datacontenttype"))
        return out
