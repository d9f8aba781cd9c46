"""Kraken spot simulator: WebSocket v2 ``book`` channel (+ ``ping``, heartbeats) and REST
``/0/public/AssetPairs`` on one aiohttp app.

Wire format per venue-protocols.md §4: prices and quantities are JSON *numbers* printed with the
instrument's fixed precision; every snapshot and update carries the CRC32 checksum of the top 10
levels. Each subscription depth has its own view (the top ``depth`` levels): an update carries the
levels that changed inside the view and those that re-entered it, never a delete for a level that
merely fell out of scope, exactly like Kraken, so only a client that truncates to the subscribed
depth keeps the right book. ``timestamp`` (µs) names a published state: ``/sim/book?update_id=``
takes it as the recorder stores it.
"""

from __future__ import annotations

import heapq
import zlib
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web

from recorder.sim.book import DECIMALS, Book, InstrumentSpec, Level, WindowDiff, fmt_units
from recorder.sim.feed import SymbolFeed
from recorder.sim.subscribed import SimConn, SubscribedSimVenue, decimals_of, json_text, spec_for
from recorder.sim.trades import SimTrade, SymbolTrades, flatten, record_route

if TYPE_CHECKING:
    from recorder.sim.options import SimOptions

DEPTHS = (10, 25, 100, 500, 1000)
QTY_DECIMALS = 8
HEARTBEAT_S = 1.0
TRADE_SNAPSHOT = 50  # trades a ``snapshot: true`` trade subscription replays (trades-protocols.md §5)
DEFAULT_SYMBOLS = (
    "BTC/USD", "ETH/USD", "SOL/USD", "XRP/USD", "ADA/USD", "DOGE/USD", "LTC/USD", "DOT/USD",
    "ETH/BTC", "BTC/EUR", "ETH/EUR", "BTC/USDT",
)  # fmt: skip
_V1_ASSETS = {"BTC": "XBT", "DOGE": "XDG"}

View = tuple[dict[int, int], dict[int, int]]  # (bids, asks): price units -> qty units


