"""Bybit v5 ``publicTrade.<symbol>`` on ``/v5/public/spot`` and ``/linear`` (trades-protocols.md §7).

* ``{"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":..,"data":[{T, s, S, v, p, i, ...}]}``:
  ``type`` is always ``snapshot`` (not a resync); 1..1024 trades per message, in match order.
  Spot and linear order their keys differently: decoded by name, never by position.
* ``S`` is the taker's side (``Buy``/``Sell``); ``T`` the fill time in ms (not the message ``ts``).
* ``i``: a UUID on linear, a numeric string that skips on spot: no id shows a lost trade, so
  Bybit trades are deduped on the id text and no trade gap can be counted.
* No trade snapshot: a disconnect loses trades, unseen.
"""

from __future__ import annotations

from collections.abc import Callable
from operator import attrgetter

import msgspec

from recorder.model import Trade
from recorder.venues.trades.tape import Row, TradeEmitter, decimal_text, emit_trades

TOPIC_PREFIX = "publicTrade."
# The frame's first bytes when ``topic`` leads (both markets send it first): the Feed's cheap test.
FRAME_PREFIX = b'{"topic":"publicTrade.'
TAKER_SIDE = {"Buy": "buy", "Sell": "sell"}


class WireTrade(msgspec.Struct):
    T: int
    s: str
    S: str
    v: str
    p: str
    i: str


class TradesMessage(msgspec.Struct):
    topic: str
    data: list[WireTrade]
    type: str = ""
    ts: int | None = None


decode_message = msgspec.json.Decoder(TradesMessage).decode
decode_trades = msgspec.json.Decoder(list[WireTrade]).decode


def topic_for(symbol: str) -> str:
    return f"{TOPIC_PREFIX}{symbol}"


def _row(t: WireTrade, venue: str, pair: str, local_us: int) -> Row:
    side = TAKER_SIDE[t.S]
    return Trade(venue, pair, t.i, decimal_text(t.p), decimal_text(t.v), side, t.T * 1000, local_us), None, None


def on_trades(
    trades: list[WireTrade], recv_ms: float, out: TradeEmitter, pair_of: Callable[[str], str | None], venue: str
) -> int:
    """Emit the trades of one ``publicTrade`` message; returns how many were malformed."""
    return emit_trades(trades, recv_ms, out, pair_of, venue, attrgetter("s"), _row)
