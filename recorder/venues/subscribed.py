"""The live half of a venue whose books start from a WebSocket snapshot (no REST join).

Kraken, OKX, Bybit and Coinbase send a snapshot on subscribe and verify the book themselves (checksum, sequence
chain); a broken book is repaired by unsubscribing and resubscribing that one symbol. Everything
venue-specific (frame parsing, sync, checksum) lives in the venue's sans-I/O ``Feed``; this class
drives a Feed over picows: connect, subscribe, keepalive pings, stall detection, per-pair
resubscribe, reconnect with backoff (never gives up), planned reconnect with hand-over, and mirrors
the Feed's events into the shared counters (the Feed counts through ``FeedStats(counters)``).

A venue module subclasses ``SubscribedConnector`` and fills in the hooks at the bottom. A venue
that spreads its pairs over several connections (Bybit: one per market; Coinbase: one per
product) builds one ``SubscribedConnector`` per connection and joins them in a ``SocketGroup``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable

from picows import WSMsgType, WSTransport, ws_connect

from recorder.archive.tap import tap_of
from recorder.book import L2Book
from recorder.config import VenueConfig
from recorder.metrics import SharedCounters
from recorder.model import Quote
from recorder.venues.base import Backoff, Counters, Feed, LogThrottle, venue_config_default
from recorder.venues.trades.tape import TradeCallback, TradeTape
from recorder.venues.ws_listener import TextListener

MAX_FRAME_BYTES = 16 * 1024 * 1024
SEND_CHECK_S = 0.1  # how often a paced outbox is looked at
# A resubscribe that produced no fresh snapshot within this long is sent again.
RESUBSCRIBE_TIMEOUT_S = 10.0
# Backoff of a pair that fails again soon after its resubscribe: 1, 2, 4, ... s, at most 60 s.
RESUBSCRIBE_CALM_S = 60.0
RESUBSCRIBE_MAX_DELAY_S = 60.0
# How long a planned reconnect waits for the new connection's books before switching anyway.
HANDOVER_TIMEOUT_S = 60.0
DEFAULT_CHANNELS = ("book", "trades")


def wants_trades(cfg: VenueConfig) -> bool:
    """Does the venue's config ask for its trade channel (``channels``, default books and trades)?"""
    channels = getattr(cfg, "channels", None)
    return "trades" in (DEFAULT_CHANNELS if channels is None else channels)


