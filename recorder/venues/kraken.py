"""Kraken spot: WebSocket v2 ``book`` channel live; v1 ``book`` frames too (for replays).

Sync (venue-protocols.md §4): subscribing sends a snapshot, then updates. Kraken has no sequence
numbers; integrity is the CRC32 checksum of the top 10 levels per side, carried by every v2
message and every v1 update. After applying a message's levels (in wire order, qty 0 deletes)
each side is truncated to the subscribed depth (Kraken sends no delete for levels that fall out
of scope), then the checksum is verified on the *original price/qty text*. A mismatch drops that
pair's book and resubscribes that symbol only; its fresh snapshot restarts it.

Kraken has no update id either; ``update_id`` stores the exchange timestamp of the last applied
change in microseconds (v2 ``timestamp``, v1 level time), the venue's own name for a book state.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable

import msgspec

from recorder.archive.tap import archived_feed
from recorder.config import VenueConfig
from recorder.metrics import SharedCounters
from recorder.venues.base import Counters
from recorder.venues.kraken_wire import (
    V2_BOOK_UPDATE,
    KrakenBook,
    V1Book,
    V2Book,
    _envelope,
    _raw_text,
    _rfc3339_us,
    _symbols,
    _unquoted,
    _v1_array,
    _v1_book,
    _v1_book_frame,
    _v1_int,
    _v1_str,
    _v1_time,
    _v1_time_us,
    _v1_update_frame,
    _v2_books,
    _v2_update_frame,
    pair_for,
    subscription_depth,
    symbol_for,
    v1_symbol_for,
)
from recorder.venues.limits import KRAKEN as LIMITS
from recorder.venues.snapshot_feed import PairBook, SnapshotFeed
from recorder.venues.subscribed import SubscribedConnector, wants_trades
from recorder.venues.trades import kraken as kr_trades

VENUE = "kraken"
WS_URL = "wss://ws.kraken.com/v2"
REST_URL = "https://api.kraken.com"
MAX_SYMBOLS_PER_CONNECTION = LIMITS.streams_per_connection  # one snapshot burst inside the dynamic rate limit

log = logging.getLogger("recorder.venues.kraken")


# A v1 symbol's (channel name, its book or None if not ours, the channel's depth), cached by
# symbol for the hot path.
V1Subscription = tuple[str, PairBook | None, int]


class KrakenFeed(SnapshotFeed):
    """Parses Kraken v2 and v1 ``book`` frames into verified books (see module docstring).

    ``depth`` is the v2 subscription depth; v1 frames name theirs (``book-1000``).
    """

    venue = VENUE

    def __init__(self, pairs: Iterable[str] | None = None, counters: Counters | None = None, depth: int = 1000) -> None:
        super().__init__(pairs, log, counters)
        self.depth = depth
        self._v1_books: dict[str, V1Subscription] = {}  # see _v1_subscription
        self._by_symbol: dict[str, PairBook | None] = {}  # v2 symbol -> its book (None: not ours)

    def new_book(self) -> KrakenBook:
        return KrakenBook()

    def on_frame(self, payload: bytes, recv_ms: float) -> None:
        # The hot paths: an update of one level of a synced book with its checksum (nearly all of
        # Kraken's traffic), v1 or v2, decoded in one typed pass. Anything else falls through.
        if payload[:1] == b"[":
            try:
                _, upd, name, symbol = _v1_update_frame.decode(payload)
            except (msgspec.DecodeError, msgspec.ValidationError):
                pass
            else:
                sub = self._v1_books.get(symbol)
                if sub is not None and sub[0] == name and len(upd.b) + len(upd.a) == 1:
                    _, st, depth = sub
                    if st is not None and st.synced:
                        is_bid = bool(upd.b)
                        price, qty, t = upd.b[0] if is_bid else upd.a[0]
                        try:
                            st.book.set_level(is_bid, price, qty, depth)  # type: ignore[attr-defined]
                            ts_us = _v1_time_us(t)
                        except (ValueError, IndexError) as exc:
                            self.stats.update_frame_of(len(payload), st.updates)
                            self._bad_levels(st, exc)
                            return
                        self._checked_update(st, depth, ts_us, upd.c, len(payload), recv_ms)
                        return
        elif payload.startswith(V2_BOOK_UPDATE):
            try:
                frame = _v2_update_frame.decode(payload)
            except (msgspec.DecodeError, msgspec.ValidationError):
                pass
            else:
                item = frame.data[0] if len(frame.data) == 1 else None
                if item is not None and len(item.bids) + len(item.asks) == 1 and frame.type == "update":
                    st = self._by_symbol.get(item.symbol)
                    if st is not None and st.synced and item.checksum is not None and item.timestamp:
                        is_bid = bool(item.bids)
                        level = item.bids[0] if is_bid else item.asks[0]
                        try:
                            price, qty = _unquoted(level.price), _unquoted(level.qty)
                            st.book.set_level(is_bid, price, qty, st.depth)  # type: ignore[attr-defined]
                            ts_us = _rfc3339_us(item.timestamp)
                        except (ValueError, IndexError) as exc:
                            self.stats.update_frame_of(len(payload), st.updates)
                            self._bad_levels(st, exc)
                            return
                        self._checked_update(st, st.depth, ts_us, item.checksum, len(payload), recv_ms)
                        return
        self.stats.frame(len(payload))
        try:
            if payload[:1] == b"[":
                self._on_v1_array(payload, recv_ms)
            else:
                self._on_object(payload, recv_ms)
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError, IndexError) as exc:
            self.malformed(exc)

    # v2 ---------------------------------------------------------------------------------------

    def _on_object(self, payload: bytes, recv_ms: float) -> None:
        env = _envelope.decode(payload)
        if env.channel == "book":
            kind = env.type or "?"
            self.stats.kind(kind)
            for item in _v2_books.decode(env.data):
                self._on_v2_book(kind, item, recv_ms)
        elif env.channel == kr_trades.CHANNEL:
            self.stats.kind(kr_trades.CHANNEL)
            if self.trades.on_trade is not None:
                trades = kr_trades.decode_trades(env.data)
                if kr_trades.on_trades(trades, recv_ms, self.trades, self._trade_pair, VENUE):
                    raise ValueError("trade: a trade that does not parse")
        elif env.channel is not None:
            self.stats.kind(env.channel)  # heartbeat, status, instrument, ...
        elif env.method is not None:
            self.stats.kind(env.method)  # subscribe / unsubscribe / pong replies
            if env.success is False:
                self._throttle.warning("reply", "event=venue_error venue=%s method=%s error=%s", VENUE, env.method,
                                       env.error)  # fmt: skip
        elif env.event is not None:  # v1: heartbeat, systemStatus, subscriptionStatus
            self.stats.kind(env.event)
            if env.status == "error":
                self._throttle.warning("reply", "event=venue_error venue=%s pair=%s error=%s", VENUE, env.pair,
                                       env.errorMessage)  # fmt: skip
        else:
            raise ValueError("object frame without channel, method or event")

    def _on_v2_book(self, kind: str, item: V2Book, recv_ms: float) -> None:
        st = self._by_symbol.get(item.symbol, False)
        if st is False:
            st = self._by_symbol[item.symbol] = self._state(pair_for(item.symbol), self.depth)
        if st is None:
            return
        if kind == "update" and not st.synced:
            return  # after a failure: wait for the resubscribe's snapshot
        try:
            bids = [(_raw_text(lv.price), _raw_text(lv.qty)) for lv in item.bids]
            asks = [(_raw_text(lv.price), _raw_text(lv.qty)) for lv in item.asks]
            ts_us = _rfc3339_us(item.timestamp) if item.timestamp else None
        except ValueError as exc:
            self._bad_levels(st, exc)
            return
        if kind == "snapshot":
            st.book.clear()
        elif kind != "update":
            raise ValueError(f"unknown book message type {kind!r}")
        self._apply(st, bids, asks, ts_us, recv_ms, update=kind == "update")
        if kind == "snapshot":
            self._snapshot_applied(st, verified=item.checksum is None)
        if item.checksum is not None:
            self._verify(st, item.checksum)
        self._quote_served(st, recv_ms)

    def _checked_update(
        self, st: PairBook, depth: int, ts_us: int, expected: int, nbytes: int, recv_ms: float
    ) -> None:  # fmt: skip
        """The hot paths after the level is applied: the book's id and times, its checksum against
        the frame's (every message), the counters in one call, the quote."""
        book = st.book
        book.feed_depth = depth  # deeper levels are unknown: a full side may be cut short
        book.update_id = ts_us
        book.exchange_time_ms = ts_us // 1000
        book.receive_time_ms = recv_ms
        crc = book.crc()  # type: ignore[attr-defined]
        if crc == expected:
            self.stats.verified_update_frame_of(nbytes, st.updates)
            st.verified = True
        else:
            self.stats.update_frame_of(nbytes, st.updates)
            self._checksum(st, expected, crc)
        if self._quotes is not None:
            self._quote_served(st, recv_ms)

    def _trade_pair(self, symbol: str) -> str | None:
        pair = pair_for(symbol)
        return pair if self._only is None or pair in self._only else None

    # v1 ---------------------------------------------------------------------------------------

    def _on_v1_array(self, payload: bytes, recv_ms: float) -> None:
        try:
            parts = _v1_book_frame.decode(payload)  # one typed pass for a book frame
        except (msgspec.DecodeError, msgspec.ValidationError):
            parts = None
        if parts is not None and len(parts) >= 4:
            channel_id, name, symbol = parts[0], parts[-2], parts[-1]
            if type(channel_id) is int and type(name) is str and type(symbol) is str:
                if len(parts) == 4:
                    b = parts[1]
                    if type(b) is V1Book:
                        self._on_v1_book(name, symbol, b.bs or b.b, b.as_ or b.a, bool(b.as_ or b.bs), b.c, recv_ms)
                        return
                elif all(type(b) is V1Book for b in parts[1:-2]):
                    self._on_v1_books(name, symbol, parts[1:-2], recv_ms)  # type: ignore[arg-type]
                    return
        # Another channel (trades, spread: their payloads are arrays), or a malformed frame.
        parts_raw = _v1_array.decode(payload)
        if len(parts_raw) < 4:
            raise ValueError(f"v1 array frame with {len(parts_raw)} elements")
        _v1_int.decode(parts_raw[0])  # channel id
        name = _v1_str.decode(parts_raw[-2])
        symbol = _v1_str.decode(parts_raw[-1])
        if not name.startswith("book"):
            self.stats.kind("other")
            return
        self._on_v1_books(name, symbol, [_v1_book.decode(p) for p in parts_raw[1:-2]], recv_ms)

    def _on_v1_books(self, name: str, symbol: str, books: list[V1Book], recv_ms: float) -> None:
        """A frame of several book dicts (asks and bids apart); the checksum sits in the last."""
        bids: list[list[str]] = []
        asks: list[list[str]] = []
        for b in books:
            asks += b.as_ or b.a
            bids += b.bs or b.b
        snapshot = any(b.as_ or b.bs for b in books)
        self._on_v1_book(name, symbol, bids, asks, snapshot, books[-1].c, recv_ms)

    def _v1_subscription(self, name: str, symbol: str) -> V1Subscription:
        """A v1 symbol's channel, book and depth, cached (see ``V1Subscription``)."""
        depth = int(name.partition("-")[2] or 10)
        st = self._state(pair_for(symbol), depth)
        sub = self._v1_books[symbol] = (name, st, depth)
        return sub

    def _on_v1_book(
        self,
        name: str,
        symbol: str,
        bids: list[list[str]],
        asks: list[list[str]],
        snapshot: bool,
        c: str | None,
        recv_ms: float,
    ) -> None:
        sub = self._v1_books.get(symbol)
        if sub is None or sub[0] != name:
            if not name.startswith("book"):
                self.stats.kind("other")
                return
            sub = self._v1_subscription(name, symbol)
        _, st, depth = sub
        if st is None:
            self.stats.kind("snapshot" if snapshot else "update")
            return
        st.depth = depth
        if snapshot:
            self._v1_snapshot(st, bids, asks, c, recv_ms)
            return
        # An update the hot path in on_frame did not take (several levels, a republished level).
        self.stats.kind("update")
        if not st.synced:
            return  # after a failure: wait for the resubscribe's snapshot
        try:
            expected = int(c) if c is not None else None
            self._apply(st, bids, asks, _v1_time(bids, asks), recv_ms, update=True)
        except (ValueError, IndexError) as exc:
            self._bad_levels(st, exc)
            return
        if expected is not None:
            self._verify(st, expected)
        self._quote_served(st, recv_ms)

    def _v1_snapshot(
        self, st: PairBook, bids: list[list[str]], asks: list[list[str]], c: str | None, recv_ms: float
    ) -> None:
        self.stats.kind("snapshot")
        try:
            expected = int(c) if c is not None else None
            st.book.clear()
            # A level that is not a number raises half-way through: the book is lost then
            # (cleared), so the levels need no separate validation pass first.
            self._apply(st, bids, asks, _v1_time(bids, asks), recv_ms, update=False)
        except (ValueError, IndexError) as exc:
            self._bad_levels(st, exc)
            return
        # v1 snapshots carry no checksum: the book is served from the first verified update.
        self._snapshot_applied(st, verified=False)
        if expected is not None:
            self._verify(st, expected)
        self._quote_served(st, recv_ms)

    # shared -----------------------------------------------------------------------------------

    def _apply(
        self,
        st: PairBook,
        bids: list[tuple[str, str]] | list[list[str]],
        asks: list[tuple[str, str]] | list[list[str]],
        ts_us: int | None,
        recv_ms: float,
        update: bool,
    ) -> None:
        book = st.book
        if update:
            self.stats.pair(st.pair, "updates")
        if len(bids) + len(asks) == 1:
            price, qty = (bids or asks)[0][:2]
            book.set_level(bool(bids), price, qty, st.depth)  # type: ignore[attr-defined]
        else:
            book.apply(bids, asks, st.depth)
        book.feed_depth = st.depth  # deeper levels are unknown: a full side may be cut short
        if ts_us is not None:
            book.update_id = ts_us
            book.exchange_time_ms = ts_us // 1000
        book.receive_time_ms = recv_ms

    def _verify(self, st: PairBook, expected: int) -> None:
        self._checksum(st, expected, st.book.crc())  # type: ignore[attr-defined]


