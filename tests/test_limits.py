"""The REST weight limiter and the spreading of pairs over connections (no network needed)."""

from __future__ import annotations

import asyncio

import pytest

from recorder.config import VenueConfig
from recorder.venues.binance import BinanceConnector, spread_pairs
from recorder.venues.limits import BINANCE, interval_seconds
from recorder.venues.rest_limiter import WeightLimiter


def test_binance_limits_are_declared() -> None:
    assert BINANCE.rest_weight_limit == 6000 and BINANCE.rest_window_s == 60
    assert [BINANCE.snapshot_weight(d) for d in (5, 100, 101, 500, 1000, 5000)] == [5, 5, 25, 25, 50, 250]
    assert BINANCE.streams_per_connection == 1024
    assert interval_seconds(1, "M") == 60 and interval_seconds(10, "s") == 10


async def test_waiters_are_served_round_robin_across_pairs() -> None:
    limiter = WeightLimiter(1000, window_s=60, safety=1.0, max_inflight=1)
    order: list[str] = []

    async def request(key: str) -> None:
        await limiter.acquire(1, key)
        order.append(key)
        await asyncio.sleep(0)
        limiter.done(1, 200, {})

    limiter.pause(0.05)  # everything queues up first
    tasks = [asyncio.create_task(request(k)) for k in ("A", "A", "A", "B", "C")]
    await asyncio.gather(*tasks)
    # One turn per pair: a pair resyncing over and over can't starve the others.
    assert order == ["A", "B", "C", "A", "A"]


async def test_budget_is_never_exceeded_and_waiters_resume() -> None:
    limiter = WeightLimiter(10, window_s=0.3, safety=1.0, max_inflight=100)
    await limiter.acquire(6, "a")
    limiter.done(6, 200, {})
    waiter = asyncio.create_task(limiter.acquire(6, "b"))
    await asyncio.sleep(0.01)
    assert not waiter.done() and limiter.waiting == 1  # 6 + 6 > 10 within the window
    await asyncio.wait_for(waiter, 10)  # granted once the first weight left the window
    assert limiter.used() <= 10


async def test_used_weight_header_counts_what_others_spent() -> None:
    limiter = WeightLimiter(100, window_s=3600, safety=1.0, header_prefix="X-MBX-USED-WEIGHT-")
    limiter.observe_headers({"X-MBX-USED-WEIGHT-1M": "99", "x-mbx-used-weight-1h": "95", "X-Other": "1"})
    assert limiter.used() == 95  # only the header for our window counts
    waiter = asyncio.create_task(limiter.acquire(10, "p"))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert limiter.waiting == 0


async def test_429_and_418_pause_every_request_for_retry_after() -> None:
    limiter = WeightLimiter(1000, window_s=60)
    await limiter.acquire(5, "x")
    limiter.done(5, 429, {"Retry-After": "30"})
    assert limiter.rate_limited == 1
    waiter = asyncio.create_task(limiter.acquire(5, "y"))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    limiter2 = WeightLimiter(1000, window_s=60)
    await limiter2.acquire(5, "x")
    limiter2.done(5, 418, {"Retry-After": "0"})
    assert limiter2.banned == 1
    await asyncio.wait_for(limiter2.acquire(5, "y"), 10)  # Retry-After passed: served again


def test_pairs_spread_over_connections_with_staggered_reconnects() -> None:
    pairs = [f"P{i}-USDT" for i in range(7)]
    groups = spread_pairs(pairs, 3)
    assert len(groups) == 3 and sorted(p for g in groups for p in g) == sorted(pairs)
    assert max(map(len, groups)) - min(map(len, groups)) <= 1
    assert spread_pairs(pairs, 1024) == [pairs]
    cfg = VenueConfig(pairs=pairs, channels=["book"], max_streams_per_connection=3, max_connection_age_s=1000)
    c = BinanceConnector(cfg, pairs)
    ages = [s.first_age_s for s in c.slots]
    assert len(ages) == 3 and len(set(ages)) == 3 and max(ages) == 1000 and min(ages) >= 500


async def test_books_missing_ticks_go_before_a_reconnect_warming_up() -> None:
    limiter = WeightLimiter(1000, window_s=60, safety=1.0, max_inflight=1)
    order: list[str] = []

    async def request(key: str, background: bool) -> None:
        await limiter.acquire(1, key, background)
        order.append(key)
        await asyncio.sleep(0)
        limiter.done(1, 200, {})

    limiter.pause(0.05)
    tasks = [asyncio.create_task(request(f"warm{i}", True)) for i in range(3)]
    tasks.append(asyncio.create_task(request("gap", False)))
    await asyncio.gather(*tasks)
    assert order == ["gap", "warm0", "warm1", "warm2"]
