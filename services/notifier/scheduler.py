"""Background jobs on the notifier's own tables: release deferred contacts, purge by age.

Each tick claims due deferred contacts with `FOR UPDATE SKIP LOCKED` (several instances can
run), decides them again with fresh state and writes log, outbox and queues in one
transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from services.notifier import contacts, store
from services.notifier.clock import Clock
from services.notifier.settings import NotifierSettings
from shared import outbox
from shared.context import BatchContext
from shared.db import KeptConnection
from shared.topics import TopicNames

log = logging.getLogger("qingshou.notifier.scheduler")


class Scheduler:
    def __init__(self, engine: AsyncEngine, settings: NotifierSettings, topics: TopicNames,
                 clock: Clock, source: str = "urn:qingshou:notifier") -> None:
        self.engine = engine
        self._kept = KeptConnection(engine)  # a tick a second: no pool ping each time
        self.settings = settings
        self.topics = topics
        self.clock = clock
        self.source = source
        self._stopping = asyncio.Event()
        self._last_purge: datetime | None = None

    async def tick(self) -> int:
        """Release what is due now; returns how many deferred contacts were decided again."""
        async with self._kept.begin() as conn:
            ctx = BatchContext(conn, self.topics, self.source)
            now = await self.clock.now(conn)
            released = await contacts.release_due(ctx, now, self.settings.scheduler_batch)
            await outbox.write(conn, ctx.outbox, self.settings.relay_shards,
                               self.settings.schema_name)
        return released

    async def purge(self) -> int:
        cutoff = datetime.now(UTC) - timedelta(days=self.settings.contact_retention_days)
        async with self.engine.begin() as conn:
            return await store.purge_contacts(conn, cutoff)

    async def run(self) -> None:
        while not self._stopping.is_set():
            try:
                released = await self.tick()
                wall = datetime.now(UTC)
                if self._last_purge is None or wall - self._last_purge > timedelta(hours=1):
                    purged = await self.purge()
                    self._last_purge = wall
                    if purged:
                        log.info("contact log purged by age", extra={"rows": purged})
            except Exception:
                log.exception("scheduler tick failed; retrying")
                released = 0
            if released < self.settings.scheduler_batch:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(),
                                           self.settings.scheduler_interval_s)

    async def close(self) -> None:
        """Give back the connection the ticks keep (the service does it when the job ends)."""
        await self._kept.close()

    async def stop(self) -> None:
        self._stopping.set()
