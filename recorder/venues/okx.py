"""OKX v5 public order books: ``books`` (default), ``books5``, ``books-l2-tbt``, ``books50-l2-tbt``.

Sync (venue-protocols.md §5): subscribing sends a ``snapshot`` action, then ``update`` actions.
Each update's ``prevSeqId`` must equal the last applied ``seqId`` (ids are not contiguous; a
keepalive repeats the id; after maintenance ids may go down — only identity is tested). Captures
from before 2022-06 have no ``seqId`` at all: then the checksum alone proves the book. The
checksum is CRC32, read as a *signed* int32, of up to 25 interleaved levels
``bid1px:bid1sz:ask1px:ask1sz:...`` using the strings exactly as received. OKX now sends
``checksum: 0`` everywhere, which means "absent": such a frame is neither a verified nor a failed
checksum, and live books are proven by the ``seqId`` chain alone; an update that carries neither a
chain link nor a checksum cannot be proven and counts as a gap. A gap or mismatch drops that
instrument's book and resubscribes it alone. ``books5`` pushes replace the book (no chain, no checksum).

Level = ``[price, size, "0", orders]``; size ``"0"`` deletes. ``update_id`` is ``seqId``.
"""

from __future__ import annotations

import itertools
import logging
import zlib
from collections.abc import Iterable

import msgspec

from recorder.archive.tap import archived_feed
from recorder.book import TextL2Book
from recorder.config import VenueConfig
from recorder.metrics import SharedCounters
from recorder.venues.base import Counters
from recorder.venues.limits import OKX as LIMITS
from recorder.venues.snapshot_feed import PairBook, SnapshotFeed
from recorder.venues.subscribed import SubscribedConnector, wants_trades
from recorder.venues.trades import okx as okx_trades

VENUE = "okx"
WS_URL = "wss://ws.okx.com:8443/ws/v5/public"
REST_URL = "https://www.okx.com"
DEFAULT_CHANNEL = "books"
# Incremental channels (snapshot + updates, seqId chain, checksum) and full-replace channels.
INCREMENTAL_CHANNELS = ("books", "books-l2-tbt", "books50-l2-tbt")
REPLACE_CHANNELS = ("books5", "bbo-tbt")
CHANNELS = INCREMENTAL_CHANNELS + REPLACE_CHANNELS
# Levels per side each channel carries: deeper ones are unknown to the recorder.
CHANNEL_DEPTH = {"books": 400, "books-l2-tbt": 400, "books50-l2-tbt": 50, "books5": 5, "bbo-tbt": 1}
CHECKSUM_LEVELS = 25
# OKX asks for fewer than 30 deep-book channels per connection (limits.py).
MAX_BOOKS_PER_CONNECTION = LIMITS.streams_per_connection
NOTICE_RECONNECT = "64008"  # service upgrade ahead: reconnect

log = logging.getLogger("recorder.venues.okx")


# --- wire schema -------------------------------------------------------------------------------


class Arg(msgspec.Struct):
    channel: str = ""
    instId: str = ""


class BookData(msgspec.Struct):
    asks: list[list[str]] = []
    bids: list[list[str]] = []
    ts: str = ""
    checksum: int | None = None
    prevSeqId: int | None = None
    seqId: int | None = None


class Envelope(msgspec.Struct):
    arg: Arg | None = None
    action: str | None = None
    data: msgspec.Raw = msgspec.Raw()
    event: str | None = None
    code: str | None = None
    msg: str | None = None


class BookUpdate(BookData):
    """``BookData`` as the hot path decodes it: every level ``[price, size, "0", orders]``."""

    asks: list[tuple[str, str, str, str]] = []  # type: ignore[assignment]
    bids: list[tuple[str, str, str, str]] = []  # type: ignore[assignment]


class BookFrame(msgspec.Struct):
    """A book push whole: its arg, action and data, in one pass (no envelope pass first)."""

    arg: Arg
    data: list[BookUpdate]
    action: str | None = None
    event: str | None = None  # never in a push: such a frame takes the envelope path


_envelope = msgspec.json.Decoder(Envelope)
_book_data = msgspec.json.Decoder(list[BookData])
_book_frame = msgspec.json.Decoder(BookFrame)
# How every book push begins (OKX's key order); any other frame takes the envelope path.
_BOOK_PUSH = b'{"arg":{"channel":"books'


