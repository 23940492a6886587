"""OpenAPI of the gateway: request bodies with an example per inbound type, and the responses.

The routes read and parse the raw body themselves (one orjson pass, one ``parse_event``), so
FastAPI cannot infer the request schema; it is declared here and passed as ``openapi_extra``.
"""

from __future__ import annotations

from typing import Any, Final

from services.ingest.routing import inbound_types
from shared.events import sample_cloudevent
from shared.problems import PROBLEM_JSON

SINGLE_TYPES: Final = ("application/cloudevents+json", "application/json")
BATCH_TYPES: Final = ("application/cloudevents-batch+json", "application/json")


def cloudevent_schema() -> dict[str, Any]:
    """The structured-mode envelope; ``data`` is checked against its type's model (PRODUCT 3.2)."""
    return {
        "type": "object",
        "required": ["specversion", "id", "source", "type", "time", "subject", "data"],
        "properties": {
            "specversion": {"type": "string", "enum": ["1.0"]},
            "id": {"type": "string", "minLength": 1, "maxLength": 256},
            "source": {"type": "string", "minLength": 1, "maxLength": 256,
                       "description": "URI-reference"},
            "type": {"type": "string", "enum": inbound_types()},
            "time": {"type": "string", "format": "date-time",
                     "description": "RFC 3339 with offset"},
            "subject": {"type": "string", "minLength": 1, "maxLength": 256,
                        "description": "loan id (borrower id for borrower.updated, "
                                       "'calendar' for business_day.closed); the Kafka key"},
            "datacontenttype": {"type": "string",
                                "enum": ["application/json", "application/json; charset=utf-8"]},
            "dataschema": {"type": "string"},
            "dataversion": {"type": "integer", "minimum": 1,
                            "description": "schema version of data (absent = 1)"},
            "data": {"type": "object",
                     "description": "the payload of the type; see the examples"},
        },
        "additionalProperties": True,
    }


def _examples() -> dict[str, dict[str, Any]]:
    return {t: {"summary": t, "value": sample_cloudevent(t)} for t in inbound_types()}


def single_body() -> dict[str, Any]:
    content = {media: {"schema": cloudevent_schema(), "examples": _examples()}
               for media in SINGLE_TYPES}
    return {"requestBody": {"required": True, "content": content,
                            "description": "one CloudEvent in structured JSON mode"}}


def batch_body(max_items: int) -> dict[str, Any]:
    schema = {"type": "array", "minItems": 1, "maxItems": max_items,
              "items": cloudevent_schema()}
    every = [sample_cloudevent(t) for t in inbound_types()]
    examples = {"every-type": {"summary": "one event of every inbound type", "value": every}}
    content = {media: {"schema": schema, "examples": examples} for media in BATCH_TYPES}
    return {"requestBody": {"required": True, "content": content,
                            "description": f"a JSON array of 1 to {max_items} CloudEvents"}}


_FIELD_ERROR: Final = {
    "type": "object", "required": ["field", "message"],
    "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
}

_RESULT: Final = {
    "type": "object", "required": ["index", "status"],
    "properties": {
        "index": {"type": "integer", "minimum": 0},
        "status": {"type": "integer", "enum": [202, 400, 403, 413, 422, 503]},
        "id": {"type": ["string", "null"]},
        "source": {"type": ["string", "null"]},
        "topic": {"type": "string"},
        "duplicate": {"type": "boolean"},
        "title": {"type": "string"},
        "detail": {"type": "string"},
        "errors": {"type": "array", "items": _FIELD_ERROR},
    },
}

PROBLEM_SCHEMA: Final = {
    "type": "object", "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"}, "title": {"type": "string"},
        "status": {"type": "integer"}, "detail": {"type": "string"},
        "instance": {"type": "string"},
        "errors": {"type": "array", "items": _FIELD_ERROR},
        "results": {"type": "array", "items": _RESULT,
                    "description": "batch only: the outcome of every item"},
    },
}

ACCEPTED_SCHEMA: Final = {
    "type": "object", "required": ["id", "source", "type", "topic", "duplicate"],
    "properties": {
        "id": {"type": "string"}, "source": {"type": "string"}, "type": {"type": "string"},
        "topic": {"type": "string"},
        "duplicate": {"type": "boolean",
                      "description": "true: accepted recently already, not published again"},
    },
}

BATCH_SCHEMA: Final = {
    "type": "object", "required": ["accepted", "duplicates", "rejected", "failed", "results"],
    "properties": {
        "accepted": {"type": "integer"}, "duplicates": {"type": "integer"},
        "rejected": {"type": "integer"}, "failed": {"type": "integer"},
        "results": {"type": "array", "items": _RESULT},
    },
}

_RETRY_AFTER: Final = {"Retry-After": {"description": "seconds to wait before retrying",
                                       "schema": {"type": "string"}}}


_WWW_AUTHENTICATE: Final = {"WWW-Authenticate": {"description": "always `Bearer`",
                                                 "schema": {"type": "string"}}}


def _problem(description: str, retry: bool = False,
             headers: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description,
                           "content": {PROBLEM_JSON: {"schema": PROBLEM_SCHEMA}}}
    if retry:
        out["headers"] = _RETRY_AFTER
    if headers:
        out["headers"] = headers
    return out


def _common_problems() -> dict[int | str, dict[str, Any]]:
    return {
        400: _problem("the body is not JSON"),
        401: _problem("no API key, or an unknown one", headers=_WWW_AUTHENTICATE),
        403: _problem("the API key lacks the scope for the event's type"),
        413: _problem("the body, or the number of events, is above the limit"),
        415: _problem("unsupported Content-Type"),
        422: _problem("not a valid CloudEvent of an inbound type; `errors` names each field"),
        429: _problem("the API key's rate limit is exhausted", retry=True),
    }


def single_responses() -> dict[int | str, dict[str, Any]]:
    return {
        202: {"description": "Kafka acknowledged the event (acks=all), or it is a recent "
                             "duplicate and was not published again",
              "content": {"application/json": {"schema": ACCEPTED_SCHEMA}}},
        **_common_problems(),
        503: _problem("Kafka did not acknowledge the event: it is not accepted; retry",
                      retry=True),
    }


def batch_responses() -> dict[int | str, dict[str, Any]]:
    return {
        202: {"description": "every event accepted (acknowledged by Kafka, or a recent "
                             "duplicate)",
              "content": {"application/json": {"schema": BATCH_SCHEMA}}},
        207: {"description": "some events rejected (400/403/413/422 per item); every other "
                             "event acknowledged by Kafka",
              "content": {"application/json": {"schema": BATCH_SCHEMA}}},
        **_common_problems(),
        503: _problem("Kafka did not acknowledge some events: `results` says which were "
                      "accepted (202) and which not (503); retry those", retry=True),
    }
