"""Shared machinery of the simulators for venues whose books start from a WebSocket snapshot
(Kraken, OKX): the market engine, one ordered outgoing queue per client, snapshot delivery at
window boundaries, and the verification and fault-injection endpoints.

Snapshots for new subscriptions are served at the next publication boundary of the symbol, when
the generator's book is exactly the last published state, so a snapshot and the updates after it
always join. Fault injection (``/sim/fault?symbol=S&kind=corrupt|drop``) damages only what goes on
the wire, never the simulator's own book: ``corrupt`` sends one wrong level in the next update
(with the checksum of the true book), ``drop`` silently loses the next update.
``/sim/fault?kind=disconnect`` closes every client connection; ``kind=pause&seconds=N`` stops all
market data and heartbeats for N seconds while still answering requests (pings), or not even
those with ``&mute=1`` (a hung venue whose TCP connection stays up).
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import random
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec
from aiohttp import WSMsgType, web

from recorder.sim.binance import make_spec
from recorder.sim.book import SCALE, InstrumentSpec, SymbolFeed, WindowDiff
from recorder.sim.wsconn import EngineVenue, WsConn, accept

if TYPE_CHECKING:
    from recorder.sim.server import SimOptions

TICK_MS = 10
SYMBOL_FAULTS = ("corrupt", "drop")  # damage the next update of one symbol
CONNECTION_FAULTS = ("disconnect", "pause")  # every client: drop the connection / go silent for `seconds`


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

    def __init__(self, ws: web.WebSocketResponse, opened: float, counters: dict[str, int]) -> None:
        super().__init__(ws, opened, counters)
        self.id = next(self._ids)
        self.subs: dict[str, Any] = {}  # venue-specific subscription key -> parameters


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
        self.faults: dict[str, deque[str]] = {}
        self.paused_until = 0.0
        self.mute = False  # while paused, leave requests (pings) unanswered too
        self.counters: dict[str, int] = dict.fromkeys(
            ("connections_total", "messages_sent", "updates_published", "snapshots_served", "subscribe_errors",
             "faults_injected", "closed_slow_consumer", "pings"),
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

    def update_id_of(self, feed: SymbolFeed, value: int) -> int | None:
        """The generator update id for a venue id as stored by the recorder (default: the same)."""
        return value

    def idle(self, now: float) -> None:
        """Called every engine cycle (e.g. heartbeats)."""

    venue_faults: tuple[str, ...] = ()  # venue-specific fault kinds, handled by venue_fault()

    def venue_fault(self, kind: str) -> None:
        """Inject a venue-specific fault (e.g. OKX's maintenance notice)."""

    def forget(self, conn: SimConn) -> None:
        """A client disconnected: drop it from the venue's subscription indexes."""

    # -- lifecycle -------------------------------------------------------------------------------

    def setup(self, app: web.Application) -> None:
        for path in self.ws_paths:
            app.router.add_get(path, self._ws)
        self.extra_routes(app)
        app.router.add_get("/sim/book", self._sim_book)
        app.router.add_get("/sim/stats", self._sim_stats)
        app.router.add_get("/sim/fault", self._sim_fault)
        app.router.add_post("/sim/fault", self._sim_fault)

    def open_conns(self) -> set[SimConn]:
        return self.conns

    def stats(self) -> dict[str, Any]:
        return {
            "venue": self.name,
            **self.counters,
            "connections_open": len(self.conns),
            "self_check_failures": sum(f.history.self_check_failures for f in self.feeds.values()),
            "symbols": {
                s: {"last_update_id": f.last_id, "last_published_id": f.history.latest_id()}
                for s, f in self.feeds.items()
            },
        }

    # -- engine ----------------------------------------------------------------------------------

    async def _run_engine(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            if now < self.paused_until:  # the venue went silent; it catches up (a burst) afterwards
                await asyncio.sleep(min(0.05, self.paused_until - now))
                continue
            tick = int((now - self._t0) / self.tick_s)
            for feed in self.feeds.values():
                if tick - feed.tick > 3000:  # stalled for > ~30 s: jump instead of replaying
                    feed.skip_to(tick - 100)
                feed.advance_to(tick, now, self._on_boundary)
            self.idle(now)
            next_t = self._t0 + (tick // self.fast_ticks + 1) * self.fast_ticks * self.tick_s
            await asyncio.sleep(max(0.0, next_t - loop.time()) + 0.0005)

    def _on_boundary(self, feed: SymbolFeed, cadence: int, diff: WindowDiff | None, tick: int) -> None:
        sym = feed.spec.symbol
        event_ms = self.event_ms(tick)
        fault = None
        if diff is not None:
            pending = self.faults.get(sym)
            if pending:
                fault = pending.popleft()
                self.counters["faults_injected"] += 1
            self.counters["updates_published"] += 1
        self.publish(feed, diff, event_ms, fault)
        owed = self._owed.pop(sym, None)
        for conn, key in owed or ():
            if not conn.closing and key in conn.subs:
                self.counters["snapshots_served"] += 1
                self.send_snapshot(conn, feed, key, event_ms)

    def owe_snapshot(self, conn: SimConn, symbol: str, key: Any) -> None:
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
        conn = SimConn(ws, asyncio.get_running_loop().time(), self.counters)
        self.conns.add(conn)
        self.counters["connections_total"] += 1
        writer = asyncio.create_task(conn.writer())
        self.on_open(conn)
        try:
            async for msg in ws:
                if conn.closing:
                    continue
                if self.mute and asyncio.get_running_loop().time() < self.paused_until:
                    continue  # a hung venue: the socket is open, nothing answers
                if msg.type is WSMsgType.TEXT:
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

    async def _sim_fault(self, request: web.Request) -> web.Response:
        q = request.query
        symbol, kind = q.get("symbol", ""), q.get("kind", "corrupt")
        if kind in self.venue_faults:
            self.counters["faults_injected"] += 1
            self.venue_fault(kind)
            return web.json_response({"kind": kind})
        if kind in CONNECTION_FAULTS:
            self.counters["faults_injected"] += 1
            if kind == "disconnect":
                for conn in list(self.conns):
                    conn.close()
                return web.json_response({"kind": kind, "closed": True})
            try:
                seconds = float(q.get("seconds", "5"))
            except ValueError:
                return web.json_response({"error": "seconds must be a number"}, status=400)
            self.paused_until = asyncio.get_running_loop().time() + seconds
            self.mute = q.get("mute", "0") == "1"
            return web.json_response({"kind": kind, "seconds": seconds, "mute": self.mute})
        feed = self.feed_for(symbol)
        if feed is None:
            return web.json_response({"error": "unknown symbol"}, status=400)
        if kind not in SYMBOL_FAULTS:
            kinds = ", ".join(SYMBOL_FAULTS + CONNECTION_FAULTS + self.venue_faults)
            return web.json_response({"error": f"kind must be one of {kinds}"}, status=400)
        self.faults.setdefault(feed.spec.symbol, deque()).append(kind)
        return web.json_response({"symbol": symbol, "kind": kind, "queued": True})


def json_text(obj: Any) -> str:
    return msgspec.json.encode(obj).decode()


Formatter = Callable[[int], str]
