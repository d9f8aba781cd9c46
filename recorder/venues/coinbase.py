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

import msgspec

from recorder.archive.tap import archived_feed
from recorder.config import VenueConfig
from recorder.metrics import SharedCounters
from recorder.venues.base import Counters, WireFloat
from recorder.venues.limits import COINBASE as LIMITS
from recorder.venues.snapshot_feed import BookState, FloatSnapshotFeed
from recorder.venues.subscribed import SocketGroup, SubscribedConnector, wants_trades
from recorder.venues.trades import coinbase as cb_trades

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
    """One level; price and quantity are decoded to float in C (``strict=False``), under the names
    ``L2Book.apply_sided`` reads (``SidedLevel``)."""

    side: str
    price: WireFloat = msgspec.field(name="price_level")
    qty: WireFloat = msgspec.field(name="new_quantity")
    event_time: str = ""


class L2Event(msgspec.Struct):
    type: str
    product_id: str
    updates: list[Update]


class L2Data(msgspec.Struct):
    """An ``l2_data`` frame: most of the frames, decoded in one pass."""

    channel: str
    sequence_num: int
    events: list[L2Event]
    timestamp: str = ""


class Envelope(msgspec.Struct):
    channel: str | None = None
    timestamp: str = ""
    sequence_num: int | None = None
    events: msgspec.Raw = msgspec.Raw()
    # Errors come back as {"type":"error","message":...}.
    type: str | None = None
    message: str | None = None


class TextUpdate(msgspec.Struct):
    side: str
    price: str = msgspec.field(name="price_level")
    qty: str = msgspec.field(name="new_quantity")
    event_time: str = ""


class TextL2Event(msgspec.Struct):
    """``L2Event`` with its levels as text: tells a level that is not a number from a bad frame."""

    type: str
    product_id: str
    updates: list[TextUpdate]


_l2_data = msgspec.json.Decoder(L2Data, strict=False)
_envelope = msgspec.json.Decoder(Envelope)
_l2_events = msgspec.json.Decoder(list[L2Event], strict=False)
_text_l2_events = msgspec.json.Decoder(list[TextL2Event])
_DECODE_ERRORS = (msgspec.DecodeError, msgspec.ValidationError)
_ASK_SIDES = ("offer", "ask")  # Coinbase names asks "offer"


def symbol_for(pair: str) -> str:
    """Coinbase product ids are already normalized pairs: ``BTC-USD`` -> ``BTC-USD``."""
    return pair


def pair_for(product_id: str) -> str:
    return product_id


_MILLIS = {f"{i:03d}": i for i in range(1000)}  # "042" -> 42: one dict probe instead of isdigit() and int()
_SECONDS: dict[str, int] = {}  # "2026-08-09T21:05:48" -> epoch seconds, for the seconds seen lately


def parse_time_ms(text: str) -> int | None:
    """RFC 3339 UTC (``2026-08-09T21:05:48.210883Z``, up to ns digits) -> epoch ms; None if unparsable.

    Once per book update: the seconds come from a small memo (a book's updates share them) and
    the usual three-or-more fraction digits from a dict, so the common case is two dict probes."""
    prefix = text[:19]
    seconds = _SECONDS.get(prefix)
    if seconds is None:
        try:
            seconds = calendar.timegm(time.strptime(prefix, "%Y-%m-%dT%H:%M:%S"))
        except ValueError:
            return None
        if len(_SECONDS) >= 4096:
            _SECONDS.clear()
        _SECONDS[prefix] = seconds
    if text[19:20] == ".":
        millis = _MILLIS.get(text[20:23])
        if millis is not None:
            return seconds * 1000 + millis
    frac = text[19:].rstrip("Z")
    millis = 0
    if frac.startswith("."):
        digits = frac[1:4]
        if not digits.isdigit():
            return None
        millis = int(digits.ljust(3, "0"))
    return seconds * 1000 + millis


# --- the sync rules, free of I/O -------------------------------------------------------