def symbol_for(pair: str) -> str:
    """``BTC-USDT`` -> ``BTC-USDT``; perpetual ``BTC-USDT-PERP`` -> ``BTC-USDT-SWAP``."""
    if pair.endswith("-PERP"):
        return pair[: -len("-PERP")] + "-SWAP"
    return pair


def pair_for(symbol: str) -> str:
    """``BTC-USDT-SWAP`` -> ``BTC-USDT-PERP``; spot and dated futures keep their instId."""
    if symbol.endswith("-SWAP"):
        return symbol[: -len("-SWAP")] + "-PERP"
    return symbol


def _crc(book: TextL2Book) -> int:
    """``checksum()`` of a book, from the fragments it keeps for its top 25 levels."""
    bids, asks = book.checksum_fragments()
    if len(bids) == len(asks):
        parts = [""] * (2 * len(bids))  # interleaved by slice assignment, in C
        parts[0::2] = bids
        parts[1::2] = asks
    else:  # a side with fewer than 25 levels: the other side's deeper levels follow alone
        parts = [f for pair in itertools.zip_longest(bids, asks) for f in pair if f is not None]
    crc = zlib.crc32(":".join(parts).encode())
    return crc - (1 << 32) if crc >= 1 << 31 else crc


def inst_type(inst_id: str) -> str:
    """``BTC-USDT`` SPOT, ``BTC-USDT-SWAP`` SWAP, ``BTC-USD-220527`` FUTURES."""
    if inst_id.endswith("-SWAP"):
        return "SWAP"
    last = inst_id.rsplit("-", 1)[-1]
    return "FUTURES" if inst_id.count("-") == 2 and last.isdigit() else "SPOT"


def checksum(bids: list[tuple[str, str]], asks: list[tuple[str, str]]) -> int:
    """OKX's checksum: signed CRC32 of up to 25 bids and 25 asks, interleaved bid/ask, ``:``-joined."""
    parts: list[str] = []
    for i in range(CHECKSUM_LEVELS):
        if i < len(bids):
            parts += bids[i]
        if i < len(asks):
            parts += asks[i]
    crc = zlib.crc32(":".join(parts).encode())
    return crc - (1 << 32) if crc >= 1 << 31 else crc


# --- sans-I/O frame handling -------------------------------------------------------------------