class _Session:
    """One WebSocket connection, the Feed that owns its books, and pending resubscribes."""

    def __init__(self, connector: SubscribedConnector) -> None:
        self.connector = connector
        self.feed: Feed = connector.new_feed()
        self.tap = tap_of(self.feed)  # the connection's archive (None: not archived)
        trades = getattr(self.feed, "trades", None)
        if trades is not None:  # every connection's Feed shares the connector's trade tape
            if connector.trade_tape is None:
                connector.trade_tape = TradeTape(trades.tape.contiguous, connector.counters, connector.pairs)
            trades.tape = connector.trade_tape
            trades.on_trade = connector.on_trade
        if hasattr(self.feed, "on_quote"):
            self.feed.on_quote = connector.on_quote
        self.transport: WSTransport | None = None
        self.closed = asyncio.Event()
        self.opened_at = self.last_frame_s = self.last_ping_s = time.monotonic()
        self.close_code: object = None
        # pair -> (when its (re)subscribe was sent, its sync count then); cleared by a fresh snapshot.
        self.pending: dict[str, tuple[float, int]] = {}
        self.last_resubscribe: dict[str, float] = {}
        self.streak: dict[str, int] = {}  # resubscribes of a pair in quick succession
        self.not_before: dict[str, float] = {}  # earliest time of a pair's next resubscribe
        self.outbox: list[str] = []  # messages waiting for the venue's send-rate limit
        self.last_send_s = 0.0

    async def open(self) -> None:
        c = self.connector
        stall = c.cfg.stall_timeout_s
        self.transport, _ = await ws_connect(
            lambda: TextListener(self, self.tap, c.ws_url),
            c.ws_url,
            enable_auto_ping=True,  # (picows answers the venue's WebSocket pings itself: auto pong)
            # WebSocket-level pings catch a dead TCP path; the venue's own ping keeps it subscribed.
            auto_ping_idle_timeout=max(1.0, stall / 2),
            auto_ping_reply_timeout=max(1.0, stall / 2),
            max_frame_size=c.max_frame_bytes,
            websocket_handshake_timeout=10,
        )
        self.opened_at = self.last_frame_s = self.last_ping_s = now = time.monotonic()
        for msg in c.subscribe_messages(c.pairs):
            self.send(msg)
        self.pending = {pair: (now, 0) for pair in c.pairs}

    def send(self, text: str) -> None:
        self.outbox.append(text)
        self.flush(time.monotonic())

    def flush(self, now: float) -> None:
        """Send queued messages no faster than the venue allows (``send_interval_s`` apart)."""
        interval = self.connector.send_interval_s
        while self.outbox and now - self.last_send_s >= interval:
            text = self.outbox.pop(0)
            if self.transport is not None and not self.transport.is_disconnected:
                data = text.encode()
                if self.tap is not None:
                    self.tap.send(data)
                self.transport.send(WSMsgType.TEXT, data)
            self.last_send_s = now = time.monotonic()

    def all_synced(self) -> bool:
        return all(self.feed.book(p) is not None for p in self.connector.pairs)

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_disconnected:
            self.transport.send_close()
            self.transport.disconnect()

    def on_disconnected(self) -> None:
        self.feed.stats.flush()  # its last frames into the shared counters
        self.closed.set()

    def malformed(self, what: str, size: int) -> None:
        self.connector.malformed(what, size)

    def on_text(self, payload: bytes, recv_ms: float) -> None:
        # Only venue data (or the venue's own heartbeats) proves the feed is alive; a socket that
        # still answers our pings but pushes nothing is a stall.
        if not self.connector.is_ping_reply(payload):
            self.last_frame_s = time.monotonic()
        try:
            self.feed.on_frame(payload, recv_ms)  # counts messages/bytes and every sync event
        except Exception as exc:  # a Feed bug must not kill the connection: count it, carry on
            self.connector.malformed(f"feed error: {exc!r}", len(payload))
            return
        wanted = self.feed.wants_snapshot()
        if wanted:
            self.resubscribe_wanted()

    def _syncs(self, pair: str) -> int:
        return self.feed.stats.per_pair.get(pair, {}).get("resyncs", 0)

    def resubscribe_wanted(self, now: float | None = None) -> None:
        """Resubscribe pairs whose book broke, and pairs whose (re)subscribe brought no snapshot
        within RESUBSCRIBE_TIMEOUT_S (a request lost or refused by a venue in trouble)."""
        now = time.monotonic() if now is None else now
        pending = self.pending
        for pair, (_, syncs) in list(pending.items()):
            if self._syncs(pair) > syncs:
                del pending[pair]  # its fresh snapshot arrived
        for pair, (sent, _) in list(pending.items()):
            if now - sent >= self.connector.resubscribe_timeout_s:
                self.resubscribe(pair, now)
        for pair in self.feed.wants_snapshot():
            if pair not in pending and now >= self.not_before.get(pair, 0.0):
                self.resubscribe(pair, now)

    def resubscribe(self, pair: str, now: float) -> None:
        c = self.connector
        # A pair that keeps failing is resubscribed ever more slowly (venues cap subscribe requests,
        # OKX at 480 per connection-hour); one that stayed good for a minute starts afresh.
        last = self.last_resubscribe.get(pair)
        streak = self.streak.get(pair, -1) + 1 if last is not None and now - last < RESUBSCRIBE_CALM_S else 0
        self.streak[pair], self.last_resubscribe[pair] = streak, now
        self.not_before[pair] = now + min(RESUBSCRIBE_MAX_DELAY_S, 2.0**streak)
        c.counters.incr("resubscribes")
        c.log.info("event=resubscribe venue=%s pair=%s streak=%d", c.venue, pair, streak)
        for msg in c.resubscribe_messages([pair]):
            self.send(msg)
        self.pending[pair] = (now, self._syncs(pair))

    def ping_due(self, now: float, after_s: float, always: bool) -> bool:
        quiet = always or now - self.last_frame_s >= after_s
        return quiet and now - self.last_ping_s >= after_s


