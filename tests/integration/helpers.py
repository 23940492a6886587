"""Builders of CloudEvents for the runtime tests."""

from __future__ import annotations

import uuid

import orjson


def repayment(loan_id: str, amount: str = "10.00", *, event_id: str | None = None,
              source: str = "urn:test:core") -> dict:
    return {
        "specversion": "1.0", "id": event_id or str(uuid.uuid4()), "source": source,
        "type": "repayment.received", "time": "2026-11-28T10:00:00+08:00", "subject": loan_id,
        "data": {"loan_id": loan_id, "payment_id": f"p-{uuid.uuid4().hex[:8]}",
                 "amount": amount, "currency": "CNY", "value_date": "2026-11-28",
                 "channel": "transfer"},
    }


def encode(event: dict) -> bytes:
    return orjson.dumps(event)


async def produce_repayments(producer, topic: str, total: int, loans: int) -> None:
    """``total`` repayments of 1.00 over ``loans`` loans (``L0``...), keyed by loan, flushed."""
    for i in range(total):
        event = repayment(f"L{i % loans}", "1.00")
        await producer.send(topic, encode(event), key=event["subject"].encode())
    await producer.flush()
