"""Coinbase Advanced Trade ``level2`` channel (data arrives as ``l2_data``).

Sync rules (venue-protocols.md §3a): a book starts from the WS ``snapshot`` event (there is no
REST snapshot aligned with the stream); ``update`` events carry absolute quantities (``"0"``
deletes; asks are ``"offer"``). The envelope ``sequence_num`` is ONE counter per connection,
shared by every channel and product, and must rise by exactly 1: a jump means a lost message
that cannot be attributed to a product, so every book on that connection is dropped and
resubscribed (unsubscribe + subscribe ``level2`` brings a new snapshot). A smaller number is
out of order and ignored. To keep a gap's blast radius to one book, the connector opens one
connection per product (``PRODUCTS_PER_CONNECTION``), each also subscribed to ``heartbeats``
so a quiet book is not taken for a stall.
"""

from __future__ import annotations

import calendar
import logging
import time
from collections.abc import Iterable
from functools import lru_cache

import msgspec

from recorder.book import L2Book
from recorder.config import VenueConfig
from recorder.metrics import SharedCounters
from recorder.venues.base import Counters, FeedStats, LogThrottle
from recorder.venues.limits import COINBASE as LIMITS
from recorder.venues.snapshot_feed import BookState
from recorder.venues.subscribed import SocketGroup, SubscribedConnector

VENUE = "coinbase"
WS_URL = "wss://advanced-trade-ws.coinbase.com"
REST_URL = "https://api.coinbase.com"
# A sequence gap on a connection invalidates every book on it; one product each isolates them.
PRODUCTS_PER_CONNECTION = LIMITS.streams_per_connection
# Unauthenticated clients may send 8 messages/s per IP: pace each socket's frames and stagger
# connection starts (two subscribe frames each) so a startup burst stays at 5/6 of it (0.3 s).
SEND_INTERVAL_S = round(2 / (5 / 6 * (LIMITS.messages_per_s or 8.0)), 3)
CONNECT_STAGGER_S = SEND_INTERVAL_S
CHANNEL = "level2"
MAX_FRAME_BYTES = 64 * 1024 * 1024  # level2 snapshots of deep books run to megabytes

log = logging.getLogger("recorder.venues.coinbase")


# --- wire schema -------------------------------------------------------------------------


class Update(msgspec.Struct):
    side: str
    price_level: str
    new_quantity: str
    event_time: str = ""


class L2Event(msgspec.Struct):
    type: str
    product_id: str
    updates: list[Update]


class Envelope(msgspec.Struct):
    channel: str | None = None
    timestamp: str = ""
    sequence_num: int | None = None
    events: msgspec.Raw = msgspec.Raw()
    # Errors come back as {"type":"error","message":...}.
    type: str | None = None
    message: str | None = None


_envelope = msgspec.json.Decoder(Envelope)
_l2_events = msgspec.json.Decoder(list[L2Event])


def symbol_for(pair: str) -> str:
    """Coinbase product ids are already normalized pairs: ``BTC-USD`` -> ``BTC-USD``."""
    return pair


def pair_for(product_id: str) -> str:
    return product_id


@lru_cache(maxsize=4096)
def _epoch_s(prefix: str) -> int:
    return calendar.timegm(time.strptime(prefix, "%Y-%m-%dT%H:%M:%S"))


def parse_time_ms(text: str) -> int | None:
    """RFC 3339 UTC (``2026-08-09T21:05:48.210883Z``, up to ns digits) -> epoch ms; None if unparsable."""
    try:
        seconds = _epoch_s(text[:19])
    except ValueError:
        return None
    frac = text[19:].rstrip("Z")
    millis = 0
    if frac.startswith("."):
        digits = frac[1:4]
        if not digits.isdigit():
            return None
        millis = int(digits.ljust(3, "0"))
    return seconds * 1000 + millis


# --- the sync rules, free of I/O -------------------------------------------------------


