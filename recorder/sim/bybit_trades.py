"""Bybit ``publicTrade.<symbol>`` for the Bybit simulator, spot and linear (trades-protocols.md §7).

Messages are ``type: "snapshot"`` (always, it is no resync) with the trades of one window in match
order; ``S`` is the taker's side, ``T`` the fill time. Linear trade ids are UUIDs and spot ids
numbers that skip, as on the real venue, so no client can tell a lost trade from the ids; spot and
linear order their keys differently. Subscribing sends nothing but the acknowledgement.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import msgspec
from aiohttp import WSCloseCode, web

from recorder.sim.book import fmt_units
from recorder.sim.faults import FaultInjector
from recorder.sim.feed import SymbolFeed
from recorder.sim.subscribed import decimals_of
from recorder.sim.trades import SimTrade, SymbolTrades, record_route
from recorder.sim.wsconn import WsConn

PREFIX = "publicTrade."
SPOT_ID_BASE = 2_290_000_000_000_000_000
_UUID_NS = uuid.UUID("5b2a3f1e-6f1d-4c55-9a0e-8d1f2a3b4c5d")


class BybitTrades:
    """The trade streams of every (market, symbol) of the simulator."""

    def __init__(self, feeds: dict[tuple[str, str], SymbolFeed], faults: FaultInjector, seed: object) -> None:
        self.faults = faults
        self.tapes = {
            key: SymbolTrades(f, f"{key[0]}:{key[1]}", f"{seed}:{key[0]}:{key[1]}") for key, f in feeds.items()
        }
        self.subs: dict[tuple[str, str], set[WsConn]] = {}
        self._last_px: dict[tuple[str, str], int] = {}

    def known(self, category: str, topic: str) -> bool:
        return topic.startswith(PREFIX) and (category, topic[len(PREFIX) :]) in self.tapes

    def subscribe(self, category: str, topic: str, conn: WsConn) -> None:
        self.subs.setdefault((category, topic[len(PREFIX) :]), set()).add(conn)

    def unsubscribe(self, category: str, topic: str, conn: WsConn) -> None:
        self.subs.get((category, topic[len(PREFIX) :]), set()).discard(conn)

    def publish(self, category: str, feed: SymbolFeed, ts: int, on_slow: Callable[[WsConn], None]) -> None:
        key = (category, feed.spec.symbol)
        conns = self.subs.get(key)
        trades = [t for g in self.tapes[key].take(ts, self.faults, bool(conns)) for t in g]
        if not trades or not conns:
            return
        data = [self._trade(category, feed, t) for t in trades]
        topic = PREFIX + feed.spec.symbol
        msg = (
            {"topic": topic, "ts": ts, "type": "snapshot", "data": data}
            if category == "spot"
            else {"topic": topic, "type": "snapshot", "ts": ts, "data": data}
        )
        payload = msgspec.json.encode(msg).decode()
        for conn in list(conns):
            if not conn.send(payload):
                on_slow(conn)
                conn.close(WSCloseCode.POLICY_VIOLATION, b"slow consumer", flush=False)

    def _trade(self, category: str, feed: SymbolFeed, t: SimTrade) -> dict[str, Any]:
        sym = feed.spec.symbol
        px, qty = _text(t.price, feed.spec.tick), _text(t.qty, feed.spec.lot)
        side = "Buy" if t.taker_buy else "Sell"
        tid = trade_id(category, sym, t.trade_id)
        if category == "spot":
            return {"i": tid, "T": t.time_ms, "p": px, "v": qty, "S": side, "seq": feed.last_id, "s": sym,
                    "BT": False, "RPI": False}  # fmt: skip
        last = self._last_px.get((category, sym), t.price)
        self._last_px[(category, sym)] = t.price
        tick = "PlusTick" if t.price > last else "MinusTick" if t.price < last else "ZeroPlusTick"
        return {"T": t.time_ms, "s": sym, "S": side, "v": qty, "p": px, "L": tick, "i": tid, "BT": False,
                "RPI": False, "seq": feed.last_id}  # fmt: skip

    def route(self, app: web.Application) -> None:
        """``GET /sim/trades?symbol=linear:BTCUSDT`` (recorder/sim/trades.py)."""

        def lookup(symbol: str) -> SymbolTrades | None:
            cat, _, sym = symbol.rpartition(":")
            return self.tapes.get((cat.lower() or "spot", sym.upper()))

        def row(tape: SymbolTrades, t: SimTrade) -> dict[str, Any]:
            cat, _, sym = tape.key.partition(":")
            spec = tape.feed.spec
            return {"id": trade_id(cat, sym, t.trade_id), "price": _text(t.price, spec.tick),
                    "qty": _text(t.qty, spec.lot), "side": "buy" if t.taker_buy else "sell",
                    "time_us": t.time_ms * 1000}  # fmt: skip

        record_route(app, lookup, row)


def trade_id(category: str, symbol: str, n: int) -> str:
    """Linear: a UUID; spot: a number that rises by 2 or 4 (never contiguous)."""
    if category == "spot":
        return str(SPOT_ID_BASE + 3 * n + n % 2)
    return str(uuid.uuid5(_UUID_NS, f"{category}:{symbol}:{n}"))


def _text(units: int, step: int) -> str:
    return fmt_units(units, decimals_of(step))
