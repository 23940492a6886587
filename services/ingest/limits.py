"""In-memory guards of the gateway: a per-key token bucket and a dedupe cache. Pure: the clock
is passed in, so both are tested with plain numbers.

Both live in one process. With several ingest instances, each limits its own share and
remembers its own recent ids; the exactly-once guarantee stays with the consumers' inboxes.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Hashable, Iterable, Sequence


class RateLimiter:
    """Token bucket per key: ``rate`` tokens per second, at most ``burst`` stored.

    Memory is bounded by the number of configured API keys (the bucket key is the key's name).
    """

    def __init__(self, rate: float, burst: int) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = float(burst)
        self._buckets: dict[Hashable, tuple[float, float]] = {}  # key -> (tokens, stamp)

    def take(self, key: Hashable, cost: float, now: float) -> float:
        """Spend ``cost`` tokens; 0.0 if admitted, else the seconds until it would be.

        A refused request spends nothing, so a client that waits ``Retry-After`` gets through.
        A cost above ``burst`` can never be admitted and gets ``math.inf``.
        """
        if cost > self.burst:
            return math.inf
        tokens, stamp = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + max(0.0, now - stamp) * self.rate)
        if tokens >= cost:
            self._buckets[key] = (tokens - cost, now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (cost - tokens) / self.rate


class DedupeCache:
    """The ``(source, id)`` pairs accepted in the last ``ttl`` seconds, at most ``capacity``.

    Least recently seen entries go first when full; an entry expires ``ttl`` seconds after it
    was accepted, however often it is repeated (a late repeat is re-published, and the
    consumers' inboxes drop it). ``capacity=0`` disables the cache.
    """

    def __init__(self, capacity: int, ttl: float) -> None:
        if capacity < 0 or ttl <= 0:
            raise ValueError("capacity must be >= 0 and ttl > 0")
        self.capacity = capacity
        self.ttl = ttl
        self._expiry: OrderedDict[Hashable, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._expiry)

    def seen(self, key: Hashable, now: float) -> bool:
        """True if ``key`` was accepted within the window (and marks it recently used)."""
        expiry = self._expiry.get(key)
        if expiry is None:
            return False
        if expiry <= now:
            del self._expiry[key]
            return False
        self._expiry.move_to_end(key)
        return True

    def seen_many(self, keys: Sequence[Hashable], now: float) -> list[bool]:
        """``seen`` of each key in turn, in one call (the batch route asks for 1,000 at once)."""
        expiry = self._expiry
        if not expiry:
            return [False] * len(keys)
        get = expiry.get
        out = [False] * len(keys)
        for n, key in enumerate(keys):
            until = get(key)
            if until is not None:
                out[n] = self.seen(key, now)
        return out

    def add(self, key: Hashable, now: float) -> None:
        """Remember ``key`` as accepted at ``now``."""
        self.add_many((key,), now)

    def add_many(self, keys: Iterable[Hashable], now: float) -> None:
        """Remember each of ``keys`` as accepted at ``now`` (as ``add`` one by one would)."""
        if self.capacity == 0:
            return
        keys = list(keys)
        expiry, fresh = self._expiry, dict.fromkeys(keys, now + self.ttl)
        before = len(expiry)
        expiry.update(fresh)  # new keys go to the end in their order (one C call)...
        if len(expiry) - before < len(keys):  # ...keys known before or repeated move there
            for key in keys:
                expiry.move_to_end(key)
        while len(expiry) > self.capacity:
            expiry.popitem(last=False)
        # drop expired entries at the cold end so idle memory shrinks too
        while expiry:
            oldest_key, oldest_expiry = next(iter(expiry.items()))
            if oldest_expiry > now:
                break
            del expiry[oldest_key]


def retry_after(seconds: float) -> str:
    """A ``Retry-After`` header value: whole seconds, at least 1."""
    if math.isinf(seconds):
        return "3600"
    return str(max(1, math.ceil(seconds)))
