"""Public trades for the simulators: the generator's fills (``recorder/sim/book.py``), numbered and
remembered per symbol, with the trade faults applied, ready for a venue to print in its own format.

A fill is one taker order against one resting level, at the touch of the book the fill came from
(the event that consumes the level is published in the same window). Each fill is one or more
matches (maker orders at that level), each a trade with the next id of the symbol, contiguous like
the real venues'. A venue that aggregates (OKX ``trades``) prints one message per fill, with
``count`` matches and the last id.

Faults (``recorder/sim/faults.py``): ``trade_gap`` withholds whole fills' trades from every client
(their ids are used up: a client sees the ids skip), ``trade_silence`` withholds every trade of the
symbol for a while although the subscription stands.

``GET /sim/trades?symbol=`` (every simulator, one shape; ``trades_route``) is the truth a test
compares a capture with: ``{"symbol": S, "trades": [row, ...]}``, oldest first, a row per trade
the venue made (Binance: made while a client listened to the symbol's trades)::

    {"id": "12345",        # the venue's trade id, as text
     "price": "64000.10",  # the venue's decimal text
     "qty": "0.0150",
     "side": "buy",        # the taker's side
     "time_us": 1764...,   # the trade time, µs
     "fill": 17,           # trades of one fill share it (OKX prints a fill as one trade)
     "sent": true,         # sent to the subscribers
     "withheld": ""}       # why it was not: "gap" (trade_gap), "silence" (trade_silence), "" (sent,
                           # or no subscriber then)

An unknown symbol is HTTP 400 ``{"error": "unknown symbol"}``.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

from recorder.sim.feed import SymbolFeed

if TYPE_CHECKING:
    from recorder.sim.faults import FaultInjector

RECORD_LIMIT = 200_000  # trades remembered per symbol for /sim/trades
HISTORY = 100  # recent trades kept for venues that replay them on subscribe (Coinbase: 100)


@dataclass(frozen=True, slots=True)
class Fill:
    """One taker order's fill against one resting level (``BookGenerator.on_fill``)."""

    taker_buy: bool
    price: int
    qty: int


@dataclass(slots=True)
class SimTrade:
    trade_id: int  # sequential per symbol; the venue prints it its own way
    fill: int  # trades of one fill share it (OKX aggregates them)
    taker_buy: bool
    price: int  # fixed-point units (recorder/sim/book.py)
    qty: int
    time_ms: int
    sent: bool = False
    withheld: str = ""  # "", "gap", "silence": why a trade never went out


class SymbolTrades:
    """One symbol's trade tape: ids, recent history, the record of what was sent."""

    def __init__(self, feed: SymbolFeed, key: str, seed: str, first_id: int | None = None) -> None:
        self.feed = feed
        self.key = key  # the fault key of the symbol
        self.rng = random.Random(f"{seed}:trades")
        self.next_id = first_id if first_id is not None else self.rng.randrange(100_000_000, 1_000_000_000)
        self._fills = 0
        self.recent: deque[SimTrade] = deque(maxlen=HISTORY)
        self.record: deque[SimTrade] = deque(maxlen=RECORD_LIMIT)
        self.fills: list[Fill] = []
        feed.gen.on_fill = self._on_fill

    def _on_fill(self, resting_bid: bool, price: int, qty: int) -> None:
        self.fills.append(Fill(not resting_bid, price, qty))

    def take(self, event_ms: int, faults: FaultInjector, subscribed: bool) -> list[list[SimTrade]]:
        """The fills since the last call, as trades grouped per fill, minus those withheld by a
        fault (faults wait for a subscriber, like the book faults)."""
        if faults.data_paused(self.key):
            return []  # a quiet stall of the market: its fills wait, and go out after it
        fills, self.fills = self.fills, []
        out: list[list[SimTrade]] = []
        silent = subscribed and faults.trades_silent(self.key)
        for f in fills:
            self._fills += 1
            group = self._matches(f, event_ms)
            withheld = "silence" if silent else "gap" if subscribed and faults.take_trade_gap(self.key) else ""
            for t in group:
                t.withheld = withheld
                self.recent.append(t)
                self.record.append(t)
            if subscribed and not withheld:
                for t in group:
                    t.sent = True  # the venue sends every group returned to every subscriber
                out.append(group)
        return out

    def _matches(self, f: Fill, event_ms: int) -> list[SimTrade]:
        lot = self.feed.spec.lot
        lots = f.qty // lot
        n = min(lots, 1 + int(self.rng.random() < 0.3) + int(self.rng.random() < 0.1))
        cuts = sorted(self.rng.sample(range(1, lots), n - 1)) if n > 1 else []
        sizes = [(b - a) * lot for a, b in zip([0, *cuts], [*cuts, lots], strict=True)]
        group = []
        for qty in sizes:
            group.append(SimTrade(self.next_id, self._fills, f.taker_buy, f.price, qty, event_ms))
            self.next_id += 1
        return group

    def replayed(self, n: int) -> list[SimTrade]:
        """The last ``n`` trades, oldest first, marked sent (a venue replaying them on subscribe)."""
        trades = list(self.recent)[-n:]
        for t in trades:
            t.sent = True
        return trades


def flatten(groups: list[list[SimTrade]]) -> list[SimTrade]:
    return [t for g in groups for t in g]


def trades_route(app: web.Application, rows: Any) -> None:
    """``GET /sim/trades?symbol=``: ``rows(symbol)`` -> the rows (module docstring), or None for a
    symbol the venue does not know."""

    async def handler(request: web.Request) -> web.Response:
        symbol = request.query.get("symbol", "")
        found = rows(symbol)
        if found is None:
            return web.json_response({"error": "unknown symbol"}, status=400)
        return web.json_response({"symbol": symbol, "trades": found})

    app.router.add_get("/sim/trades", handler)


def record_route(app: web.Application, lookup: Any, row: Any) -> None:
    """``/sim/trades`` of a venue whose tapes are :class:`SymbolTrades` (``lookup(symbol)`` -> one,
    or None): each trade as ``row(tape, trade)`` prints it (id, price, qty, side, time_us), plus
    ``fill``, ``sent`` and ``withheld``."""

    def rows(symbol: str) -> list[dict[str, Any]] | None:
        tape = lookup(symbol)
        if tape is None:
            return None
        return [{**row(tape, t), "fill": t.fill, "sent": t.sent, "withheld": t.withheld} for t in list(tape.record)]

    trades_route(app, rows)
