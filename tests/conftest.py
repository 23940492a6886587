"""Test-wide settings: where the real Kafka broker and PostgreSQL cluster listen."""

from __future__ import annotations

import os
import socket
import uuid

import pytest

KAFKA = os.environ.get("QS_KAFKA_BOOTSTRAP",
                       f"127.0.0.1:{os.environ.get('QS_KAFKA_PORT', '9092')}")
DB_URL = os.environ.get(
    "QS_DATABASE_URL",
    f"postgresql+asyncpg://postgres@127.0.0.1:{os.environ.get('QS_PG_PORT', '55432')}/qingshou")


@pytest.fixture
def uid() -> str:
    """A short unique id: tests isolate themselves by names, not by teardown."""
    return uuid.uuid4().hex[:10]


def free_port() -> int:
    """A loopback port nothing listens on now (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
