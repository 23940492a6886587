"""The whole stack as separate processes: the provider sandbox and the four services.

Each test module gets its own stack on free ports, with a unique topic prefix and schemas, on
the real Kafka broker and PostgreSQL cluster — the same processes `make up` runs, so what these
tests see is what an operator sees. The launcher is `shared.ops.chaos_stack` (shared with the
chaos test, which starts stacks of its own); the notifier runs on the simulation clock.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shared.ops.chaos_stack import ROOT, Stack, free_port, running_stack
from tests.conftest import DB_URL, KAFKA

__all__ = ["ROOT", "Stack", "free_port"]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("stack"), KAFKA, DB_URL) as started:
        yield started