class SubscribedConnector:
    """Drives a venue Feed over one WebSocket connection at a time (see module docstring)."""

    venue = ""
    resubscribe_timeout_s = RESUBSCRIBE_TIMEOUT_S
    default_ws_url = ""
    default_rest_url = ""
    max_frame_bytes = MAX_FRAME_BYTES
    send_interval_s = 0.0  # the venue's limit on client messages per second, as a gap
    # None: ping only a quiet connection; a number: ping that often whatever flows (Bybit asks so).
    ping_interval_s: float | None = None
    log = logging.getLogger("recorder.venues")

    def __init__(
        self,
        cfg: VenueConfig,
        pairs: list[str],
        shared: SharedCounters | None = None,
        *,
        ws_url: str | None = None,
        counters: Counters | None = None,
    ) -> None:
        self.cfg = cfg
        self.pairs = list(pairs)
        self.ws_url = ws_url or venue_config_default(cfg, "ws_url", self.default_ws_url)
        self.rest_url = venue_config_default(cfg, "rest_url", self.default_rest_url)
        self.counters = counters if counters is not None else Counters(shared)
        self._throttle = LogThrottle(self.log)
        self._active: _Session | None = None
        self._successor: _Session | None = None
        self._closing = False
        self.is_open = False
        # The connections of one SocketGroup: "connected" means all of them are.
        self.group: list[SubscribedConnector] = [self]
        # Trades: what was emitted (outlives a connection: no repeats, no hidden gaps) and where to.
        self.trade_tape: TradeTape | None = None
        self._on_trade: TradeCallback | None = None
        self._on_quote: Callable[[Quote], None] | None = None

    @property
    def on_trade(self) -> TradeCallback | None:
        """Called with every trade of every connection, once (the venue process sets it)."""
        return self._on_trade

    @on_trade.setter
    def on_trade(self, callback: TradeCallback | None) -> None:
        self._on_trade = callback
        for s in (self._active, self._successor):
            trades = getattr(s.feed, "trades", None) if s is not None else None
            if trades is not None:
                trades.on_trade = callback

    @property
    def on_quote(self) -> Callable[[Quote], None] | None:
        """Called with every change of a served book's best bid or ask (the venue process sets it).
        During a planned hand-over only the connection being sampled makes quotes."""
        return self._on_quote

    @on_quote.setter
    def on_quote(self, callback: Callable[[Quote], None] | None) -> None:
        self._on_quote = callback
        if self._active is not None and hasattr(self._active.feed, "on_quote"):
            self._active.feed.on_quote = callback

    # -- venue hooks ---------------------------------------------------------------------------

    def new_feed(self) -> Feed:
        """A fresh Feed for a new connection, counting into ``self.counters``."""
        raise NotImplementedError

    def subscribe_messages(self, pairs: Iterable[str]) -> list[str]:
        raise NotImplementedError

    def unsubscribe_messages(self, pairs: Iterable[str]) -> list[str]:
        raise NotImplementedError

    def resubscribe_messages(self, pairs: list[str]) -> list[str]:
        """What brings a fresh snapshot of ``pairs``: by default unsubscribe, then subscribe."""
        return self.unsubscribe_messages(pairs) + self.subscribe_messages(pairs)

    def ping_message(self) -> str | None:
        """The venue's application-level ping; None when the venue needs none."""
        raise NotImplementedError

    def is_ping_reply(self, payload: bytes) -> bool:
        """The venue's answer to our ping: proof the socket is open, not that data flows."""
        return False

    def reconnect_requested(self, feed: Feed) -> bool:
        """The venue announced a planned disconnect (e.g. OKX notice 64008)."""
        return False

    # -- interface used by the venue process ---------------------------------------------------

    def book(self, pair: str) -> L2Book | None:
        for s in (self._active, self._successor):
            if s is not None and not s.closed.is_set():
                book = s.feed.book(pair)
                if book is not None:
                    return book
        return None

    def request_resync(self, pair: str, reason: str) -> None:
        self.log.warning("event=resync_requested venue=%s pair=%s reason=%s", self.venue, pair, reason)
        s = self._active
        if s is not None and not s.closed.is_set():
            s.feed.invalidate(pair)  # type: ignore[attr-defined]
            s.resubscribe(pair, time.monotonic())

    async def close(self) -> None:
        self._closing = True
        for s in (self._active, self._successor):
            if s is not None:
                s.close()

    async def run(self) -> None:
        backoff = Backoff()
        session: _Session | None = None
        while not self._closing:
            if session is None:
                session = await self._connect(backoff)
                if session is None:
                    return
            self._active = session
            planned = await self._serve(session)
            if self._closing:
                return
            if not planned:
                self.counters.incr("reconnects")
                self.log.warning("event=disconnected venue=%s code=%s", self.venue, session.close_code)
                session.close()
                session = None
                await asyncio.sleep(backoff.next_delay())
                continue
            session = await self._hand_over(session, backoff)

    # -- internals -----------------------------------------------------------------------------

    async def _connect(self, backoff: Backoff) -> _Session | None:
        while not self._closing:
            session = _Session(self)
            try:
                await session.open()
            except Exception as exc:  # any connect failure is retried: never give up
                self._throttle.warning("connect", "event=connect_failed venue=%s error=%r", self.venue, exc)
                self.counters.incr("reconnects")
                await asyncio.sleep(backoff.next_delay())
                continue
            backoff.success()
            self.log.info("event=connected venue=%s pairs=%d", self.venue, len(self.pairs))
            return session
        return None

    def _tend(self, s: _Session, now: float) -> None:
        """Periodic care of a live session: keepalive ping and overdue resubscribes."""
        s.flush(now)
        every = self.ping_interval_s
        ping_after = every if every is not None else min(20.0, max(0.5, self.cfg.stall_timeout_s / 3))
        if s.ping_due(now, ping_after, always=every is not None):
            s.last_ping_s = now
            msg = self.ping_message()
            if msg is not None:
                s.send(msg)
        s.resubscribe_wanted(now)

    async def _serve(self, s: _Session) -> bool:
        """Watch a live connection. True: time for a planned reconnect; False: it died."""
        self._set_open(True)
        try:
            while not s.closed.is_set():
                try:
                    await asyncio.wait_for(s.closed.wait(), timeout=SEND_CHECK_S if s.outbox else 0.25)
                except TimeoutError:
                    pass
                s.feed.stats.flush()  # the frames counted since into the shared counters
                now = time.monotonic()
                if s.closed.is_set():
                    if now - s.last_frame_s >= 0.9 * self.cfg.stall_timeout_s:
                        # picows' keepalive (unanswered WebSocket pings) closed a silent socket first.
                        self.counters.incr("stalls")
                        self.log.warning("event=stall venue=%s silent_s=%.1f", self.venue, now - s.last_frame_s)
                    return False
                if now - s.last_frame_s > self.cfg.stall_timeout_s:
                    self.counters.incr("stalls")
                    self.log.warning("event=stall venue=%s silent_s=%.1f", self.venue, now - s.last_frame_s)
                    s.close()
                    return False
                self._tend(s, now)
                if self.reconnect_requested(s.feed) or now - s.opened_at >= self.cfg.max_connection_age_s:
                    return True
            return False
        finally:
            self._set_open(False)

    def _set_open(self, is_open: bool) -> None:
        self.is_open = is_open
        self.counters.set("connected", 1.0 if all(c.is_open for c in self.group) else 0.0)

    async def _hand_over(self, old: _Session, backoff: Backoff) -> _Session | None:
        """Planned reconnect: sync a new connection while the old one keeps sampling."""
        self.log.info("event=planned_reconnect venue=%s age_s=%.0f", self.venue, time.monotonic() - old.opened_at)
        new = await self._connect(backoff)
        if new is None:
            old.close()
            return None
        self._successor = new
        if hasattr(new.feed, "on_quote"):
            new.feed.on_quote = None  # the old connection's books make the quotes until the switch
        deadline = time.monotonic() + HANDOVER_TIMEOUT_S
        while not new.all_synced() and not new.closed.is_set() and time.monotonic() < deadline:
            now = time.monotonic()
            for s in (old, new):
                if not s.closed.is_set():
                    self._tend(s, now)
            await asyncio.sleep(0.05)
        self._active, self._successor = new, None
        if hasattr(new.feed, "on_quote"):
            new.feed.on_quote = self._on_quote
        old.close()
        self.counters.incr("planned_reconnects")
        return new

    def malformed(self, what: str, size: int) -> None:
        self.counters.incr("malformed")
        self._throttle.warning(
            "malformed", "event=malformed_frame venue=%s bytes=%d detail=%s", self.venue, size, what[:200]
        )


