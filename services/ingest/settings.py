"""Ingest-only settings (env prefix ``QS_`` like every service, names prefixed ``ingest_``)."""

from __future__ import annotations

from pydantic import Field, model_validator

from shared.settings import ServiceSettings


class IngestSettings(ServiceSettings):
    """The shared service settings plus the gateway's limits."""

    service: str = "ingest"
    port: int = 8001
    # Worker processes sharing the port, each with its own producer, rate limiter and dedupe
    # cache (README "Ingest workers"). One per core that the gateway may use.
    ingest_workers: int = Field(default=1, ge=1, le=32)

    # One CloudEvent, alone or as a batch item; the largest contract type (borrower.updated)
    # is well under 2 KiB. At most what one Kafka request carries (the producer's and the
    # broker's 1 MiB, less the record's overhead): above it an event could never be sent.
    ingest_max_event_bytes: int = Field(default=64 * 1024, ge=1024, le=1_000_000)
    # A whole batch request; 1,000 events of a few hundred bytes each fit with room to spare.
    ingest_max_batch_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    ingest_max_batch_items: int = Field(default=1000, ge=1, le=10_000)
    # Token bucket per API key, counted in events (a batch costs one token per item).
    ingest_rate_per_second: float = Field(default=20_000.0, gt=0)
    ingest_rate_burst: int = Field(default=40_000, ge=1)
    # Recently accepted (source, id) pairs answered as duplicates instead of re-published.
    ingest_dedupe_entries: int = Field(default=100_000, ge=0)
    ingest_dedupe_ttl_s: float = Field(default=600.0, gt=0)
    # Retry-After (seconds) on a 503 while Kafka is unreachable.
    ingest_retry_after_s: int = Field(default=5, ge=1)
    # How often a gateway that started without Kafka tries to connect again.
    ingest_kafka_retry_interval_s: float = Field(default=2.0, gt=0)

    @model_validator(mode="after")
    def _burst_admits_a_full_batch(self) -> IngestSettings:
        if self.ingest_rate_burst < self.ingest_max_batch_items:
            raise ValueError("QS_INGEST_RATE_BURST must be at least QS_INGEST_MAX_BATCH_ITEMS, "
                             "or a full batch could never be admitted")
        return self


def ingest_settings(base: ServiceSettings) -> IngestSettings:
    """``base`` as :class:`IngestSettings` (tests may hand ``create_app`` plain settings)."""
    if isinstance(base, IngestSettings):
        return base
    return IngestSettings(**base.model_dump())
