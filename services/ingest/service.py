"""Ingest: the REST gateway that publishes CloudEvents to Kafka."""

from __future__ import annotations

from shared.service import ServiceDefinition

DEFINITION = ServiceDefinition(
    name="ingest",
    title="Qingshou ingest",
    description="REST entry for CloudEvents: validation, authentication, scopes, Kafka.",
    port=8001,
    needs_db=False,
)
