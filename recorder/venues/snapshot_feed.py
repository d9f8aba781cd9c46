"""Book bookkeeping shared by the Feeds of venues that sync from a WebSocket snapshot: Kraken and
OKX (``SnapshotFeed``: text books proven by checksum and/or sequence chain) and Bybit and Coinbase
(``FloatSnapshotFeed``: float books proven by their sequence numbers).

A pair's book is served only while it is synced (and, with checksums, verified). A checksum
failure, a sequence gap or a level that does not parse invalidates that pair alone (its book is
cleared, never repaired in place) and puts it in ``wants_snapshot()`` until a fresh snapshot
arrives; every other pair carries on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from recorder.book import L2Book, TextL2Book
from recorder.book.textbook import Fragment
from recorder.model import Quote
from recorder.venues.base import Counters, FeedStats, LogThrottle, UpdateCount
from recorder.venues.binance_trades import QuoteTracker
from recorder.venues.trades.tape import TradeCallback, TradeEmitter, TradeTape


class TradeOutput:
    """The trade and quote side of a Feed: ``on_trade`` (None: trades are not parsed) and
    ``trades``, the emitter that dedupes and counts them (its tape is replaced by the connector's,
    which outlives one connection); ``on_quote`` (None: no quote is made), called with every change
    of the best bid or ask of a served (synced, verified) book, never across a lost sync."""

    venue = ""
    trade_ids_contiguous = True  # False: the venue's trade ids cannot show a lost trade (Bybit)
    trades: TradeEmitter
    _quotes: QuoteTracker | None = None

    def _init_trades(self, stats: FeedStats) -> None:
        self.trades = TradeEmitter(stats, TradeTape(self.trade_ids_contiguous))

    @property
    def on_trade(self) -> TradeCallback | None:
        return self.trades.on_trade

    @on_trade.setter
    def on_trade(self, callback: TradeCallback | None) -> None:
        self.trades.on_trade = callback

    @property
    def on_quote(self) -> Callable[[Quote], None] | None:
        return self._quotes.on_quote if self._quotes is not None else None

    @on_quote.setter
    def on_quote(self, callback: Callable[[Quote], None] | None) -> None:
        self._quotes = QuoteTracker(self.venue, callback) if callback is not None else None

    def _quote(self, pair: str, book: L2Book, recv_ms: float | None) -> None:
        """After a change to a served book: a quote if its top changed."""
        quotes = self._quotes
        if quotes is not None:
            quotes.book_changed(pair, book, recv_ms or 0.0)

    def _unquote(self, pair: str) -> None:
        """The pair's book is lost: the next quote is the first after its resync."""
        if self._quotes is not None:
            self._quotes.forget(pair)


class BookState:
    """One pair of a Feed that keeps a float book synced from WS snapshots (Bybit, Coinbase)."""

    __slots__ = ("pair", "key", "book", "synced", "ever_synced", "updates")

    def __init__(self, pair: str, updates: UpdateCount, key: str = "") -> None:
        self.pair = pair
        self.key = key  # the venue's name of the book (symbol, product)
        self.updates = updates  # its applied updates (the Feed's hot path counts them here)
        self.book = L2Book()
        self.synced = False
        self.ever_synced = False

    def drop(self) -> None:
        self.synced = False
        self.book.clear()
        self.book.exchange_time_ms = None
        self.book.receive_time_ms = None