class OkxFeed(SnapshotFeed):
    """Parses OKX order-book pushes into verified books (see module docstring)."""

    venue = VENUE
    # Each level kept as "price:size", its checksum fragment: deletes at the top make deeper
    # levels rise on most updates, so every level needs one.
    joined = ":"
    checksum_levels = CHECKSUM_LEVELS

    def __init__(
        self, pairs: Iterable[str] | None = None, counters: Counters | None = None, channel: str | None = None
    ) -> None:
        super().__init__(pairs, log, counters)
        # None: accept every book channel (replays); live, only the subscribed one.
        self.channel = channel
        self.notice_reconnect = False
        self._by_inst: dict[str, PairBook | None] = {}  # instId -> its book (None: not ours)

    def on_frame(self, payload: bytes, recv_ms: float) -> None:
        push = None
        if payload.startswith(_BOOK_PUSH):
            # A book push, decoded in one pass. The hot path: an incremental update of one of our
            # books; any other push goes on decoded, any other frame takes the envelope path.
            try:
                push = _book_frame.decode(payload)
            except (msgspec.DecodeError, msgspec.ValidationError):
                pass
            else:
                st = self._by_inst.get(push.arg.instId)
                channel = push.arg.channel
                if (
                    st is not None
                    and push.action == "update"
                    and len(push.data) == 1
                    and push.event is None
                    and channel in INCREMENTAL_CHANNELS
                    and (self.channel is None or channel == self.channel)
                ):
                    stats = self.stats
                    stats.frame(len(payload))
                    stats.kind("update")
                    st.book.feed_depth = CHANNEL_DEPTH[channel]
                    self._on_book(st, False, push.data[0], recv_ms)
                    return
        self.stats.frame(len(payload))
        if payload == b"pong":
            self.stats.kind("pong")
            return
        try:
            if push is not None and push.event is None:
                self._on_push(push.arg, push.action, push.data, recv_ms)
            else:
                self._on_json(payload, recv_ms)
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
            self.malformed(exc)

    def _on_json(self, payload: bytes, recv_ms: float) -> None:
        env = _envelope.decode(payload)
        if env.event is not None:
            self.stats.kind(env.event)  # subscribe / unsubscribe / error / notice
            if env.event == "error":
                self._throttle.warning("reply", "event=venue_error venue=%s code=%s msg=%s", VENUE, env.code, env.msg)
            elif env.event == "notice" and env.code == NOTICE_RECONNECT:
                log.info("event=venue_notice venue=%s code=%s msg=%s", VENUE, env.code, env.msg)
                self.notice_reconnect = True
            return
        if env.arg is None:
            raise ValueError("frame without arg or event")
        self._on_push(env.arg, env.action, env.data, recv_ms)

    def _on_push(
        self, arg: Arg, action: str | None, data: msgspec.Raw | list[BookUpdate], recv_ms: float
    ) -> None:  # fmt: skip
        """A push of ``arg``'s channel, its ``data`` raw, or decoded already (a book push)."""
        channel = arg.channel
        if channel not in CHANNELS or (self.channel is not None and channel != self.channel):
            if channel == okx_trades.CHANNEL and isinstance(data, msgspec.Raw):
                self._on_trades(data, recv_ms)
                return
            self.stats.kind("other")  # tickers, ...: not ours
            return
        st = self._by_inst.get(arg.instId, False)
        if st is False:
            st = self._by_inst[arg.instId] = self._state(pair_for(arg.instId), 0)
        if st is not None:
            st.book.feed_depth = CHANNEL_DEPTH[channel]
        if channel in REPLACE_CHANNELS:
            self.stats.kind("snapshot")
            for item in _book_data.decode(data) if isinstance(data, msgspec.Raw) else data:
                if st is not None:
                    self._on_book(st, True, item, recv_ms)
            return
        if action not in ("snapshot", "update"):
            raise ValueError(f"unknown action {action!r}")
        self.stats.kind(action)
        for item in _book_data.decode(data) if isinstance(data, msgspec.Raw) else data:
            if st is not None:
                self._on_book(st, action == "snapshot", item, recv_ms)

    def _on_trades(self, data: msgspec.Raw, recv_ms: float) -> None:
        self.stats.kind(okx_trades.CHANNEL)
        if self.trades.on_trade is not None:
            if okx_trades.on_trades(okx_trades.decode_trades(data), recv_ms, self.trades, self._trade_pair, VENUE):
                raise ValueError("trades: a trade that does not parse")

    def _trade_pair(self, inst_id: str) -> str | None:
        pair = pair_for(inst_id)
        return pair if self._only is None or pair in self._only else None

    def _on_book(self, st: PairBook, snapshot: bool, item: BookData, recv_ms: float) -> None:
        if not snapshot:
            if not st.synced:
                return  # after a failure: wait for the resubscribe's snapshot
            chained = item.prevSeqId is not None and st.last_seq is not None
            if chained and item.prevSeqId != st.last_seq:
                self._gap(st, f"prevSeqId={item.prevSeqId} after seqId={st.last_seq}")
                return
            if not chained and not item.checksum:
                # Neither a chain link nor a checksum (0 = not sent): nothing could prove the
                # book after this update, so it is a broken chain, never an unverified sample.
                self._gap(st, f"update without prevSeqId/seqId link or checksum (prevSeqId={item.prevSeqId})")
                return
        try:
            ts_ms = int(item.ts) if item.ts else None
        except ValueError as exc:
            self._bad_levels(st, exc)
            return
        book = st.book
        if snapshot:
            book.clear()
        else:
            self.stats.pair(st.pair, "updates")
        try:
            # A level that is not a number raises half-way: the book is lost then (cleared), so
            # the levels need no separate validation pass first.
            book.apply(item.bids, item.asks)
        except (ValueError, IndexError) as exc:
            self._bad_levels(st, exc)
            return
        book.update_id = item.seqId
        book.exchange_time_ms = ts_ms
        book.receive_time_ms = recv_ms
        st.last_seq = item.seqId
        if snapshot:
            self._snapshot_applied(st, verified=not item.checksum)
        if item.checksum:  # 0 or missing: the venue no longer sends one
            self._checksum(st, item.checksum, _crc(book))
        self._quote_served(st, recv_ms)


Feed = OkxFeed


# --- the live connector ------------------------------------------------------------------------


