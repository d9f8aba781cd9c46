"""Bybit v5 public ``orderbook.<depth>.<symbol>``, spot and linear (and inverse) perpetuals.

Sync rules (venue-protocols.md §6): every book starts from a WS ``snapshot``; any snapshot, also
one mid-stream, replaces the book; a delta with ``u == 1`` is a service restart and overwrites the
book too; otherwise each delta's ``u`` must be the previous ``u + 1``. A larger jump is a gap for
that book only: it is dropped and resubscribed (unsubscribe + subscribe brings a new snapshot)
while the other books on the socket keep sampling. A smaller ``u`` is stale and ignored.

One socket per market: ``/v5/public/spot`` carries ``BTC-USDT``, ``/v5/public/linear`` carries
``BTC-USDT-PERP``; both call the symbol ``BTCUSDT``, so each socket has its own Feed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import msgspec

from recorder.archive.tap import archived_feed
from recorder.config import VenueConfig
from recorder.metrics import SharedCounters
from recorder.venues.base import Counters, FloatLevel, venue_config_default
from recorder.venues.limits import BYBIT as LIMITS
from recorder.venues.snapshot_feed import BookState, FloatSnapshotFeed
from recorder.venues.subscribed import SocketGroup, SubscribedConnector, wants_trades
from recorder.venues.trades import bybit as by_trades

VENUE = "bybit"
WS_URL = "wss://stream.bybit.com"  # + /v5/public/<category>
REST_URL = "https://api.bybit.com"
DEPTH = 200  # orderbook.200: 100 ms pushes on spot and linear, deep enough for any stored depth
DEPTHS = (1, 50, 200, 1000)
PING_INTERVAL_S = 20.0  # the docs ask for {"op":"ping"} every 20 s
MAX_ARGS_PER_REQUEST = LIMITS.subscriptions_per_message  # spot's limit; linear accepts more, one rule for both
MAX_ARGS_CHARS = 21_000  # one subscribe args array must stay under this
CATEGORIES = ("spot", "linear", "inverse")

log = logging.getLogger("recorder.venues.bybit")


# --- wire schema -------------------------------------------------------------------------


class BookData(msgspec.Struct):
    """An orderbook push; prices and quantities are decoded to float in C (``strict=False``)."""

    s: str
    b: list[FloatLevel]
    a: list[FloatLevel]
    u: int
    seq: int = 0


class BookMessage(msgspec.Struct):
    """A topic push carrying an order book: nearly every frame, decoded in one pass."""

    topic: str
    type: str
    data: BookData
    ts: int | None = None
    cts: int | None = None


class Message(msgspec.Struct):
    """Any text frame: a topic push, or an op reply (subscribe, ping/pong)."""

    topic: str | None = None
    type: str | None = None
    ts: int | None = None
    cts: int | None = None
    data: msgspec.Raw = msgspec.Raw()
    op: str | None = None
    success: bool | None = None
    ret_msg: str | None = None
    req_id: str | None = None


class TextBookData(msgspec.Struct):
    """``BookData`` with its levels as text: tells a level that is not a number from a bad frame."""

    s: str
    b: list[tuple[str, str]]
    a: list[tuple[str, str]]
    u: int


_book_message = msgspec.json.Decoder(BookMessage, strict=False)
_message = msgspec.json.Decoder(Message)
_book_data = msgspec.json.Decoder(BookData, strict=False)
_text_book_data = msgspec.json.Decoder(TextBookData)
_DECODE_ERRORS = (msgspec.DecodeError, msgspec.ValidationError)
_TRADE_FRAME = by_trades.FRAME_PREFIX


def symbol_for(pair: str) -> tuple[str, str]:
    """``BTC-USDT`` -> (spot, BTCUSDT); ``BTC-USDT-PERP`` -> (linear, BTCUSDT);
    ``BTC-USDC-PERP`` -> (linear, BTCPERP); ``BTC-USD-PERP`` -> (inverse, BTCUSD)."""
    parts = pair.split("-")
    if len(parts) == 3 and parts[2] == "PERP":
        base, quote = parts[0], parts[1]
        if quote == "USDC":
            return "linear", f"{base}PERP"
        if quote == "USD":
            return "inverse", f"{base}USD"
        return "linear", base + quote
    return "spot", pair.replace("-", "")


_QUOTES = ("USDT", "USDC", "USDE", "BTC", "ETH", "EUR", "BRL", "DAI", "USD")


def pair_for(category: str, symbol: str) -> str:
    """Inverse of ``symbol_for`` (used when a recording names symbols we were not told about)."""
    if category == "linear" and symbol.endswith("PERP"):
        return f"{symbol[:-4]}-USDC-PERP"
    for quote in _QUOTES:
        if symbol.endswith(quote) and len(symbol) > len(quote):
            pair = f"{symbol[: -len(quote)]}-{quote}"
            return f"{pair}-PERP" if category in ("linear", "inverse") else pair
    return symbol


def category_for_url(url: str) -> str:
    """``wss://stream.bybit.com/v5/public/linear`` -> ``linear``."""
    category = url.rstrip("/").rsplit("/", 1)[-1]
    if category not in CATEGORIES:
        raise ValueError(f"not a Bybit public market URL: {url}")
    return category


