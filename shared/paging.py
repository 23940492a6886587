"""Opaque cursors for every list of the project's APIs (``limit`` + ``cursor``).

A cursor wraps the position after which the next page starts (a row id, a key or an offset);
clients treat it as opaque. A cursor that this API did not issue is refused with a problem
naming the ``cursor`` field, never a 500.
"""

from __future__ import annotations

import base64
import binascii
from typing import TypeVar

import orjson

from shared.problems import Problem

P = TypeVar("P", int, str)


def encode_cursor(position: int | str) -> str:
    """The cursor of the page that starts after ``position``."""
    return base64.urlsafe_b64encode(orjson.dumps({"after": position})).decode().rstrip("=")


def decode_cursor(cursor: str | None, kind: type[P], start: P) -> P:
    """The position inside ``cursor`` (``start`` without one); 400 if it is not ours."""
    if not cursor:
        return start
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        position = orjson.loads(base64.urlsafe_b64decode(padded.encode()))["after"]
    except (binascii.Error, ValueError, KeyError, TypeError):
        position = None
    valid = type(position) is kind
    if not valid or (isinstance(position, int) and position < 0):
        raise Problem(400, "cursor is not one this API issued",
                      errors=[{"field": "cursor", "message": "invalid cursor"}])
    return position  # type: ignore[return-value]
