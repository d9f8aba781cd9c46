"""Binance spot: ``<symbol>@depth@100ms`` diffs joined to ``GET /api/v3/depth`` snapshots.

Sync rules (docs corrected 2025-11-12, see venue-protocols.md §1): buffer diffs, fetch a
snapshot, drop buffered diffs with ``u <= lastUpdateId``, the first kept diff must straddle
``lastUpdateId + 1``, then every diff must have ``U == previous u + 1``. Anything else is a gap
for that book only: it is discarded and resynced while the other books keep sampling.

Layers: wire structs and ``parse_frame``; ``BookSync`` (one book's sync rules); ``BinanceFeed``
(sans-I/O: every frame of one socket, used by the live connector and by ``replay``); the
``BinanceConnector`` (picows socket, REST snapshots, reconnects). USD-M futures
(``binance_futures.py``) reuses all of it with its own chain rule and endpoints.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

import aiohttp
import msgspec
from picows import WSMsgType, WSTransport, ws_connect

from recorder.archive.tap import archived_feed, tap_of
from recorder.archive.tap import current as current_archive
from recorder.book import L2Book
from recorder.config import VenueConfig
from recorder.metrics import SharedCounters
from recorder.model import Quote, Trade
from recorder.venues.base import (
    Backoff,
    Counters,
    FeedStats,
    FloatLevel,
    LogThrottle,
    WeightLimiter,
    venue_config_default,
)
from recorder.venues.binance_trades import QuoteTracker, TradeIds, TradeParser, agg_trade_stream, trade_stream
from recorder.venues.limits import BINANCE as LIMITS
from recorder.venues.limits import LIMITS as VENUE_LIMITS
from recorder.venues.limits import VenueLimits, interval_seconds
from recorder.venues.ws_listener import TextListener

VENUE = "binance"
WS_URL = "wss://stream.binance.com:9443"
REST_URL = "https://api.binance.com"
REST_WEIGHT_PER_MIN = 6000
MAX_STREAMS_PER_CONNECTION = 1024
MAX_FRAME_BYTES = 16 * 1024 * 1024
# Longest stream list put in the connection URL; the rest are subscribed by message.
URL_STREAMS_CHARS = 2000
# Diffs a book without a snapshot keeps (the newest; older ones are dropped from the head,
# which only risks a STALE snapshot, never a wrong book). While its snapshot request waits
# behind the weight limiter, a book needs only the last few seconds: the snapshot will be
# newer than that. A universe resyncing at once (1000 books queued for a minute) would
# otherwise hold every diff of that minute and grow towards the OOM killer.
QUEUED_BUFFERED_DIFFS = 100
# Once its request is on the wire the snapshot may come back late (slow venue): keep more.
MAX_BUFFERED_DIFFS = 10_000
# A live book whose known depth fell below the sampling depth gets a deeper snapshot (the sampler
# asks): at most one pending per book, the next no sooner than this after the last came back, and
# all of them together within this share of the REST budget (the rest stays free for resyncs).
REFETCH_SPACING_S = 10.0
REFETCH_BUDGET_SHARE = 0.5

log = logging.getLogger("recorder.venues.binance")


# --- wire schema -------------------------------------------------------------------------


class DepthEvent(msgspec.Struct):
    e: str
    E: int = 0
    s: str = ""
    U: int = 0
    u: int = 0
    pu: int = 0  # futures only: ``u`` of this symbol's previous event
    b: list[FloatLevel] = []
    a: list[FloatLevel] = []


class StreamDepth(msgspec.Struct):
    """A combined-stream frame carrying an event: nearly every frame, decoded in one pass."""

    stream: str
    data: DepthEvent


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
    bids: list[FloatLevel]
    asks: list[FloatLevel]


class _Kind(msgspec.Struct):
    e: str | None = None


# strict=False: prices and quantities arrive as text and are decoded to float in C.
_stream_depth = msgspec.json.Decoder(StreamDepth, strict=False)
_kind = msgspec.json.Decoder(_Kind)
_envelope = msgspec.json.Decoder(Envelope)
_event = msgspec.json.Decoder(DepthEvent, strict=False)
_snapshot = msgspec.json.Decoder(DepthSnapshot, strict=False)
_DECODE_ERRORS = (msgspec.DecodeError, msgspec.ValidationError)


def parse_frame(payload: bytes) -> tuple[str, DepthEvent] | Envelope | None:
    """A text frame -> (stream name or "", event), the Envelope of a method reply, or None
    for a stream that is not a depth stream (trades, tickers: not ours to parse)."""
    try:
        msg = _stream_depth.decode(payload)
    except _DECODE_ERRORS:
        return _parse_other(payload)  # raises for a malformed frame
    if "@depth" in msg.stream or msg.data.e == "serverShutdown":
        return msg.stream, msg.data
    return None


def _parse_other(payload: bytes) -> tuple[str, DepthEvent] | Envelope | None:
    """Frames that are not a combined-stream event: replies, raw events, foreign streams, junk."""
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


# Quote assets, longest first where one ends another (``FDUSD`` before ``USD``).
QUOTE_ASSETS = ("FDUSD", "USDT", "USDC", "TUSD", "BUSD", "EUR", "TRY", "BRL", "BTC", "ETH", "BNB", "DAI", "USD")


def pair_for(symbol: str) -> str:
    """``BTCUSDT`` -> ``BTC-USDT`` (by the known quote assets; exchangeInfo is the authority)."""
    for quote in QUOTE_ASSETS:
        if symbol.endswith(quote) and len(symbol) > len(quote):
            return f"{symbol[: -len(quote)]}-{quote}"
    raise ValueError(f"cannot split Binance symbol {symbol!r} into base and quote")


def snapshot_pair(url: str) -> str | None:
    """The pair a recorded REST depth snapshot is for, from its URL's ``symbol=`` (replay)."""
    from urllib.parse import parse_qs, urlsplit

    symbols = parse_qs(urlsplit(url).query).get("symbol")
    try:
        return pair_for(symbols[0]) if symbols else None
    except ValueError:
        return None