class OkxConnector(SubscribedConnector):
    venue = VENUE
    default_ws_url = WS_URL
    default_rest_url = REST_URL
    log = log

    def __init__(self, cfg: VenueConfig, pairs: list[str], shared: SharedCounters | None = None) -> None:
        check_config(cfg)
        if len(pairs) > MAX_BOOKS_PER_CONNECTION:
            raise ValueError(f"at most {MAX_BOOKS_PER_CONNECTION} pairs per OKX connection")
        super().__init__(cfg, pairs, shared)
        self.channel = cfg.channel or DEFAULT_CHANNEL
        self._ids = itertools.count(1)

    def new_feed(self) -> OkxFeed:
        return archived_feed(OkxFeed, self.pairs, counters=self.counters, channel=self.channel)

    def _request(self, op: str, pairs: Iterable[str], trades: bool = False) -> str:
        args = [{"channel": self.channel, "instId": symbol_for(p)} for p in pairs]
        if trades:
            args += [okx_trades.subscribe_arg(symbol_for(p)) for p in pairs]
        return msgspec.json.encode({"id": str(next(self._ids)), "op": op, "args": args}).decode()

    def subscribe_messages(self, pairs: Iterable[str]) -> list[str]:
        return [self._request("subscribe", pairs, trades=wants_trades(self.cfg))]

    def unsubscribe_messages(self, pairs: Iterable[str]) -> list[str]:
        return [self._request("unsubscribe", pairs)]

    def resubscribe_messages(self, pairs: list[str]) -> list[str]:
        # Only the book is renewed: the trade subscription stays.
        return [self._request("unsubscribe", pairs), self._request("subscribe", pairs)]

    def ping_message(self) -> str:
        return "ping"

    def reconnect_requested(self, feed: object) -> bool:
        return bool(getattr(feed, "notice_reconnect", False))


def capture_pairs(frames: Iterable[bytes], url: str | None = None) -> list[str]:
    """The instruments whose books a recorded socket carries, for replay."""
    seen: dict[str, None] = {}
    for payload in frames:
        try:
            env = _envelope.decode(payload)
        except (msgspec.DecodeError, msgspec.ValidationError):
            continue
        if env.arg is not None and env.arg.channel in CHANNELS and len(env.data) and env.event is None:
            seen[pair_for(env.arg.instId)] = None
    return list(seen)


def check_config(cfg: VenueConfig) -> None:
    """Settings only OKX has (called by config validation before anything starts)."""
    if cfg.channel is not None and cfg.channel not in CHANNELS:
        raise ValueError(f"unknown OKX book channel {cfg.channel!r}: use one of {', '.join(CHANNELS)}")
    if len(cfg.pairs) > MAX_BOOKS_PER_CONNECTION:
        raise ValueError(f"at most {MAX_BOOKS_PER_CONNECTION} pairs per OKX connection")


def check_pairs(rest_url: str | None, pairs: Iterable[str], timeout_s: float = 10.0) -> list[str]:
    """Pairs OKX does not list, from ``/api/v5/public/instruments`` (blocking; CLI pre-check)."""
    import json
    import urllib.request

    base = (rest_url or REST_URL).rstrip("/")
    wanted = list(pairs)
    listed: set[str] = set()
    kinds = {inst_type(symbol_for(p)) for p in wanted}
    for kind in sorted(kinds):
        url = f"{base}/api/v5/public/instruments?instType={kind}"
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            info = json.load(resp)
        listed |= {i.get("instId") for i in info.get("data") or []}
    return [p for p in wanted if symbol_for(p) not in listed]


# ``--pairs all`` types: OKX instTypes we can name as pairs (spot ``BTC-USDT``, perp ``BTC-USDT-PERP``).
LIST_TYPES = ("SPOT", "SWAP")


def list_pairs(
    rest_url: str | None, quotes: Iterable[str] = (), types: Iterable[str] = (), timeout_s: float = 10.0
) -> list[str]:
    """Every live instrument (``--pairs all``) from ``/api/v5/public/instruments``, filtered by
    quote currency and type (``spot`` / ``swap``)."""
    from recorder.venues.listing import fetch_json, select_pairs

    base = (rest_url or REST_URL).rstrip("/")
    want = {t.upper() for t in types}
    candidates: list[tuple[str, str, str]] = []
    for kind in LIST_TYPES:
        if want and kind not in want:
            continue
        info = fetch_json(f"{base}/api/v5/public/instruments?instType={kind}", timeout_s)
        if str(info.get("code", "0")) != "0":
            raise OSError(f"instruments failed: {info.get('msg')}")
        for item in info.get("data") or []:
            inst = str(item.get("instId", ""))
            parts = inst.split("-")
            if item.get("state") != "live" or len(parts) != (2 if kind == "SPOT" else 3) or inst_type(inst) != kind:
                continue
            candidates.append((pair_for(inst), parts[1], kind))
    return select_pairs(VENUE, candidates, quotes, types)


CONNECTOR = OkxConnector
