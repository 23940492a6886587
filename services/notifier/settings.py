"""The notifier's settings: the shared ones plus providers, clock and retention (prefix QS_)."""

from __future__ import annotations

from pydantic import Field, model_validator

from shared.settings import ServiceSettings

SANDBOX_URL = "http://127.0.0.1:8005"


class NotifierSettings(ServiceSettings):
    service: str = "notifier"
    port: int = 8003

    # One provider per channel; the development default is the local sandbox.
    provider_sms_url: str = f"{SANDBOX_URL}/v1/sms"
    provider_email_url: str = f"{SANDBOX_URL}/v1/email"
    provider_voice_url: str = f"{SANDBOX_URL}/v1/voice"
    provider_letter_url: str = f"{SANDBOX_URL}/v1/letter"
    provider_token: str = "sandbox-token"  # noqa: S105 - the local sandbox only
    provider_timeout_s: float = Field(default=5.0, gt=0)
    provider_max_attempts: int = Field(default=4, ge=1, le=20)
    provider_backoff_first_s: float = Field(default=0.05, ge=0)
    provider_backoff_ceiling_s: float = Field(default=2.0, gt=0)
    # >1: providers take up to this many contacts per request at `<url>/batch` (see providers)
    provider_batch_size: int = Field(default=1, ge=1, le=1000)
    breaker_failures: int = Field(default=5, ge=1)
    breaker_cooldown_s: float = Field(default=10.0, gt=0)

    dispatch_batch: int = Field(default=500, ge=1)
    dispatch_concurrency: int = Field(default=16, ge=1)
    dispatch_interval_s: float = Field(default=0.2, gt=0)
    scheduler_interval_s: float = Field(default=1.0, gt=0)
    scheduler_batch: int = Field(default=500, ge=1)

    # Simulation clock (PRODUCT.md 6): "now" comes from the closed business dates.
    simulation_clock: bool = False
    simulation_timezone: str = "Asia/Shanghai"
    simulation_day_start: str = "09:00"

    contact_retention_days: int = Field(default=5 * 366, ge=1)

    bank_name: str = "Qingshou Bank"
    help_phone: str = "+86 400 000 0000"
    help_url: str = "https://bank.example/help"
    opt_out_url: str = "https://bank.example/opt-out"

    @model_validator(mode="after")
    def _refuse_sandbox_token_in_production(self) -> NotifierSettings:
        if self.environment == "production" and self.provider_token == "sandbox-token":  # noqa: S105
            raise ValueError("QS_PROVIDER_TOKEN: the sandbox token is refused in production")
        return self

    def provider_url(self, channel: str) -> str:
        return str(getattr(self, f"provider_{channel}_url"))
