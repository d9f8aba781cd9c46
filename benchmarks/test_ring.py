"""Snapshots through shared memory between two processes vs a multiprocessing.Queue baseline."""

from __future__ import annotations

import multiprocessing as mp
import time

import pytest

from benchmarks.quick import mean_s, size
from recorder.model import Level, Snapshot, ring_record
from recorder.ring.shm_ring import ShmRing

N = size(20_000, 1_000)
_ctx = mp.get_context("spawn")


def _payload() -> bytes:
    levels = [Level(100.0 + i * 0.01, 1.5) for i in range(20)]
    snap = Snapshot(exchange="binance", pair="BTC-USDT", timestamp_ms=1, bids=levels, asks=levels,
                    capture_latency_ms=1.0, exchange_time_ms=1, update_id=1)  # fmt: skip
    return ring_record(snap)


def _ring_producer(name: str, n: int, payload: bytes) -> None:
    ring = ShmRing.attach(name)
    sent = 0
    while sent < n:
        if ring.push(payload):
            sent += 1
    ring.close()


def _queue_producer(q: mp.Queue, n: int, payload: bytes) -> None:  # type: ignore[type-arg]
    for _ in range(n):
        q.put(payload)


@pytest.mark.benchmark(group="ring: 20k snapshots between two processes")
def test_shm_ring(benchmark) -> None:
    payload = _payload()
    ring = ShmRing.create(16 * 1024 * 1024)

    def run() -> int:
        proc = _ctx.Process(target=_ring_producer, args=(ring.name, N, payload))
        proc.start()
        got, pos = 0, ring.commit_pos
        while got < N:
            records, pos = ring.read(pos)
            if records:
                got += len(records)
                ring.commit(pos)
            else:
                time.sleep(0)
        proc.join()
        return got

    try:
        assert benchmark.pedantic(run, rounds=5, iterations=1) == N
        if (mean := mean_s(benchmark)) is not None:
            benchmark.extra_info.update(
                snapshots_per_s=round(N / mean), mb_per_s=round(N * len(payload) / mean / 1e6, 1)
            )
    finally:
        ring.close()


@pytest.mark.benchmark(group="ring: 20k snapshots between two processes")
def test_multiprocessing_queue(benchmark) -> None:
    payload = _payload()

    def run() -> int:
        q: mp.Queue = _ctx.Queue()  # type: ignore[type-arg]
        proc = _ctx.Process(target=_queue_producer, args=(q, N, payload))
        proc.start()
        for _ in range(N):
            q.get()
        proc.join()
        return N

    assert benchmark.pedantic(run, rounds=5, iterations=1) == N
    benchmark.extra_info.update(baseline=True)
    if (mean := mean_s(benchmark)) is not None:
        benchmark.extra_info.update(snapshots_per_s=round(N / mean), mb_per_s=round(N * len(payload) / mean / 1e6, 1))