def capture_pairs(frames: Iterable[bytes], url: str | None = None) -> list[str]:
    """The pairs whose depth diffs a recorded socket (connected to ``url``) carries, for replay."""
    return pairs_in_frames(frames, pair_for, url)


# COIN-M futures (``dstream`` / ``dapi``, symbols like ``BTCUSD_PERP`` or ``BTCUSD_240628``) have
# their own book semantics (contracts, not coins) and no venue id here.
COIN_M_HOSTS = ("dstream.binance.com", "dapi.binance.com")


def pairs_in_frames(frames: Iterable[bytes], to_pair: Callable[[str], str], url: str | None = None) -> list[str]:
    """Raises ValueError (one line for the user) for a COIN-M capture, which no venue id replays."""
    seen: dict[str, None] = {}
    coin_m = {host for host in COIN_M_HOSTS if url and host in url}
    for payload in frames:
        try:
            frame = parse_frame(payload)
        except (msgspec.DecodeError, msgspec.ValidationError):
            continue
        if isinstance(frame, tuple) and frame[1].e == "depthUpdate" and frame[1].s:
            if "_" in frame[1].s:
                coin_m.add(frame[1].s)
                continue
            try:
                seen[to_pair(frame[1].s)] = None
            except ValueError:
                continue
    if coin_m:
        raise ValueError(
            f"the capture is Binance COIN-M futures ({', '.join(sorted(coin_m)[:3])}): COIN-M (dstream / dapi) "
            "is not supported; binance replays spot, binance-futures USD-M perpetuals (fstream / fapi)"
        )
    return list(seen)


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


def spot_prev_id(ev: DepthEvent) -> int:
    """The book id an event continues from: spot ids are contiguous, so ``U - 1``."""
    return ev.U - 1


