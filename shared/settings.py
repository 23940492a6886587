"""Settings shared by every service, read from the environment (prefix ``QS_``).

Each service builds one :class:`ServiceSettings` in its ``bootstrap`` and passes it down;
nothing reads the environment at import time. Outside development, the development API keys
are refused so a production deployment cannot start with the keys published in the README.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.auth import DEV_API_KEYS, ApiKeySpec


class ServiceSettings(BaseSettings):
    """Common configuration of a Qingshou service."""

    model_config = SettingsConfigDict(
        env_prefix="QS_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    service: str = "qingshou"
    environment: Literal["development", "test", "production"] = "development"

    # Kafka
    kafka_bootstrap: str = "127.0.0.1:9092"
    topic_prefix: str = ""
    topic_partitions: int = Field(default=6, ge=1, le=1000)
    consumer_group: str | None = None
    consumer_max_records: int = Field(default=2000, ge=1)
    consumer_poll_timeout_ms: int = Field(default=200, ge=1)

    # PostgreSQL: one database, one schema per service
    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:55432/qingshou"
    db_schema: str | None = None
    db_pool_size: int = Field(default=5, ge=1)

    # Outbox relay
    relay_batch: int = Field(default=1000, ge=1)
    relay_poll_interval_s: float = Field(default=0.5, gt=0)
    relay_shards: int = Field(default=16, ge=1, le=1024)
    # a consumer batch that wrote 1..this many outbox rows publishes them itself right after
    # committing (shared.relay.InlineRelay); larger ones, and 0, leave it to the relay thread
    relay_inline_max: int = Field(default=500, ge=0)

    # HTTP
    host: str = "127.0.0.1"
    port: int = 8000
    api_keys: list[ApiKeySpec] = Field(default_factory=lambda: list(DEV_API_KEYS))

    log_level: str = "INFO"

    @property
    def schema_name(self) -> str:
        return self.db_schema or self.service

    @property
    def group_id(self) -> str:
        return self.consumer_group or f"{self.topic_prefix}qingshou-{self.service}"

    @model_validator(mode="after")
    def _refuse_dev_keys_in_production(self) -> ServiceSettings:
        if self.environment == "production":
            dev_hashes = {k.sha256 for k in DEV_API_KEYS}
            if any(k.sha256 in dev_hashes for k in self.api_keys):
                raise ValueError(
                    "QS_API_KEYS: development API keys are refused when QS_ENVIRONMENT=production"
                )
        return self
