"""Sampling N books at depth 20 into ring records and into the shared-memory ring.

Baseline: building the same records without pushing (the sampling work alone), so the ratio
shows what the ring hand-off costs. Tick-to-ring latency (time from the tick to the last push
of that tick) is reported as p50/p99 in extra_info.
"""

from __future__ import annotations

import random
import statistics
import time

import pytest

from benchmarks.quick import quick
from recorder.book import L2Book
from recorder.metrics import SharedCounters
from recorder.ring.shm_ring import ShmRing
from recorder.sampler.sampler import SAMPLER_FIELDS, Sampler, sampler_pair_fields

DEPTH = 20


class _Books:
    """A connector stand-in holding N synced books (the sampler only calls book())."""

    venue = "bench"

    def __init__(self, n: int) -> None:
        rng = random.Random(n)
        self.books: dict[str, L2Book] = {}
        for i in range(n):
            book = L2Book()
            mid = 100.0 + i
            bids = [(float(f"{mid - 0.01 * (k + 1):.2f}"), float(f"{rng.uniform(0.1, 5):.4f}")) for k in range(200)]
            asks = [(float(f"{mid + 0.01 * (k + 1):.2f}"), float(f"{rng.uniform(0.1, 5):.4f}")) for k in range(200)]
            book.load(bids, asks, 1)
            book.exchange_time_ms, book.receive_time_ms = 1, 2.0
            self.books[f"P{i}-USDT"] = book

    def book(self, pair: str) -> L2Book | None:
        return self.books.get(pair)

    def request_resync(self, pair: str, reason: str) -> None:
        raise AssertionError("books are never crossed here")


class _NullRing:
    def push_many(self, payloads: list[bytes]) -> int:
        return len(payloads)


def _sampler(n: int, ring: object) -> tuple[Sampler, SharedCounters]:
    books = _Books(n)
    fields = list(SAMPLER_FIELDS)
    for pair in books.books:
        fields += sampler_pair_fields(pair)
    counters = SharedCounters.create(fields)
    return Sampler("bench", list(books.books), DEPTH, 100, books, ring, counters), counters  # type: ignore[arg-type]


@pytest.mark.parametrize("n", [10, 100, 1000])
@pytest.mark.benchmark(group="sampling")
def test_sample_records_only(benchmark, n: int) -> None:
    sampler, counters = _sampler(n, _NullRing())
    try:
        benchmark(sampler.sample, 1_000_000, 1_000_000.0)
        assert counters.get("samples") >= n
        benchmark.extra_info.update(books=n, baseline=n == 1000)
    finally:
        counters.close()


@pytest.mark.parametrize("n", [10, 100, 1000])
@pytest.mark.benchmark(group="sampling")
def test_sample_into_ring(benchmark, n: int) -> None:
    ring = ShmRing.create(256 * 1024 * 1024)
    sampler, counters = _sampler(n, ring)
    latencies: list[float] = []

    def one_tick() -> None:
        t0 = time.perf_counter()
        sampler.sample(1_000_000, 1_000_000.0)
        latencies.append((time.perf_counter() - t0) * 1e6)
        ring.commit(ring.write_pos)  # a consumer that keeps up

    try:
        benchmark(one_tick)
        assert counters.get("ring_drops") == 0
        # One tick in quick mode (the body runs once): its latency is every quantile.
        qs = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else latencies * 99
        assert quick() or len(latencies) > 1
        benchmark.extra_info.update(books=n, tick_to_ring_p50_us=round(qs[49], 1), tick_to_ring_p99_us=round(qs[98], 1))
    finally:
        counters.close()
        ring.close()