class BookSync:
    """One pair's book and its position in Binance's update-id sequence.

    The rules are written once against ``prev_id(event)``, the book id an event must follow:
    spot ``U - 1`` (ids are contiguous), futures ``pu``. Continuity is ``prev_id == book id``;
    the first event after a snapshot must straddle it (``prev_id <= lastUpdateId < u``);
    a snapshot older than the first buffered event's ``prev_id`` is stale.
    """

    def __init__(self, pair: str, prev_id: Callable[[DepthEvent], int] = spot_prev_id) -> None:
        self.pair = pair
        self.book = L2Book()
        self.synced = False
        self.buffer: list[tuple[DepthEvent, float]] = []
        self._straddle_next = False
        self._prev_id = prev_id
        # The depth asked of the REST snapshot (None: unknown, e.g. replay): a side that comes
        # back with that many levels was truncated by the venue.
        self.snapshot_limit: int | None = None
        self.gap_after: int | None = None  # the book id a diff broke the chain after (for the log)
        self.keep = QUEUED_BUFFERED_DIFFS  # raised while a snapshot request is in flight
        # A deeper snapshot fetched while the book stays live and sampled (``begin_refetch``): the
        # diffs applied since its request went out, replayed over it (None: no refetch running).
        self.since_refetch: list[tuple[DepthEvent, float]] | None = None
        self._refetch_from = 0  # the book id when the request went out
        self._refetched: DepthSnapshot | None = None  # newer than the book: waits for its diffs

    def reset(self) -> None:
        self.synced = False
        self.buffer.clear()
        self.book.clear()
        self._straddle_next = False
        self.end_refetch()

    # -- deepening a live book (its known depth fell below the sampling depth) ------------------

    def begin_refetch(self) -> None:
        """The request of a fresh snapshot for this live book went on the wire."""
        if self.synced and self.book.update_id is not None:
            self.since_refetch = []
            self._refetch_from = self.book.update_id
            self._refetched = None

    def end_refetch(self) -> None:
        self.since_refetch = self._refetched = None

    def on_refetch(self, snap: DepthSnapshot) -> Outcome:
        """A fresh snapshot of a live book: SYNCED (the book is rebuilt on it, as deep as it goes),
        BUFFERED (newer than the book: rebuilt once the diffs reach it), or STALE/IGNORED."""
        if not self.synced or self.since_refetch is None:
            self.end_refetch()
            return Outcome.IGNORED
        if snap.lastUpdateId < self._refetch_from:
            self.end_refetch()  # older than the book was when we asked: the diffs between are gone
            return Outcome.STALE
        book_id = self.book.update_id
        assert book_id is not None
        if snap.lastUpdateId > book_id:
            self._refetched = snap
            return Outcome.BUFFERED
        return Outcome.SYNCED if self._rebase(snap) else Outcome.STALE

    def _log_applied(self, ev: DepthEvent, recv_ms: float) -> None:
        log_ = self.since_refetch
        assert log_ is not None
        log_.append((ev, recv_ms))
        if len(log_) > MAX_BUFFERED_DIFFS:
            self.end_refetch()  # the snapshot is too late to catch up with: the connector asks again
        elif self._refetched is not None and ev.u >= self._refetched.lastUpdateId:
            self._rebase(self._refetched)

    def _rebase(self, snap: DepthSnapshot) -> bool:
        """Rebuild the book on ``snap`` plus the diffs applied since it was asked for (the live
        book is replaced only once the rebuilt one has reached the same update id)."""
        last = snap.lastUpdateId
        kept = [ev for ev, _ in self.since_refetch or () if ev.u > last]
        self.end_refetch()
        if kept and self._prev_id(kept[0]) > last:
            return False  # the snapshot does not join the chain (never seen; Binance would be wrong)
        book = type(self.book)()
        book.load(snap.bids, snap.asks, last)
        limit = self.snapshot_limit
        book.bound_to_snapshot(limit is None or len(snap.bids) >= limit, limit is None or len(snap.asks) >= limit)
        for ev in kept:  # contiguous: they were applied to the live book under the chain rule
            book.apply(ev.b, ev.a)
        book.update_id = kept[-1].u if kept else last
        if book.update_id != self.book.update_id:
            return False
        book.exchange_time_ms, book.receive_time_ms = self.book.exchange_time_ms, self.book.receive_time_ms
        self.book = book
        return True

    def on_diff(self, ev: DepthEvent, recv_ms: float) -> Outcome:
        if not self.synced:
            outcome = Outcome.BUFFERED
            if self.buffer:
                prev = self.buffer[-1][0]
                # A hole inside the buffer makes every older diff useless: start over from here.
                # It is still a gap in the feed (reported), even though no book was live.
                if self._prev_id(ev) != prev.u:
                    outcome = Outcome.GAP
                    self.buffer.clear()
            self.buffer.append((ev, recv_ms))
            if len(self.buffer) > self.keep:
                del self.buffer[: len(self.buffer) - self.keep]
            return outcome
        book_id = self.book.update_id
        assert book_id is not None
        if ev.u <= book_id:
            return Outcome.IGNORED
        if self._straddle_next:
            ok = self._prev_id(ev) <= book_id
        else:
            ok = self._prev_id(ev) == book_id
        if not ok:
            self.reset()
            self.gap_after = book_id
            self.buffer.append((ev, recv_ms))
            return Outcome.GAP
        book = self.book
        book.apply(ev.b, ev.a)
        book.update_id = ev.u
        book.exchange_time_ms = ev.E
        book.receive_time_ms = recv_ms
        self._straddle_next = False
        if self.since_refetch is not None:
            self._log_applied(ev, recv_ms)
        return Outcome.APPLIED

    def on_snapshot(self, snap: DepthSnapshot) -> Outcome:
        """Join a REST snapshot to the buffered diffs."""
        if not self.buffer:
            return Outcome.STALE
        last = snap.lastUpdateId
        if last < self._prev_id(self.buffer[0][0]):
            return Outcome.STALE  # older than the first diff we hold: fetch again
        # A diff with u == lastUpdateId is already in the snapshot (levels are absolute).
        kept = [(ev, t) for ev, t in self.buffer if ev.u > last]
        self.buffer.clear()
        self.book.load(snap.bids, snap.asks, last)
        # A side that filled the requested limit was cut short: levels past it are unknown.
        limit = self.snapshot_limit
        self.book.bound_to_snapshot(limit is None or len(snap.bids) >= limit, limit is None or len(snap.asks) >= limit)
        self.book.exchange_time_ms = None
        self.book.receive_time_ms = None
        self.synced = True
        self._straddle_next = True
        for ev, t in kept:
            if self.on_diff(ev, t) is Outcome.GAP:
                return Outcome.GAP
        return Outcome.SYNCED


