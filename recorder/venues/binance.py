"""Binance spot: ``<symbol>@depth@100ms`` diffs joined to ``GET /api/v3/depth`` snapshots.

Sync rules (docs corrected 2025-11-12, see venue-protocols.md §1): buffer diffs, fetch a
snapshot, drop buffered diffs with ``u <= lastUpdateId``, the first kept diff must straddle
``lastUpdateId + 1``, then every diff must have ``U == previous u + 1``. Anything else is a gap
for that book only: it is discarded and resynced while the other books keep sampling.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import logging
import time
from collections import deque
from collections.abc import Iterable
from typing import Any

import aiohttp
import msgspec
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from recorder.book import L2Book
from recorder.config import VenueConfig
from recorder.metrics import SharedCounters
from recorder.venues.base import (
    Backoff,
    Counters,
    LogThrottle,
    WeightLimiter,
    venue_config_default,
)
from recorder.venues.limits import BINANCE as LIMITS
from recorder.venues.limits import VenueLimits, interval_seconds

VENUE = "binance"
WS_URL = "wss://stream.binance.com:9443"
REST_URL = "https://api.binance.com"
# Longest stream list put in the connection URL; the rest are subscribed by message.
URL_STREAMS_CHARS = 2000
MAX_FRAME_BYTES = 16 * 1024 * 1024
# A book that has buffered this many diffs without a usable snapshot starts over.
MAX_BUFFERED_DIFFS = 10_000

log = logging.getLogger("recorder.venues.binance")


# --- wire schema -------------------------------------------------------------------------


class DepthEvent(msgspec.Struct):
    e: str
    E: int = 0
    s: str = ""
    U: int = 0
    u: int = 0
    b: list[tuple[str, str]] = []
    a: list[tuple[str, str]] = []


class Envelope(msgspec.Struct):
    """Any text frame: a combined-stream wrapper, a method reply, or a raw event."""

    stream: str | None = None
    data: msgspec.Raw = msgspec.Raw()
    id: int | str | None = None
    result: Any = None
    error: Any = None
    e: str | None = None


class DepthSnapshot(msgspec.Struct):
    lastUpdateId: int
    bids: list[tuple[str, str]]
    asks: list[tuple[str, str]]


class _Kind(msgspec.Struct):
    e: str | None = None


_kind = msgspec.json.Decoder(_Kind)
_envelope = msgspec.json.Decoder(Envelope)
_event = msgspec.json.Decoder(DepthEvent)
_snapshot = msgspec.json.Decoder(DepthSnapshot)


def parse_frame(payload: bytes) -> tuple[str, DepthEvent] | Envelope | None:
    """A text frame -> (stream name or "", event), the Envelope of a method reply, or None
    for a stream that is not a depth stream (trades, tickers: not ours to parse)."""
    env = _envelope.decode(payload)
    if len(env.data):
        stream = env.stream or ""
        if "@depth" not in stream and _kind.decode(env.data).e != "serverShutdown":
            return None
        return stream, _event.decode(env.data)
    if env.e is not None:
        return "", _event.decode(payload)
    return env


def symbol_for(pair: str) -> str:
    """``BTC-USDT`` -> ``BTCUSDT`` (the supervisor checks it against exchangeInfo first)."""
    return pair.replace("-", "")


def stream_for(pair: str) -> str:
    return f"{symbol_for(pair).lower()}@depth@100ms"


def snapshot_weight(limit: int) -> int:
    return LIMITS.snapshot_weight(limit)


# --- the sync rules, free of I/O so they can be tested on crafted sequences ----------------


class Outcome(enum.Enum):
    BUFFERED = "buffered"
    APPLIED = "applied"
    IGNORED = "ignored"
    GAP = "gap"
    SYNCED = "synced"
    STALE = "stale"


class BookSync:
    """One pair's book and its position in Binance's update-id sequence."""

    def __init__(self, pair: str) -> None:
        self.pair = pair
        self.book = L2Book()
        self.synced = False
        self.buffer: list[tuple[DepthEvent, float]] = []
        self._straddle_next = False

    def reset(self) -> None:
        self.synced = False
        self.buffer.clear()
        self.book.clear()
        self._straddle_next = False

    def on_diff(self, ev: DepthEvent, recv_ms: float) -> Outcome:
        if not self.synced:
            if self.buffer:
                prev = self.buffer[-1][0]
                # A hole inside the buffer makes every older diff useless: start over from here.
                if ev.U != prev.u + 1 or len(self.buffer) >= MAX_BUFFERED_DIFFS:
                    self.buffer.clear()
            self.buffer.append((ev, recv_ms))
            return Outcome.BUFFERED
        book_id = self.book.update_id
        assert book_id is not None
        if ev.u <= book_id:
            return Outcome.IGNORED
        if self._straddle_next:
            ok = ev.U <= book_id + 1
        else:
            ok = ev.U == book_id + 1
        if not ok:
            self.reset()
            self.buffer.append((ev, recv_ms))
            return Outcome.GAP
        self._apply(ev, recv_ms)
        return Outcome.APPLIED

    def on_snapshot(self, snap: DepthSnapshot) -> Outcome:
        """Join a REST snapshot to the buffered diffs."""
        if not self.buffer:
            return Outcome.STALE
        last = snap.lastUpdateId
        if last + 1 < self.buffer[0][0].U:
            return Outcome.STALE  # older than the first diff we hold: fetch again
        kept = [(ev, t) for ev, t in self.buffer if ev.u > last]
        self.buffer.clear()
        self.book.load(snap.bids, snap.asks, last)
        self.book.exchange_time_ms = None
        self.book.receive_time_ms = None
        self.synced = True
        self._straddle_next = True
        for ev, t in kept:
            if self.on_diff(ev, t) is Outcome.GAP:
                return Outcome.GAP
        return Outcome.SYNCED

    def _apply(self, ev: DepthEvent, recv_ms: float) -> None:
        book = self.book
        book.apply(ev.b, ev.a)
        book.update_id = ev.u
        book.exchange_time_ms = ev.E
        book.receive_time_ms = recv_ms
        self._straddle_next = False


# --- one WebSocket connection and the books synced over it ---------------------------------


class _Listener(WSListener):
    def __init__(self, conn: _Connection) -> None:
        self._conn = conn
        self._parts: list[bytes] = []

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        conn = self._conn
        conn.last_frame_s = time.monotonic()
        mt = frame.msg_type
        if mt is WSMsgType.TEXT or mt is WSMsgType.CONTINUATION:
            # Binance does not fragment today, but a fragmented message must not be misparsed.
            if not frame.fin:
                self._parts.append(frame.get_payload_as_bytes())
                return
            payload = frame.get_payload_as_bytes()
            if self._parts:
                payload = b"".join(self._parts) + payload
                self._parts.clear()
            conn.on_text(payload, time.time() * 1000.0)
        elif mt is WSMsgType.CLOSE:
            conn.close_code = frame.get_close_code()
            transport.send_close(frame.get_close_code())
            transport.disconnect()
        elif mt is WSMsgType.BINARY:
            conn.connector.malformed("binary frame", frame.payload_size)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self._conn.on_disconnected()


class _Connection:
    def __init__(self, connector: BinanceConnector, pairs: list[str]) -> None:
        self.connector = connector
        self.syncs = {pair: BookSync(pair) for pair in pairs}
        self._by_stream = {stream_for(p): self.syncs[p] for p in pairs}
        self._by_symbol = {symbol_for(p): self.syncs[p] for p in pairs}
        self.transport: WSTransport | None = None
        self.closed = asyncio.Event()
        self.opened_at = time.monotonic()
        self.last_frame_s = time.monotonic()
        self.close_code: object = None
        self.shutdown_announced = False
        self._fetching: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._request_id = 0
        self.max_age_s = connector.cfg.max_connection_age_s

    async def open(self) -> None:
        c = self.connector
        # A handful of streams ride in the URL; the rest are SUBSCRIBEd in paced batches (a URL
        # with 1024 streams is ~25 kB, more than many HTTP front ends accept).
        streams = list(self._by_stream)
        in_url: list[str] = []
        length = 0
        while streams and length + len(streams[0]) < URL_STREAMS_CHARS:
            length += len(streams[0]) + 1
            in_url.append(streams.pop(0))
        url = f"{c.ws_url}/stream?streams={'/'.join(in_url)}" if in_url else f"{c.ws_url}/stream"
        stall = c.cfg.stall_timeout_s
        self.transport, _ = await ws_connect(
            lambda: _Listener(self),
            url,
            enable_auto_ping=True,
            # A dead TCP path shows up as unanswered pings long before the OS notices.
            auto_ping_idle_timeout=max(1.0, stall / 2),
            auto_ping_reply_timeout=max(1.0, stall / 2),
            max_frame_size=MAX_FRAME_BYTES,
            websocket_handshake_timeout=10,
        )
        self.opened_at = self.last_frame_s = time.monotonic()
        per_msg = c.limits.subscriptions_per_message
        # Pongs and our own pings count against the venue's message rate too: keep half of it free.
        pause = 2.0 / max(0.5, c.limits.messages_per_s)
        for i in range(0, len(streams), per_msg):
            if self.closed.is_set() or self.transport.is_disconnected:
                return
            await asyncio.sleep(pause)
            self._request_id += 1
            msg = {"method": "SUBSCRIBE", "params": streams[i : i + per_msg], "id": self._request_id}
            self.transport.send(WSMsgType.TEXT, msgspec.json.encode(msg))

    def all_synced(self) -> bool:
        return all(s.synced for s in self.syncs.values())

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self.transport is not None and not self.transport.is_disconnected:
            self.transport.send_close()
            self.transport.disconnect()

    def on_disconnected(self) -> None:
        for sync in self.syncs.values():
            sync.reset()
        self.closed.set()
        for task in self._tasks:
            task.cancel()

    def on_text(self, payload: bytes, recv_ms: float) -> None:
        c = self.connector
        c.counters.incr("messages")
        c.counters.incr("bytes", len(payload))
        try:
            frame = parse_frame(payload)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            c.malformed(f"undecodable frame: {exc}", len(payload))
            return
        if frame is None:
            return
        if isinstance(frame, Envelope):
            self._on_reply(frame)
            return
        key, ev = frame
        sync = self._by_stream.get(key) or self._by_symbol.get(ev.s)
        if ev.e == "serverShutdown":
            # The venue announces a planned disconnect: reconnect now instead of losing the feed.
            self.shutdown_announced = True
            log.info("event=server_shutdown venue=%s", c.venue)
            return
        if ev.e != "depthUpdate" or sync is None:
            return
        book_id = sync.book.update_id
        if sync.on_diff(ev, recv_ms) is Outcome.GAP:
            c.on_gap(sync.pair, f"U={ev.U} u={ev.u} after book id {book_id}")
        if not sync.synced:
            self._ensure_fetch(sync.pair)

    def _on_reply(self, env: Envelope) -> None:
        if env.error is not None:
            log.warning("event=venue_error venue=%s error=%s", self.connector.venue, env.error)

    def request_resync(self, pair: str) -> None:
        sync = self.syncs.get(pair)
        if sync is not None:
            sync.reset()

    def _ensure_fetch(self, pair: str) -> None:
        if pair in self._fetching or self.closed.is_set():
            return
        self._fetching.add(pair)
        task = asyncio.get_running_loop().create_task(self._sync_pair(pair))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _sync_pair(self, pair: str) -> None:
        c, sync = self.connector, self.syncs[pair]
        try:
            backoff = Backoff(base_s=0.2, cap_s=10.0)
            while not sync.synced and not self.closed.is_set():
                snap = await c.fetch_snapshot(pair)
                if snap is None or not sync.buffer:
                    await asyncio.sleep(backoff.next_delay())
                    continue
                outcome = sync.on_snapshot(snap)
                if outcome is Outcome.SYNCED:
                    c.counters.incr("resyncs")
                    c.counters.incr(f"resyncs:{pair}")
                    log.info("event=book_synced venue=%s pair=%s update_id=%s", c.venue, pair, sync.book.update_id)
                    return
                if outcome is Outcome.GAP:
                    c.on_gap(pair, "buffered diffs do not join the snapshot")
                # STALE: the snapshot predates our first buffered diff; a fresh one will do.
                await asyncio.sleep(backoff.next_delay())
        finally:
            self._fetching.discard(pair)


# --- the connector: pairs spread over connections, planned reconnects, REST snapshots ------


def spread_pairs(pairs: list[str], per_connection: int) -> list[list[str]]:
    """As few connections as the stream limit allows, with the pairs dealt evenly over them."""
    n = max(1, -(-len(pairs) // max(1, per_connection)))
    return [pairs[i::n] for i in range(n)]


def effective_limits(cfg: VenueConfig) -> VenueLimits:
    """The venue's declared limits with the config's overrides applied."""
    return dataclasses.replace(
        LIMITS,
        streams_per_connection=cfg.max_streams_per_connection or LIMITS.streams_per_connection,
        rest_weight_limit=cfg.rest_weight_limit or LIMITS.rest_weight_limit,
        rest_window_s=cfg.rest_window_s or LIMITS.rest_window_s,
        rest_safety=cfg.rest_safety or LIMITS.rest_safety,
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
    venue = VENUE

    def __init__(self, cfg: VenueConfig, pairs: list[str], shared: SharedCounters | None = None) -> None:
        self.cfg = cfg
        self.pairs = list(pairs)
        self.limits = effective_limits(cfg)
        groups = spread_pairs(self.pairs, self.limits.streams_per_connection)
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
        self.ws_url = venue_config_default(cfg, "ws_url", WS_URL)
        self.rest_url = venue_config_default(cfg, "rest_url", REST_URL)
        self.counters = Counters(shared)
        lim = self.limits
        self.limiter = WeightLimiter(lim.rest_weight_limit, lim.rest_window_s, lim.rest_safety, lim.used_weight_header)
        self._attempts: deque[float] = deque()
        self._throttle = LogThrottle(log)
        self._closing = False
        self._http: aiohttp.ClientSession | None = None

    # interface used by the venue process ------------------------------------------------

    def book(self, pair: str) -> L2Book | None:
        slot = self._slot_of.get(pair)
        if slot is None:
            return None
        for conn in slot.connections():
            if conn is not None and not conn.closed.is_set():
                sync = conn.syncs.get(pair)
                if sync is not None and sync.synced:
                    return sync.book
        return None

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
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15))
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
                now = time.monotonic()
                if conn.closed.is_set():
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
        weight = pairs * lim.snapshot_weight(self.cfg.snapshot_limit)
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
            if old.closed.is_set() and not any(s.synced for s in new.syncs.values()):
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
            await asyncio.sleep(0.5)

    async def _adopt_published_limits(self) -> None:
        """Binance publishes its live REQUEST_WEIGHT limit in exchangeInfo: prefer it to our table."""
        body = await self._rest_get("/api/v3/exchangeInfo", {}, weight=20, key="exchangeInfo")
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

    async def _rest_get(self, path: str, params: dict[str, str], weight: int, key: str) -> bytes | None:
        """One REST GET within the weight budget; None (counted and logged) on any failure."""
        await self.limiter.acquire(weight, key)
        assert self._http is not None
        status: int | None = None
        headers: Any = None
        try:
            async with self._http.get(f"{self.rest_url}{path}", params=params) as resp:
                status, headers = resp.status, resp.headers
                body = await resp.read()
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

    async def fetch_snapshot(self, pair: str) -> DepthSnapshot | None:
        limit = self.cfg.snapshot_limit
        params = {"symbol": symbol_for(pair), "limit": str(limit)}
        body = await self._rest_get("/api/v3/depth", params, self.limits.snapshot_weight(limit), key=pair)
        if body is None:
            return None
        try:
            snap = _snapshot.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            self.counters.incr("rest_errors")
            self._throttle.warning("rest", "event=snapshot_failed venue=%s pair=%s error=%r", self.venue, pair, exc)
            return None
        self.counters.incr("snapshots_fetched")
        return snap

    def on_gap(self, pair: str, detail: str) -> None:
        self.counters.incr("gaps")
        self.counters.incr(f"gaps:{pair}")
        self._throttle.warning(f"gap:{pair}", "event=gap venue=%s pair=%s detail=%s", self.venue, pair, detail)

    def malformed(self, what: str, size: int) -> None:
        self.counters.incr("malformed")
        self._throttle.warning(
            "malformed", "event=malformed_frame venue=%s bytes=%d detail=%s", self.venue, size, what[:200]
        )


# --- exchange info: the pair universe and the published limits ----------------------------


class _RateLimit(msgspec.Struct):
    rateLimitType: str
    interval: str
    intervalNum: int
    limit: int


class _LimitsInfo(msgspec.Struct):
    rateLimits: list[_RateLimit] = []


class SymbolInfo(msgspec.Struct):
    symbol: str
    status: str = "TRADING"
    baseAsset: str = ""
    quoteAsset: str = ""
    isSpotTradingAllowed: bool = True
    isMarginTradingAllowed: bool = False


class ExchangeInfo(msgspec.Struct):
    symbols: list[SymbolInfo] = []
    rateLimits: list[_RateLimit] = []


_limits_info = msgspec.json.Decoder(_LimitsInfo)
_exchange_info = msgspec.json.Decoder(ExchangeInfo)


def fetch_exchange_info(rest_url: str | None, timeout_s: float = 10.0) -> ExchangeInfo:
    """``GET /api/v3/exchangeInfo`` (blocking; the CLI/supervisor use it before anything starts)."""
    import urllib.request

    base = (rest_url or REST_URL).rstrip("/")
    with urllib.request.urlopen(f"{base}/api/v3/exchangeInfo", timeout=timeout_s) as resp:
        return _exchange_info.decode(resp.read())


def instrument_types(s: SymbolInfo) -> set[str]:
    types = set()
    if s.isSpotTradingAllowed:
        types.add("spot")
    if s.isMarginTradingAllowed:
        types.add("margin")
    return types


def list_pairs(
    rest_url: str | None,
    quotes: Iterable[str] = (),
    types: Iterable[str] = (),
    timeout_s: float = 10.0,
) -> list[str]:
    """Every trading instrument (``--pairs all``) whose quote asset / type pass the filters."""
    from recorder.names import NameError_, normalize_pair

    want_quotes = {q.upper() for q in quotes}
    want_types = {t.lower() for t in types}
    out: list[str] = []
    for s in fetch_exchange_info(rest_url, timeout_s).symbols:
        if s.status != "TRADING" or not s.baseAsset or s.baseAsset + s.quoteAsset != s.symbol:
            continue
        if want_quotes and s.quoteAsset.upper() not in want_quotes:
            continue
        if want_types and not (instrument_types(s) & want_types):
            continue
        try:
            out.append(normalize_pair(f"{s.baseAsset}-{s.quoteAsset}"))
        except NameError_:
            log.warning("event=pair_skipped venue=%s symbol=%s reason=unusable name", VENUE, s.symbol)
    return out


def check_pairs(rest_url: str | None, pairs: Iterable[str], timeout_s: float = 10.0) -> list[str]:
    """Pairs the venue does not list (blocking; used by the CLI before anything starts)."""
    import json
    import urllib.error
    import urllib.request

    base = (rest_url or REST_URL).rstrip("/")
    with urllib.request.urlopen(f"{base}/api/v3/exchangeInfo", timeout=timeout_s) as resp:
        info = json.load(resp)
    listed = {s["symbol"] for s in info.get("symbols", [])}
    return [p for p in pairs if symbol_for(p) not in listed]


CONNECTOR = BinanceConnector