def topic_for(symbol: str, depth: int = DEPTH) -> str:
    return f"orderbook.{depth}.{symbol}"


# --- the sync rules, free of I/O -------------------------------------------------------


class BybitFeed(FloatSnapshotFeed):
    """Frames of one Bybit public socket (one market) -> verified books.

    ``pairs=None`` accepts every orderbook topic on the socket (replays of captures); ``depth=None``
    accepts any depth (one depth per symbol per socket is assumed then).
    """

    venue = VENUE
    update_kind = "delta"
    update_framed = True  # a frame carries one book's delta
    trade_ids_contiguous = False  # linear ids are UUIDs, spot ids skip

    def __init__(
        self,
        category: str,
        pairs: Iterable[str] | None = None,
        depth: int | None = DEPTH,
        counters: Counters | None = None,
    ) -> None:
        if category not in CATEGORIES:
            raise ValueError(f"unknown Bybit category {category!r}")
        super().__init__(pairs is None, log, counters)
        self.category = category
        self.depth = depth
        self._depth_text = None if depth is None else str(depth)
        self._topics: dict[str, BookState] = {}  # checked topic -> its book
        for pair in pairs or ():
            cat, symbol = symbol_for(pair)
            if cat != category:
                raise ValueError(f"{pair} is not a Bybit {category} pair")
            self._add(symbol, pair)

    def on_frame(self, payload: bytes, recv_ms: float) -> None:
        if payload.startswith(_TRADE_FRAME):
            self.stats.frame(len(payload))
            self._trade_frame(payload, recv_ms)
            return
        try:
            msg: BookMessage | None = _book_message.decode(payload)  # one typed pass, floats in C
        except _DECODE_ERRORS:
            self.stats.frame(len(payload))
            msg = self._other_frame(payload, recv_ms)
            if msg is not None:
                self._book_frame(msg, recv_ms)
            return
        data = msg.data
        # The hot path: the next delta of a live book, on a topic ``_book_frame`` already checked.
        st = self._topics.get(msg.topic)
        u = data.u
        if (
            st is not None
            and st.synced
            and u == st.book.update_id + 1  # type: ignore[operator]
            and u != 1
            and msg.type == "delta"
            and data.s == st.key
        ):
            count = st.updates  # the frame, one update of its pair (``FeedStats`` folds it on read)
            count.n += 1
            count.nbytes += len(payload)
        else:
            self.stats.frame(len(payload))
            st = self._book_frame(msg, recv_ms)
            if st is None:
                return
            self.stats.update(self.update_kind, st.pair)  # (its frame is counted above)
        book = st.book
        book.apply(data.b, data.a)
        book.update_id = u
        book.exchange_time_ms = msg.ts
        book.receive_time_ms = recv_ms
        if self._quotes is not None:
            self._quote(st.pair, book, recv_ms)

    def _book_frame(self, msg: BookMessage, recv_ms: float) -> BookState | None:
        """A book frame by the rules, but for applying a delta that continues its book: that
        book's state is returned for ``on_frame`` to apply (None: the frame is handled)."""
        stats = self.stats
        topic, data, kind = msg.topic, msg.data, msg.type
        if not topic.startswith("orderbook."):
            stats.kind("other")
            return None
        parts = topic.split(".", 2)
        if len(parts) == 3 and self._depth_text is not None and parts[1] != self._depth_text:
            stats.kind("other")  # another depth's stream: not ours
            return None
        if len(parts) != 3 or kind not in ("snapshot", "delta") or data.s != parts[2]:
            self._malformed(ValueError(f"bad orderbook frame: type={kind!r} s={data.s!r} topic={topic!r}"))
            return None
        st = self._by_key.get(data.s)
        if st is None:
            if not self._open:
                stats.kind(kind)
                return None
            st = self._add(data.s, pair_for(self.category, data.s))
        self._topics[topic] = st  # checked: its next deltas take the hot path
        if kind == "snapshot":
            stats.kind(kind)
            if st.synced:
                stats.pair(st.pair, "snapshot_resets")
            # orderbook.<depth>: levels past the topic's depth are unknown to the recorder.
            st.book.feed_depth = int(parts[1]) if parts[1].isdigit() else None
            self._load(st, data, msg.ts, recv_ms)
            return None
        if not st.synced:
            stats.kind(kind)
            stats.pair(st.pair, "ignored")  # waiting for the snapshot of a (re)subscription
            return None
        last = st.book.update_id
        assert last is not None
        u = data.u
        if u == last + 1 and u != 1:
            return st  # counted by on_frame with the apply: kind "delta" and the pair's "updates"
        stats.kind(kind)
        if u == 1:
            # Service restart: this message is the whole new book.
            stats.pair(st.pair, "restarts")
            self._load(st, data, msg.ts, recv_ms)
        elif u <= last:
            stats.pair(st.pair, "stale")
        else:
            stats.gap(st.pair)
            self._throttle.warning(f"gap:{st.pair}", "event=gap venue=bybit pair=%s u=%d after=%d", st.pair, u, last)
            self._lose(st)
        return None

    def _trade_frame(self, payload: bytes, recv_ms: float) -> None:
        try:
            msg = by_trades.decode_message(payload)
        except _DECODE_ERRORS as exc:
            self._malformed(exc)
            return
        self._trades(msg.data, recv_ms)

    def _trades(self, trades: list[by_trades.WireTrade], recv_ms: float) -> None:
        self.stats.kind("trade")
        out = self.trades
        if out.on_trade is not None and by_trades.on_trades(trades, recv_ms, out, self._trade_pair, VENUE):
            self._malformed(ValueError("publicTrade: a trade that does not parse"))

    def _trade_pair(self, symbol: str) -> str | None:
        st = self._by_key.get(symbol)
        if st is not None:
            return st.pair
        return pair_for(self.category, symbol) if self._open else None

    def _other_frame(self, payload: bytes, recv_ms: float = 0.0) -> BookMessage | None:
        """A frame the one-pass decode refused: an op reply, another topic, or a malformed frame
        (None once handled); an orderbook frame that decodes on this path is returned."""
        stats = self.stats
        try:
            msg = _message.decode(payload)
            topic = msg.topic
            if topic is None:
                stats.kind(f"op:{msg.op}" if msg.op else "other")
                if msg.success is False:
                    log.warning("event=venue_error venue=bybit op=%s msg=%s", msg.op, msg.ret_msg)
                return None
            if not topic.startswith("orderbook."):
                if topic.startswith(by_trades.TOPIC_PREFIX):
                    self._trades(by_trades.decode_trades(msg.data), recv_ms)
                else:
                    stats.kind("other")
                return None
            _, depth, symbol = topic.split(".", 2)
            if self._depth_text is not None and depth != self._depth_text:
                stats.kind("other")
                return None
            try:
                data = _book_data.decode(msg.data)
            except msgspec.ValidationError:
                st = self._by_key.get(symbol)
                if st is not None and msg.type in ("snapshot", "delta") and _is_text_book(msg.data):
                    # Well-formed but for a level that is not a number: that book is unknown now.
                    stats.kind(msg.type)
                    self._corrupt(st)
                    return None
                raise
            return BookMessage(topic, msg.type or "", data, msg.ts, msg.cts)
        except (*_DECODE_ERRORS, ValueError) as exc:
            self._malformed(exc)
            return None

    def _load(self, st: BookState, data: BookData, ts: int | None, recv_ms: float) -> None:
        book = st.book
        book.load(data.b, data.a, data.u)
        book.exchange_time_ms = ts
        book.receive_time_ms = recv_ms
        self._synced(st)


