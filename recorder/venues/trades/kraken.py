"""Kraken spot WebSocket v2 ``trade`` (trades-protocols.md §5).

* ``{"channel":"trade","type":"update"|"snapshot","data":[...]}``, 1..n trades per message.
* ``side`` is the taker's; ``price`` and ``qty`` are JSON **numbers** (decoded straight to the
  nearest float, the same value as the decimal text would give).
* ``trade_id`` is an int, sequential per book: a skipped id is a trade gap.
* ``snapshot: true`` on subscribe replays the last 50 trades (deduped; they can fill a gap after a
  reconnect); ``timestamp`` is RFC 3339 with µs.
* v1 trade frames carry no trade id: they are not parsed (the book Feed counts them as other).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from operator import attrgetter
from typing import Annotated

import msgspec

from recorder.model import Trade
from recorder.venues.trades.tape import Row, TradeEmitter, emit_trades, rfc3339_us

CHANNEL = "trade"
SIDES = ("buy", "sell")
Number = Annotated[float, msgspec.Meta(ge=0.0, lt=1e300)]


class WireTrade(msgspec.Struct):
    symbol: str
    side: str
    price: Number
    qty: Number
    trade_id: int
    timestamp: str
    ord_type: str = ""


decode_trades = msgspec.json.Decoder(list[WireTrade]).decode


def subscribe_request(method: str, symbols: Iterable[str], req_id: int) -> str:
    params: dict[str, object] = {"channel": CHANNEL, "symbol": list(symbols)}
    if method == "subscribe":
        params["snapshot"] = True  # the last 50 trades: after a reconnect they fill what was missed
    return msgspec.json.encode({"method": method, "params": params, "req_id": req_id}).decode()


def _row(t: WireTrade, venue: str, pair: str, local_us: int) -> Row:
    if t.side not in SIDES:
        raise ValueError(t.side)
    tid = t.trade_id
    return Trade(venue, pair, str(tid), t.price, t.qty, t.side, rfc3339_us(t.timestamp), local_us), tid, tid


def on_trades(
    trades: list[WireTrade], recv_ms: float, out: TradeEmitter, pair_of: Callable[[str], str | None], venue: str
) -> int:
    """Emit the trades of one ``trade`` message (in id order); returns how many were malformed."""
    if len(trades) > 1:
        trades = sorted(trades, key=attrgetter("trade_id"))
    return emit_trades(trades, recv_ms, out, pair_of, venue, attrgetter("symbol"), _row)