class CoinbaseFeed:
    """Frames of one Coinbase connection -> verified books. ``pairs=None`` accepts every product."""

    def __init__(self, pairs: Iterable[str] | None = None, counters: Counters | None = None) -> None:
        self.stats = FeedStats(counters)
        self._throttle = LogThrottle(log)
        self._open = pairs is None
        self._books: dict[str, BookState] = {}  # product id -> state
        self._by_pair: dict[str, BookState] = {}
        self._next_seq: int | None = None
        for pair in pairs or ():
            self._add(symbol_for(pair), pair)

    def _add(self, product: str, pair: str) -> BookState:
        st = BookState(pair)
        self._books[product] = self._by_pair[pair] = st
        return st

    # Feed protocol ------------------------------------------------------------------------------

    def book(self, pair: str) -> L2Book | None:
        st = self._by_pair.get(pair)
        return st.book if st is not None and st.synced else None

    def wants_snapshot(self) -> set[str]:
        return {st.pair for st in self._by_pair.values() if st.wants}

    def on_rest_snapshot(self, pair: str, body: bytes, recv_ms: float) -> None:
        """Coinbase's REST book has no id aligned with the stream: the WS snapshot is the only sync point."""

    def reset(self) -> None:
        """A new connection: its sequence starts over and every book waits for its snapshot."""
        self._next_seq = None
        for st in self._by_pair.values():
            st.drop()
            st.wants = False

    def invalidate(self, pair: str, reason: str = "") -> None:
        st = self._by_pair.get(pair)
        if st is not None:
            st.drop()
            st.wants = True
            self.stats.pair(pair, "invalidated")

    def on_frame(self, payload: bytes, recv_ms: float) -> None:
        stats = self.stats
        stats.frame(len(payload))
        try:
            env = _envelope.decode(payload)
            events = _l2_events.decode(env.events) if env.channel == "l2_data" else None
            if events is not None and env.sequence_num is None:
                raise ValueError("l2_data without sequence_num")
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
            # An undecodable frame may have been a book update: its loss shows as a gap next frame.
            stats.malformed_frame()
            self._throttle.warning("malformed", "event=malformed_frame venue=coinbase detail=%s", str(exc)[:200])
            return
        if env.type == "error":
            stats.kind("error")
            log.warning("event=venue_error venue=coinbase message=%s", env.message)
            return
        seq = env.sequence_num
        if seq is not None:
            expected = self._next_seq
            if expected is not None and seq < expected:
                stats.kind("out_of_order")
                return
            if expected is not None and seq > expected:
                self._gap(expected, seq)
            self._next_seq = seq + 1
        if events is None:
            stats.kind(env.channel or "other")
            return
        for ev in events:
            self._on_event(ev, seq or 0, recv_ms)

    def _gap(self, expected: int, seq: int) -> None:
        # The lost message could have belonged to any product here: each book counts a gap.
        self._throttle.warning("gap", "event=gap venue=coinbase expected=%d got=%d", expected, seq)
        if not self._by_pair:
            self.stats.gaps += 1
            self.stats.counters.incr("gaps")
        for st in self._by_pair.values():
            self.stats.gap(st.pair)
            st.drop()
            st.wants = True

    def _on_event(self, ev: L2Event, seq: int, recv_ms: float) -> None:
        stats = self.stats
        stats.kind(ev.type)
        st = self._books.get(ev.product_id)
        if st is None:
            if not self._open:
                return
            st = self._add(ev.product_id, pair_for(ev.product_id))
        if ev.type == "snapshot":
            if st.synced:
                stats.pair(st.pair, "snapshot_resets")
            st.book.clear()
            if not self._apply(st, ev, seq, recv_ms):
                return
            if not st.synced:  # the first sync counts too, as in the live counters
                stats.resync(st.pair)
            st.synced = st.ever_synced = True
            st.wants = False
            return
        if ev.type != "update":
            stats.malformed_frame()
            return
        if not st.synced:
            stats.pair(st.pair, "ignored")
            return
        if self._apply(st, ev, seq, recv_ms):
            stats.pair(st.pair, "updates")

    def _apply(self, st: BookState, ev: L2Event, seq: int, recv_ms: float) -> bool:
        bids: list[tuple[str, str]] = []
        asks: list[tuple[str, str]] = []
        try:
            for u in ev.updates:
                side = u.side
                if side == "bid":
                    bids.append((u.price_level, u.new_quantity))
                elif side == "offer" or side == "ask":
                    asks.append((u.price_level, u.new_quantity))
                else:
                    raise ValueError(f"unknown side {side!r}")
            st.book.apply(bids, asks)
        except ValueError:
            # Part of the event may be applied already: the book is unknown until a new snapshot.
            self.stats.malformed_frame()
            self.stats.pair(st.pair, "malformed")
            st.drop()
            st.wants = True
            return False
        book = st.book
        book.update_id = seq
        if ev.updates:
            book.exchange_time_ms = parse_time_ms(ev.updates[-1].event_time)
        book.receive_time_ms = recv_ms
        return True


# --- replay hooks: one Feed per recorded socket --------------------------------------------

