"""``BinanceFeed``: every frame of one Binance combined-stream socket, free of I/O (the live
connector and ``replay`` drive the same code): one typed decode per depth frame, the pair's
``BookSync``, trades and quotes when asked for, REST snapshots joined to the buffered diffs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import msgspec

from recorder.book import L2Book
from recorder.model import Quote, Trade
from recorder.venues.base import (
    Counters,
    FeedStats,
    LogThrottle,
    UpdateCount,
)
from recorder.venues.binance_sync import (
    _APPLIED,
    MAX_BUFFERED_DIFFS,
    QUEUED_BUFFERED_DIFFS,
    BookSync,
    Outcome,
    spot_prev_id,
)
from recorder.venues.binance_trades import QuoteTracker, TradeIds, TradeParser, agg_trade_stream, trade_stream
from recorder.venues.binance_wire import (
    _DECODE_ERRORS,
    VENUE,
    DepthEvent,
    DepthSnapshot,
    Envelope,
    _parse_other,
    _snapshot,
    _stream_depth,
    log,
    stream_for,
    symbol_for,
)


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
        self.stats = FeedStats(counters)
        # The hot path's per-frame bookkeeping: a sync's stats slot beside it, by stream name.
        self._by_stream: dict[str, tuple[BookSync, UpdateCount]] = {}
        for pair, sync in self.syncs.items():
            sync.snapshot_limit = snapshot_limit
            self._by_stream[self.stream_for(pair)] = (sync, self.stats.update_count("depthUpdate", pair, framed=True))
        self._by_symbol = {self.symbol_for(p): s for p, s in self.syncs.items()}
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
            ev = msg.data
            hot = self._by_stream.get(msg.stream)
            if hot is not None and ev.e == "depthUpdate":
                sync, count = hot
                count.n += 1  # the frame, one update of its pair (``FeedStats`` folds it on read)
                count.nbytes += len(payload)
                book = sync.book
                book_id = book.update_id
                # ``BookSync.on_diff``'s hot path inline: the next diff of a live book's chain.
                if sync.live and (ev.pu if sync.chain_pu else ev.U - 1) == book_id and ev.u > book_id:  # type: ignore[operator]
                    book.apply(ev.b, ev.a)
                    book.update_id = ev.u
                    book.exchange_time_ms = ev.E
                    book.receive_time_ms = recv_ms
                else:
                    outcome = sync.on_diff(ev, recv_ms)
                    if outcome is not _APPLIED:
                        self._not_applied(sync, ev, outcome, recv_ms)
                        return
                    book = sync.book
                if self._quotes is not None:
                    self._quotes.book_changed(sync.pair, book, recv_ms)
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
        hot = self._by_stream.get(key)
        sync = hot[0] if hot is not None else self._by_symbol.get(ev.s)
        if ev.e != "depthUpdate" or sync is None:
            stats.kind("other_event")
            return
        self._on_diff(sync, ev, recv_ms)

    def on_rest_snapshot(self, pair: str, body: bytes, recv_ms: float, limit: int | None = None) -> None:
        """A recorded REST snapshot (replay), asked for with ``limit`` levels (None: unknown, so
        each side counts as cut at its deepest level)."""
        try:
            snap = _snapshot.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            self.malformed(f"undecodable snapshot for {pair}: {exc}", len(body))
            return
        sync = self.syncs.get(pair)
        if sync is not None and not sync.synced:
            # The book is built on this snapshot, now or once its first diff comes (``_pending``,
            # replaced by any later snapshot): the limit is this request's.
            sync.snapshot_limit = limit
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
            self._pending.pop(pair, None)  # an older snapshot waiting for its first diff is moot
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
