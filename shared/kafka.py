"""Kafka clients of the project: the producer, topic creation and a readiness probe."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from shared.events import Event

log = logging.getLogger("qingshou.kafka")


def make_producer(bootstrap: str, client_id: str = "qingshou") -> AIOKafkaProducer:
    """An idempotent producer that waits for every in-sync replica (acks=all).

    Idempotence keeps each partition's messages in send order across retries, which the outbox
    relay relies on for per-key order. Call ``await producer.start()`` before use.
    """
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        linger_ms=2,
        max_batch_size=256 * 1024,
        request_timeout_ms=15_000,
    )


async def publish(producer: AIOKafkaProducer, topic: str, event: Event) -> None:
    """Send one event keyed by its subject and wait for the broker's acknowledgement."""
    await producer.send_and_wait(topic, value=event.to_json(), key=event.key,
                                 headers=[("content-type", b"application/cloudevents+json")])


async def ensure_topics(bootstrap: str, topics: Iterable[str], partitions: int = 6,
                        with_dlq: bool = True) -> list[str]:
    """Create ``topics`` (and their ``.dlq`` twins) if missing; returns the names created."""
    names = []
    for t in topics:
        names.append(t)
        if with_dlq and not t.endswith(".dlq"):
            names.append(f"{t}.dlq")
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="qingshou-admin")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [n for n in dict.fromkeys(names) if n not in existing]
        if missing:
            try:
                await admin.create_topics(
                    [NewTopic(name=n, num_partitions=partitions, replication_factor=1)
                     for n in missing])
            except TopicAlreadyExistsError:
                pass  # another instance created them at the same moment
            # the metadata of a fresh topic takes a moment to reach every listener
            for _ in range(50):
                if set(missing) <= set(await admin.list_topics()):
                    break
                await asyncio.sleep(0.1)
        return missing
    finally:
        await admin.close()


async def kafka_ready(bootstrap: str, timeout: float = 3.0) -> bool:
    """True if the broker answers a metadata request within ``timeout`` seconds."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="qingshou-probe",
                                request_timeout_ms=int(timeout * 1000))
    try:
        await asyncio.wait_for(admin.start(), timeout)
        await asyncio.wait_for(admin.list_topics(), timeout)
        return True
    except Exception:
        return False
    finally:
        try:
            await admin.close()
        except Exception:  # noqa: S110 - a probe that failed to start has nothing to close
            pass
