"""Coinbase Advanced Trade ``market_trades`` (trades-protocols.md §4).

* One message carries 1..n trades of the last 250 ms, **newest first**; emitted in id order.
* ``side`` is the **maker's** side (checked on a capture against its own book): the taker's is
  the other one.
* ``trade_id`` is a numeric string, +1 per product: a skipped id is a trade gap.
* The first message of a subscription is a ``snapshot`` event with the last 100 trades; it comes
  again after every resubscribe and is deduped (and can fill a gap).
* ``time`` is RFC 3339 with 0-9 fraction digits (µs kept).
* The envelope ``sequence_num`` is the connection's one counter across channels: the book Feed
  checks it for trade frames too, before they are parsed here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from operator import attrgetter

import msgspec

from recorder.model import Trade
from recorder.venues.trades.tape import Row, TradeEmitter, decimal_text, emit_trades, rfc3339_us

CHANNEL = "market_trades"  # subscribe and data channel name alike
# The maker's side on the wire -> the taker's.
TAKER_SIDE = {"BUY": "sell", "SELL": "buy"}


class WireTrade(msgspec.Struct):
    product_id: str
    trade_id: str
    price: str
    size: str
    time: str
    side: str


class TradeEvent(msgspec.Struct):
    type: str
    trades: list[WireTrade] = []


class TradesMessage(msgspec.Struct):
    channel: str
    sequence_num: int
    events: list[TradeEvent]
    timestamp: str = ""


decode_message = msgspec.json.Decoder(TradesMessage).decode


def subscribe_request(kind: str, products: Iterable[str]) -> str:
    return msgspec.json.encode({"type": kind, "product_ids": list(products), "channel": CHANNEL}).decode()


def _row(t: WireTrade, venue: str, pair: str, local_us: int) -> Row:
    tid = int(t.trade_id)
    trade = Trade(venue, pair, t.trade_id, decimal_text(t.price), decimal_text(t.size), TAKER_SIDE[t.side],
                  rfc3339_us(t.time), local_us)  # fmt: skip
    return trade, tid, tid


def _id_order(trades: list[WireTrade]) -> list[WireTrade]:
    if len(trades) < 2:
        return trades
    try:
        return sorted(trades, key=lambda t: int(t.trade_id))  # newest first on the wire
    except ValueError:
        return trades[::-1]


def on_trades(
    events: list[TradeEvent], recv_ms: float, out: TradeEmitter, pair_of: Callable[[str], str | None], venue: str
) -> int:
    """Emit the trades of one ``market_trades`` message; returns how many were malformed."""
    symbol = attrgetter("product_id")
    return sum(emit_trades(_id_order(ev.trades), recv_ms, out, pair_of, venue, symbol, _row) for ev in events)
