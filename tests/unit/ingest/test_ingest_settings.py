"""The gateway's limits refuse configurations that could only ever fail at Kafka."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.ingest.settings import IngestSettings


def test_an_event_limit_above_what_the_producer_can_send_is_refused() -> None:
    # the producer sends at most 1 MiB per request (aiokafka's max_request_size, the broker's
    # message.max.bytes): a larger event would be answered 503 on every retry
    with pytest.raises(ValidationError, match="ingest_max_event_bytes"):
        IngestSettings(ingest_max_event_bytes=2 * 1024 * 1024)
    assert IngestSettings(ingest_max_event_bytes=1_000_000).ingest_max_event_bytes == 1_000_000
