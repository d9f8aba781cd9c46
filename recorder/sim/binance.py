"""Binance spot simulator: `<symbol>@depth[@100ms]` WebSocket streams + `/api/v3` REST on one aiohttp app.

Wire formats follow the public Binance spot docs (see shared/venue-protocols.md section 1): combined
streams wrap events as {"stream","data"}, raw streams do not; the REST snapshot's lastUpdateId is the
latest event id, which usually falls inside the next diff's [U, u], so only a client implementing the
documented sync procedure ends up with the right book.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import random
from collections import OrderedDict
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import msgspec
from aiohttp import web

from recorder.sim.binance_rest import BinanceRest, IpWeightBudget
from recorder.sim.binance_symbols import DEFAULT_SYMBOLS, make_spec, symbol_info, tail_symbols
from recorder.sim.binance_trades import TradeTape
from recorder.sim.binance_wire import levels, now_ms
from recorder.sim.binance_ws import BinanceConn, BinanceWs
from recorder.sim.book import Book, InstrumentSpec, WindowDiff, fmt_units
from recorder.sim.faults import FaultInjector
from recorder.sim.feed import BookHistory, SymbolFeed
from recorder.sim.trades import trades_route
from recorder.sim.wsconn import EngineVenue

if TYPE_CHECKING:
    from recorder.sim.options import SimOptions

TICK_MS = 10  # generator resolution: events are spread over time at this granularity
SLOW_INTERVAL_MS = 1000  # cadence of `<symbol>@depth` (and partial depth without @100ms)
DEPTH_LIMIT_MAX = 5000
PARTIAL_LEVELS = (5, 10, 20)
TAIL_EVENTS_PER_S = 3.0


class BinanceVenue(BinanceWs, BinanceRest, EngineVenue):
    """The Binance spot simulator: its market engine and routes (WebSocket: ``binance_ws.py``,
    REST: ``binance_rest.py``, instruments: ``binance_symbols.py``).

    USD-M futures (``binance_futures.py``) subclasses it: only the class attributes below and
    ``_diff_event`` / ``_depth_weight`` differ.
    """

    name = "binance"
    rest_prefix = "/api/v3"
    depth_limit_max = DEPTH_LIMIT_MAX
    # Wire update ids are generator ids times this: futures ids are not contiguous per symbol.
    id_scale = 1
    ws_prefixes: tuple[str, ...] = ("",)

    def __init__(self, opts: SimOptions) -> None:
        self.opts = opts
        seed = opts.seed if opts.seed is not None else random.SystemRandom().randrange(2**63)
        symbols = [s.upper() for s in opts.symbols] if opts.symbols else list(DEFAULT_SYMBOLS)
        fast_ticks = max(1, round(opts.update_interval_ms / TICK_MS))
        self.tick_s = opts.update_interval_ms / fast_ticks / 1000.0
        slow_ticks = max(fast_ticks, round(SLOW_INTERVAL_MS / 1000.0 / self.tick_s / fast_ticks) * fast_ticks)
        self.fast_ticks = fast_ticks
        retention = opts.history_s
        self.feeds: dict[str, SymbolFeed] = {
            s: SymbolFeed(self.make_spec(s), f"{seed}:{s}", self.tick_s, (fast_ticks, slow_ticks), retention)
            for s in dict.fromkeys(symbols)
        }
        # The generated tail: one diff per tail_update_ms and few events, so thousands stay cheap.
        tail_tick_s = max(opts.update_interval_ms, opts.tail_update_ms) / 1000.0
        tail_slow = max(1, round(SLOW_INTERVAL_MS / 1000.0 / tail_tick_s))
        for sym in tail_symbols(opts.instruments):
            if sym not in self.feeds:
                spec = dataclasses.replace(self.make_spec(sym), events_per_s=TAIL_EVENTS_PER_S)
                self.feeds[sym] = SymbolFeed(spec, f"{seed}:{sym}", tail_tick_s, (1, tail_slow), min(retention, 120.0))
                self.feeds[sym].gen.burst_p = 0.01 * tail_tick_s  # a burst every ~100 s, not ~10 s
        self._subs: dict[str, set[BinanceConn]] = {}
        self._conns: set[BinanceConn] = set()
        # ``<symbol>@trade``: every fill of the generated books (recorder/sim/binance_trades.py).
        self.tape = TradeTape(seed)
        for feed in self.feeds.values():
            feed.gen.on_fill = functools.partial(self._on_fill, feed)
        self._budgets: dict[str, IpWeightBudget] = {}
        self.faults = FaultInjector(
            self.name, opts.faults, symbols=lambda s: [s.upper()] if s.upper() in self.feeds else []
        )
        # Books served as REST snapshots, by (symbol, generator id): a snapshot's lastUpdateId
        # usually falls inside a publication window, which the window history cannot rebuild,
        # yet a client that samples right after syncing stores exactly that book.
        self._served: OrderedDict[tuple[str, int], bytes] = OrderedDict()
        self.counters: dict[str, int] = dict.fromkeys(
            (
                "connections_total", "messages_sent", "diffs_published", "rest_requests",
                "snapshots_served", "http_400", "http_429", "http_418", "closed_rate_limit",
                "closed_pong_timeout", "closed_max_age", "closed_slow_consumer", "diffs_withheld",
            ),
            0,
        )  # fmt: skip
        self.counters.update(self.tape.counters)
        self.tape.counters = self.counters  # one dict: /sim/stats shows the trade counters too

    def make_spec(self, symbol: str) -> InstrumentSpec:
        return make_spec(symbol)

    def listing_status(self, symbol: str) -> str:
        """A symbol's exchangeInfo status: ``TRADING`` unless ``SimOptions.symbol_status`` says otherwise."""
        return (self.opts.symbol_status or {}).get(symbol, "TRADING")

    def symbol_row(self, spec: InstrumentSpec) -> dict[str, Any]:
        """One ``exchangeInfo`` ``symbols`` row (spot shape)."""
        return {**symbol_info(spec), "status": self.listing_status(spec.symbol)}

    def exchange_info_extra(self) -> dict[str, Any]:
        """Top-level ``exchangeInfo`` fields only one market has."""
        return {}

    # -- lifecycle ----------------------------------------------------------------------------------

    def setup(self, app: web.Application) -> None:
        for base in self.ws_prefixes:
            app.router.add_get(f"{base}/stream", self._ws_combined)
            app.router.add_get(f"{base}/ws", self._ws_raw)
            app.router.add_get(f"{base}/ws/{{streams:.*}}", self._ws_raw)
        rest = self.rest_prefix
        app.router.add_get(f"{rest}/depth", self._rest_depth)
        app.router.add_get(f"{rest}/exchangeInfo", self._rest_exchange_info)
        app.router.add_get(f"{rest}/ping", self._rest_ping)
        app.router.add_get(f"{rest}/time", self._rest_time)
        app.router.add_get("/sim/book", self._sim_book)
        app.router.add_get("/sim/stats", self._sim_stats)
        trades_route(app, self._trade_rows)
        self.faults.setup(app)

    def open_conns(self) -> set[BinanceConn]:
        return self._conns

    def histories(self) -> Iterable[BookHistory]:
        return (f.history for f in self.feeds.values())

    def own_stats(self) -> dict[str, Any]:
        return {
            "symbols": {
                s: {
                    "last_update_id": f.last_id * self.id_scale,
                    "last_published_u": f.history.latest_id() * self.id_scale,
                }
                for s, f in self.feeds.items()
            }
        }

    # -- market engine ------------------------------------------------------------------------------

    def _tick_now(self, feed: SymbolFeed | None = None) -> int:
        tick_s = feed.tick_s if feed is not None else self.tick_s
        return int((asyncio.get_running_loop().time() - self._t0) / tick_s)

    def _advance(self, feed: SymbolFeed, tick: int) -> None:
        feed.catch_up(tick, asyncio.get_running_loop().time(), self._on_boundary)

    def step(self, tick: int, now: float) -> int:
        for feed in self.feeds.values():
            if feed.tick_s == self.tick_s:
                self._advance(feed, tick)
            else:
                ftick = self._tick_now(feed)
                if ftick > feed.tick:
                    self._advance(feed, ftick)
        return (tick // self.fast_ticks + 1) * self.fast_ticks

    def _on_fill(self, feed: SymbolFeed, bid_filled: bool, px: int, qty: int) -> None:
        """A fill of the book generator: the next trade of the symbol (sent at the window's end)."""
        sym = feed.spec.symbol
        t_ms = int(self._wall0_ms + feed.tick * feed.tick_s * 1000.0)
        self.tape.fill(sym, bid_filled, px, qty, t_ms, bool(self._subs.get(f"{sym.lower()}@trade")))

    def _publish_trades(self, sym: str, event_ms: int) -> None:
        name = f"{sym.lower()}@trade"
        for trade in self.tape.take_pending(sym):
            if self.faults.take_trade_gap(sym):
                self.tape.withheld(sym, trade)
                continue
            if self.faults.trades_silent(sym):
                self.tape.silenced(sym, trade)
                continue
            conns = self._subs.get(name)
            if not conns:
                self.tape.unheard(sym, trade)
                continue
            self._fanout(name, msgspec.json.encode(self._trade_event(sym, event_ms, trade)).decode(), conns)
            self.tape.sent(sym, trade)

    def _trade_event(self, sym: str, event_ms: int, trade: tuple[int, int, int, bool, int]) -> dict[str, Any]:
        tid, px, qty, buyer_maker, t_ms = trade
        return {
            "e": "trade", "E": event_ms, "s": sym, "t": tid, "p": fmt_units(px), "q": fmt_units(qty),
            "T": t_ms, "m": buyer_maker, "M": True,
        }  # fmt: skip

    def _on_boundary(self, feed: SymbolFeed, cadence: int, diff: WindowDiff | None, tick: int) -> None:
        """End of a publication window: send the diff (and partial-depth snapshots) to subscribers."""
        sym = feed.spec.symbol
        low = sym.lower()
        event_ms = int(self._wall0_ms + tick * feed.tick_s * 1000.0)  # the feed's own tick (tail feeds are slower)
        fast = cadence == 0
        if fast:
            self._publish_trades(sym, event_ms)
        if diff is not None and fast and self._subs.get(f"{low}@depth@100ms") and self.faults.take_gap(sym):
            self.counters["diffs_withheld"] += 1
            diff = None  # fault: the update ids of this window never reach any client
        corrupt = diff is not None and fast and self.faults.take_corrupt(sym)
        if diff is not None:
            if fast:
                self.counters["diffs_published"] += 1
            names = (f"{low}@depth@100ms",) if fast else (f"{low}@depth", f"{low}@depth@1000ms")
            payload: str | None = None
            for name in names:
                conns = self._subs.get(name)
                if not conns:
                    continue
                if payload is None:
                    ev = self._diff_event(sym, event_ms, diff)
                    if corrupt and fast:
                        ev["b"] = _corrupt_level(feed) + ev["b"]
                    payload = msgspec.json.encode(ev).decode()
                self._fanout(name, payload, conns)
        for n in PARTIAL_LEVELS:
            names = (f"{low}@depth{n}@100ms",) if fast else (f"{low}@depth{n}", f"{low}@depth{n}@1000ms")
            payload = None
            for name in names:
                conns = self._subs.get(name)
                if not conns:
                    continue
                if payload is None:
                    bids, asks = feed.book.top(n)
                    payload = msgspec.json.encode(
                        {"lastUpdateId": feed.last_id * self.id_scale, "bids": levels(bids), "asks": levels(asks)}
                    ).decode()
                self._fanout(name, payload, conns)

    def _diff_event(self, sym: str, event_ms: int, diff: WindowDiff) -> dict[str, Any]:
        return {
            "e": "depthUpdate", "E": event_ms, "s": sym, "U": diff.first_id,
            "u": diff.last_id, "b": levels(diff.bids), "a": levels(diff.asks),
        }  # fmt: skip

    # -- verification (not Binance) -----------------------------------------------------------------

    def _trade_rows(self, symbol: str) -> list[dict[str, Any]] | None:
        """``/sim/trades``' rows (``recorder/sim/trades.py``): each trade made while a client
        listened, one fill each (Binance prints every fill as one trade)."""
        sym = symbol.upper()
        if sym not in self.feeds:
            return None
        s = self.tape.symbols.get(sym)
        return [
            {"id": str(tid), "price": fmt_units(px), "qty": fmt_units(q), "side": "sell" if m else "buy",
             "time_us": t_ms * 1000, "fill": tid, "sent": sent, "withheld": why}
            for (tid, px, q, m, t_ms), sent, why in (s.record if s else ())
        ]  # fmt: skip

    async def _sim_book(self, request: web.Request) -> web.Response:
        q = request.query
        feed = self.feeds.get(q.get("symbol", "").upper())
        if feed is None:
            return web.json_response({"error": "unknown symbol"}, status=400)
        try:
            limit = int(q.get("limit", "20"))
            update_id = int(q["update_id"]) if "update_id" in q else feed.history.latest_id() * self.id_scale
        except ValueError:
            return web.json_response({"error": "limit and update_id must be integers"}, status=400)
        if not 1 <= limit <= DEPTH_LIMIT_MAX:
            return web.json_response({"error": f"limit must be 1..{DEPTH_LIMIT_MAX}"}, status=400)
        gen_id, rest = divmod(update_id, self.id_scale)
        book = feed.history.state_at(gen_id) if rest == 0 else None
        if book is None and rest == 0 and (feed.spec.symbol, gen_id) in self._served:
            book = Book.decode(self._served[(feed.spec.symbol, gen_id)])
        if book is None:
            return web.json_response({"error": "unknown or expired update_id"}, status=404)
        bids, asks = book.top(limit)
        return web.json_response({"lastUpdateId": update_id, "bids": levels(bids), "asks": levels(asks)})


def _corrupt_level(feed: SymbolFeed) -> list[list[str]]:
    """A bid at twice the best ask. Binance has no checksum, so the only corruption a client
    can prove is a crossed book; this one stays crossed (no later diff touches that price)
    until the client resyncs. A subtler corruption would be undetectable by design."""
    _, asks = feed.book.top(1)
    px = 2 * (asks[0][0] if asks else feed.spec.price)
    return [[fmt_units(px - px % feed.spec.tick), fmt_units(feed.spec.lot)]]


def replay_routes(app: web.Application, symbols: list[str], venue: type[BinanceVenue] = BinanceVenue) -> None:
    """For a replayed recording (``recorder/sim/replay.py``): the instrument list ``check_pairs`` reads."""

    async def exchange_info(request: web.Request) -> web.Response:
        info = {
            "timezone": "UTC",
            "serverTime": now_ms(),
            "symbols": [{"symbol": s, "status": "TRADING"} for s in symbols],
        }
        return web.Response(body=msgspec.json.encode(info), content_type="application/json")

    app.router.add_get(f"{venue.rest_prefix}/exchangeInfo", exchange_info)


def create_venue(opts: SimOptions) -> BinanceVenue:
    return BinanceVenue(opts)
