"""One Binance WebSocket connection (``_Connection``): its streams in the URL and in paced
SUBSCRIBE batches, every frame handed to its ``BinanceFeed``, REST snapshots fetched for the
books that want one (resyncs) and for live books grown too shallow (deeper refetches).
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import msgspec
from picows import WSMsgType, WSTransport, ws_connect

from recorder.archive.tap import archived_feed, tap_of
from recorder.venues.base import (
    Backoff,
)
from recorder.venues.binance_feed import BinanceFeed
from recorder.venues.binance_sync import Outcome
from recorder.venues.ws_listener import TextListener

if TYPE_CHECKING:
    from recorder.venues.binance import BinanceConnector


MAX_FRAME_BYTES = 16 * 1024 * 1024
# Longest stream list put in the connection URL; the rest are subscribed by message.
URL_STREAMS_CHARS = 2000
# A live book whose known depth fell below the sampling depth gets a deeper snapshot (the sampler
# asks): at most one pending per book, the next no sooner than this after the last came back (and
# all of them within ``binance.REFETCH_BUDGET_SHARE`` of the REST budget).
REFETCH_SPACING_S = 10.0


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
        self.feed.stats.flush()  # its last frames into the shared counters
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
