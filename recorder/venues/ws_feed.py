"""One WebSocket driving one sans-I/O Feed, for venues that sync entirely over the socket
(snapshot on subscribe, resubscribe to resync): Bybit, Coinbase.

The socket connects, subscribes, keeps the venue's application-level heartbeat, watches for
stalls, resubscribes the books the Feed gives up on, mirrors the Feed's counters into the
shared counters and reconnects with backoff forever. What is venue-specific (URLs, frames) comes
from a ``SocketProtocol``; all sync and sequence rules stay in the Feed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Protocol

from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from recorder.book import L2Book
from recorder.config import VenueConfig
from recorder.venues.base import Backoff, Counters, FeedStats, LogThrottle

MAX_FRAME_BYTES = 64 * 1024 * 1024  # Coinbase level2 snapshots of deep books run to megabytes
RESUBSCRIBE_RETRY_S = 10.0  # a resubscribe that produced no snapshot by then is sent again


class SocketFeed(Protocol):
    """The Feed protocol plus what a live socket needs: reset on reconnect, invalidate on request."""

    stats: FeedStats

    def on_frame(self, payload: bytes, recv_ms: float) -> None: ...

    def book(self, pair: str) -> L2Book | None: ...

    def wants_snapshot(self) -> set[str]: ...

    def reset(self) -> None: ...

    def invalidate(self, pair: str, reason: str) -> None: ...


class SocketProtocol(Protocol):
    """The venue's frames for one socket (bytes ready to send as text frames)."""

    def subscribe_frames(self, pairs: list[str]) -> list[bytes]: ...

    def resubscribe_frames(self, pairs: list[str]) -> list[bytes]: ...

    def keepalive_frame(self) -> bytes | None: ...

    def is_keepalive_reply(self, payload: bytes) -> bool:
        """The venue's answer to our keepalive: proof the socket is open, not that data flows."""


class _Listener(WSListener):
    def __init__(self, sock: FeedSocket) -> None:
        self._sock = sock
        self._parts: list[bytes] = []

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        sock = self._sock
        mt = frame.msg_type
        if mt is WSMsgType.TEXT or mt is WSMsgType.CONTINUATION:
            if not frame.fin:
                self._parts.append(frame.get_payload_as_bytes())
                return
            payload = frame.get_payload_as_bytes()
            if self._parts:
                payload = b"".join(self._parts) + payload
                self._parts.clear()
            sock.on_text(payload, time.time() * 1000.0)
        elif mt is WSMsgType.CLOSE:
            sock.close_code = frame.get_close_code()
            transport.send_close(frame.get_close_code())
            transport.disconnect()
        elif mt is WSMsgType.BINARY:
            sock.feed.stats.malformed_frame()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self._sock.on_disconnected()


