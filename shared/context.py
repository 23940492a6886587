"""What a handler sees while its batch is applied: the transaction and the outbox queue."""

from __future__ import annotations

from functools import cache
from typing import Any

from aiokafka.structs import ConsumerRecord
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.events import new_event
from shared.events.native import OutboundJson
from shared.outbox import EVENT_HEADERS, OutboxMessage, message_for
from shared.topics import TopicNames


class Rejected(Exception):
    """Raised by a handler to refuse an event: it goes to the dead-letter topic with ``reason``.

    Nothing the handler wrote for that event survives: the batch is applied again without it.
    """

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@cache
def _outbound() -> OutboundJson:
    """Built on the first emit, not at import (its validators take tens of milliseconds)."""
    return OutboundJson()


class BatchContext:
    """One consumed batch's unit of work.

    ``conn`` is the batch's open transaction; handlers run their SQL on it. Outbound events are
    queued with :meth:`emit` and written to the outbox in the same transaction. ``state`` is a
    scratch dictionary for a service's ``before_batch``/``after_batch`` hooks (for example, the
    loans loaded for the whole batch and written back once).
    """

    def __init__(self, conn: AsyncConnection, topics: TopicNames, source: str):
        self.conn = conn
        self.topics = topics
        self.source = source
        self.outbox: list[OutboxMessage] = []
        self.state: dict[str, Any] = {}
        self.record: ConsumerRecord | None = None

    def emit(self, topic: str, type_: str, subject: str, data: dict[str, Any] | BaseModel,
             **attrs: Any) -> None:
        """Queue an outbound event on the (unprefixed) ``topic``.

        The usual event (a dict of data, no extra attributes) is written and checked against
        the contract in one native call (:class:`shared.events.native.OutboundJson`); anything
        else, or anything that check does not vouch for, is built by ``new_event``, which
        raises ``EventError`` naming the field at fault.
        """
        name = self.topics.name(topic)
        if not attrs:
            body = _outbound().dumps(type_, self.source, subject, data)
            if body is not None:
                self.outbox.append(OutboxMessage(name, subject.encode(), body, EVENT_HEADERS))
                return
        event = new_event(type_, source=self.source, subject=subject, data=data, **attrs)
        self.outbox.append(message_for(name, event))
