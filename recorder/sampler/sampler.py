"""Samples every book of a venue on the grid into Snapshot structs and pushes them to the ring.

A book that is not synced (or is crossed) at a tick yields no snapshot: the tick is counted as
missed for that pair, with its cause. Ticks before a pair's first sync in a session are warm-up,
not misses; ticks lost while the venue process was down are counted by its next incarnation.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Protocol

from recorder.metrics import SharedCounters, latency_fields, observe_latency
from recorder.model import Snapshot, snapshot_encoder
from recorder.sampler.grid import next_tick_ms, sleep_until, ticks_between
from recorder.sampler.misslog import MissLog
from recorder.venues.base import Connector

log = logging.getLogger("recorder.sampler")

SAMPLER_FIELDS = [
    "ticks",
    "samples",
    "missed_ticks",
    "missed_not_synced",
    "missed_restart",
    "missed_late",
    "missed_crossed",
    "warmup_ticks",
    "ring_drops",
    "last_tick_ms",
    *latency_fields("lat"),
    *latency_fields("jit"),
]


def sampler_pair_fields(pair: str) -> list[str]:
    # checksum_failures:<pair> lives here so connectors of checksum venues can count into shared
    # memory, where the miss log sees it move (see misslog.py).
    return [f"samples:{pair}", f"missed:{pair}", f"ever_synced:{pair}", f"checksum_failures:{pair}"]


class Ring(Protocol):
    def push(self, payload: bytes) -> bool: ...


class Sampler:
    def __init__(
        self,
        exchange: str,
        pairs: list[str],
        depth: int,
        interval_ms: int,
        connector: Connector,
        ring: Ring,
        counters: SharedCounters,
        session_id: str,
        misslog_path: str = "",
    ) -> None:
        self.exchange, self.pairs, self.depth = exchange, list(pairs), depth
        self.interval_ms = interval_ms
        self.connector, self.ring, self.counters = connector, ring, counters
        self.session_id = session_id
        self.misslog = MissLog(exchange, interval_ms, counters, misslog_path)

    async def run(self, stop: asyncio.Event) -> None:
        try:
            await self._run(stop)
        finally:
            self.misslog.close()

    async def _run(self, stop: asyncio.Event) -> None:
        c, interval = self.counters, self.interval_ms
        tick = next_tick_ms(time.time() * 1000.0, interval)
        previous = int(c.get("last_tick_ms"))
        if previous:
            # A previous incarnation of this process sampled up to `previous`; the ticks in
            # between were lost with it.
            n = ticks_between(previous, tick, interval)
            self._miss_all(previous + interval, n, "missed_restart", only_synced_before=True)
        while not stop.is_set():
            await sleep_until(tick)
            if stop.is_set():
                return
            now_ms = time.time() * 1000.0
            late = int((now_ms - tick) // interval)
            if late > 0:
                # The loop was blocked for longer than an interval: those ticks are gone.
                self._miss_all(tick, late, "missed_late", only_synced_before=True)
                tick += late * interval
            self.sample(tick, now_ms)
            tick = next_tick_ms(max(tick, time.time() * 1000.0), interval)

    def sample(self, tick_ms: int, now_ms: float) -> None:
        c = self.counters
        c.incr("ticks")
        c.set("last_tick_ms", tick_ms)
        observe_latency(c, now_ms - tick_ms, "jit")
        for pair in self.pairs:
            book = self.connector.book(pair)
            if book is None:
                if c.get(f"ever_synced:{pair}"):
                    self._miss(pair, tick_ms, "missed_not_synced")
                else:
                    c.incr("warmup_ticks")
                continue
            if book.is_crossed():
                # A crossed book is corrupt, never data: drop it and resync that pair only.
                self._miss(pair, tick_ms, "missed_crossed")
                self.connector.request_resync(pair, "crossed book")
                continue
            c.set(f"ever_synced:{pair}", 1)
            bids, asks = book.top(self.depth)
            latency = None
            if book.receive_time_ms is not None and book.exchange_time_ms is not None:
                latency = round(book.receive_time_ms - book.exchange_time_ms, 3)
                observe_latency(c, latency, "lat")
            snap = Snapshot(
                exchange=self.exchange,
                pair=pair,
                timestamp_ms=tick_ms,
                bids=bids,
                asks=asks,
                capture_latency_ms=latency,
                exchange_time_ms=book.exchange_time_ms,
                update_id=book.update_id,
                verified=True,
                session_id=self.session_id,
            )
            if self.ring.push(snapshot_encoder.encode(snap)):
                c.incr("samples")
                c.incr(f"samples:{pair}")
                self.misslog.hit(pair)
            else:
                c.incr("ring_drops")
                self.misslog.miss(pair, tick_ms, 1, "drop")

    def _miss(self, pair: str, first_ms: int, cause: str, n: int = 1) -> None:
        c = self.counters
        self.misslog.miss(pair, first_ms, n, cause.removeprefix("missed_"))
        c.incr("missed_ticks", n)
        c.incr(cause, n)
        c.incr(f"missed:{pair}", n)

    def _miss_all(self, first_ms: int, n: int, cause: str, only_synced_before: bool) -> None:
        if n <= 0:
            return
        for pair in self.pairs:
            if only_synced_before and not self.counters.get(f"ever_synced:{pair}"):
                continue
            self._miss(pair, first_ms, cause, n)