def _is_text_book(raw: msgspec.Raw) -> bool:
    try:
        _text_book_data.decode(raw)
    except _DECODE_ERRORS:
        return False
    return True


def feed_for_url(url: str, pairs: Iterable[str] | None = None, depth: int | None = None) -> BybitFeed:
    """The Feed for a recorded socket, told apart by the URL it connected to."""
    return BybitFeed(category_for_url(url), pairs, depth)


# --- replay hooks: one Feed per recorded socket --------------------------------------------


def Feed(pairs: Iterable[str], counters: Counters | None = None) -> BybitFeed:  # noqa: N802 (replay's name)
    """The Feed for a recorded socket carrying ``pairs`` (their market picks spot / linear / inverse)."""
    pairs = list(pairs)
    categories = {symbol_for(p)[0] for p in pairs}
    if len(categories) > 1:
        raise ValueError(f"one Bybit socket carries one market, not {sorted(categories)}")
    return BybitFeed(categories.pop() if categories else "spot", pairs, depth=None, counters=counters)


def capture_pairs(frames: Iterable[bytes], url: str | None = None) -> list[str]:
    """The pairs whose order books a recorded socket carries (its URL names the market)."""
    category = category_for_url(url) if url else "spot"
    pairs: dict[str, None] = {}
    for payload in frames:
        if b'"orderbook.' not in payload[:200]:
            continue
        try:
            topic = _message.decode(payload).topic
        except (msgspec.DecodeError, msgspec.ValidationError):
            continue
        if topic and topic.startswith("orderbook.") and topic.count(".") == 2:
            pairs[pair_for(category, topic.rsplit(".", 1)[1])] = None
    return list(pairs)


