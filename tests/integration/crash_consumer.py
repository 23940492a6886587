"""A probe consumer process for the crash test (run as a script by test_crash.py).

``crash`` mode kills itself with SIGKILL inside the first offset commit that follows a
database commit, i.e. exactly between the two commits. ``normal`` mode runs until SIGTERM.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from shared.consumer import ConsumerRunner, RunnerConfig
from shared.db import make_engine
from shared.probe import probe_spec
from shared.topics import TopicNames


async def main(bootstrap: str, db_url: str, schema: str, prefix: str, mode: str) -> None:
    if mode == "crash":
        original = ConsumerRunner._commit_offsets
        calls = {"n": 0}

        async def commit_then_die(self, batches):  # type: ignore[no-untyped-def]
            calls["n"] += 1
            if calls["n"] >= 2:  # the database has committed this batch; Kafka never hears
                os.kill(os.getpid(), signal.SIGKILL)
            await original(self, batches)

        ConsumerRunner._commit_offsets = commit_then_die  # type: ignore[method-assign]

    engine = make_engine(db_url, schema)
    runner = ConsumerRunner(probe_spec(), engine, RunnerConfig(
        bootstrap=bootstrap, group_id=f"g-{prefix}", schema=schema, topics=TopicNames(prefix),
        max_records=50, poll_timeout_ms=100))
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, lambda: asyncio.ensure_future(runner.stop()))
    await runner.run()
    await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:6]))
