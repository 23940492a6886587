"""Settings of the console (prefix ``QS_``, like every service).

The console owns no table and no topic: it only needs the three upstream URLs and the API key
it presents to them. ``api_keys`` (``QS_API_KEYS``) are the keys accepted *from users*, exactly
as the other services accept them; ``console_api_key`` is the console's own key towards the
services (scope ``read`` is enough).
"""

from __future__ import annotations

from pydantic import Field

from shared.settings import ServiceSettings


class ConsoleSettings(ServiceSettings):
    service: str = "console"
    port: int = 8006

    console_staging_url: str = "http://127.0.0.1:8002"
    console_notifier_url: str = "http://127.0.0.1:8003"
    console_incentives_url: str = "http://127.0.0.1:8004"
    console_api_key: str = "qs-dev-read"
    console_timeout_s: float = Field(default=5.0, gt=0)
    # Loans whose contact logs the contacts page aggregates (one page of the loan list).
    console_contact_sample: int = Field(default=50, ge=1, le=500)
    # Set behind TLS: the login cookie then carries `Secure`.
    console_cookie_secure: bool = False

    @property
    def upstreams(self) -> dict[str, str]:
        return {"staging": self.console_staging_url.rstrip("/"),
                "notifier": self.console_notifier_url.rstrip("/"),
                "incentives": self.console_incentives_url.rstrip("/")}
