"""Binance spot: ``<symbol>@depth@100ms`` diffs joined to ``GET /api/v3/depth`` snapshots.

Sync rules (docs corrected 2025-11-12, see venue-protocols.md §1): buffer diffs, fetch a
snapshot, drop buffered diffs with ``u <= lastUpdateId``, the first kept diff must straddle
``lastUpdateId + 1``, then every diff must have ``U == previous u + 1``. Anything else is a gap
for that book only: it is discarded and resynced while the other books keep sampling.

Layers, one module each: the wire structs and names (``binance_wire``); ``BookSync``, one book's
sync rules (``binance_sync``); ``BinanceFeed``, sans-I/O, every frame of one socket, used by the
live connector and by ``replay`` (``binance_feed``); one socket and its REST snapshots
(``binance_connection``); the exchange info (``binance_rest``); and here the ``BinanceConnector``
(pairs spread over connections, planned reconnects, the REST budget), with the public names of
all of them. USD-M futures (``binance_futures.py``) reuses it all with its own chain rule and endpoints.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import aiohttp
import msgspec

from recorder.archive.tap import current as current_archive
from recorder.book import L2Book
from recorder.config import VenueConfig
from recorder.metrics import SharedCounters
from recorder.model import Quote, Trade
from recorder.venues.base import (
    Backoff,
    Counters,
    LogThrottle,
    venue_config_default,
)
from recorder.venues.binance_connection import MAX_FRAME_BYTES, REFETCH_SPACING_S, URL_STREAMS_CHARS, _Connection
from recorder.venues.binance_feed import BinanceFeed
from recorder.venues.binance_rest import (
    ExchangeInfo,
    SymbolInfo,
    _limits_info,
    check_config,
    check_pairs,
    fetch_exchange_info,
    instrument_types,
    list_pairs,
    unlisted_pairs,
)
from recorder.venues.binance_sync import MAX_BUFFERED_DIFFS, QUEUED_BUFFERED_DIFFS, BookSync, Outcome, spot_prev_id
from recorder.venues.binance_trades import TradeIds
from recorder.venues.binance_wire import (
    COIN_M_HOSTS,
    QUOTE_ASSETS,
    REST_URL,
    VENUE,
    WS_URL,
    DepthEvent,
    DepthSnapshot,
    Envelope,
    StreamDepth,
    _snapshot,
    capture_pairs,
    log,
    pair_for,
    pairs_in_frames,
    parse_frame,
    snapshot_limit_of,
    snapshot_pair,
    snapshot_weight,
    stream_for,
    symbol_for,
)
from recorder.venues.limits import BINANCE as LIMITS
from recorder.venues.limits import LIMITS as VENUE_LIMITS
from recorder.venues.limits import VenueLimits, interval_seconds
from recorder.venues.rest_limiter import WeightLimiter

__all__ = [  # the module's public names, wherever they live
    "COIN_M_HOSTS", "CONNECTOR", "MAX_BUFFERED_DIFFS", "MAX_FRAME_BYTES", "MAX_STREAMS_PER_CONNECTION",
    "QUEUED_BUFFERED_DIFFS", "QUOTE_ASSETS", "REFETCH_BUDGET_SHARE", "REFETCH_SPACING_S", "REST_URL",
    "REST_WEIGHT_PER_MIN", "URL_STREAMS_CHARS", "VENUE", "WS_URL", "BinanceConnector", "BinanceFeed",
    "BookSync", "DepthEvent", "DepthSnapshot", "Envelope", "ExchangeInfo", "Feed", "Outcome", "StreamDepth",
    "SymbolInfo", "capture_pairs", "check_config", "check_pairs", "effective_limits", "fetch_exchange_info",
    "instrument_types", "list_pairs", "pair_for", "pairs_in_frames", "parse_frame", "snapshot_limit_of",
    "snapshot_pair", "snapshot_weight", "spot_prev_id", "spread_pairs", "stream_for", "symbol_for", "unlisted_pairs",
]  # fmt: skip

REST_WEIGHT_PER_MIN = 6000
MAX_STREAMS_PER_CONNECTION = 1024

# Deeper snapshots of live books (``binance_connection.REFETCH_SPACING_S``) take at most this
# share of the REST budget together: the rest stays free for resyncs.
REFETCH_BUDGET_SHARE = 0.5


# --- the connector: pairs spread over connections, planned reconnects, REST snapshots ------


def spread_pairs(pairs: list[str], per_connection: int) -> list[list[str]]:
    """As few connections as the stream limit allows, with the pairs dealt evenly over them."""
    n = max(1, -(-len(pairs) // max(1, per_connection)))
    return [pairs[i::n] for i in range(n)]


def effective_limits(cfg: VenueConfig, base: VenueLimits = LIMITS) -> VenueLimits:
    """The venue's declared limits with the config's overrides applied."""
    return dataclasses.replace(
        base,
        streams_per_connection=cfg.max_streams_per_connection or base.streams_per_connection,
        rest_weight_limit=cfg.rest_weight_limit or base.rest_weight_limit,
        rest_window_s=cfg.rest_window_s or base.rest_window_s,
        rest_safety=cfg.rest_safety or base.rest_safety,
    )


class _Slot:
    """One share of the pairs: its live connection and, during a planned reconnect, the successor."""

    def __init__(self, index: int, pairs: list[str], first_age_s: float) -> None:
        self.index = index
        self.pairs = pairs
        self.first_age_s = first_age_s
        self.active: _Connection | None = None
        self.successor: _Connection | None = None

    def connections(self) -> tuple[_Connection | None, _Connection | None]:
        return self.active, self.successor


class BinanceConnector:
    """Spot; futures subclasses it and changes only these class attributes."""

    venue = VENUE
    feed_class: type[BinanceFeed] = BinanceFeed
    default_ws_url = WS_URL
    default_rest_url = REST_URL
    depth_path = "/api/v3/depth"
    rest_weight_per_min = REST_WEIGHT_PER_MIN
    max_streams = MAX_STREAMS_PER_CONNECTION
    snapshot_weight = staticmethod(snapshot_weight)

    def __init__(
        self,
        cfg: VenueConfig,
        pairs: list[str],
        shared: SharedCounters | None = None,
        weight_per_min: int | None = None,
    ) -> None:
        self.cfg = cfg
        self.pairs = list(pairs)
        self.limits = effective_limits(cfg, self.declared_limits(weight_per_min))
        per_pair = self.streams_per_pair(cfg)
        groups = spread_pairs(self.pairs, max(1, self.limits.streams_per_connection // per_pair))
        if len(groups) > self.limits.connections_per_ip:
            raise ValueError(
                f"{len(self.pairs)} pairs need {len(groups)} Binance connections, "
                f"more than the {self.limits.connections_per_ip} allowed per IP"
            )
        age = cfg.max_connection_age_s
        # Staggered planned reconnects: connection i first lives (1 - i/2n) of the maximum age, so
        # the n hand-overs (and their snapshot bursts) are spread over half a lifetime; each later
        # connection lives the full age from its own start, which keeps the spacing.
        self.slots = [_Slot(i, g, age * (1.0 - 0.5 * i / len(groups))) for i, g in enumerate(groups)]
        self._slot_of = {p: slot for slot in self.slots for p in slot.pairs}
        self.ws_url = venue_config_default(cfg, "ws_url", self.default_ws_url)
        self.rest_url = venue_config_default(cfg, "rest_url", self.default_rest_url)
        self.counters = Counters(shared)
        lim = self.limits
        self.limiter = WeightLimiter(lim.rest_weight_limit, lim.rest_window_s, lim.rest_safety, lim.used_weight_header)
        self._attempts: deque[float] = deque()
        self._throttle = LogThrottle(log)
        self._closing = False
        self._http: aiohttp.ClientSession | None = None
        self.snapshot_limit = cfg.snapshot_limit or self.limits.default_snapshot_limit(len(self.pairs))
        self.deepening: set[str] = set()  # pairs whose deeper snapshot is asked for

        # Set by the venue process before run(): every Feed this connector makes gets them.
        self.on_trade: Callable[[Trade], None] | None = None
        self.on_quote: Callable[[Quote], None] | None = None
        # Shared by a slot's old and new socket (no trade twice) and kept in shared memory (a
        # restarted venue process counts the trades lost while it was down).
        self.trade_ids = TradeIds(self.counters, self.pairs)

    @staticmethod
    def streams_per_pair(cfg: VenueConfig) -> int:
        """Streams a pair takes on a connection: depth, and its trade stream with "trades"."""
        return 2 if "trades" in cfg.channels else 1

    @classmethod
    def declared_limits(cls, weight_per_min: int | None = None) -> VenueLimits:
        """``limits.py``'s entry for the venue (a subclass without one: spot's, with its attributes)."""
        base = VENUE_LIMITS.get(cls.venue) or dataclasses.replace(
            LIMITS, rest_weight_limit=cls.rest_weight_per_min, streams_per_connection=cls.max_streams
        )
        return dataclasses.replace(base, rest_weight_limit=weight_per_min) if weight_per_min else base

    # interface used by the venue process ------------------------------------------------

    def book(self, pair: str) -> L2Book | None:
        slot = self._slot_of.get(pair)
        if slot is None:
            return None
        for conn in slot.connections():
            if conn is not None and not conn.closed.is_set():
                book = conn.feed.book(pair)
                if book is not None:
                    return book
        return None

    def request_depth(self, pair: str) -> None:
        """The sampler stored the book of ``pair`` short of the depth (levels past its snapshot's
        range are unknown): fetch a deeper snapshot, paced per book and within the REST budget."""
        slot = self._slot_of.get(pair)
        if slot is None:
            return
        for conn in slot.connections():
            if conn is not None and not conn.closed.is_set() and conn.feed.book(pair) is not None:
                conn.request_depth(pair)
                return

    def refetch_affordable(self) -> bool:
        """Deeper snapshots take at most ``REFETCH_BUDGET_SHARE`` of the REST budget (counting the
        ones already waiting), so resyncs always find room."""
        weight = self.snapshot_weight(self.snapshot_limit)
        share = self.limiter.budget * REFETCH_BUDGET_SHARE
        return self.limiter.used() + weight * (len(self.deepening) + 1) <= share

    def request_resync(self, pair: str, reason: str) -> None:
        log.warning("event=resync_requested venue=%s pair=%s reason=%s", self.venue, pair, reason)
        slot = self._slot_of.get(pair)
        if slot is None:
            return
        for conn in slot.connections():
            if conn is not None:
                conn.request_resync(pair)

    async def close(self) -> None:
        self._closing = True
        for slot in self.slots:
            for conn in slot.connections():
                if conn is not None:
                    conn.close()
        if self._http is not None:
            await self._http.close()

    async def run(self) -> None:
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.cfg.rest_timeout_s))
        self.counters.set("connections", 0)
        tasks = [asyncio.create_task(self._run_slot(slot), name=f"binance-conn-{slot.index}") for slot in self.slots]
        if not (self.cfg.rest_weight_limit or self.cfg.rest_window_s):
            tasks.append(asyncio.create_task(self._adopt_published_limits(), name="binance-limits"))
        tasks.append(asyncio.create_task(self._report(), name="binance-report"))
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    # internals ---------------------------------------------------------------------------

    async def _run_slot(self, slot: _Slot) -> None:
        backoff = Backoff()
        conn: _Connection | None = None
        max_age = slot.first_age_s
        while not self._closing:
            if conn is None:
                conn = await self._connect(slot, backoff, max_age)
                if conn is None:
                    return
            slot.active = conn
            planned = await self._serve(conn)
            if self._closing:
                return
            max_age = self.cfg.max_connection_age_s
            if not planned:
                self.counters.incr("reconnects")
                log.warning("event=disconnected venue=%s conn=%d code=%s", self.venue, slot.index, conn.close_code)
                conn.close()
                slot.active = conn = None
                await asyncio.sleep(backoff.next_delay())
                continue
            conn = await self._hand_over(slot, conn, backoff, max_age)

    async def _connect(self, slot: _Slot, backoff: Backoff, max_age_s: float) -> _Connection | None:
        while not self._closing:
            await self._connection_attempt_slot()
            conn = _Connection(self, slot.pairs)
            conn.max_age_s = max_age_s
            try:
                await conn.open()
            except Exception as exc:  # any connect failure is retried: never give up
                self._throttle.warning("connect", "event=connect_failed venue=%s error=%r", self.venue, exc)
                self.counters.incr("reconnects")
                conn.close()
                await asyncio.sleep(backoff.next_delay())
                continue
            backoff.success()
            log.info("event=connected venue=%s conn=%d pairs=%d", self.venue, slot.index, len(slot.pairs))
            return conn
        return None

    async def _connection_attempt_slot(self) -> None:
        """Stay under the venue's connection attempts per 5 minutes (per IP)."""
        limit = self.limits.connection_attempts_per_5min
        while True:
            now = time.monotonic()
            while self._attempts and now - self._attempts[0] >= 300.0:
                self._attempts.popleft()
            if len(self._attempts) < limit:
                self._attempts.append(now)
                return
            await asyncio.sleep(300.0 - (now - self._attempts[0]))

    def _update_connected(self) -> None:
        live = [c for s in self.slots for c in s.connections() if c is not None and not c.closed.is_set()]
        self.counters.set("connections", len(live))
        up = all(s.active is not None and not s.active.closed.is_set() for s in self.slots)
        self.counters.set("connected", 1 if up else 0)

    async def _serve(self, conn: _Connection) -> bool:
        """Watch a live connection. True: time for a planned reconnect; False: it died."""
        try:
            while not conn.closed.is_set():
                self._update_connected()
                try:
                    await asyncio.wait_for(conn.closed.wait(), timeout=0.5)
                except TimeoutError:
                    pass
                conn.feed.stats.flush()  # the frames counted since into the shared counters
                now = time.monotonic()
                if conn.closed.is_set():
                    if now - conn.last_frame_s >= 0.9 * self.cfg.stall_timeout_s:
                        # picows' keepalive (unanswered pings) closed a silent socket first.
                        self.counters.incr("stalls")
                        log.warning("event=stall venue=%s silent_s=%.1f", self.venue, now - conn.last_frame_s)
                    return False
                if now - conn.last_frame_s > self.cfg.stall_timeout_s:
                    self.counters.incr("stalls")
                    log.warning("event=stall venue=%s silent_s=%.1f", self.venue, now - conn.last_frame_s)
                    conn.close()
                    return False
                if conn.shutdown_announced or now - conn.opened_at >= conn.max_age_s:
                    return True
            return False
        finally:
            self._update_connected()

    def _sync_budget_s(self, pairs: int) -> float:
        """How long syncing ``pairs`` books may take within the REST budget (plus slack)."""
        lim = self.limits
        weight = pairs * self.snapshot_weight(self.snapshot_limit)
        per_s = max(1.0, lim.rest_weight_limit * lim.rest_safety / lim.rest_window_s)
        return 120.0 + 2.0 * weight / per_s

    async def _hand_over(self, slot: _Slot, old: _Connection, backoff: Backoff, max_age: float) -> _Connection | None:
        """Planned reconnect: sync a new connection while the old one keeps sampling."""
        age = time.monotonic() - old.opened_at
        log.info("event=planned_reconnect venue=%s conn=%d age_s=%.0f", self.venue, slot.index, age)
        new = await self._connect(slot, backoff, max_age)
        if new is None:
            old.close()
            return None
        slot.successor = new
        deadline = time.monotonic() + self._sync_budget_s(len(slot.pairs))
        while not new.all_synced() and not new.closed.is_set() and time.monotonic() < deadline:
            if old.closed.is_set() and not new.feed.any_synced():
                # The old feed is already gone; waiting gains nothing.
                break
            await asyncio.sleep(0.05)
        slot.active, slot.successor = new, None
        old.close()
        self.counters.incr("planned_reconnects")
        return new

    async def _report(self) -> None:
        while not self._closing:
            self.counters.set("rest_weight_used", self.limiter.used())
            self.counters.set("rest_queue", self.limiter.waiting)
            held = sum(c.feed.buffered_diffs() for s in self.slots for c in s.connections() if c is not None)
            self.counters.set("buffered_diffs", held)
            await asyncio.sleep(0.5)

    async def _adopt_published_limits(self) -> None:
        """Binance publishes its live REQUEST_WEIGHT limit in exchangeInfo: prefer it to our table."""
        info_path = self.depth_path.rsplit("/", 1)[0] + "/exchangeInfo"
        body = await self._rest_get(info_path, {}, weight=20, key="exchangeInfo")
        if body is None:
            return
        try:
            info = _limits_info.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return
        for rl in info.rateLimits:
            if rl.rateLimitType == "REQUEST_WEIGHT" and rl.limit > 0:
                window = interval_seconds(rl.intervalNum, rl.interval)
                self.limiter.configure(rl.limit, window, self.limits.rest_safety)
                self.limits = dataclasses.replace(self.limits, rest_weight_limit=rl.limit, rest_window_s=window)
                log.info("event=rest_limits venue=%s weight=%d window_s=%.0f", self.venue, rl.limit, window)
                return

    async def _rest_get(
        self,
        path: str,
        params: dict[str, str],
        weight: int,
        key: str,
        background: bool = False,
        on_sent: Callable[[], None] | None = None,
    ) -> bytes | None:
        """One REST GET within the weight budget; None (counted and logged) on any failure.
        ``on_sent`` runs once the limiter let the request go."""
        await self.limiter.acquire(weight, key, background)
        if on_sent is not None:
            on_sent()
        assert self._http is not None
        status: int | None = None
        headers: Any = None
        try:
            async with self._http.get(f"{self.rest_url}{path}", params=params) as resp:
                status, headers = resp.status, resp.headers
                body = await resp.read()
            archive = current_archive()
            if archive is not None:
                archive.http(str(resp.url), status, body)
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.counters.incr("rest_errors")
            msg = "event=rest_failed venue=%s path=%s key=%s error=%r"
            self._throttle.warning("rest", msg, self.venue, path, key, exc)
            return None
        finally:
            self.limiter.done(weight, status, headers)
        if status in (429, 418):
            self.counters.incr("http_429" if status == 429 else "http_418")
            log.warning(
                "event=rate_limited venue=%s status=%d retry_after_s=%s",
                self.venue,
                status,
                headers.get("Retry-After") if headers is not None else None,
            )
            return None
        if status != 200:
            self.counters.incr("rest_errors")
            msg = "event=rest_failed venue=%s path=%s key=%s status=%s body=%s"
            self._throttle.warning("rest", msg, self.venue, path, key, status, body[:200])
            return None
        return body

    async def fetch_snapshot(
        self, pair: str, on_sent: Callable[[], None] | None = None, background: bool | None = None
    ) -> DepthSnapshot | None:
        limit = self.snapshot_limit
        params = {"symbol": self.feed_class.symbol_for(pair), "limit": str(limit)}
        # A pair another connection still samples (a planned reconnect warming up) can wait
        # behind pairs that are missing ticks right now.
        if background is None:
            background = self.book(pair) is not None
        body = await self._rest_get(self.depth_path, params, self.snapshot_weight(limit), pair, background, on_sent)
        if body is None:
            return None
        try:
            snap = _snapshot.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            self.counters.incr("rest_errors")
            self._throttle.warning("rest", "event=snapshot_failed venue=%s pair=%s error=%r", self.venue, pair, exc)
            return None
        self.counters.incr("snapshots_fetched")
        archive = current_archive()
        if archive is not None:
            archive.bind(snap)  # a Feed call with it is archived as a reference to the body
        return snap


Feed = BinanceFeed
CONNECTOR = BinanceConnector
