"""Binance ``<symbol>@trade`` (spot and USD-M) and top-of-book changes, free of I/O.

Wire (trades-protocols.md §2, §3): ``{"stream":"btcusdt@trade","data":{"e":"trade","E":..,
"s":"BTCUSDT","t":<id>,"p":"<px>","q":"<qty>","T":<trade ms>,"m":<buyer is maker>,..}}``.
``m`` true means the buyer was the maker, so the taker sold. ``t`` is contiguous per symbol on both
markets: a jump is lost trades (``trade_gaps``), never invented. USD-M adds ``X``: only ``MARKET``
prints are trades of the book (``INSURANCE_FUND``/``ADL``/``NA`` are off-book, skipped and counted
as ``trade_offbook``; their ids still advance the sequence). USD-M raw ``@trade`` rides the
``/public`` route since the 2026 URL split, with the depth streams (on ``/market`` it is silent).

The last id per pair lives with the connector (:class:`TradeIds`), shared by the connections of
a slot: during a planned hand-over both sockets deliver the same trades and only the first copy is
kept; after a reconnect the ids lost in between are counted as a gap.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import msgspec

from recorder.book import L2Book
from recorder.model import Quote, Trade
from recorder.venues.base import Counters, FeedStats, WireFloat


class TradeEvent(msgspec.Struct):
    e: str
    s: str = ""
    t: int = -1
    a: int = -1  # @aggTrade: the aggregate id
    p: WireFloat = 0.0
    q: WireFloat = 0.0
    T: int = 0
    m: bool = False
    X: str = "MARKET"  # USD-M only


class StreamTrade(msgspec.Struct):
    stream: str
    data: TradeEvent


_stream_trade = msgspec.json.Decoder(StreamTrade, strict=False)
DECODE_ERRORS = (msgspec.DecodeError, msgspec.ValidationError)


def trade_stream(symbol: str) -> str:
    return f"{symbol.lower()}@trade"


def agg_trade_stream(symbol: str) -> str:
    return f"{symbol.lower()}@aggTrade"


class TradeIds:
    """The last trade id taken per pair (shared by the feeds of one connector).

    With counters it is also kept in shared memory (``trade_last_id:<pair>``), which outlives the
    venue process: after a kill -9 and restart, the trades lost in between are counted as a gap.
    """

    def __init__(self, counters: Counters | None = None, pairs: Iterable[str] = ()) -> None:
        self.last: dict[str, int] = {}
        self._counters = counters
        # pair -> (shared values, slot of trade_last_id:<pair>): one store per trade, no name lookup.
        self._slots: dict[str, tuple[memoryview, int]] = {}
        if counters is not None:
            for pair in pairs:
                last = int(counters.get(f"trade_last_id:{pair}"))
                if last:
                    self.last[pair] = last
                hot = counters.slots(f"trade_last_id:{pair}")
                if hot is not None:
                    self._slots[pair] = hot  # type: ignore[assignment]

    def take(self, pair: str, trade_id: int) -> None:
        self.last[pair] = trade_id
        hot = self._slots.get(pair)
        if hot is not None:
            hot[0][hot[1]] = trade_id
        elif self._counters is not None:
            self._counters.set(f"trade_last_id:{pair}", trade_id)


class TradeParser:
    """Trade frames of one socket -> ``on_trade`` calls, once per trade, in venue order."""

    def __init__(
        self,
        venue: str,
        by_stream: dict[str, str],  # trade stream name -> pair
        stats: FeedStats,
        ids: TradeIds | None = None,
        by_agg_stream: dict[str, str] | None = None,  # @aggTrade stream name -> pair (replay)
    ) -> None:
        self.venue, self.by_stream, self.stats = venue, by_stream, stats
        self.by_agg_stream = by_agg_stream or {}
        self.ids = ids if ids is not None else TradeIds()
        self.on_trade: Callable[[Trade], None] | None = None
        # Pairs seen on @trade: their @aggTrade frames (a recording holding both) are not stored twice.
        self._raw: set[str] = set()

    def on_frame(self, payload: bytes, recv_ms: float) -> bool:
        """True when ``payload`` was a trade frame of ours (taken, skipped or malformed)."""
        try:
            msg = _stream_trade.decode(payload)
        except DECODE_ERRORS:
            return False
        ev = msg.data
        e = ev.e
        if e == "trade":
            pair, tid, key = self.by_stream.get(msg.stream), ev.t, None
            if pair is None:
                return False
            self._raw.add(pair)
        elif e == "aggTrade":
            # Replay of captures that hold aggregate trades only (one row per taker order and
            # price; ``a`` is contiguous per symbol). Live capture subscribes @trade.
            pair, tid = self.by_agg_stream.get(msg.stream), ev.a
            if pair is None:
                return False
            key = f"{pair}@agg"
            if pair in self._raw:
                self.stats.frame(len(payload))
                self.stats.kind("aggTrade_skipped")
                return True
        else:
            return False
        stats = self.stats
        stats.frame(len(payload))
        stats.kind(e)
        if tid < 0:
            stats.malformed_frame()
            return True
        ids = self.ids
        last = ids.last.get(key or pair)
        if last is not None and tid != last + 1:
            if tid <= last:
                stats.kind("trade_duplicate")  # the other socket of a hand-over had it already
                return True
            missing = tid - last - 1
            stats.pair(pair, "trade_gaps", missing)
            stats.counters.incr("trade_gaps", missing)
            stats.counters.incr(f"trade_gaps:{pair}", missing)
        if ev.X == "MARKET":
            stats.pair(pair, "trades")
            on_trade = self.on_trade
            if on_trade is not None:
                on_trade(
                    Trade(
                        self.venue,
                        pair,
                        str(tid),
                        ev.p,
                        ev.q,
                        "sell" if ev.m else "buy",
                        ev.T * 1000 if ev.T else None,
                        int(recv_ms * 1000),
                    )
                )
        else:
            stats.kind("trade_offbook")
        # Taken once stored: a process killed in between counts that trade as lost, never hides one.
        if key is None:
            ids.take(pair, tid)
        else:
            ids.last[key] = tid
        return True


class QuoteTracker:
    """Every change of a verified book's best bid or ask (price or size) -> ``on_quote``.

    Called after each diff applied to a synced book; ``forget`` when the book loses its sync, so
    the first quote after a resync is always emitted and a change is never measured across a gap.
    """

    def __init__(self, venue: str, on_quote: Callable[[Quote], None]) -> None:
        self.venue, self.on_quote = venue, on_quote
        self.last: dict[str, tuple[float | None, float | None, float | None, float | None]] = {}

    def book_changed(self, pair: str, book: L2Book, recv_ms: float) -> None:
        top = book.best()
        last = self.last
        if last.get(pair) == top:
            return
        bid, ask = top[0], top[2]
        if bid is not None and ask is not None and bid >= ask:
            return  # crossed: corrupt, never data (the sampler resyncs it)
        last[pair] = top
        exch = book.exchange_time_ms
        self.on_quote(Quote(self.venue, pair, *top, exch * 1000 if exch else None, int(recv_ms * 1000), book.update_id))

    def forget(self, pair: str) -> None:
        self.last.pop(pair, None)