Feed = CoinbaseFeed


def capture_pairs(frames: Iterable[bytes], url: str | None = None) -> list[str]:
    """The products whose level2 books a recorded socket carries."""
    pairs: dict[str, None] = {}
    for payload in frames:
        if b'"l2_data"' not in payload[:200]:
            continue
        try:
            for ev in _l2_events.decode(_envelope.decode(payload).events):
                pairs[pair_for(ev.product_id)] = None
        except (msgspec.DecodeError, msgspec.ValidationError):
            continue
    return list(pairs)


# --- the connector: one subscribed connection per product ------------------------------------


def _request(kind: str, pairs: Iterable[str], channel: str) -> str:
    products = [symbol_for(p) for p in pairs]
    return msgspec.json.encode({"type": kind, "product_ids": products, "channel": channel}).decode()


class CoinbaseSocket(SubscribedConnector):
    """One Coinbase connection; its ``heartbeats`` subscription keeps a quiet book from looking stalled."""

    venue = VENUE
    default_ws_url = WS_URL
    default_rest_url = REST_URL
    max_frame_bytes = MAX_FRAME_BYTES
    send_interval_s = SEND_INTERVAL_S
    log = log

    def new_feed(self) -> CoinbaseFeed:
        return CoinbaseFeed(self.pairs, counters=self.counters)

    def subscribe_messages(self, pairs: Iterable[str]) -> list[str]:
        pairs = list(pairs)
        return [_request("subscribe", pairs, "heartbeats"), _request("subscribe", pairs, CHANNEL)]

    def unsubscribe_messages(self, pairs: Iterable[str]) -> list[str]:
        return [_request("unsubscribe", pairs, CHANNEL)]

    def resubscribe_messages(self, pairs: list[str]) -> list[str]:
        # heartbeats stay subscribed: only the book channel is renewed
        return [_request("unsubscribe", pairs, CHANNEL), _request("subscribe", pairs, CHANNEL)]

    def ping_message(self) -> str | None:
        return None  # the heartbeats channel keeps the connection busy


class CoinbaseConnector(SocketGroup):
    venue = VENUE
    connect_stagger_s = CONNECT_STAGGER_S

    def __init__(self, cfg: VenueConfig, pairs: list[str], shared: SharedCounters | None = None) -> None:
        self.cfg = cfg
        self.pairs = list(pairs)
        counters = Counters(shared)
        n = PRODUCTS_PER_CONNECTION
        chunks = [self.pairs[i : i + n] for i in range(0, len(self.pairs), n)]
        super().__init__([CoinbaseSocket(cfg, chunk, counters=counters) for chunk in chunks], counters)


def check_pairs(rest_url: str | None, pairs: Iterable[str], timeout_s: float = 10.0) -> list[str]:
    """Pairs Coinbase does not list as tradable (blocking; used by the CLI before anything starts)."""
    import json
    import urllib.request

    base = (rest_url or REST_URL).rstrip("/")
    with urllib.request.urlopen(f"{base}/api/v3/brokerage/market/products", timeout=timeout_s) as resp:
        body = json.load(resp)
    listed = {
        p["product_id"] for p in body.get("products", []) if not p.get("is_disabled") and not p.get("trading_disabled")
    }
    return [p for p in pairs if symbol_for(p) not in listed]


def list_pairs(
    rest_url: str | None, quotes: Iterable[str] = (), types: Iterable[str] = (), timeout_s: float = 10.0
) -> list[str]:
    """Every tradable product (``--pairs all``) from ``/api/v3/brokerage/market/products``, filtered
    by quote currency and ``product_type`` (``spot``, ``future``)."""
    from recorder.venues.listing import fetch_json, select_pairs

    base = (rest_url or REST_URL).rstrip("/")
    body = fetch_json(f"{base}/api/v3/brokerage/market/products", timeout_s)
    candidates: list[tuple[str, str, str]] = []
    for p in body.get("products") or []:
        product = str(p.get("product_id", ""))
        if p.get("is_disabled") or p.get("trading_disabled") or p.get("status", "online") != "online":
            continue
        if p.get("alias"):  # e.g. BTC-USDC: market data arrives as its alias (BTC-USD), listed itself
            continue
        quote = str(p.get("quote_currency_id") or product.partition("-")[2])
        candidates.append((pair_for(product), quote, str(p.get("product_type") or "spot")))
    return select_pairs(VENUE, candidates, quotes, types)


CONNECTOR = CoinbaseConnector
