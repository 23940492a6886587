"""Bearer API keys with scopes, shared by every service's API.

Keys come from configuration (``QS_API_KEYS``, a JSON list of ``{"name", "sha256", "scopes"}``)
and only their SHA-256 hashes are kept. A presented key is hashed and compared with every
configured hash in constant time, so neither the key nor its position leaks through timing.

Scopes:

- ``events:core``: loan, borrower, instalment, payment, repayment and closed events
- ``events:desk``: ``promise.made``, ``case.flag.*``, ``complaint.recorded``
- ``events:calendar``: ``business_day.closed``
- ``read``: every GET of every service
- ``admin``: PUT of policies, rosters, templates and schemes
- ``receipts``: delivery receipts from notification providers
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

from pydantic import BaseModel, Field

SCOPES = ("events:core", "events:desk", "events:calendar", "read", "admin", "receipts")


def hash_key(key: str) -> str:
    """The SHA-256 hex digest under which a key is configured."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class ApiKeySpec(BaseModel):
    name: str = Field(min_length=1)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    scopes: list[str]


class Principal(BaseModel):
    name: str
    scopes: frozenset[str]

    def allows(self, scope: str) -> bool:
        return scope in self.scopes


# Development keys, documented in the README and used by `make up`. Refused in production.
_DEV = {
    "qs-dev-admin": ("dev-admin", SCOPES),
    "qs-dev-core": ("dev-core", ("events:core", "events:calendar", "read")),
    "qs-dev-desk": ("dev-desk", ("events:desk", "read")),
    "qs-dev-read": ("dev-read", ("read",)),
    "qs-dev-provider": ("dev-provider", ("receipts",)),
}
DEV_API_KEYS = tuple(
    ApiKeySpec(name=name, sha256=hash_key(key), scopes=list(scopes))
    for key, (name, scopes) in _DEV.items()
)


class KeyRing:
    """Authenticates presented keys against configured hashes."""

    def __init__(self, specs: Iterable[ApiKeySpec]):
        self._specs = [(bytes.fromhex(s.sha256), s) for s in specs]

    def authenticate(self, presented: str | None) -> Principal | None:
        if not presented:
            return None
        digest = hashlib.sha256(presented.encode("utf-8")).digest()
        found: ApiKeySpec | None = None
        for stored, spec in self._specs:
            # no early exit: every hash is compared whatever matched before
            if hmac.compare_digest(stored, digest):
                found = spec
        if found is None:
            return None
        return Principal(name=found.name, scopes=frozenset(found.scopes))