Feed = KrakenFeed


# --- the live connector ------------------------------------------------------------------------


class KrakenConnector(SubscribedConnector):
    venue = VENUE
    default_ws_url = WS_URL
    default_rest_url = REST_URL
    log = log

    def __init__(self, cfg: VenueConfig, pairs: list[str], shared: SharedCounters | None = None) -> None:
        if len(pairs) > MAX_SYMBOLS_PER_CONNECTION:
            raise ValueError(f"at most {MAX_SYMBOLS_PER_CONNECTION} pairs per Kraken connection")
        super().__init__(cfg, pairs, shared)
        # ``snapshot_limit`` is the number of levels asked of the venue (Kraken: subscription depth).
        self.depth = subscription_depth(cfg.snapshot_limit or 1000)
        self._req_ids = itertools.count(1)

    def new_feed(self) -> KrakenFeed:
        return archived_feed(KrakenFeed, self.pairs, counters=self.counters, depth=self.depth)

    def _book_request(self, method: str, pairs: Iterable[str]) -> str:
        params: dict[str, object] = {"channel": "book", "symbol": [symbol_for(p) for p in pairs], "depth": self.depth}
        if method == "subscribe":
            params["snapshot"] = True
        return msgspec.json.encode({"method": method, "params": params, "req_id": next(self._req_ids)}).decode()

    def subscribe_messages(self, pairs: Iterable[str]) -> list[str]:
        pairs = list(pairs)
        msgs = [self._book_request("subscribe", pairs)]
        if wants_trades(self.cfg):
            msgs.append(kr_trades.subscribe_request("subscribe", map(symbol_for, pairs), next(self._req_ids)))
        return msgs

    def unsubscribe_messages(self, pairs: Iterable[str]) -> list[str]:
        return [self._book_request("unsubscribe", pairs)]

    def resubscribe_messages(self, pairs: list[str]) -> list[str]:
        # Only the book is renewed: the trade subscription stays (no replay, no churn).
        return [self._book_request("unsubscribe", pairs), self._book_request("subscribe", pairs)]

    def ping_message(self) -> str:
        return msgspec.json.encode({"method": "ping", "req_id": next(self._req_ids)}).decode()


