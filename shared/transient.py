"""Which failures are worth retrying: the database or the broker was briefly unreachable."""

from __future__ import annotations

import asyncio

from aiokafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError


def is_transient(exc: BaseException) -> bool:
    """True for errors after which the same work may succeed if tried again later."""
    if isinstance(exc, (OperationalError, InterfaceError)):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, (ConnectionError, OSError, asyncio.TimeoutError, TimeoutError)):
        return True
    if isinstance(exc, (KafkaConnectionError, KafkaTimeoutError)):
        return True
    if isinstance(exc, KafkaError) and getattr(exc, "retriable", False):
        return True
    orig = getattr(exc, "orig", None)
    if orig is not None:
        # SQLSTATE classes: 08 connection, 40001/40P01 serialization/deadlock, 53 resources,
        # 57P0x shutdown / cannot connect now
        state = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None) or ""
        if state.startswith(("08", "53", "57P")) or state in {"40001", "40P01"}:
            return True
        cause = getattr(orig, "__cause__", None)
        if cause is not None and type(cause).__name__ in _ASYNCPG_TRANSIENT:
            return True
    return False


_ASYNCPG_TRANSIENT = frozenset({
    "ConnectionDoesNotExistError", "CannotConnectNowError", "TooManyConnectionsError",
    "AdminShutdownError", "InterfaceError", "ConnectionFailureError", "CrashShutdownError",
    "SerializationError", "DeadlockDetectedError"})


class Backoff:
    """Exponential backoff with a ceiling, reset after a success."""

    def __init__(self, first: float = 0.1, ceiling: float = 10.0):
        self.first = first
        self.ceiling = ceiling
        self.attempt = 0

    def next_delay(self) -> float:
        delay = min(self.ceiling, self.first * (2 ** min(self.attempt, 32)))
        self.attempt += 1
        return delay

    def reset(self) -> None:
        self.attempt = 0