class CoinbaseFeed(FloatSnapshotFeed):
    """Frames of one Coinbase connection -> verified books. ``pairs=None`` accepts every product."""

    venue = VENUE

    def __init__(self, pairs: Iterable[str] | None = None, counters: Counters | None = None) -> None:
        super().__init__(pairs is None, log, counters)
        self._next_seq: int | None = None
        self._frame_count = self.stats.frame_count
        for pair in pairs or ():
            self._add(symbol_for(pair), pair)

    def reset(self) -> None:
        """A new connection: its sequence starts over and every book waits for its snapshot."""
        super().reset()
        self._next_seq = None

    def on_frame(self, payload: bytes, recv_ms: float) -> None:
        count = self._frame_count  # (``FeedStats`` folds it on read)
        count.n += 1
        count.nbytes += len(payload)
        if payload.find(b'"l2_data"', 0, 48) >= 0:
            try:
                msg = _l2_data.decode(payload)  # one typed pass, floats in C
            except _DECODE_ERRORS:
                msg = None
            if msg is not None and msg.channel == "l2_data":
                seq = msg.sequence_num
                if seq == self._next_seq:
                    self._next_seq = seq + 1
                elif not self._in_sequence(seq):
                    return
                by_key = self._by_key
                for ev in msg.events:
                    st = by_key.get(ev.product_id)
                    if st is not None and st.synced and ev.type == "update":
                        self._update(st, ev, seq, recv_ms)  # the hot path: an update of a live book
                    else:
                        self._on_event(ev, seq, recv_ms)
                return
        elif payload.find(b'"market_trades"', 0, 48) >= 0 and self.trades.on_trade is not None:
            self._trade_frame(payload, recv_ms)
            return
        self._other_frame(payload, recv_ms)

    def _trade_frame(self, payload: bytes, recv_ms: float) -> None:
        """A ``market_trades`` message: its ``sequence_num`` is the book's counter too."""
        try:
            msg = cb_trades.decode_message(payload)
        except _DECODE_ERRORS:
            msg = None
        if msg is None or msg.channel != cb_trades.CHANNEL:
            self._other_frame(payload, recv_ms)  # counted there (and its sequence kept, if it has one)
            return
        if not self._in_sequence(msg.sequence_num):
            return
        self.stats.kind(cb_trades.CHANNEL)
        if cb_trades.on_trades(msg.events, recv_ms, self.trades, self._trade_pair, VENUE):
            self._malformed(ValueError("market_trades: a trade that does not parse"))

    def _trade_pair(self, product: str) -> str | None:
        st = self._by_key.get(product)
        if st is not None:
            return st.pair
        return pair_for(product) if self._open else None

    def _other_frame(self, payload: bytes, recv_ms: float) -> None:
        """Other channels, errors, malformed frames, and book frames the one-pass decode refused."""
        stats = self.stats
        events: list[L2Event | TextL2Event] | None = None
        try:
            env = _envelope.decode(payload)
            if env.channel == "l2_data":
                if env.sequence_num is None:
                    raise ValueError("l2_data without sequence_num")
                try:
                    events = list(_l2_events.decode(env.events))
                except msgspec.ValidationError:
                    # Well-formed but for a level that is not a number: only its book is lost (below).
                    events = list(_text_l2_events.decode(env.events))
        except (*_DECODE_ERRORS, ValueError) as exc:
            # An undecodable frame may have been a book update: its loss shows as a gap next frame.
            self._malformed(exc)
            return
        if env.type == "error":
            stats.kind("error")
            log.warning("event=venue_error venue=coinbase message=%s", env.message)
            return
        seq = env.sequence_num
        if seq is not None and not self._in_sequence(seq):
            return
        if events is None:
            stats.kind(env.channel or "other")
            return
        for ev in events:
            if isinstance(ev, TextL2Event):
                try:
                    ev = msgspec.convert(msgspec.to_builtins(ev), L2Event, strict=False)
                except msgspec.ValidationError:
                    self._bad_event(ev)
                    continue
            self._on_event(ev, seq or 0, recv_ms)

    def _in_sequence(self, seq: int) -> bool:
        """The connection's one counter: False for an out-of-order frame; a jump is a gap for all."""
        expected = self._next_seq
        if expected is not None and seq != expected:
            if seq < expected:
                self.stats.kind("out_of_order")
                return False
            self._gap(expected, seq)
        self._next_seq = seq + 1
        return True

    def _gap(self, expected: int, seq: int) -> None:
        # The lost message could have belonged to any product here: each book counts a gap.
        self._throttle.warning("gap", "event=gap venue=coinbase expected=%d got=%d", expected, seq)
        if not self._by_pair:
            self.stats.gaps += 1
            self.stats.counters.incr("gaps")
        for st in self._by_pair.values():
            self.stats.gap(st.pair)
            self._lose(st)

    def _state(self, product: str) -> BookState | None:
        st = self._by_key.get(product)
        if st is None and self._open:
            st = self._add(product, pair_for(product))
        return st

    def _bad_event(self, ev: TextL2Event) -> None:
        self.stats.kind(ev.type)
        st = self._state(ev.product_id)
        if st is not None:
            self._corrupt(st)

    def _on_event(self, ev: L2Event, seq: int, recv_ms: float) -> None:
        stats = self.stats
        st = self._state(ev.product_id)
        if st is None:
            stats.kind(ev.type)
            return
        if ev.type == "update" and st.synced:
            self._update(st, ev, seq, recv_ms)
            return
        stats.kind(ev.type)
        if ev.type == "snapshot":
            if st.synced:
                stats.pair(st.pair, "snapshot_resets")
            st.book.clear()
            if self._apply(st, ev, seq, recv_ms):
                self._synced(st)
        elif ev.type != "update":
            stats.malformed_frame()
        else:
            stats.pair(st.pair, "ignored")

    def _update(self, st: BookState, ev: L2Event, seq: int, recv_ms: float) -> None:
        """An update of a live book: applied, counted (its kind and the pair's updates), quoted."""
        if self._apply(st, ev, seq, recv_ms):
            st.updates.n += 1
            if self._quotes is not None:
                self._quote(st.pair, st.book, recv_ms)
        else:
            self.stats.kind(ev.type)

    def _apply(self, st: BookState, ev: L2Event, seq: int, recv_ms: float) -> bool:
        updates = ev.updates
        book = st.book
        try:
            book.apply_sided(updates, "bid", _ASK_SIDES)
        except ValueError:
            # The event's levels are lost: the book is unknown now.
            self._corrupt(st)
            return False
        book.update_id = seq
        if updates:
            book.exchange_time_ms = parse_time_ms(updates[-1].event_time)
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
        return archived_feed(CoinbaseFeed, self.pairs, counters=self.counters)

    def subscribe_messages(self, pairs: Iterable[str]) -> list[str]:
        pairs = list(pairs)
        msgs = [_request("subscribe", pairs, "heartbeats"), _request("subscribe", pairs, CHANNEL)]
        if wants_trades(self.cfg):  # (its first message replays the last 100 trades: deduped)
            msgs.append(cb_trades.subscribe_request("subscribe", map(symbol_for, pairs)))
        return msgs

    def unsubscribe_messages(self, pairs: Iterable[str]) -> list[str]:
        return [_request("unsubscribe", pairs, CHANNEL)]

    def resubscribe_messages(self, pairs: list[str]) -> list[str]:
        # heartbeats stay subscribed. The trades are renewed with the book: a sequence gap may have
        # been a lost market_trades message, and the renewal's replay of the last 100 trades brings
        # it back (the rest is deduped).
        msgs = [_request("unsubscribe", pairs, CHANNEL), _request("subscribe", pairs, CHANNEL)]
        if wants_trades(self.cfg):
            products = [symbol_for(p) for p in pairs]
            msgs += [
                cb_trades.subscribe_request("unsubscribe", products),
                cb_trades.subscribe_request("subscribe", products),
            ]
        return msgs

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
        # Stagger by each socket's subscribe frames (3 with trades), keeping the burst at 5/6 of 8/s.
        self.connect_stagger_s = CONNECT_STAGGER_S * (3 if wants_trades(cfg) else 2) / 2


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