# --- the connector: one subscribed socket per market ----------------------------------------


class BybitSocket(SubscribedConnector):
    """One Bybit public socket (``/v5/public/<category>``) carrying one market's pairs."""

    venue = VENUE
    default_ws_url = WS_URL
    default_rest_url = REST_URL
    ping_interval_s = PING_INTERVAL_S
    log = log

    def __init__(self, cfg: VenueConfig, category: str, pairs: list[str], counters: Counters) -> None:
        base = venue_config_default(cfg, "ws_url", WS_URL)
        super().__init__(cfg, pairs, ws_url=f"{base}/v5/public/{category}", counters=counters)
        self.category = category
        self.depth = DEPTH
        self._req = 0

    def new_feed(self) -> BybitFeed:
        return archived_feed(BybitFeed, self.category, self.pairs, self.depth, counters=self.counters)

    def _req_id(self, what: str) -> str:
        self._req += 1
        return f"{what}-{self._req}"

    def _op(self, op: str, pairs: Iterable[str], trades: bool = False) -> list[str]:
        frames: list[str] = []
        chunk: list[str] = []
        symbols = [symbol_for(p)[1] for p in pairs]
        topics = [topic_for(s, self.depth) for s in symbols]
        if trades:
            topics += [by_trades.topic_for(s) for s in symbols]
        for topic in topics:
            if chunk and (
                len(chunk) >= MAX_ARGS_PER_REQUEST or sum(len(t) + 3 for t in chunk) + len(topic) >= MAX_ARGS_CHARS
            ):
                frames.append(msgspec.json.encode({"req_id": self._req_id(op), "op": op, "args": chunk}).decode())
                chunk = []
            chunk.append(topic)
        if chunk:
            frames.append(msgspec.json.encode({"req_id": self._req_id(op), "op": op, "args": chunk}).decode())
        return frames

    def subscribe_messages(self, pairs: Iterable[str]) -> list[str]:
        return self._op("subscribe", pairs, trades=wants_trades(self.cfg))

    def unsubscribe_messages(self, pairs: Iterable[str]) -> list[str]:
        return self._op("unsubscribe", pairs)

    def resubscribe_messages(self, pairs: list[str]) -> list[str]:
        # Only the book is renewed: the trade subscription stays.
        return self._op("unsubscribe", pairs) + self._op("subscribe", pairs)

    def ping_message(self) -> str:
        return msgspec.json.encode({"req_id": self._req_id("ping"), "op": "ping"}).decode()

    def is_ping_reply(self, payload: bytes) -> bool:
        # public: {"success":true,"ret_msg":"pong",...,"op":"ping"}; private form: {"op":"pong",...}
        return len(payload) < 512 and (b'"op":"pong"' in payload or b'"ret_msg":"pong"' in payload)