class SocketGroup:
    """One venue's pairs spread over several ``SubscribedConnector`` connections."""

    venue = ""
    connect_stagger_s = 0.0  # between connection starts, to keep a startup burst under rate limits
    log = logging.getLogger("recorder.venues")

    def __init__(self, sockets: list[SubscribedConnector], counters: Counters) -> None:
        self.counters = counters
        self.sockets = sockets
        self._socket_of = {pair: sock for sock in sockets for pair in sock.pairs}
        for sock in sockets:
            sock.group = sockets

    @property
    def on_trade(self) -> TradeCallback | None:
        return self.sockets[0].on_trade if self.sockets else None

    @on_trade.setter
    def on_trade(self, callback: TradeCallback | None) -> None:
        for sock in self.sockets:
            sock.on_trade = callback

    @property
    def on_quote(self) -> Callable[[Quote], None] | None:
        return self.sockets[0].on_quote if self.sockets else None

    @on_quote.setter
    def on_quote(self, callback: Callable[[Quote], None] | None) -> None:
        for sock in self.sockets:
            sock.on_quote = callback

    def book(self, pair: str) -> L2Book | None:
        sock = self._socket_of.get(pair)
        return sock.book(pair) if sock is not None else None

    def request_resync(self, pair: str, reason: str) -> None:
        sock = self._socket_of.get(pair)
        if sock is not None:
            sock.request_resync(pair, reason)

    async def run(self) -> None:
        async def staggered(i: int, sock: SubscribedConnector) -> None:
            await asyncio.sleep(i * self.connect_stagger_s)
            await sock.run()

        await asyncio.gather(*(staggered(i, s) for i, s in enumerate(self.sockets)))

    async def close(self) -> None:
        for sock in self.sockets:
            await sock.close()
