"""What the chaos test reads from Kafka: whole topics, consumer-group lag, end offsets.

Everything here is read-only and group-less (nothing committed, no group created), like
``qingshou dlq list``; the lag of a service's group is its committed offsets (read with the
admin client) against the partitions' end offsets.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import ConsumerRecord

__all__ = ["KafkaProbe"]


class KafkaProbe:
    """A group-less consumer and an admin client on one broker; ``start`` before use."""

    def __init__(self, bootstrap: str):
        self.bootstrap = bootstrap
        self._consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                          enable_auto_commit=False,
                                          client_id="qingshou-chaos-probe")
        self._admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap,
                                          client_id="qingshou-chaos-admin")
        self._partitions: dict[str, list[int]] = {}

    async def start(self) -> None:
        await self._consumer.start()
        await self._admin.start()

    async def stop(self) -> None:
        await self._consumer.stop()
        await self._admin.close()

    async def partitions(self, topics: Iterable[str]) -> list[TopicPartition]:
        """Every partition of ``topics`` (described by the admin client; never creates one)."""
        names = list(topics)
        unknown = [t for t in names if t not in self._partitions]
        if unknown:
            for desc in await self._admin.describe_topics(unknown):
                parts = sorted(p["partition"] for p in desc["partitions"])
                if desc["error_code"] or not parts:
                    raise LookupError(f"topic {desc['topic']!r} does not exist")
                self._partitions[desc["topic"]] = parts
        return [TopicPartition(t, p) for t in names for p in self._partitions[t]]

    async def end_offsets(self, topics: Iterable[str]) -> dict[TopicPartition, int]:
        tps = await self.partitions(topics)
        return dict(await self._consumer.end_offsets(tps))

    async def lag(self, group: str, topics: Iterable[str]) -> int:
        """Messages of ``topics`` the group has not committed yet (all partitions)."""
        ends = await self.end_offsets(topics)
        committed = await self._admin.list_consumer_group_offsets(group)
        total = 0
        for tp, end in ends.items():
            meta = committed.get(tp)
            done = meta.offset if meta is not None and meta.offset >= 0 else 0
            total += max(0, end - done)
        return total

    async def read(self, topic: str, timeout: float = 300.0) -> list[ConsumerRecord]:
        """Every message of ``topic`` from the beginning to its current end, partition by
        partition (each partition in offset order)."""
        tps = await self.partitions([topic])
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None,
                                    enable_auto_commit=False, auto_offset_reset="earliest",
                                    client_id="qingshou-chaos-reader", fetch_max_bytes=32 << 20,
                                    max_partition_fetch_bytes=8 << 20)
        await consumer.start()
        try:
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            found: dict[TopicPartition, list[ConsumerRecord]] = {tp: [] for tp in tps}
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            pending = {tp for tp in tps if ends[tp] > 0}
            while pending:
                for tp in list(pending):
                    if await consumer.position(tp) >= ends[tp]:
                        pending.discard(tp)
                if not pending:
                    break
                if loop.time() > deadline:
                    raise TimeoutError(f"could not read {topic!r} to its end in {timeout}s")
                batch = await consumer.getmany(*pending, timeout_ms=500, max_records=20_000)
                for tp, records in batch.items():
                    found[tp].extend(r for r in records if r.offset < ends[tp])
            return [r for tp in tps for r in found[tp]]
        finally:
            await consumer.stop()