class FeedSocket:
    """One socket (and its successors after reconnects) carrying ``pairs`` through ``feed``."""

    def __init__(
        self,
        venue: str,
        url: str,
        pairs: list[str],
        feed: SocketFeed,
        protocol: SocketProtocol,
        cfg: VenueConfig,
        counters: Counters,
        log: logging.Logger,
        keepalive_s: float | None = None,
        send_interval_s: float = 0.0,
    ) -> None:
        self.venue, self.url, self.pairs = venue, url, list(pairs)
        self.feed, self.protocol, self.cfg = feed, protocol, cfg
        self.counters, self.log = counters, log
        self.keepalive_s = keepalive_s
        self.send_interval_s = send_interval_s  # venue limit on client messages per second
        self.resubscribe_retry_s = RESUBSCRIBE_RETRY_S
        self.transport: WSTransport | None = None
        self.closed = asyncio.Event()
        self.last_frame_s = time.monotonic()
        self.close_code: object = None
        self._closing = False
        self._throttle = LogThrottle(log)
        self._outbox: list[bytes] = []
        self._last_send_s = 0.0
        self._requested: dict[str, float] = {}  # pair -> when its resubscribe was sent
        self.is_open = False
        # The connector's sockets: "connected" means all of them are (set by whichever changes).
        self.group: list[FeedSocket] = [self]

    # -- interface used by the connector -------------------------------------------------------

    def book(self, pair: str) -> L2Book | None:
        if self.closed.is_set() or self.transport is None:
            return None
        return self.feed.book(pair)

    def request_resync(self, pair: str, reason: str) -> None:
        self.feed.invalidate(pair, reason)

    def close(self) -> None:
        self._closing = True
        if self.transport is not None and not self.transport.is_disconnected:
            self.transport.send_close()
            self.transport.disconnect()

    async def run(self) -> None:
        backoff = Backoff()
        while not self._closing:
            self.closed.clear()
            self.close_code = None
            try:
                self.transport, _ = await ws_connect(
                    lambda: _Listener(self),
                    self.url,
                    enable_auto_ping=True,
                    # A dead TCP path shows up as unanswered pings long before the OS notices.
                    auto_ping_idle_timeout=max(1.0, self.cfg.stall_timeout_s / 2),
                    auto_ping_reply_timeout=max(1.0, self.cfg.stall_timeout_s / 2),
                    max_frame_size=MAX_FRAME_BYTES,
                    websocket_handshake_timeout=10,
                )
            except Exception as exc:  # any connect failure is retried: never give up
                self._throttle.warning(
                    "connect", "event=connect_failed venue=%s url=%s error=%r", self.venue, self.url, exc
                )
                self.counters.incr("reconnects")
                await asyncio.sleep(backoff.next_delay())
                continue
            backoff.success()
            self.log.info("event=connected venue=%s url=%s pairs=%d", self.venue, self.url, len(self.pairs))
            await self._serve()
            if self._closing:
                return
            self.counters.incr("reconnects")
            self.log.warning("event=disconnected venue=%s url=%s code=%s", self.venue, self.url, self.close_code)
            await asyncio.sleep(backoff.next_delay())

    # -- internals -------------------------------------------------------------------------------

    async def _serve(self) -> None:
        self.feed.reset()
        self.last_frame_s = time.monotonic()
        self._outbox = list(self.protocol.subscribe_frames(self.pairs))
        # A subscription that brings no snapshot (refused, lost) is retried like a resubscribe.
        self._requested = dict.fromkeys(self.pairs, time.monotonic())
        next_keepalive = time.monotonic() + (self.keepalive_s or 0.0)
        self._set_open(True)
        try:
            while not self.closed.is_set():
                now = time.monotonic()
                self._flush(now)
                if now - self.last_frame_s > self.cfg.stall_timeout_s:
                    self.counters.incr("stalls")
                    self.log.warning("event=stall venue=%s silent_s=%.1f", self.venue, now - self.last_frame_s)
                    self._drop()
                    return
                if self.keepalive_s is not None and now >= next_keepalive:
                    frame = self.protocol.keepalive_frame()
                    if frame is not None:
                        self._send(frame)
                    next_keepalive = now + self.keepalive_s
                self._resubscribe(now)
                try:
                    await asyncio.wait_for(self.closed.wait(), timeout=0.1 if self._outbox else 0.25)
                except TimeoutError:
                    pass
        finally:
            self._set_open(False)
            self.feed.reset()

    def _set_open(self, is_open: bool) -> None:
        self.is_open = is_open
        self.counters.set("connected", 1.0 if all(s.is_open for s in self.group) else 0.0)

    def _resubscribe(self, now: float) -> None:
        wanted = self.feed.wants_snapshot() | {p for p in self.pairs if self.feed.book(p) is None}
        for pair in list(self._requested):
            if pair not in wanted:
                del self._requested[pair]  # synced again
        due = sorted(p for p in wanted if now - self._requested.get(p, -1e9) >= self.resubscribe_retry_s)
        if not due:
            return
        for pair in due:
            self._requested[pair] = now
        self.log.info("event=resubscribe venue=%s pairs=%s", self.venue, ",".join(due))
        self._outbox.extend(self.protocol.resubscribe_frames(due))

    def _flush(self, now: float) -> None:
        while self._outbox and now - self._last_send_s >= self.send_interval_s:
            self._send(self._outbox.pop(0))
            now = time.monotonic()

    def _send(self, frame: bytes) -> None:
        if self.transport is None or self.transport.is_disconnected:
            return
        self.transport.send(WSMsgType.TEXT, frame)
        self._last_send_s = time.monotonic()

    def _drop(self) -> None:
        if self.transport is not None and not self.transport.is_disconnected:
            self.transport.send_close()
            self.transport.disconnect()
        self.closed.set()

    def on_disconnected(self) -> None:
        self.feed.reset()
        self.closed.set()

    def on_text(self, payload: bytes, recv_ms: float) -> None:
        # Only venue data (or the venue's own heartbeats) proves the feed is alive; a socket that
        # still answers our pings but pushes nothing is a stall.
        if not self.protocol.is_keepalive_reply(payload):
            self.last_frame_s = time.monotonic()
        self.feed.on_frame(payload, recv_ms)  # the Feed counts into the shared counters itself