def capture_pairs(frames: Iterable[bytes], url: str | None = None) -> list[str]:
    """The pairs whose books a recorded socket carries (v2 or v1 frames), for replay."""
    seen: dict[str, None] = {}
    for payload in frames:
        try:
            if payload[:1] == b"[":
                parts = _v1_array.decode(payload)
                if len(parts) >= 4 and _v1_str.decode(parts[-2]).startswith("book"):
                    seen[pair_for(_v1_str.decode(parts[-1]))] = None
            else:
                env = _envelope.decode(payload)
                if env.channel == "book" and len(env.data):
                    seen.update((pair_for(s.symbol), None) for s in _symbols.decode(env.data))
        except (msgspec.DecodeError, msgspec.ValidationError):
            continue
    return list(seen)


def check_config(cfg: VenueConfig) -> None:
    """Settings only Kraken reads (called by config validation before anything starts)."""
    if cfg.channel not in (None, "book"):
        raise ValueError(f"Kraken has one book channel ('book'), not {cfg.channel!r}")
    if len(cfg.pairs) > MAX_SYMBOLS_PER_CONNECTION:
        raise ValueError(f"at most {MAX_SYMBOLS_PER_CONNECTION} pairs per Kraken connection")
    if cfg.snapshot_limit is not None and cfg.snapshot_limit < 1:
        raise ValueError(f"snapshot_limit must be positive, not {cfg.snapshot_limit}")