class FloatSnapshotFeed(TradeOutput):
    """Base of the Bybit and Coinbase Feeds (sans-I/O, see ``recorder.venues.base.Feed``): one
    ``BookState`` per pair, keyed by pair and by the venue's own name for it (symbol, product).

    ``pairs=None`` accepts every book seen (replays of captures whose pairs are not known up front).
    """

    venue = ""
    update_kind = "update"  # the frame kind of an update that continues a book
    update_framed = False  # whether each update is a frame of its own (``UpdateCount.framed``)

    def __init__(self, open_: bool, log: logging.Logger, counters: Counters | None = None) -> None:
        self.stats = FeedStats(counters)
        self._init_trades(self.stats)
        self.log = log
        self._throttle = LogThrottle(log)
        self._open = open_
        self._by_key: dict[str, BookState] = {}  # the venue's name of the book -> state
        self._by_pair: dict[str, BookState] = {}
        self._want: set[str] = set()

    def _add(self, key: str, pair: str) -> BookState:
        st = BookState(pair, self.stats.update_count(self.update_kind, pair, self.update_framed), key)
        self._by_key[key] = self._by_pair[pair] = st
        return st

    # -- the Feed protocol ---------------------------------------------------------------------

    def book(self, pair: str) -> L2Book | None:
        st = self._by_pair.get(pair)
        return st.book if st is not None and st.synced else None

    def wants_snapshot(self) -> set[str]:
        """Pairs to resubscribe (the returned set is live: do not modify it)."""
        return self._want

    def on_rest_snapshot(self, pair: str, body: bytes, recv_ms: float, limit: int | None = None) -> None:
        """These venues sync from the WebSocket snapshot alone; a REST book has no id to join."""

    def reset(self) -> None:
        """The socket is gone: every book is unknown until the new socket's snapshots."""
        for st in self._by_pair.values():
            st.drop()
            self._unquote(st.pair)
        self._want.clear()

    def invalidate(self, pair: str, reason: str = "") -> None:
        """Drop a pair's book (e.g. the sampler found it crossed) and ask for a resubscribe."""
        st = self._by_pair.get(pair)
        if st is not None:
            self._lose(st)
            self.stats.pair(pair, "invalidated")

    def pairs(self) -> list[str]:
        return list(self._by_pair)

    # -- for the venue Feeds -------------------------------------------------------------------

    def _synced(self, st: BookState) -> None:
        """A snapshot was loaded into ``st.book``: serve it."""
        if not st.synced:  # the first sync counts too, as in the live counters
            self.stats.resync(st.pair)
        st.synced = st.ever_synced = True
        self._want.discard(st.pair)
        self._quote(st.pair, st.book, st.book.receive_time_ms)

    def _lose(self, st: BookState) -> None:
        st.drop()
        self._unquote(st.pair)
        self._want.add(st.pair)

    def _corrupt(self, st: BookState) -> None:
        """A level that does not parse: the book may be half-updated, so it is lost."""
        self.stats.malformed_frame()
        self.stats.pair(st.pair, "malformed")
        self._lose(st)

    def _malformed(self, exc: Exception) -> None:
        self.stats.malformed_frame()
        self._throttle.warning("malformed", "event=malformed_frame venue=%s detail=%s", self.venue, str(exc)[:200])


class PairBook:
    __slots__ = ("pair", "book", "synced", "verified", "faulted", "depth", "last_seq", "updates")

    def __init__(self, pair: str, depth: int, book: TextL2Book, updates: UpdateCount) -> None:
        self.pair = pair
        self.book = book
        self.updates = updates  # its updates, where a Feed's hot path counts them
        self.synced = False  # a snapshot was applied and nothing went wrong since
        self.verified = False  # the latest checksum (where the venue sends one) matched
        self.faulted = False  # lost after a failure (logged when the next snapshot restores it)
        self.depth = depth
        self.last_seq: int | None = None


