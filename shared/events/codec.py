"""Parse and build events: the only way bytes become an `Event` and back.

Hot path (every consumer, every message): orjson.loads, one `Envelope.model_validate`, one
`model_validate` of the data model. Failures raise `EventError` whose `reason` is the dead-letter
reason of PRODUCT.md 3.1 and whose `errors` name each field at fault with a dotted path
(`time`, `data.amount`, `data.opted_out_channels.1`).
"""

from __future__ import annotations

import random
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Final, Literal

import orjson
from pydantic import BaseModel, ValidationError

from shared.events.envelope import DATAVERSION, Envelope, Event, ExtensionValue
from shared.events.fields import parse_timestamp
from shared.events.registry import DEFAULT, EventSpec, Registry, UnknownEventType

__all__ = [
    "EventError",
    "FieldError",
    "Reason",
    "check_envelope",
    "new_event",
    "new_event_id",
    "parse_event",
]

Reason = Literal["invalid_json", "not_cloudevent", "unknown_type", "schema_error"]
FieldError = dict[str, str]  # {"field": "data.amount", "message": "..."}

_DATA_PREFIX: Final = "data."


class EventError(ValueError):
    """A message that cannot become an Event. `reason` is the DLQ reason; `errors` the details.

    `event_type` and `event_id` are filled in when the envelope got far enough to have them,
    for DLQ headers and logs.
    """

    def __init__(
        self,
        reason: Reason,
        errors: list[FieldError],
        *,
        event_type: str | None = None,
        event_id: str | None = None,
    ) -> None:
        self.reason: Reason = reason
        self.errors = errors
        self.event_type = event_type
        self.event_id = event_id
        detail = "; ".join(f"{e['field'] or '(message)'}: {e['message']}" for e in errors)
        super().__init__(f"{reason}: {detail}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary, e.g. for a REST problem document or a DLQ header."""
        return {"reason": self.reason, "errors": self.errors}


def _field_errors(exc: ValidationError, prefix: str = "") -> list[FieldError]:
    out: list[FieldError] = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = ".".join(str(part) for part in err["loc"])
        if not loc:
            # Model-level checks name their field in the error context (see base.field_error).
            loc = str((err.get("ctx") or {}).get("field", ""))
        field = f"{prefix}{loc}" if loc else prefix.rstrip(".")
        out.append({"field": field, "message": err["msg"]})
    return out


def _one(field: str, message: str) -> list[FieldError]:
    return [{"field": field, "message": message}]


def _version_of(extras: dict[str, Any] | None) -> int:
    if not extras or DATAVERSION not in extras:
        return 1
    raw = extras[DATAVERSION]
    if isinstance(raw, str) and raw.isascii() and raw.isdigit():
        raw = int(raw)
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 1:
        raise ValueError("dataversion must be a positive integer")
    return raw


def _check_subject(spec: EventSpec, subject: str, data: BaseModel, envelope_id: str) -> None:
    expected = spec.expected_subject(data)
    if expected is not None and subject != expected:
        where = f"data.{spec.subject_field}" if spec.subject_value is None else "the contract"
        raise EventError(
            "schema_error",
            _one("subject", f"subject {subject!r} must equal {expected!r} (from {where})"),
            event_type=spec.type,
            event_id=envelope_id,
        )


def _validate_data(spec: EventSpec, data: Any, event_id: str | None) -> BaseModel:
    try:
        return spec.model.__pydantic_validator__.validate_python(data)  # type: ignore[no-any-return]
    except ValidationError as exc:
        errors = _field_errors(exc, _DATA_PREFIX)
        raise EventError("schema_error", errors, event_type=spec.type, event_id=event_id) from None


def _decoded(raw: bytes | str | dict[str, Any]) -> dict[str, Any]:
    if isinstance(raw, dict):
        obj: Any = raw
    else:
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise EventError("invalid_json", _one("", str(exc))) from None
    if not isinstance(obj, dict):
        raise EventError("not_cloudevent", _one("", "a CloudEvent must be a JSON object"))
    return obj  # type: ignore[no-any-return]


def _envelope(obj: dict[str, Any]) -> Envelope:
    try:
        return Envelope.model_validate(obj)
    except ValidationError as exc:
        event_type, event_id = obj.get("type"), obj.get("id")
        raise EventError(
            "not_cloudevent",
            _field_errors(exc),
            event_type=event_type if isinstance(event_type, str) else None,
            event_id=event_id if isinstance(event_id, str) else None,
        ) from None


def _version(env: Envelope) -> int:
    try:
        return _version_of(env.__pydantic_extra__)
    except ValueError as exc:
        raise EventError(
            "not_cloudevent", _one(DATAVERSION, str(exc)), event_type=env.type, event_id=env.id
        ) from None


def parse_event(raw: bytes | str | dict[str, Any], *, registry: Registry = DEFAULT) -> Event[Any]:
    """Turn a structured-mode CloudEvent (JSON bytes/str, or an already decoded dict) into an Event.

    Data of an older version is upcast to the latest before validation. Raises EventError.
    """
    obj = _decoded(raw)
    fast = _fast_attributes(obj, registry)
    if fast is not None:
        spec, when = fast
        event_id, subject = obj["id"], obj["subject"]
        model = _validate_data(spec, obj["data"], event_id)
        _check_subject(spec, subject, model, event_id)
        return Event(type=obj["type"], source=obj["source"], id=event_id, time=when,
                     subject=subject, data=model, version=spec.version,
                     datacontenttype=obj.get("datacontenttype"))
    env = _envelope(obj)
    version = _version(env)
    try:
        spec, data = registry.upcast(env.type, version, env.data)
    except UnknownEventType as exc:
        raise EventError(
            "unknown_type", _one("type", str(exc)), event_type=env.type, event_id=env.id
        ) from None
    except Exception as exc:  # an upcaster choking on a malformed old payload
        raise EventError(
            "schema_error",
            _one("data", f"cannot upcast from version {version}: {exc!r}"),
            event_type=env.type,
            event_id=env.id,
        ) from None

    model = _validate_data(spec, data, env.id)
    _check_subject(spec, env.subject, model, env.id)

    extras = env.__pydantic_extra__
    extensions: dict[str, ExtensionValue] = {}
    if extras:
        extensions = {k: v for k, v in extras.items() if k != DATAVERSION}
    return Event(
        type=env.type,
        source=env.source,
        id=env.id,
        time=env.time,
        subject=env.subject,
        data=model,
        version=spec.version,
        datacontenttype=env.datacontenttype,
        dataschema=env.dataschema,
        extensions=extensions,
    )


def check_envelope(raw: bytes | str | dict[str, Any], *,
                   registry: Registry = DEFAULT) -> tuple[str, str, str]:
    """Check a message's JSON, CloudEvent attributes and type, but not its data.

    Returns ``(type, source, id)``. For a consumer skipping a type it does not handle: it still
    dead-letters what is not a CloudEvent or of an unknown type, while the data of a type is
    judged (and a ``schema_error`` dead-lettered) by the consumers that use it. Raises
    EventError with the same reasons and fields as :func:`parse_event`.
    """
    obj = _decoded(raw)
    if _fast_attributes(obj, registry) is not None:
        return obj["type"], obj["source"], obj["id"]
    env = _envelope(obj)
    version = _version(env)
    try:
        registry.get(env.type)
        registry.get(env.type, version)
    except UnknownEventType as exc:
        raise EventError(
            "unknown_type", _one("type", str(exc)), event_type=env.type, event_id=env.id
        ) from None
    return env.type, env.source, env.id


def _fast_attributes(obj: dict[str, Any], registry: Registry) -> tuple[EventSpec, datetime] | None:
    """The common shape (the seven core attributes, maybe ``datacontenttype``), checked by hand.

    Returns the type's spec and the parsed time, or None for anything else — extensions,
    ``dataschema``, a missing or odd attribute, an unknown type, data of another version — and
    the full pydantic envelope validation then runs and names the field. Data is not looked at
    beyond being an object: the caller validates it with its model.
    """
    size = len(obj)
    if size != 7 and not (size == 8 and obj.get("datacontenttype") == "application/json"):
        return None
    get = obj.get
    event_id, source, type_, subject = get("id"), get("source"), get("type"), get("subject")
    when_s = get("time")
    if (get("specversion") != "1.0" or type(event_id) is not str or type(source) is not str
            or type(type_) is not str or type(subject) is not str or type(when_s) is not str
            or type(get("data")) is not dict):
        return None
    # isprintable() is False for every control character (and for some harmless ones, which
    # then take the full validation): one C call instead of a regex per attribute
    if not (0 < len(event_id) <= 256 and 0 < len(type_) <= 256 and 0 < len(subject) <= 256
            and 0 < len(source) <= 256 and source.isprintable() and " " not in source
            and (event_id + subject + type_).isprintable()):
        return None
    try:
        when = parse_timestamp(when_s)
        spec = registry.get(type_)
    except Exception:
        return None
    if spec.version != 1:  # unversioned data is version 1 and needs its upcasters
        return None
    return spec, when


# True when an attribute plainly satisfies the envelope (else the full validation runs and
# reports what is wrong): one printable check instead of a regex, as in _fast_attributes

@lru_cache(maxsize=256)
def _source_ok(source: str) -> bool:
    return 0 < len(source) <= 256 and source.isprintable() and " " not in source


def _subject_ok(subject: str) -> bool:
    return 0 < len(subject) <= 256 and subject.isprintable()


def _id_ok(event_id: str) -> bool:
    return 0 < len(event_id) <= 256 and event_id.isprintable()


_UUID4_BITS: Final = (4 << 76) | (2 << 62)  # version 4, RFC 4122 variant
_UUID4_MASK: Final = ~((0xF << 76) | (0x3 << 62))


def new_event_id() -> str:
    """A random UUID (version 4) as text: the id of an event we create.

    ``str(uuid.uuid4())`` costs several microseconds per outbound event; this draws the 122
    random bits from the ``random`` module (Mersenne Twister, seeded from the OS and re-seeded
    in a forked child) and formats them directly. Event ids must be unique, not secret.
    """
    h = "%032x" % ((random.getrandbits(128) & _UUID4_MASK) | _UUID4_BITS)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"




def new_event(
    type: str,
    *,
    source: str,
    data: dict[str, Any] | BaseModel,
    subject: str | None = None,
    id: str | None = None,
    time: datetime | None = None,
    version: int | None = None,
    dataschema: str | None = None,
    extensions: dict[str, ExtensionValue] | None = None,
    registry: Registry = DEFAULT,
) -> Event[Any]:
    """Build a valid Event of `type` (latest version unless `version` is given).

    `data` is a dict (validated against the type's model) or an instance of that model.
    `subject` defaults to what the type demands (the loan id, the borrower id, "calendar"...);
    `id` to a random UUID; `time` to now in UTC. Raises EventError like `parse_event`.
    """
    event_id = id if id is not None else new_event_id()
    try:
        spec = registry.get(type, version)
    except UnknownEventType as exc:
        raise EventError("unknown_type", _one("type", str(exc)), event_type=type) from None

    if data.__class__ is dict:  # the usual case; models' isinstance goes through ABCMeta (slow)
        model: BaseModel = _validate_data(spec, data, event_id)
    elif isinstance(data, spec.model):
        model = data
    elif isinstance(data, BaseModel):
        raise EventError(
            "schema_error",
            _one("data", f"{type} needs {spec.model.__name__}, got {data.__class__.__name__}"),
            event_type=type,
            event_id=event_id,
        )
    else:
        model = _validate_data(spec, data, event_id)

    if subject is None:
        subject = spec.expected_subject(model)
        if subject is None:
            raise EventError("not_cloudevent", _one("subject", f"{type} needs an explicit subject"))
    when = time if time is not None else datetime.now(UTC)
    if dataschema is None and not extensions:
        # the common case of our own outbound events: the attributes are ours, only their
        # shape needs checking, not a full envelope validation per event (an id and a time
        # we made ourselves are known good, and a service has one source)
        if (_source_ok(source) and _subject_ok(subject)
                and (id is None or _id_ok(event_id))
                and (time is None or (when.tzinfo is not None
                                      and when.utcoffset() is not None))):
            _check_subject(spec, subject, model, event_id)
            return Event(type=type, source=source, id=event_id, time=when, subject=subject,
                         data=model, version=spec.version)
    attributes: dict[str, Any] = {
        "specversion": "1.0",
        "id": event_id,
        "source": source,
        "type": type,
        "time": when,
        "subject": subject,
        "datacontenttype": "application/json",
        "data": {},
    }
    if dataschema is not None:
        attributes["dataschema"] = dataschema
    if extensions:
        clash = sorted(set(extensions) & set(Envelope.model_fields))
        if clash:
            raise EventError(
                "not_cloudevent",
                [{"field": name, "message": "not an extension attribute"} for name in clash],
                event_type=type,
                event_id=event_id,
            )
        attributes.update((k, v) for k, v in extensions.items() if k != DATAVERSION)
    try:
        env = Envelope.model_validate(attributes)
    except ValidationError as exc:
        raise EventError(
            "not_cloudevent", _field_errors(exc), event_type=type, event_id=event_id
        ) from None
    _check_subject(spec, subject, model, event_id)
    return Event(
        type=type,
        source=env.source,
        id=env.id,
        time=env.time,
        subject=subject,
        data=model,
        version=spec.version,
        dataschema=dataschema,
        extensions=dict(env.__pydantic_extra__ or {}),
    )
