"""OKX v5 ``trades`` on ``/ws/v5/public`` (trades-protocols.md §6).

* ``{"arg":{"channel":"trades","instId":..},"data":[{instId, tradeId, px, sz, side, ts, count, ...}]}``,
  one (aggregated) trade per push; all strings but ``seqId``.
* One push per taker order, price and source: ``count`` fills, ``tradeId`` the last of them, so
  it covers ids ``tradeId - count + 1 .. tradeId`` and the gap rule is ``tradeId - count ==
  previous tradeId``. Captures before the aggregation (2022) have no ``count``: 1.
* ``side`` is the taker's; ``ts`` the fill time in ms; ``sz`` is base currency on SPOT and
  **contracts** on SWAP/FUTURES (as in the books). ``seqId`` is not a per-trade counter.
* OKX sends no trade snapshot: trades during a disconnect are lost (and counted as a gap).
"""

from __future__ import annotations

from collections.abc import Callable
from operator import attrgetter

import msgspec

from recorder.model import Trade
from recorder.venues.trades.tape import Row, TradeEmitter, decimal_text, emit_trades

CHANNEL = "trades"
SIDES = ("buy", "sell")


class WireTrade(msgspec.Struct):
    instId: str
    tradeId: str
    px: str
    sz: str
    side: str
    ts: str
    count: str = "1"


decode_trades = msgspec.json.Decoder(list[WireTrade]).decode


def subscribe_arg(inst_id: str) -> dict[str, str]:
    return {"channel": CHANNEL, "instId": inst_id}


def _row(t: WireTrade, venue: str, pair: str, local_us: int) -> Row:
    last = int(t.tradeId)
    count = int(t.count)
    if t.side not in SIDES or count < 1:
        raise ValueError(t.side)
    trade = Trade(venue, pair, t.tradeId, decimal_text(t.px), decimal_text(t.sz), t.side, int(t.ts) * 1000, local_us)
    return trade, last - count + 1, last


def on_trades(
    trades: list[WireTrade], recv_ms: float, out: TradeEmitter, pair_of: Callable[[str], str | None], venue: str
) -> int:
    """Emit the trades of one ``trades`` push; returns how many were malformed."""
    return emit_trades(trades, recv_ms, out, pair_of, venue, attrgetter("instId"), _row)