def check_pairs(rest_url: str | None, pairs: Iterable[str], timeout_s: float = 10.0) -> list[str]:
    """Pairs Kraken does not list, from REST ``AssetPairs`` ``wsname`` (blocking; CLI pre-check)."""
    import json
    import urllib.request

    base = (rest_url or REST_URL).rstrip("/")
    with urllib.request.urlopen(f"{base}/0/public/AssetPairs", timeout=timeout_s) as resp:
        info = json.load(resp)
    listed = {v.get("wsname") for v in (info.get("result") or {}).values()}
    return [p for p in pairs if v1_symbol_for(p) not in listed]


def list_pairs(
    rest_url: str | None, quotes: Iterable[str] = (), types: Iterable[str] = (), timeout_s: float = 10.0
) -> list[str]:
    """Every online pair (``--pairs all``) from REST ``AssetPairs``, filtered by quote asset; Kraken
    spot has one type, ``spot``."""
    from recorder.venues.listing import fetch_json, select_pairs

    base = (rest_url or REST_URL).rstrip("/")
    info = fetch_json(f"{base}/0/public/AssetPairs", timeout_s)
    if info.get("error"):
        raise OSError(f"AssetPairs failed: {', '.join(map(str, info['error']))}")
    candidates: list[tuple[str, str, str]] = []
    for name, item in (info.get("result") or {}).items():
        wsname = str(item.get("wsname") or "")
        # Dark-pool books (``.d``) and pairs not trading now have no public book to record.
        if name.endswith(".d") or wsname.count("/") != 1 or item.get("status", "online") != "online":
            continue
        pair = pair_for(wsname)
        candidates.append((pair, pair.split("-")[1], "spot"))
    return select_pairs(VENUE, candidates, quotes, types)


CONNECTOR = KrakenConnector
