"""Prometheus metrics of the event runtime, labelled by consumer or relay name.

Metric objects are created once per process (module level is fine: they hold no connection).
Each service exposes them at ``/metrics``.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

EVENTS_CONSUMED = Counter(
    "qs_events_consumed_total", "Events applied by a consumer", ["consumer", "topic"])
EVENTS_DUPLICATE = Counter(
    "qs_events_duplicate_total", "Events skipped as already applied (inbox)", ["consumer"])
EVENTS_FAILED = Counter(
    "qs_events_failed_total", "Batches that failed with a transient error and were retried",
    ["consumer"])
EVENTS_DEAD_LETTERED = Counter(
    "qs_events_dead_lettered_total", "Events sent to a dead-letter topic",
    ["consumer", "topic", "reason"])
CONSUMER_LAG = Gauge(
    "qs_consumer_lag", "Messages behind the partition's high watermark",
    ["consumer", "topic", "partition"])
BATCH_SECONDS = Histogram(
    "qs_batch_seconds", "Time to apply and commit one consumed batch", ["consumer"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
BATCH_SIZE = Histogram(
    "qs_batch_size", "Messages per consumed batch", ["consumer"],
    buckets=(1, 5, 10, 50, 100, 250, 500, 1000, 2000, 5000))
OUTBOX_BACKLOG = Gauge("qs_outbox_backlog", "Outbox rows waiting to be published (not quarantined)",
                       ["relay"])
OUTBOX_QUARANTINED = Gauge(
    "qs_outbox_quarantined", "Outbox rows the broker refused for good, waiting for an operator "
    "(qingshou outbox list)", ["relay"])
OUTBOX_PUBLISHED = Counter(
    "qs_outbox_published_total", "Outbox rows published to Kafka", ["relay", "topic"])
OUTBOX_INLINE_LEFT = Counter(
    "qs_outbox_inline_left_total", "Consumer batches whose own publication (the inline relay) "
    "left rows to the relay thread: failed (a send or the database) or locked (another relay "
    "held a shard)", ["relay", "reason"])


def render_metrics() -> tuple[bytes, str]:
    """Body and content type for a ``/metrics`` response.

    Under ``PROMETHEUS_MULTIPROC_DIR`` (several worker processes on one port, as ingest with
    ``QS_INGEST_WORKERS`` > 1) the figures are the sum over all of them, whichever answers.
    """
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
