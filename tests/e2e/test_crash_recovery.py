"""The running stack survives SIGKILL: services killed mid-stream lose nothing, apply nothing twice.

The small variant of the chaos test (``shared/ops/chaos.py``; the full one is ``qingshou bench
chaos --events 100000 --kills 3``): a book of 40 loans (about 600 events: openings, borrower
profiles, early warnings, missed instalments, repayments, bounced auto-debits) over six
business days closed 20 days apart, through ingest and straight to Kafka, with poison injected
straight to Kafka, while ingest, staging, the notifier and incentives are each killed with
SIGKILL at a random moment and restarted. Then every loan's state equals a replay of its events
with staging's domain, staging's outbound events equal the replay's, credits equal what was
applied to arrears, each contact decision is published once and reached the provider once, and
the dead-letter topics hold exactly the poison. The seed is random (printed in the report on
failure); ``QS_CHAOS_SEED`` fixes it.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal

import pytest

from shared.ops.chaos import ChaosConfig, report, run_chaos
from shared.ops.chaos_stack import SERVICES
from tests.conftest import DB_URL, KAFKA

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

KILLS = 1


def test_services_killed_mid_stream_lose_nothing_and_apply_nothing_twice(tmp_path):
    seed = int(os.environ.get("QS_CHAOS_SEED") or random.randrange(1, 10**6))
    cfg = ChaosConfig(loans=40, events_per_loan=15, kills=KILLS, phases=6, phase_days=20,
                      kafka=KAFKA, database_url=DB_URL, logs=tmp_path / "logs", seed=seed,
                      timeout=600, wait=240)
    result = asyncio.run(run_chaos(cfg))
    text = report(result)
    print(text)

    assert result.error is None, text
    failed = [c.name for c in result.checks if not c.ok]
    assert not failed, text
    assert len(result.checks) == 7, text
    # every service really died of SIGKILL and came back as a new process
    assert sorted(k.service for k in result.kills) == sorted(SERVICES * KILLS), text
    for kill in result.kills:
        assert kill.exit_code == -signal.SIGKILL, kill
        assert kill.new_pid and kill.new_pid != kill.old_pid, kill
    # the book went through: both paths used, every event accounted for, poison refused
    assert result.events >= 40 * 15 and result.via_ingest > 0 and result.direct > 0, text
    assert result.via_ingest + result.direct >= result.events, text
    by_name = {c.name: c for c in result.checks}
    assert f"{result.events:,} of {result.events:,} events in Kafka" in \
        by_name["every event reached Kafka in order"].counts
    assert by_name["loan state = replay of its events"].counts.startswith("40 loans"), text
