"""Structured JSON logs with personal data masked.

Every record is one JSON object per line. Phone numbers and e-mail addresses are masked wherever
they appear in the message or in extra fields; values of fields that hold a person's name are
masked by key. Call :func:`configure_logging` once per process (from a service's bootstrap).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import re
import sys
from decimal import Decimal
from typing import Any

import orjson

_EMAIL = re.compile(r"([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9.-]+\.[A-Za-z]{2,})")
# E.164 numbers ("+" then digits, maybe spaced) and bare runs of 11-15 digits (a mobile number
# written without "+"); not amounts ("120000.00") nor ids ("LN-2024-000123")
_PHONE = re.compile(r"\+\d[\d\s()-]{5,}\d|(?<![\w.-])\d{11,15}(?![\w.-])")
NAME_KEYS = frozenset({"name", "borrower_name", "full_name", "first_name", "last_name",
                       "collector_name", "recipient_name"})
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()) | {
    "message", "asctime", "taskName"}


def _mask_phone(m: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", m.group(0))
    if len(digits) < 7:
        return m.group(0)
    return "+***" + digits[-2:] if m.group(0).startswith("+") else "***" + digits[-2:]


def mask_text(text: str) -> str:
    """Mask e-mail addresses and phone numbers inside free text."""
    text = _EMAIL.sub(lambda m: f"{m.group(1)}***@{m.group(2)}", text)
    return _PHONE.sub(_mask_phone, text)


def mask_name(value: str) -> str:
    return value[:1] + "***" if value else value


def mask_value(key: str, value: Any) -> Any:
    """Mask one structured value; names by key, phones and e-mails by content."""
    if hasattr(value, "model_dump"):  # a pydantic model: mask its fields, not its repr
        value = value.model_dump(mode="json")
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if isinstance(value, str):
        return mask_name(value) if key in NAME_KEYS else mask_text(value)
    if isinstance(value, dict):
        return {k: mask_value(k, v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [mask_value(key, v) for v in value]
    return value


def _default(obj: Any) -> Any:
    if isinstance(obj, Decimal):
        return str(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    return str(obj)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": mask_text(record.getMessage()),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = mask_value(key, value)
        if record.exc_info:
            out["exc"] = mask_text(self.formatException(record.exc_info))
        return orjson.dumps(out, default=_default).decode()


def configure_logging(level: str = "INFO", service: str | None = None) -> None:
    """Route the root logger to stderr as JSON lines (idempotent)."""
    root = logging.getLogger()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    if service:
        handler.addFilter(_ServiceFilter(service))
    handler.addFilter(RateLimit(("aiokafka",), per_seconds=10.0))
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiokafka", "kafka"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


class RateLimit(logging.Filter):
    """At most one record per message template every ``per_seconds`` from chatty libraries.

    aiokafka logs a connection error in a tight loop while the broker is down (thousands of
    lines a second); one line every few seconds says the same thing.
    """

    def __init__(self, prefixes: tuple[str, ...], per_seconds: float):
        super().__init__()
        self.prefixes = prefixes
        self.per_seconds = per_seconds
        self._last: dict[tuple[str, str], float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self.prefixes):
            return True
        key = (record.name, str(record.msg))
        last = self._last.get(key)
        if last is not None and record.created - last < self.per_seconds:
            return False
        if len(self._last) > 1000:
            self._last.clear()
        self._last[key] = record.created
        return True


class _ServiceFilter(logging.Filter):
    def __init__(self, service: str):
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = self.service
        return True
