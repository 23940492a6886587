"""The in-memory guards: token bucket per key and the dedupe cache, on a fake clock."""

from __future__ import annotations

import math
from collections import OrderedDict

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.ingest.limits import DedupeCache, RateLimiter, retry_after


def test_bucket_admits_the_burst_then_refuses_with_the_wait() -> None:
    limiter = RateLimiter(rate=10, burst=5)
    assert all(limiter.take("k", 1, now=0.0) == 0.0 for _ in range(5))
    assert limiter.take("k", 1, now=0.0) == pytest.approx(0.1)
    assert limiter.take("k", 1, now=0.1) == 0.0  # one token refilled


def test_a_refusal_spends_nothing() -> None:
    limiter = RateLimiter(rate=1, burst=3)
    assert limiter.take("k", 3, now=0.0) == 0.0
    assert limiter.take("k", 2, now=1.0) == pytest.approx(1.0)
    assert limiter.take("k", 2, now=2.0) == 0.0


def test_keys_have_their_own_buckets() -> None:
    limiter = RateLimiter(rate=1, burst=1)
    assert limiter.take("a", 1, now=0.0) == 0.0
    assert limiter.take("a", 1, now=0.0) > 0
    assert limiter.take("b", 1, now=0.0) == 0.0


def test_refill_is_capped_at_the_burst_and_over_burst_costs_never_pass() -> None:
    limiter = RateLimiter(rate=100, burst=10)
    assert limiter.take("k", 10, now=1000.0) == 0.0
    assert limiter.take("k", 11, now=5000.0) == math.inf
    assert limiter.take("k", 10, now=5000.0) == 0.0


@given(st.lists(st.tuples(st.floats(0, 2), st.integers(1, 5)), max_size=60))
def test_admitted_never_exceeds_burst_plus_rate_times_elapsed(steps) -> None:
    limiter = RateLimiter(rate=3, burst=5)
    now, admitted = 0.0, 0
    for dt, cost in steps:
        now += dt
        if limiter.take("k", cost, now) == 0.0:
            admitted += cost
    assert admitted <= 5 + 3 * now + 1e-9


def test_retry_after_is_whole_seconds_at_least_one() -> None:
    assert retry_after(0.01) == "1"
    assert retry_after(1.2) == "2"
    assert retry_after(math.inf) == "3600"


def test_dedupe_remembers_within_the_ttl_only() -> None:
    cache = DedupeCache(capacity=10, ttl=60)
    cache.add(("src", "1"), now=0.0)
    assert cache.seen(("src", "1"), now=59.0)
    assert not cache.seen(("src", "2"), now=59.0)
    assert not cache.seen(("src", "1"), now=60.0)
    assert len(cache) == 0


def test_dedupe_evicts_the_least_recently_seen_when_full() -> None:
    cache = DedupeCache(capacity=2, ttl=60)
    cache.add("a", now=0.0)
    cache.add("b", now=1.0)
    assert cache.seen("a", now=2.0)  # a is now the most recently seen
    cache.add("c", now=3.0)
    assert cache.seen("a", now=4.0) and cache.seen("c", now=4.0)
    assert not cache.seen("b", now=4.0)


def test_dedupe_drops_expired_entries_when_adding() -> None:
    cache = DedupeCache(capacity=100, ttl=10)
    for i in range(50):
        cache.add(i, now=0.0)
    cache.add("late", now=11.0)
    assert len(cache) == 1


@given(st.lists(st.integers(0, 30), max_size=300))
def test_dedupe_memory_is_bounded(keys) -> None:
    cache = DedupeCache(capacity=8, ttl=1e9)
    for n, key in enumerate(keys):
        cache.add(key, now=float(n))
        assert len(cache) <= 8
    if keys:
        assert cache.seen(keys[-1], now=float(len(keys)))


@given(st.lists(st.lists(st.integers(0, 12), max_size=6), max_size=30))
def test_dedupe_add_many_orders_and_evicts_as_adding_one_by_one(batches) -> None:
    # the reference: every key moves to the hot end as it is added, the coldest go when full
    cache, model = DedupeCache(capacity=8, ttl=1e9), OrderedDict()
    for n, batch in enumerate(batches):
        cache.add_many(batch, now=float(n))
        for key in batch:
            model[key] = n + 1e9
            model.move_to_end(key)
        while len(model) > 8:
            model.popitem(last=False)
        assert list(cache._expiry.items()) == list(model.items())
        assert cache.seen_many([*batch, 99], now=float(n)) == [True] * len(batch) + [False]


def test_capacity_zero_disables_dedupe() -> None:
    cache = DedupeCache(capacity=0, ttl=10)
    cache.add("a", now=0.0)
    assert not cache.seen("a", now=0.0)