class SnapshotFeed(TradeOutput):
    """Base of a sans-I/O Feed (see ``recorder.venues.base.Feed``)."""

    venue = ""
    fragment: Fragment | None = None  # the venue's per-level checksum text (see TextL2Book)
    checksum_levels = 0  # levels per side whose fragments the books keep (see TextL2Book)
    joined: str | None = None  # the level text as one string, price + joined + qty (TextL2Book)

    def __init__(self, pairs: Iterable[str] | None, log: logging.Logger, counters: Counters | None = None) -> None:
        # None: accept every symbol seen (replays of captures whose pairs are not known up front).
        self._only = set(pairs) if pairs is not None else None
        self._books: dict[str, PairBook] = {}
        self._want: set[str] = set()
        # A live connector passes its counters: every event reaches the supervisor as it happens.
        self.stats = FeedStats(counters)
        self._init_trades(self.stats)
        self.log = log
        self._throttle = LogThrottle(log)

    # -- the Feed protocol ---------------------------------------------------------------------

    def book(self, pair: str) -> TextL2Book | None:
        st = self._books.get(pair)
        if st is not None and st.synced and st.verified:
            return st.book
        return None

    def wants_snapshot(self) -> set[str]:
        """Pairs to resubscribe (the returned set is live: do not modify it)."""
        return self._want

    def malformed(self, exc: Exception) -> None:
        self.stats.malformed_frame()
        self._throttle.warning("frame", "event=malformed_frame venue=%s error=%r", self.venue, str(exc)[:200])

    def on_rest_snapshot(self, pair: str, body: bytes, recv_ms: float, limit: int | None = None) -> None:
        """These venues sync from the WebSocket snapshot only; a REST book has no id to join."""

    def pairs(self) -> list[str]:
        return list(self._books)

    def invalidate(self, pair: str) -> None:
        """Drop a pair's book (e.g. the sampler found it crossed) and ask for a resubscribe."""
        st = self._books.get(pair)
        if st is not None:
            self._lose(st)

    request_resync = invalidate  # the name replay uses

    def reset(self) -> None:
        """Every book is unknown (an archive replay at a ``lost`` record): each is lost as by
        ``invalidate`` and waits for its next snapshot."""
        for st in self._books.values():
            self._lose(st)

    # -- for the venue Feeds -------------------------------------------------------------------

    def _state(self, pair: str, depth: int) -> PairBook | None:
        st = self._books.get(pair)
        if st is None:
            if self._only is not None and pair not in self._only:
                return None
            st = self._books[pair] = PairBook(pair, depth, self.new_book(), self.stats.update_count("update", pair))
        return st

    def new_book(self) -> TextL2Book:
        return TextL2Book(self.fragment, self.checksum_levels, self.joined)

    def _snapshot_applied(self, st: PairBook, verified: bool) -> None:
        if not st.synced:
            self.stats.resync(st.pair)  # every (re)sync counts, the first one too
        st.synced = True
        st.verified = verified
        self._want.discard(st.pair)
        if st.faulted:
            st.faulted = False
            self.log.info("event=book_resynced venue=%s pair=%s", self.venue, st.pair)

    def _checksum(self, st: PairBook, expected: int, actual: int) -> bool:
        if expected == actual:
            self.stats.checksum(st.pair, True)
            st.verified = True
            return True
        self.stats.checksum(st.pair, False)
        self._throttle.warning(
            f"checksum:{st.pair}",
            "event=checksum_mismatch venue=%s pair=%s expected=%d computed=%d",
            self.venue,
            st.pair,
            expected,
            actual,
        )
        self._lose(st)
        return False

    def _gap(self, st: PairBook, detail: str) -> None:
        self.stats.gap(st.pair)
        self._throttle.warning(f"gap:{st.pair}", "event=gap venue=%s pair=%s %s", self.venue, st.pair, detail)
        self._lose(st)

    def _bad_levels(self, st: PairBook, exc: Exception) -> None:
        """A level that does not parse: the book may be half-updated, so it is lost."""
        self.stats.malformed_frame()
        self._throttle.warning("levels", "event=malformed_levels venue=%s pair=%s error=%r", self.venue, st.pair, exc)
        self._lose(st)

    def _lose(self, st: PairBook) -> None:
        st.synced = st.verified = False
        st.faulted = True
        st.last_seq = None
        st.book.clear()
        self._unquote(st.pair)
        self._want.add(st.pair)

    def _quote_served(self, st: PairBook, recv_ms: float) -> None:
        """After a frame changed ``st``'s book: a quote if the book is served and its top changed."""
        if st.synced and st.verified and self._quotes is not None:
            self._quote(st.pair, st.book, recv_ms)
