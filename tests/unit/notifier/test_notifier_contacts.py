"""The contact log row → `contact.attempted` translation, against the wire bytes."""

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import orjson
import pytest

from services.notifier.contacts import publish
from shared.context import BatchContext
from shared.topics import CONTACT_OUTCOMES, TopicNames

NOW = datetime(2026, 11, 28, 21, 55, 7, 123456, tzinfo=UTC)


def _row(status: str, scheduled_for: datetime | None) -> dict:
    return {"contact_id": "0f8e6a2c-3f0e-5c1a-9b7e-1234567890ab", "loan_id": "L-1",
            "borrower_id": "B-1", "channel": "sms", "template": "early_warning.sms",
            "stage": "current", "trigger": "early_warning", "status": status,
            "reason": "quiet_hours" if status == "deferred" else "x" * 600,
            "scheduled_for": scheduled_for, "decided_at": NOW, "attempt": None}


def _without_id_and_time(value: bytes) -> bytes:
    """The message bytes with the event's random id and creation time blanked out."""
    doc = orjson.loads(value)
    return value.replace(doc["id"].encode(), b"ID").replace(doc["time"].encode(), b"TIME")


@pytest.mark.parametrize("scheduled_for", [
    None, datetime(2026, 11, 29, 1, 0, tzinfo=UTC), NOW + timedelta(minutes=15),
    datetime(2026, 3, 8, 7, 0, 0, 5, tzinfo=ZoneInfo("America/New_York")),
    datetime(2026, 1, 1, 9, 30, tzinfo=timezone(timedelta(hours=8))),
])
def test_published_decision_is_what_the_isoformat_string_gave(scheduled_for):
    topics = TopicNames()
    status = "deferred" if scheduled_for is not None else "suppressed"
    row = _row(status, scheduled_for)
    ctx = BatchContext(None, topics, "urn:qingshou:notifier")  # type: ignore[arg-type]
    publish(ctx, row)
    # the way it was built before: the time as an isoformat string, parsed by the model
    ctx.emit(CONTACT_OUTCOMES, "contact.attempted", row["loan_id"], {
        "contact_id": row["contact_id"], "loan_id": row["loan_id"],
        "borrower_id": row["borrower_id"], "channel": row["channel"],
        "template": row["template"], "stage": row["stage"], "status": row["status"],
        "reason": row["reason"][:500],
        "scheduled_for": row["scheduled_for"].isoformat() if row["scheduled_for"] else None})
    new, old = ctx.outbox
    assert (new.topic, new.key, new.headers) == (old.topic, old.key, old.headers)
    assert _without_id_and_time(new.value) == _without_id_and_time(old.value)
