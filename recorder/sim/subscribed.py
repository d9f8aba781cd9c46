"""Shared machinery of the simulators for venues whose books start from a WebSocket snapshot
(Kraken, OKX): the market engine, one ordered outgoing queue per client, snapshot delivery at
window boundaries, and the verification endpoint.

Snapshots for new subscriptions are served at the next publication boundary of the symbol, when
the generator's book is exactly the last published state, so a snapshot and the updates after it
always join. Faults (``recorder/sim/faults.py``, ``POST /sim/fault``) damage only what goes on the
wire, never the simulator's own book: ``corrupt`` sends one wrong level in the next update (with
the checksum of the true book), ``gap`` silently loses the next update; a quiet ``stall`` stops all
market data and heartbeats while requests (pings) are still answered, a plain one answers nothing
(a hung venue whose TCP connection stays up).
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import random
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import msgspec
from aiohttp import WSMsgType, web

from recorder.sim.binance_symbols import make_spec
from recorder.sim.book import SCALE, InstrumentSpec, WindowDiff
from recorder.sim.faults import Fault, FaultInjector
from recorder.sim.feed import BookHistory, SymbolFeed
from recorder.sim.wsconn import EngineVenue, WsConn, accept

if TYPE_CHECKING:
    from recorder.sim.options import SimOptions

TICK_MS = 10


def spec_for(symbol: str, base: str, quote: str, contracts: bool = False) -> InstrumentSpec:
    """Realistic parameters (borrowed from the Binance universe by base+quote), renamed."""
    spec = make_spec(base + ("USDT" if quote == "USD" else quote))
    spec = dataclasses.replace(spec, symbol=symbol, base=base, quote=quote)
    if contracts:  # derivatives trade whole contracts
        spec = dataclasses.replace(spec, lot=SCALE, typical_lots=20)
    return spec


def decimals_of(units: int) -> int:
    """Decimal places needed to print a fixed-point step exactly (tick 0.01 -> 2)."""
    d = 8
    while d > 0 and units % 10 == 0:
        units //= 10
        d -= 1
    return d


class SimConn(WsConn):
    """One WebSocket client and its subscriptions."""

    _ids = itertools.count(1)

    def __init__(
        self, ws: web.WebSocketResponse, opened: float, venue: SubscribedSimVenue, request: web.Request
    ) -> None:
        self.subs: dict[Any, Any] = {}  # venue-specific subscription key -> parameters
        self.venue = venue
        super().__init__(ws, opened, venue.counters, venue.faults, request)
        self.id = next(self._ids)

    def carries(self, key: str) -> bool:
        return self.venue.conn_carries(self, key)


class SubscribedSimVenue(EngineVenue):
    """Base of a snapshot-and-updates venue simulator; subclasses speak the wire protocol."""

    name = ""
    ws_paths: tuple[str, ...] = ("/",)

    def __init__(self, opts: SimOptions, specs: list[InstrumentSpec]) -> None:
        self.opts = opts
        seed = opts.seed if opts.seed is not None else random.SystemRandom().randrange(2**63)
        fast_ticks = max(1, round(opts.update_interval_ms / TICK_MS))
        self.fast_ticks = fast_ticks
        self.tick_s = opts.update_interval_ms / fast_ticks / 1000.0
        self.feeds: dict[str, SymbolFeed] = {
            s.symbol: SymbolFeed(s, f"{seed}:{s.symbol}", self.tick_s, (fast_ticks,), opts.history_s) for s in specs
        }
        self.conns: set[SimConn] = set()
        # Snapshots owed at the symbol's next boundary: symbol -> [(conn, key)].
        self._owed: dict[str, list[tuple[SimConn, Any]]] = {}
        self.faults = FaultInjector(self.name, opts.faults, symbols=self._fault_keys, venue_kinds=self.venue_kinds())
        self.counters: dict[str, int] = dict.fromkeys(
            ("connections_total", "messages_sent", "updates_published", "snapshots_served", "subscribe_errors",
             "closed_slow_consumer", "pings", "updates_withheld", "updates_corrupted"),
            0,
        )  # fmt: skip

    # -- subclass hooks --------------------------------------------------------------------------

    def on_text(self, conn: SimConn, text: str) -> None:
        raise NotImplementedError

    def on_open(self, conn: SimConn) -> None:
        """A client connected (e.g. send a status message)."""

    def send_snapshot(self, conn: SimConn, feed: SymbolFeed, key: Any, event_ms: int) -> None:
        raise NotImplementedError

    def publish(self, feed: SymbolFeed, diff: WindowDiff | None, event_ms: int, fault: str | None) -> None:
        """End of a window (the generator's book is exactly the published state)."""
        raise NotImplementedError

    def extra_routes(self, app: web.Application) -> None:
        """REST endpoints of the venue (instruments)."""

    def publish_trades(self, feed: SymbolFeed, event_ms: int) -> None:
        """End of a window: send the trades of its fills (``recorder/sim/trades.py``)."""

    def update_id_of(self, feed: SymbolFeed, value: int) -> int | None:
        """The generator update id for a venue id as stored by the recorder (default: the same)."""
        return value

    def idle(self, now: float) -> None:
        """Called every engine cycle (e.g. heartbeats)."""

    def venue_kinds(self) -> dict[str, Callable[[Fault], None]]:
        """Venue-specific fault kinds and their handlers (e.g. OKX's maintenance notice)."""
        return {}

    def conn_carries(self, conn: SimConn, symbol: str) -> bool:
        """Is ``conn`` subscribed to ``symbol`` (for symbol-scoped connection faults)?"""
        raise NotImplementedError

    def damage_applies(self, feed: SymbolFeed, diff: WindowDiff) -> bool:
        """Would losing or corrupting this update be visible to a client (someone subscribed, and
        the venue's integrity check covers what changed)? Else a gap/corrupt fault waits."""
        raise NotImplementedError

    def forget(self, conn: SimConn) -> None:
        """A client disconnected: drop it from the venue's subscription indexes."""

    # -- lifecycle -------------------------------------------------------------------------------

    def setup(self, app: web.Application) -> None:
        for path in self.ws_paths:
            app.router.add_get(path, self._ws)
        self.extra_routes(app)
        app.router.add_get("/sim/book", self._sim_book)
        app.router.add_get("/sim/stats", self._sim_stats)
        self.faults.setup(app)

    def open_conns(self) -> set[SimConn]:
        return self.conns

    def histories(self) -> Iterable[BookHistory]:
        return (f.history for f in self.feeds.values())

    def own_stats(self) -> dict[str, Any]:
        return {
            "symbols": {
                s: {"last_update_id": f.last_id, "last_published_id": f.history.latest_id()}
                for s, f in self.feeds.items()
            }
        }

    # -- engine ----------------------------------------------------------------------------------

    def step(self, tick: int, now: float) -> int:
        for feed in self.feeds.values():
            feed.catch_up(tick, now, self._on_boundary)
        self.idle(now)
        return (tick // self.fast_ticks + 1) * self.fast_ticks

    def _on_boundary(self, feed: SymbolFeed, cadence: int, diff: WindowDiff | None, tick: int) -> None:
        sym = feed.spec.symbol
        event_ms = self.event_ms(tick)
        fault = None
        if diff is not None:
            if self.damage_applies(feed, diff):
                if self.faults.take_gap(sym):
                    fault = "drop"
                    self.counters["updates_withheld"] += 1
                elif self.faults.take_corrupt(sym):
                    fault = "corrupt"
                    self.counters["updates_corrupted"] += 1
            self.counters["updates_published"] += 1
        self.publish(feed, diff, event_ms, fault)
        self.publish_trades(feed, event_ms)
        owed = self._owed.pop(sym, None)
        for conn, key in owed or ():
            if not conn.closing and key in conn.subs:
                self.counters["snapshots_served"] += 1
                self.send_snapshot(conn, feed, key, event_ms)

    def owe_snapshot(self, conn: SimConn, symbol: str, key: Any) -> None:
        hold = self.faults.take_hold(symbol)
        if hold > 0:  # a slow venue (gap fault with hold_s): the snapshot comes later
            asyncio.get_running_loop().call_later(hold, self._owe, conn, symbol, key)
            return
        self._owe(conn, symbol, key)

    def _owe(self, conn: SimConn, symbol: str, key: Any) -> None:
        self._owed.setdefault(symbol, []).append((conn, key))

    def fanout(self, conns: Any, payload: str) -> None:
        for conn in list(conns):
            if not conn.send(payload):
                self.counters["closed_slow_consumer"] += 1
                conn.close()

    # -- WebSocket -------------------------------------------------------------------------------

    async def _ws(self, request: web.Request) -> web.StreamResponse:
        ws = await accept(request, 1 << 20, {"error": "WebSocket upgrade required"})
        if not isinstance(ws, web.WebSocketResponse):
            return ws
        conn = SimConn(ws, asyncio.get_running_loop().time(), self, request)
        self.conns.add(conn)
        self.counters["connections_total"] += 1
        writer = asyncio.create_task(conn.writer())
        self.on_open(conn)
        try:
            async for msg in ws:
                if conn.closing:
                    continue
                if msg.type is WSMsgType.PING:
                    await conn.on_ping(msg.data)
                elif msg.type is WSMsgType.TEXT:
                    self.on_text(conn, msg.data)
                elif msg.type is WSMsgType.BINARY:
                    self.on_text(conn, "<binary>")
        finally:
            self.conns.discard(conn)
            self.forget(conn)
            conn.subs.clear()
            await conn.finish(writer)
        return ws

    # -- verification and faults (not the venue's API) -------------------------------------------

    def feed_for(self, symbol: str) -> SymbolFeed | None:
        return self.feeds.get(symbol)

    def _fault_keys(self, symbol: str) -> list[str]:
        feed = self.feed_for(symbol)
        return [feed.spec.symbol] if feed is not None else []

    async def _sim_book(self, request: web.Request) -> web.Response:
        q = request.query
        feed = self.feed_for(q.get("symbol", ""))
        if feed is None:
            return web.json_response({"error": "unknown symbol"}, status=400)
        try:
            limit = int(q.get("limit", "20"))
            update_id = self.update_id_of(feed, int(q["update_id"])) if "update_id" in q else feed.history.latest_id()
        except ValueError:
            return web.json_response({"error": "limit and update_id must be integers"}, status=400)
        book = feed.history.state_at(update_id) if update_id is not None else None
        if book is None:
            return web.json_response({"error": "unknown or expired update_id"}, status=404)
        bids, asks = book.top(max(1, limit))
        fmt = self.level_text
        return web.json_response(
            {
                "update_id": update_id,
                "bids": [[fmt(feed, p, True), fmt(feed, x, False)] for p, x in bids],
                "asks": [[fmt(feed, p, True), fmt(feed, x, False)] for p, x in asks],
            }
        )

    def level_text(self, feed: SymbolFeed, units: int, is_price: bool) -> str:
        raise NotImplementedError


def json_text(obj: Any) -> str:
    return msgspec.json.encode(obj).decode()


Formatter = Callable[[int], str]