# --- the Feed: every frame of one socket, free of I/O (live and replay share it) -----------


class BinanceFeed:
    """Frames of one Binance combined-stream socket -> synced books (the ``Feed`` protocol).

    Subclasses (futures) change the class attributes, not the logic.
    """

    venue = VENUE
    log = log
    prev_id: Callable[[DepthEvent], int] = staticmethod(spot_prev_id)
    # A REST snapshot body -> what ``on_snapshot`` / ``on_refetch`` take (an archive replay decodes
    # the recorded body with it).
    decode_snapshot = staticmethod(_snapshot.decode)
    # The local clock (epoch ms) for what a frame does not date (a quote at a REST snapshot's join);
    # an archive replay sets the recorded time.
    now_ms: Callable[[], float] = staticmethod(lambda: time.time() * 1000.0)
    symbol_for = staticmethod(symbol_for)
    stream_for = staticmethod(stream_for)

    def __init__(
        self,
        pairs: Iterable[str],
        counters: Counters | None = None,
        snapshot_limit: int | None = None,
        trade_ids: TradeIds | None = None,
    ) -> None:
        self.syncs = {pair: BookSync(pair, self.prev_id) for pair in pairs}
        for sync in self.syncs.values():
            sync.snapshot_limit = snapshot_limit
        self._by_stream = {self.stream_for(p): s for p, s in self.syncs.items()}
        self._by_symbol = {self.symbol_for(p): s for p, s in self.syncs.items()}
        self.stats = FeedStats(counters)
        self.shutdown_announced = False
        self._wanted: set[str] = set()
        # Replay only: a recorded snapshot that arrived before any diff of its pair waits here
        # (live fetches a snapshot only once a diff is buffered).
        self._pending: dict[str, DepthSnapshot] = {}
        self._throttle = LogThrottle(self.log)
        # Trades (``<symbol>@trade``) and quotes: parsed only once ``on_trade`` / ``on_quote`` is set.
        trade_streams = {trade_stream(self.symbol_for(p)): p for p in self.syncs}
        agg_streams = {agg_trade_stream(self.symbol_for(p)): p for p in self.syncs}
        self._trades = TradeParser(self.venue, trade_streams, self.stats, trade_ids, agg_streams)
        self._quotes: QuoteTracker | None = None

    @property
    def on_trade(self) -> Callable[[Trade], None] | None:
        return self._trades.on_trade

    @on_trade.setter
    def on_trade(self, fn: Callable[[Trade], None] | None) -> None:
        self._trades.on_trade = fn

    @property
    def on_quote(self) -> Callable[[Quote], None] | None:
        return self._quotes.on_quote if self._quotes is not None else None

    @on_quote.setter
    def on_quote(self, fn: Callable[[Quote], None] | None) -> None:
        self._quotes = QuoteTracker(self.venue, fn) if fn is not None else None

    def trade_streams(self) -> list[str]:
        return list(self._trades.by_stream)

    # the Feed protocol ---------------------------------------------------------------------

    def on_frame(self, payload: bytes, recv_ms: float) -> None:
        # A "<symbol>@trade" frame is decoded once, by the trade parser (not first as a diff).
        trades = self._trades
        if trades.on_trade is not None and payload.find(b'@trade"', 11, 64) > 0 and trades.on_frame(payload, recv_ms):
            return
        # The hot path, one typed decode: a diff on one of our depth streams.
        try:
            msg = _stream_depth.decode(payload)
        except _DECODE_ERRORS:
            msg = None
        if msg is not None:
            sync = self._by_stream.get(msg.stream)
            ev = msg.data
            if sync is not None and ev.e == "depthUpdate":
                self.stats.update_frame(len(payload), "depthUpdate", sync.pair)
                outcome = sync.on_diff(ev, recv_ms)
                if outcome is not Outcome.APPLIED:
                    self._not_applied(sync, ev, outcome, recv_ms)
                elif self._quotes is not None:
                    self._quotes.book_changed(sync.pair, sync.book, recv_ms)
                return
            if (
                ev.e in ("trade", "aggTrade")
                and self._trades.on_trade is not None
                and self._trades.on_frame(payload, recv_ms)
            ):
                return
        if msg is None and self._trades.on_trade is not None and self._trades.on_frame(payload, recv_ms):
            return  # a trade whose fields do not fit the depth struct (@aggTrade's "a", old "b"/"a" ids)
        self.stats.frame(len(payload))
        self._on_other_frame(payload, recv_ms)

    def _on_diff(self, sync: BookSync, ev: DepthEvent, recv_ms: float) -> None:
        self.stats.update("depthUpdate", sync.pair)
        outcome = sync.on_diff(ev, recv_ms)
        if outcome is not Outcome.APPLIED:
            self._not_applied(sync, ev, outcome, recv_ms)
        elif self._quotes is not None:
            self._quotes.book_changed(sync.pair, sync.book, recv_ms)

    def _not_applied(self, sync: BookSync, ev: DepthEvent, outcome: Outcome, recv_ms: float) -> None:
        """A diff that was buffered, ignored or broke the chain: count a gap, join a waiting
        snapshot, or ask for one."""
        if outcome is Outcome.GAP:
            self._gap(sync.pair, f"U={ev.U} u={ev.u} pu={ev.pu} after book id {sync.gap_after}")
            if self._quotes is not None:
                self._quotes.forget(sync.pair)  # never a quote change measured across a gap
        if sync.synced:
            return
        pending = self._pending.pop(sync.pair, None)
        if pending is not None:
            self._join(sync.pair, pending, recv_ms)
        if not sync.synced:
            self._wanted.add(sync.pair)

    def _on_other_frame(self, payload: bytes, recv_ms: float) -> None:
        stats = self.stats
        try:
            frame = _parse_other(payload)
        except _DECODE_ERRORS as exc:
            self.malformed(f"undecodable frame: {exc}", len(payload))
            return
        if frame is None:
            stats.kind("other_stream")
            return
        if isinstance(frame, Envelope):
            stats.kind("reply")
            if frame.error is not None:
                self.log.warning("event=venue_error venue=%s error=%s", self.venue, frame.error)
            return
        key, ev = frame
        if ev.e == "serverShutdown":
            # The venue announces a planned disconnect: reconnect now instead of losing the feed.
            stats.kind("serverShutdown")
            self.shutdown_announced = True
            self.log.info("event=server_shutdown venue=%s", self.venue)
            return
        sync = self._by_stream.get(key) or self._by_symbol.get(ev.s)
        if ev.e != "depthUpdate" or sync is None:
            stats.kind("other_event")
            return
        self._on_diff(sync, ev, recv_ms)

    def on_rest_snapshot(self, pair: str, body: bytes, recv_ms: float) -> None:
        try:
            snap = _snapshot.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            self.malformed(f"undecodable snapshot for {pair}: {exc}", len(body))
            return
        self.on_snapshot(pair, snap, recv_ms)

    def book(self, pair: str) -> L2Book | None:
        sync = self.syncs.get(pair)
        return sync.book if sync is not None and sync.synced else None

    def wants_snapshot(self) -> set[str]:
        """Pairs with buffered diffs and no book (a live view: do not mutate)."""
        return self._wanted

    # what the connector needs besides -----------------------------------------------------

    def on_snapshot(self, pair: str, snap: DepthSnapshot, recv_ms: float | None = None) -> Outcome:
        """Join a decoded REST snapshot received at ``recv_ms`` (None: now, live); SYNCED, GAP or
        STALE (fetch another)."""
        self.stats.kind("rest_snapshot")
        return self._join(pair, snap, recv_ms)

    def _join(self, pair: str, snap: DepthSnapshot, recv_ms: float | None = None) -> Outcome:
        sync = self.syncs.get(pair)
        if sync is None or sync.synced:
            return Outcome.IGNORED
        if not sync.buffer:
            self._pending[pair] = snap
            return Outcome.STALE
        outcome = sync.on_snapshot(snap)
        if outcome is Outcome.SYNCED:
            self._wanted.discard(pair)
            self.stats.resync(pair)
            if self._quotes is not None:
                self._quotes.forget(pair)
                # Stamped with the recorded clock in a replay (an archive's: the call's), never the replay's.
                at = sync.book.receive_time_ms or recv_ms or self.now_ms()
                self._quotes.book_changed(pair, sync.book, at)
            self.log.info("event=book_synced venue=%s pair=%s update_id=%s", self.venue, pair, sync.book.update_id)
        elif outcome is Outcome.GAP:
            self._gap(pair, "buffered diffs do not join the snapshot")
        return outcome

    def synced(self, pair: str) -> bool:
        return self.syncs[pair].synced

    def all_synced(self) -> bool:
        return all(s.synced for s in self.syncs.values())

    def any_synced(self) -> bool:
        return any(s.synced for s in self.syncs.values())

    def has_buffer(self, pair: str) -> bool:
        return bool(self.syncs[pair].buffer)

    def snapshot_in_flight(self, pair: str, in_flight: bool) -> None:
        """A snapshot request for ``pair`` went on the wire (True) or came back (False)."""
        sync = self.syncs.get(pair)
        if sync is not None:
            sync.keep = MAX_BUFFERED_DIFFS if in_flight else QUEUED_BUFFERED_DIFFS

    def buffered_diffs(self) -> int:
        return sum(len(s.buffer) + len(s.since_refetch or ()) for s in self.syncs.values())

    def begin_refetch(self, pair: str) -> None:
        """A deeper snapshot of the live book of ``pair`` was asked for (its request is on the wire)."""
        sync = self.syncs.get(pair)
        if sync is not None:
            sync.begin_refetch()

    def on_refetch(self, pair: str, snap: DepthSnapshot) -> Outcome:
        """The deeper snapshot came back (see ``BookSync.on_refetch``)."""
        sync = self.syncs.get(pair)
        if sync is None:
            return Outcome.IGNORED
        self.stats.kind("rest_snapshot")
        outcome = sync.on_refetch(snap)
        if outcome is Outcome.SYNCED:
            self.stats.pair(pair, "refetches")
            self.log.info("event=book_deepened venue=%s pair=%s update_id=%s", self.venue, pair, sync.book.update_id)
        return outcome

    def refetching(self, pair: str) -> bool:
        """A deeper snapshot of ``pair`` is asked for or waits for the book to catch up with it."""
        sync = self.syncs.get(pair)
        return sync is not None and sync.since_refetch is not None

    def end_refetch(self, pair: str) -> None:
        sync = self.syncs.get(pair)
        if sync is not None:
            sync.end_refetch()

    def reset(self) -> None:
        """The socket is gone: every book is unknown."""
        for sync in self.syncs.values():
            sync.reset()
            if self._quotes is not None:
                self._quotes.forget(sync.pair)
        self._wanted.clear()
        self._pending.clear()

    def request_resync(self, pair: str) -> None:
        sync = self.syncs.get(pair)
        if sync is not None:
            sync.reset()
            self._pending.pop(pair, None)
            if self._quotes is not None:
                self._quotes.forget(pair)

    def malformed(self, what: str, size: int) -> None:
        self.stats.malformed_frame()
        self._throttle.warning(
            "malformed", "event=malformed_frame venue=%s bytes=%d detail=%s", self.venue, size, what[:200]
        )

    def _gap(self, pair: str, detail: str) -> None:
        self.stats.gap(pair)
        self._throttle.warning(f"gap:{pair}", "event=gap venue=%s pair=%s detail=%s", self.venue, pair, detail)


