"""The event contract: CloudEvents envelope, one data model per type, parse and build.

from shared.events import parse_event, new_event, Event, EventError, registry

event = parse_event(message.value)          # EventError(reason, errors) if it cannot be
out = new_event("stage.changed", source="urn:qingshou:staging", data={...})
producer.send(topic, key=out.key, value=out.to_json())
"""

from shared.events import registry
from shared.events.codec import (
    EventError,
    FieldError,
    Reason,
    check_envelope,
    new_event,
    parse_event,
)
from shared.events.envelope import DATAVERSION, Envelope, Event
from shared.events.registry import EventSpec, Registry, UnknownEventType
from shared.events.samples import SAMPLES, sample_cloudevent

__all__ = [
    "DATAVERSION",
    "SAMPLES",
    "Envelope",
    "Event",
    "EventError",
    "EventSpec",
    "FieldError",
    "Reason",
    "Registry",
    "UnknownEventType",
    "check_envelope",
    "new_event",
    "parse_event",
    "registry",
    "sample_cloudevent",
]