class BybitConnector(SocketGroup):
    venue = VENUE

    def __init__(self, cfg: VenueConfig, pairs: list[str], shared: SharedCounters | None = None) -> None:
        self.cfg = cfg
        self.pairs = list(pairs)
        counters = Counters(shared)
        by_category: dict[str, list[str]] = {}
        for pair in self.pairs:
            by_category.setdefault(symbol_for(pair)[0], []).append(pair)
        super().__init__([BybitSocket(cfg, cat, ps, counters) for cat, ps in by_category.items()], counters)


def check_pairs(rest_url: str | None, pairs: Iterable[str], timeout_s: float = 10.0) -> list[str]:
    """Pairs Bybit does not list as trading (blocking; used by the CLI before anything starts)."""
    base = (rest_url or REST_URL).rstrip("/")
    pairs = list(pairs)
    listed: dict[str, set[str]] = {}
    for category in sorted({symbol_for(p)[0] for p in pairs}):
        items = _instruments(base, category, timeout_s)
        listed[category] = {i["symbol"] for i in items if i.get("status", "Trading") == "Trading"}
    return [p for p in pairs if symbol_for(p)[1] not in listed[symbol_for(p)[0]]]


def _instruments(base: str, category: str, timeout_s: float) -> list[dict[str, Any]]:
    """Every page of ``/v5/market/instruments-info`` for one category (blocking)."""
    import urllib.parse

    from recorder.venues.listing import fetch_json

    items: list[dict[str, Any]] = []
    cursor = ""
    for _ in range(50):  # pages of 1000; the largest market has well under 50k instruments
        query = urllib.parse.urlencode({"category": category, "limit": "1000", "cursor": cursor})
        body = fetch_json(f"{base}/v5/market/instruments-info?{query}", timeout_s)
        if body.get("retCode") != 0:
            raise OSError(f"instruments-info failed: {body.get('retMsg')}")
        result = body.get("result") or {}
        items += result.get("list") or []
        cursor = result.get("nextPageCursor") or ""
        if not cursor:
            break
    return items


# ``--pairs all`` types: the markets whose instruments we can name as pairs.
LIST_CATEGORIES = ("spot", "linear")


def list_pairs(
    rest_url: str | None, quotes: Iterable[str] = (), types: Iterable[str] = (), timeout_s: float = 10.0
) -> list[str]:
    """Every trading instrument (``--pairs all``) from ``/v5/market/instruments-info``, filtered by
    quote coin and category (``spot`` / ``linear``; linear lists perpetuals only)."""
    from recorder.venues.listing import select_pairs

    base = (rest_url or REST_URL).rstrip("/")
    want = {t.lower() for t in types}
    candidates: list[tuple[str, str, str]] = []
    for category in LIST_CATEGORIES:
        if want and category not in want:
            continue
        for item in _instruments(base, category, timeout_s):
            quote = str(item.get("quoteCoin", ""))
            pair = f"{item.get('baseCoin', '')}-{quote}" + ("-PERP" if category == "linear" else "")
            # Dated futures and names our pair spelling cannot carry do not round-trip: skip them.
            if item.get("status", "Trading") != "Trading" or symbol_for(pair) != (category, item.get("symbol")):
                continue
            candidates.append((pair, quote, category))
    return select_pairs(VENUE, candidates, quotes, types)


CONNECTOR = BybitConnector