# --- one WebSocket connection and the books synced over it ---------------------------------


class _Connection:
    """One socket: picows in, the Feed does the rest; REST snapshots for the pairs it wants."""

    def __init__(self, connector: BinanceConnector, pairs: list[str]) -> None:
        self.connector = connector
        self.feed: BinanceFeed = archived_feed(
            connector.feed_class,
            pairs,
            counters=connector.counters,
            snapshot_limit=connector.snapshot_limit,
            trade_ids=connector.trade_ids,
        )
        self.tap = tap_of(self.feed)  # the connection's archive (None: not archived)
        self.feed.on_trade = connector.on_trade
        self.feed.on_quote = connector.on_quote
        self.transport: WSTransport | None = None
        self.closed = asyncio.Event()
        self.opened_at = time.monotonic()
        self.last_frame_s = time.monotonic()
        self.close_code: object = None
        self._fetching: set[str] = set()
        self._deepened_at: dict[str, float] = {}  # pair -> when its last deeper snapshot came back
        self._tasks: set[asyncio.Task[None]] = set()
        self._request_id = 0
        self.max_age_s = connector.cfg.max_connection_age_s

    @property
    def shutdown_announced(self) -> bool:
        return self.feed.shutdown_announced

    async def open(self) -> None:
        c = self.connector
        # A handful of streams ride in the URL; the rest are SUBSCRIBEd in paced batches (a URL
        # with 1024 streams is ~25 kB, more than many HTTP front ends accept).
        streams = [self.feed.stream_for(p) for p in self.feed.syncs]
        if self.feed.on_trade is not None:
            streams += self.feed.trade_streams()  # /public on USD-M, beside the depth streams
        in_url: list[str] = []
        length = 0
        while streams and length + len(streams[0]) < URL_STREAMS_CHARS:
            length += len(streams[0]) + 1
            in_url.append(streams.pop(0))
        url = f"{c.ws_url}/stream?streams={'/'.join(in_url)}" if in_url else f"{c.ws_url}/stream"
        stall = c.cfg.stall_timeout_s
        self.transport, _ = await ws_connect(
            lambda: TextListener(self, self.tap, url),
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
            data = msgspec.json.encode(msg)
            if self.tap is not None:
                self.tap.send(data)
            self.transport.send(WSMsgType.TEXT, data)

    def all_synced(self) -> bool:
        return self.feed.all_synced()

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self.transport is not None and not self.transport.is_disconnected:
            self.transport.send_close()
            self.transport.disconnect()

    def on_disconnected(self) -> None:
        self.feed.reset()
        self.closed.set()
        for task in self._tasks:
            task.cancel()

    def on_text(self, payload: bytes, recv_ms: float) -> None:
        self.last_frame_s = time.monotonic()
        self.feed.on_frame(payload, recv_ms)
        wanted = self.feed.wants_snapshot()
        if wanted and not wanted <= self._fetching:
            for pair in list(wanted):
                self._ensure_fetch(pair)

    def request_resync(self, pair: str) -> None:
        self.feed.request_resync(pair)

    def malformed(self, what: str, size: int) -> None:
        self.feed.malformed(what, size)

    def request_depth(self, pair: str) -> bool:
        """Fetch a deeper snapshot for the live book of ``pair`` unless one is under way, the last
        came back less than ``REFETCH_SPACING_S`` ago, or its resync is running; True if asked."""
        c, feed = self.connector, self.feed
        if pair in self._fetching or self.closed.is_set() or not feed.synced(pair) or feed.refetching(pair):
            return False
        if pair in c.deepening or time.monotonic() - self._deepened_at.get(pair, -1e9) < REFETCH_SPACING_S:
            return False
        if not c.refetch_affordable():
            return False
        c.deepening.add(pair)
        task = asyncio.get_running_loop().create_task(self._deepen(pair))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def _deepen(self, pair: str) -> None:
        c, feed = self.connector, self.feed
        outcome = Outcome.IGNORED
        try:
            # Behind every resync (the limiter's background tier): the book is sampled meanwhile.
            snap = await c.fetch_snapshot(pair, on_sent=lambda: feed.begin_refetch(pair), background=True)
            if snap is not None:
                outcome = feed.on_refetch(pair, snap)
        finally:
            if outcome is not Outcome.BUFFERED:
                feed.end_refetch(pair)
            c.deepening.discard(pair)
            self._deepened_at[pair] = time.monotonic()

    def _ensure_fetch(self, pair: str) -> None:
        if pair in self._fetching or self.closed.is_set():
            return
        self._fetching.add(pair)
        task = asyncio.get_running_loop().create_task(self._sync_pair(pair))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _sync_pair(self, pair: str) -> None:
        c, feed = self.connector, self.feed
        try:
            backoff = Backoff(base_s=0.2, cap_s=10.0)
            while not feed.synced(pair) and not self.closed.is_set():
                try:
                    snap = await c.fetch_snapshot(pair, on_sent=lambda: feed.snapshot_in_flight(pair, True))
                finally:
                    feed.snapshot_in_flight(pair, False)
                if snap is None or not feed.has_buffer(pair):
                    await asyncio.sleep(backoff.next_delay())
                    continue
                if feed.on_snapshot(pair, snap) is Outcome.SYNCED:
                    return
                # GAP (counted by the feed) or STALE (older than our first diff): fetch again.
                await asyncio.sleep(backoff.next_delay())
        finally:
            self._fetching.discard(pair)


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


def check_config(cfg: VenueConfig, limits: VenueLimits = LIMITS) -> None:
    """Settings the venue would refuse (config validation calls it before anything starts)."""
    if cfg.snapshot_limit is not None:
        error = limits.snapshot_limit_error(cfg.snapshot_limit)
        if error is not None:
            raise ValueError(error)


def check_pairs(rest_url: str | None, pairs: Iterable[str], timeout_s: float = 10.0) -> list[str]:
    """Pairs the venue does not list (blocking; used by the CLI before anything starts)."""
    return unlisted_pairs(rest_url or REST_URL, "/api/v3/exchangeInfo", pairs, symbol_for, timeout_s)


def unlisted_pairs(
    rest_url: str, info_path: str, pairs: Iterable[str], to_symbol: Callable[[str], str], timeout_s: float
) -> list[str]:
    import json
    import urllib.request

    with urllib.request.urlopen(f"{rest_url.rstrip('/')}{info_path}", timeout=timeout_s) as resp:
        info = json.load(resp)
    listed = {s["symbol"] for s in info.get("symbols", [])}
    return [p for p in pairs if to_symbol(p) not in listed]


Feed = BinanceFeed
CONNECTOR = BinanceConnector
