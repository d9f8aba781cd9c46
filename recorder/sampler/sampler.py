"""Samples every book of a venue on the grid into ring records and pushes them to the ring.

A book that is not synced (or is crossed) at a tick yields no snapshot: the tick is counted as
missed for that pair, with its cause. Ticks before a pair's first sync in a session are warm-up,
not misses, but they are counted too, per pair (``warmup:<pair>``), with the tick of that first
sync (``first_sync_ms:<pair>``): a pair that never syncs must not hide behind "0 missed". Ticks lost
while the venue process was down are counted by its next incarnation.

A book that shows fewer levels than the depth because deeper ones are unknown
(``L2Book.depth_complete``) is stored with ``depth_complete`` false and counted as ``depth_short``;
a connector that can deepen it (``request_depth``) is asked to.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Protocol

from recorder.metrics import LatencyHistogram, SharedCounters, latency_fields
from recorder.model import SampledBook, ring_encoder
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
    "depth_short",  # samples stored with depth_complete false (deeper levels unknown)
    "ring_drops",
    "last_tick_ms",
    *latency_fields("lat"),
    *latency_fields("jit"),
]


def sampler_pair_fields(pair: str) -> list[str]:
    # checksum_failures:<pair> lives here so connectors of checksum venues can count into shared
    # memory, where the miss log sees it move (see misslog.py). drops:<pair>: snapshots of the
    # pair the full ring refused.
    fields = [f"samples:{pair}", f"missed:{pair}", f"ever_synced:{pair}", f"checksum_failures:{pair}", f"drops:{pair}"]
    # Warm-up: ticks before the pair's first sync, and that first synced tick (epoch ms; 0 = not yet).
    return fields + [f"warmup:{pair}", f"first_sync_ms:{pair}", f"depth_short:{pair}"]


class Ring(Protocol):
    """``ShmRing``. A ring with ``push_many(payloads) -> n`` (the first n stored, the rest
    dropped) gets a whole tick in one call; one with only ``push`` gets them one by one."""

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
        misslog_path: str = "",
    ) -> None:
        self.exchange, self.pairs, self.depth = exchange, list(pairs), depth
        self.interval_ms = interval_ms
        self.connector, self.ring, self.counters = connector, ring, counters
        self.misslog = MissLog(exchange, interval_ms, counters, misslog_path)
        # Per-tick work runs for every pair: counter slots are looked up once, here.
        self._values = counters.values
        self._slot = {
            f: counters.slot(f)
            for f in ("ticks", "samples", "last_tick_ms", "warmup_ticks", "ring_drops", "depth_short")
        }
        self._pair_slots = [
            (
                pair,
                counters.slot(f"samples:{pair}"),
                counters.slot(f"ever_synced:{pair}"),
                counters.slot(f"warmup:{pair}"),
            )
            for pair in self.pairs
        ]
        self._short_slot = {pair: counters.slot(f"depth_short:{pair}") for pair in self.pairs}
        # A connector that can deepen a book (Binance: a fresh REST snapshot) is told when one
        # shows fewer levels than sampled because deeper ones are unknown; it paces the requests.
        self._request_depth = getattr(connector, "request_depth", None)
        self._archive_tick = getattr(connector, "archive_tick_end", None)
        self._push_many = getattr(ring, "push_many", None) or self._push_each
        self._lat = LatencyHistogram(counters, "lat")
        self._jit = LatencyHistogram(counters, "jit")

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
        tap = self._archive_tick
        if tap is None:
            self._sample(tick_ms, now_ms)
            return
        # An archived connector records the tick (and what the sampling changed) around it.
        self.connector.archive_tick_begin(tick_ms)  # type: ignore[attr-defined]
        try:
            self._sample(tick_ms, now_ms)
        finally:
            tap(tick_ms)

    def _sample(self, tick_ms: int, now_ms: float) -> None:
        """Sample every book at ``tick_ms`` and push the whole tick to the ring at once.

        Nothing awaits in here, so every book is read in the same state of the event loop: the
        time this takes delays the next frames, not the instant the books are sampled at.
        """
        values, slot = self._values, self._slot
        values[slot["ticks"]] += 1.0
        values[slot["last_tick_ms"]] = tick_ms
        self._jit.observe(now_ms - tick_ms)
        book_of, depth, encode, observe = self.connector.book, self.depth, ring_encoder.encode, self._lat.observe
        exchange = self.exchange
        payloads: list[bytes] = []
        sampled: list[tuple[str, int]] = []
        short: list[tuple[int, str]] = []  # (index in sampled, pair) of books short of depth
        for pair, samples_slot, ever_slot, warmup_slot in self._pair_slots:
            book = book_of(pair)
            if book is None:
                if values[ever_slot]:
                    self._miss(pair, tick_ms, "missed_not_synced")
                else:
                    values[slot["warmup_ticks"]] += 1.0
                    values[warmup_slot] += 1.0
                continue
            # depth >= 1 (config), so the best levels are element 0 of each side's columns.
            bid_px, bid_qty, ask_px, ask_qty = book.top_columns(depth)
            if bid_px and ask_px and bid_px[0] >= ask_px[0]:
                # A crossed book is corrupt, never data: drop it and resync that pair only.
                self._miss(pair, tick_ms, "missed_crossed")
                self.connector.request_resync(pair, "crossed book")
                continue
            if not values[ever_slot]:
                values[ever_slot] = 1.0
                # The first tick this pair's book was synced at (in this run): its warm-up ends here.
                self.counters.set(f"first_sync_ms:{pair}", tick_ms)
            complete = True
            if len(bid_px) < depth or len(ask_px) < depth:  # rare: the book's method only then
                complete = book.depth_complete(depth, len(bid_px), len(ask_px))
                if not complete:
                    short.append((len(sampled), pair))
            latency = None
            received, exchange_ms = book.receive_time_ms, book.exchange_time_ms
            if received is not None and exchange_ms is not None:
                # 0.1 ms: finer digits are the host clock's noise against a venue clock in ms, and
                # each distinct value costs the file a dictionary entry (docs/benchmarks.md, bytes).
                latency = round(received - exchange_ms, 1)
                observe(latency)
            # Positional, in SampledBook's field order (the fastest way to build a struct).
            payloads.append(
                encode(
                    SampledBook(
                        exchange,
                        pair,
                        tick_ms,
                        bid_px,
                        bid_qty,
                        ask_px,
                        ask_qty,
                        latency,
                        exchange_ms,
                        book.update_id,
                        True,
                        complete,
                    )
                )
            )
            sampled.append((pair, samples_slot))
        if not payloads:
            return
        pushed = self._push_many(payloads)
        values[slot["samples"]] += pushed
        hit = self.misslog.hit
        for pair, samples_slot in sampled[:pushed]:
            values[samples_slot] += 1.0
            hit(pair)
        if short:
            self._count_short(short, pushed)
        if pushed < len(sampled):
            values[slot["ring_drops"]] += len(sampled) - pushed
            for pair, _ in sampled[pushed:]:
                self.misslog.miss(pair, tick_ms, 1, "drop")
                self.counters.incr(f"drops:{pair}")

    def _count_short(self, short: list[tuple[int, str]], pushed: int) -> None:
        values, request = self._values, self._request_depth
        for i, pair in short:
            if i < pushed:  # stored (a dropped record is counted as a drop, not as short)
                values[self._slot["depth_short"]] += 1.0
                values[self._short_slot[pair]] += 1.0
            if request is not None:
                request(pair)

    def _push_each(self, payloads: list[bytes]) -> int:
        for i, payload in enumerate(payloads):
            if not self.ring.push(payload):
                return i  # as push_many: nothing after a drop, so a tick has no holes
        return len(payloads)

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
                # Lost before the pair's first sync: warm-up, still counted (never silently gone).
                self.counters.incr("warmup_ticks", n)
                self.counters.incr(f"warmup:{pair}", n)
                continue
            self._miss(pair, first_ms, cause, n)