def _digits(units: int, decimals: int) -> str:
    """Kraken's checksum form of a fixed-point value printed with ``decimals``: the digits without
    the point and without leading zeros (0.05000 -> "5000")."""
    digits = str(units // 10 ** (DECIMALS - decimals))
    return "" if digits == "0" else digits


def _iso_us(ts_us: int) -> str:
    return datetime.fromtimestamp(ts_us // 1_000_000, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{ts_us % 1_000_000:06d}Z"


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class KrakenVenue(SubscribedSimVenue):
    name = "kraken"
    ws_paths = ("/", "/v2")

    def __init__(self, opts: SimOptions) -> None:
        symbols = [s.upper() for s in opts.symbols] if opts.symbols else list(DEFAULT_SYMBOLS)
        specs: list[InstrumentSpec] = []
        for s in dict.fromkeys(symbols):
            base, _, quote = s.partition("/")
            specs.append(spec_for(s, base, quote or "USD"))
        super().__init__(opts, specs)
        self.price_dec = {s.symbol: decimals_of(s.tick) for s in specs}
        # (symbol, depth) -> the view every subscriber at that depth holds, and who they are.
        self._views: dict[tuple[str, int], View] = {}
        self._subs: dict[tuple[str, int], set[SimConn]] = {}
        # Published timestamps (µs) -> generator update id, for /sim/book.
        self._ts_ids: dict[str, dict[int, int]] = {s: {} for s in self.feeds}
        self._last_heartbeat = 0.0
        self.trades = {s: SymbolTrades(f, s, f"{opts.seed}:{s}") for s, f in self.feeds.items()}
        self._trade_subs: dict[str, set[SimConn]] = {}

    # -- formatting ------------------------------------------------------------------------------

    def level_text(self, feed: SymbolFeed, units: int, is_price: bool) -> str:
        return fmt_units(units, self.price_dec[feed.spec.symbol] if is_price else QTY_DECIMALS)

    def _levels_json(self, feed: SymbolFeed, levels: list[Level]) -> str:
        dec = self.price_dec[feed.spec.symbol]
        return ",".join(
            f'{{"price":{fmt_units(p, dec)},"qty":{fmt_units(q, QTY_DECIMALS)}}}' for p, q in levels
        )  # numbers, not strings: Kraken v2 prints them with the instrument's precision

    def _checksum(self, feed: SymbolFeed, view: View) -> int:
        """Computed from the integers, not from wire text: an independent check of the client's."""
        dec = self.price_dec[feed.spec.symbol]
        bids, asks = view

        def part(p: int, q: int) -> str:
            return _digits(p, dec) + _digits(q, QTY_DECIMALS)

        text = "".join(part(p, asks[p]) for p in heapq.nsmallest(10, asks))
        text += "".join(part(p, bids[p]) for p in heapq.nlargest(10, bids))
        return zlib.crc32(text.encode())

    def _message(self, kind: str, feed: SymbolFeed, bids: list[Level], asks: list[Level], crc: int, ts_us: int) -> str:
        return (
            f'{{"channel":"book","type":"{kind}","data":[{{"symbol":"{feed.spec.symbol}",'
            f'"bids":[{self._levels_json(feed, bids)}],"asks":[{self._levels_json(feed, asks)}],'
            f'"checksum":{crc},"timestamp":"{_iso_us(ts_us)}"}}]}}'
        )

    def _remember(self, feed: SymbolFeed, ts_us: int, update_id: int) -> None:
        ids = self._ts_ids[feed.spec.symbol]
        ids[ts_us] = update_id
        # Keep as long as the book history (one entry per published window).
        limit = int(self.opts.history_s * 1000 / max(1, self.opts.update_interval_ms)) + 16
        while len(ids) > limit:
            del ids[next(iter(ids))]

    def update_id_of(self, feed: SymbolFeed, value: int) -> int | None:
        return self._ts_ids[feed.spec.symbol].get(value)

    # -- publication -----------------------------------------------------------------------------

    @staticmethod
    def _top_view(book: Book, depth: int) -> View:
        bids, asks = book.top(depth)
        return dict(bids), dict(asks)

    def publish(self, feed: SymbolFeed, diff: WindowDiff | None, event_ms: int, fault: str | None) -> None:
        if diff is None:
            return
        sym = feed.spec.symbol
        ts_us = event_ms * 1000
        self._remember(feed, ts_us, diff.last_id)
        for (s, depth), conns in self._subs.items():
            if s != sym or not conns:
                continue
            old = self._views[(s, depth)]
            new = self._top_view(feed.book, depth)
            sides: list[list[Level]] = []
            for o, n, desc in ((old[0], new[0], True), (old[1], new[1], False)):
                changed = [(p, q) for p, q in n.items() if o.get(p) != q]
                # Gone from the view *and* from the book: a real delete. Merely pushed out: nothing.
                book_side = feed.book.bids if desc else feed.book.asks
                changed += [(p, 0) for p in o if p not in n and p not in book_side]
                changed.sort(reverse=desc)
                sides.append(changed)
            self._views[(s, depth)] = new
            bids, asks = sides
            if not bids and not asks:
                continue
            if fault == "drop":
                continue
            if fault == "corrupt" and new[0]:
                best = max(new[0])
                bids = [(p, q) for p, q in bids if p != best] + [(best, new[0][best] + feed.spec.lot)]
                bids.sort(reverse=True)
            self.fanout(conns, self._message("update", feed, bids, asks, self._checksum(feed, new), ts_us))

    def publish_trades(self, feed: SymbolFeed, event_ms: int) -> None:
        sym = feed.spec.symbol
        conns = self._trade_subs.get(sym)
        groups = self.trades[sym].take(event_ms, self.faults, bool(conns))
        if groups and conns:
            self.fanout(conns, self._trade_message("update", sym, flatten(groups)))

    def _trade_message(self, kind: str, sym: str, trades: list[SimTrade]) -> str:
        dec = self.price_dec[sym]
        items = ",".join(
            f'{{"symbol":"{sym}","side":"{"buy" if t.taker_buy else "sell"}","price":{fmt_units(t.price, dec)},'
            f'"qty":{fmt_units(t.qty, QTY_DECIMALS)},"ord_type":"{"market" if t.fill % 3 else "limit"}",'
            f'"trade_id":{t.trade_id},"timestamp":"{_iso_us(t.time_ms * 1000)}"}}'
            for t in trades
        )  # numbers, as Kraken prints them (qty with its 8 decimals)
        return f'{{"channel":"trade","type":"{kind}","data":[{items}]}}'

    def _trade_row(self, tape: SymbolTrades, t: SimTrade) -> dict[str, Any]:
        return {"id": str(t.trade_id), "price": fmt_units(t.price, self.price_dec[tape.key]),
                "qty": fmt_units(t.qty, QTY_DECIMALS), "side": "buy" if t.taker_buy else "sell",
                "time_us": t.time_ms * 1000}  # fmt: skip

    def send_snapshot(self, conn: SimConn, feed: SymbolFeed, key: Any, event_ms: int) -> None:
        depth = conn.subs[key]
        sym = feed.spec.symbol
        view = self._views.get((sym, depth))
        if view is None:
            view = self._views[(sym, depth)] = self._top_view(feed.book, depth)
        ts_us = event_ms * 1000
        self._remember(feed, ts_us, feed.last_id)
        bids = sorted(view[0].items(), reverse=True)
        asks = sorted(view[1].items())
        conn.send(self._message("snapshot", feed, bids, asks, self._checksum(feed, view), ts_us))
        self._subs.setdefault((sym, depth), set()).add(conn)

    def conn_carries(self, conn: SimConn, symbol: str) -> bool:
        return symbol in conn.subs

    def damage_applies(self, feed: SymbolFeed, diff: WindowDiff) -> bool:
        """Kraken has no sequence numbers: a lost or wrong update shows only through the checksum of
        the top 10, so the fault waits for an update that changes the top 10."""
        sym = feed.spec.symbol
        views = [view for key, view in self._views.items() if key[0] == sym and self._subs.get(key)]
        if not views:
            return False
        old_bids, old_asks = views[0]
        bids, asks = feed.book.top(10)
        return (heapq.nlargest(10, old_bids.items()), heapq.nsmallest(10, old_asks.items())) != (
            [tuple(lv) for lv in bids],
            [tuple(lv) for lv in asks],
        )

    def idle(self, now: float) -> None:
        if now - self._last_heartbeat >= HEARTBEAT_S:
            self._last_heartbeat = now
            self.fanout([c for c in self.conns if c.subs], '{"channel":"heartbeat"}')

    # -- requests --------------------------------------------------------------------------------

    def on_open(self, conn: SimConn) -> None:
        conn.send(
            json_text(
                {
                    "channel": "status",
                    "type": "update",
                    "data": [{"version": "2.0.0", "system": "online", "api_version": "v2", "connection_id": conn.id}],
                }
            )
        )

    def _reply(self, conn: SimConn, method: str, req_id: Any, result: Any = None, error: str | None = None) -> None:
        msg: dict[str, Any] = {"method": method}
        if error is None:
            if result is not None:
                msg["result"] = result
            msg["success"] = True
        else:
            msg["error"] = error
            msg["success"] = False
        msg["time_in"] = msg["time_out"] = _now_iso()
        if req_id is not None:
            msg["req_id"] = req_id
        conn.send(json_text(msg))

    def on_text(self, conn: SimConn, text: str) -> None:
        import json

        try:
            req = json.loads(text)
        except ValueError:
            req = None
        if not isinstance(req, dict) or not isinstance(req.get("method"), str):
            conn.send(json_text({"error": "Malformed request", "success": False, "time_in": _now_iso()}))
            return
        method, req_id = req["method"], req.get("req_id")
        if method == "ping":
            self.counters["pings"] += 1
            conn.send(json_text({"method": "pong", "req_id": req_id, "time_in": _now_iso(), "time_out": _now_iso()}))
            return
        if method not in ("subscribe", "unsubscribe"):
            self._reply(conn, method, req_id, error=f"Method not supported: {method}")
            return
        params = req.get("params")
        if not isinstance(params, dict):
            self._reply(conn, method, req_id, error="Missing params")
            return
        channel = params.get("channel")
        if channel == "heartbeat":
            self._reply(conn, method, req_id, result={"channel": "heartbeat"})
            return
        if channel == "trade":
            self._trade_request(conn, method, req_id, params)
            return
        if channel != "book":
            self._reply(conn, method, req_id, error=f"Channel not supported: {channel}")
            return
        depth = params.get("depth", 10)
        symbols = params.get("symbol")
        if depth not in DEPTHS:
            self._reply(conn, method, req_id, error=f"Invalid depth: {depth}")
            return
        if not isinstance(symbols, list) or not symbols or not all(isinstance(s, str) for s in symbols):
            self._reply(conn, method, req_id, error="Missing or invalid symbol list")
            return
        for sym in symbols:
            if sym not in self.feeds:
                self.counters["subscribe_errors"] += 1
                self._reply(conn, method, req_id, error=f"Currency pair not supported {sym}")
                continue
            result = {"channel": "book", "depth": depth, "symbol": sym}
            if method == "subscribe":
                if sym in conn.subs:
                    self._reply(conn, method, req_id, error="Already subscribed")
                    continue
                conn.subs[sym] = depth
                self._reply(conn, method, req_id, result={**result, "snapshot": bool(params.get("snapshot", True))})
                self.owe_snapshot(conn, sym, sym)  # served at the symbol's next boundary
            else:
                if sym not in conn.subs:
                    self._reply(conn, method, req_id, error="Subscription Not Found")
                    continue
                d = conn.subs.pop(sym)
                self._drop_sub(conn, sym, d)
                self._reply(conn, method, req_id, result=result)

    def _trade_request(self, conn: SimConn, method: str, req_id: Any, params: dict[str, Any]) -> None:
        symbols = params.get("symbol")
        if not isinstance(symbols, list) or not symbols or not all(isinstance(s, str) for s in symbols):
            self._reply(conn, method, req_id, error="Missing or invalid symbol list")
            return
        snapshot = bool(params.get("snapshot", False))
        for sym in symbols:
            if sym not in self.feeds:
                self.counters["subscribe_errors"] += 1
                self._reply(conn, method, req_id, error=f"Currency pair not supported {sym}")
                continue
            subs = self._trade_subs.setdefault(sym, set())
            if method == "unsubscribe":
                subs.discard(conn)
                self._reply(conn, method, req_id, result={"channel": "trade", "symbol": sym})
                continue
            if conn in subs:
                self._reply(conn, method, req_id, error="Already subscribed")
                continue
            self._reply(conn, method, req_id, result={"channel": "trade", "snapshot": snapshot, "symbol": sym})
            if snapshot:
                conn.send(self._trade_message("snapshot", sym, self.trades[sym].replayed(TRADE_SNAPSHOT)))
            subs.add(conn)

    def _drop_sub(self, conn: SimConn, sym: str, depth: int) -> None:
        subs = self._subs.get((sym, depth))
        if subs is not None:
            subs.discard(conn)
            if not subs:
                del self._subs[(sym, depth)]
                self._views.pop((sym, depth), None)

    def forget(self, conn: SimConn) -> None:
        for sym, depth in list(conn.subs.items()):
            self._drop_sub(conn, sym, depth)
        for subs in self._trade_subs.values():
            subs.discard(conn)

    # -- REST ------------------------------------------------------------------------------------

    def extra_routes(self, app: web.Application) -> None:
        app.router.add_get("/0/public/AssetPairs", self._asset_pairs)
        record_route(app, lambda s: self.trades.get(s.replace("-", "/").upper()), self._trade_row)

    async def _asset_pairs(self, request: web.Request) -> web.Response:
        result = {}
        for sym, feed in self.feeds.items():
            spec = feed.spec
            base, quote = (_V1_ASSETS.get(a, a) for a in (spec.base, spec.quote))
            result[base + quote] = {
                "altname": base + quote, "wsname": f"{base}/{quote}", "base": base, "quote": quote,
                "pair_decimals": self.price_dec[sym], "lot_decimals": QTY_DECIMALS,
                "ordermin": fmt_units(spec.lot), "status": "online",
            }  # fmt: skip
        return web.json_response({"error": [], "result": result})

    def feed_for(self, symbol: str) -> SymbolFeed | None:
        """``BTC/USD`` or the normalized ``BTC-USD``."""
        return self.feeds.get(symbol.replace("-", "/").upper())


def replay_routes(app: web.Application, symbols: list[str]) -> None:
    """For a replayed recording (``recorder/sim/replay.py``): the AssetPairs list ``check_pairs`` reads."""

    async def asset_pairs(request: web.Request) -> web.Response:
        result = {}
        for sym in symbols:
            base, quote = (_V1_ASSETS.get(a, a) for a in sym.split("/", 1))
            result[base + quote] = {"altname": base + quote, "wsname": f"{base}/{quote}", "status": "online"}
        return web.json_response({"error": [], "result": result})

    app.router.add_get("/0/public/AssetPairs", asset_pairs)


def create_venue(opts: SimOptions) -> KrakenVenue:
    return KrakenVenue(opts)
