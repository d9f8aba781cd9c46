"""Binance spot: ``<symbol>@depth@100ms`` diffs joined to ``GET /api/v3/depth`` snapshots.

Sync rules (docs corrected 2025-11-12, see venue-protocols.md §1): buffer diffs, fetch a
snapshot, drop buffered diffs with ``u <= lastUpdateId``, the first kept diff must straddle
``lastUpdateId + 1``, then every diff must have ``U == previous u + 1``. Anything else is a gap
for that book only: it is discarded and resynced while the other books keep sampling.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
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

VENUE = "binance"
WS_URL = "wss://stream.binance.com:9443"
REST_URL = "https://api.binance.com"
REST_WEIGHT_PER_MIN = 6000
MAX_STREAMS_PER_CONNECTION = 1024
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
    if limit <= 100:
        return 5
    if limit <= 500:
        return 25
    if limit <= 1000:
        return 50
    return 250


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
            outcome = Outcome.BUFFERED
            if self.buffer:
                prev = self.buffer[-1][0]
                # A hole inside the buffer makes every older diff useless: start over from here.
                # It is still a gap in the feed (reported), even though no book was live.
                if ev.U != prev.u + 1:
                    outcome = Outcome.GAP
                if outcome is Outcome.GAP or len(self.buffer) >= MAX_BUFFERED_DIFFS:
                    self.buffer.clear()
            self.buffer.append((ev, recv_ms))
            return outcome
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
        mt = frame.msg_type
        if mt is not WSMsgType.CLOSE:  # a close (e.g. the echo of our keepalive's) is no sign of life
            conn.last_frame_s = time.monotonic()
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

    async def open(self) -> None:
        streams = "/".join(self._by_stream)
        url = f"{self.connector.ws_url}/stream?streams={streams}"
        stall = self.connector.cfg.stall_timeout_s
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


# --- the connector: connections over time, planned reconnects, REST snapshots -------------


class BinanceConnector:
    venue = VENUE

    def __init__(
        self,
        cfg: VenueConfig,
        pairs: list[str],
        shared: SharedCounters | None = None,
        weight_per_min: int = REST_WEIGHT_PER_MIN,
    ) -> None:
        if len(pairs) > MAX_STREAMS_PER_CONNECTION:
            raise ValueError(f"at most {MAX_STREAMS_PER_CONNECTION} pairs per Binance connection")
        self.cfg = cfg
        self.pairs = list(pairs)
        self.ws_url = venue_config_default(cfg, "ws_url", WS_URL)
        self.rest_url = venue_config_default(cfg, "rest_url", REST_URL)
        self.counters = Counters(shared)
        self.limiter = WeightLimiter(weight_per_min)
        self._throttle = LogThrottle(log)
        self._active: _Connection | None = None
        self._successor: _Connection | None = None
        self._closing = False
        self._http: aiohttp.ClientSession | None = None

    # interface used by the venue process ------------------------------------------------

    def book(self, pair: str) -> L2Book | None:
        for conn in (self._active, self._successor):
            if conn is not None and not conn.closed.is_set():
                sync = conn.syncs.get(pair)
                if sync is not None and sync.synced:
                    return sync.book
        return None

    def request_resync(self, pair: str, reason: str) -> None:
        log.warning("event=resync_requested venue=%s pair=%s reason=%s", self.venue, pair, reason)
        if self._active is not None:
            self._active.request_resync(pair)

    async def close(self) -> None:
        self._closing = True
        for conn in (self._active, self._successor):
            if conn is not None:
                conn.close()
        if self._http is not None:
            await self._http.close()

    async def run(self) -> None:
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.cfg.rest_timeout_s))
        backoff = Backoff()
        conn: _Connection | None = None
        while not self._closing:
            if conn is None:
                conn = await self._connect(backoff)
                if conn is None:
                    return
            self._active = conn
            planned = await self._serve(conn)
            if self._closing:
                return
            if not planned:
                self.counters.incr("reconnects")
                log.warning("event=disconnected venue=%s code=%s", self.venue, conn.close_code)
                conn.close()
                conn = None
                await asyncio.sleep(backoff.next_delay())
                continue
            conn = await self._hand_over(conn, backoff)

    # internals ---------------------------------------------------------------------------

    async def _connect(self, backoff: Backoff) -> _Connection | None:
        while not self._closing:
            conn = _Connection(self, self.pairs)
            try:
                await conn.open()
            except Exception as exc:  # any connect failure is retried: never give up
                self._throttle.warning("connect", "event=connect_failed venue=%s error=%r", self.venue, exc)
                self.counters.incr("reconnects")
                await asyncio.sleep(backoff.next_delay())
                continue
            backoff.success()
            log.info("event=connected venue=%s pairs=%d", self.venue, len(self.pairs))
            return conn
        return None

    async def _serve(self, conn: _Connection) -> bool:
        """Watch a live connection. True: time for a planned reconnect; False: it died."""
        self.counters.set("connected", 1)
        try:
            while not conn.closed.is_set():
                try:
                    await asyncio.wait_for(conn.closed.wait(), timeout=0.5)
                except TimeoutError:
                    pass
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
                if conn.shutdown_announced or now - conn.opened_at >= self.cfg.max_connection_age_s:
                    return True
            return False
        finally:
            self.counters.set("connected", 0)

    async def _hand_over(self, old: _Connection, backoff: Backoff) -> _Connection | None:
        """Planned reconnect: sync a new connection while the old one keeps sampling."""
        log.info("event=planned_reconnect venue=%s age_s=%.0f", self.venue, time.monotonic() - old.opened_at)
        new = await self._connect(backoff)
        if new is None:
            old.close()
            return None
        self._successor = new
        deadline = time.monotonic() + 120.0
        while not new.all_synced() and not new.closed.is_set() and time.monotonic() < deadline:
            if old.closed.is_set() and not any(s.synced for s in new.syncs.values()):
                # The old feed is already gone; waiting gains nothing.
                break
            await asyncio.sleep(0.05)
        self._active, self._successor = new, None
        old.close()
        self.counters.incr("planned_reconnects")
        return new

    async def fetch_snapshot(self, pair: str) -> DepthSnapshot | None:
        limit = self.cfg.snapshot_limit
        await self.limiter.acquire(snapshot_weight(limit))
        assert self._http is not None
        url = f"{self.rest_url}/api/v3/depth"
        try:
            async with self._http.get(url, params={"symbol": symbol_for(pair), "limit": str(limit)}) as resp:
                body = await resp.read()
                if resp.status in (429, 418):
                    retry = float(resp.headers.get("Retry-After", "60"))
                    self.limiter.pause(retry)
                    self.counters.incr("http_429")
                    log.warning(
                        "event=rate_limited venue=%s status=%d retry_after_s=%s", self.venue, resp.status, retry
                    )
                    return None
                if resp.status != 200:
                    self.counters.incr("rest_errors")
                    self._throttle.warning(
                        "rest",
                        "event=snapshot_failed venue=%s pair=%s status=%d body=%s",
                        self.venue,
                        pair,
                        resp.status,
                        body[:200],
                    )
                    return None
            snap = _snapshot.decode(body)
        except (aiohttp.ClientError, TimeoutError, msgspec.DecodeError, msgspec.ValidationError) as exc:
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
