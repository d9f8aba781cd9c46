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
import json
import math
import random
import re
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec
from aiohttp import WSCloseCode, WSMsgType, web

from recorder.sim.binance_trades import TradeTape
from recorder.sim.book import Book, InstrumentSpec, Level, SymbolFeed, WindowDiff, fmt_units, to_units
from recorder.sim.faults import FaultInjector
from recorder.sim.trades import trades_route
from recorder.sim.wsconn import EngineVenue, WsConn

if TYPE_CHECKING:
    from recorder.sim.options import SimOptions

TICK_MS = 10  # generator resolution: events are spread over time at this granularity
SLOW_INTERVAL_MS = 1000  # cadence of `<symbol>@depth` (and partial depth without @100ms)
MAX_STREAMS = 1024
DEPTH_LIMIT_MAX = 5000
PARTIAL_LEVELS = (5, 10, 20)
BAN_DURATION_S = 120.0
SERVED_BOOKS_KEPT = 2000  # REST snapshot states kept for /sim/book (a few MB)
TAIL_EVENTS_PER_S = 3.0
TAIL_QUOTES = ("USDT", "USDT", "USDT", "FDUSD", "BTC")

# symbol -> (base, quote, price, tickSize, stepSize, typical resting qty, events/s)
DEFAULT_SYMBOLS: dict[str, tuple[str, str, str, str, str, str, float]] = {
    "BTCUSDT": ("BTC", "USDT", "65000", "0.01", "0.00001", "0.05", 200.0),
    "ETHUSDT": ("ETH", "USDT", "3200", "0.01", "0.0001", "1", 150.0),
    "BNBUSDT": ("BNB", "USDT", "580", "0.01", "0.001", "3", 60.0),
    "SOLUSDT": ("SOL", "USDT", "150", "0.01", "0.001", "20", 100.0),
    "XRPUSDT": ("XRP", "USDT", "0.52", "0.0001", "0.1", "4000", 60.0),
    "ADAUSDT": ("ADA", "USDT", "0.45", "0.0001", "0.1", "5000", 40.0),
    "DOGEUSDT": ("DOGE", "USDT", "0.12", "0.00001", "1", "20000", 60.0),
    "LTCUSDT": ("LTC", "USDT", "75", "0.01", "0.001", "30", 30.0),
    "ETHBTC": ("ETH", "BTC", "0.05", "0.00001", "0.0001", "1", 20.0),
    "BNBBTC": ("BNB", "BTC", "0.009", "0.000001", "0.001", "3", 10.0),
    "TRXUSDT": ("TRX", "USDT", "0.12", "0.00001", "0.1", "20000", 20.0),
    "DOTUSDT": ("DOT", "USDT", "6.5", "0.001", "0.01", "200", 20.0),
}
QUOTE_ASSETS = ("FDUSD", "USDT", "USDC", "TUSD", "BUSD", "EUR", "TRY", "BRL", "BTC", "ETH", "BNB", "DAI")
_TYPICAL_NOTIONAL = {"BTC": 0.03, "ETH": 0.5, "BNB": 3.0}  # other quotes: ~2000 units

_SYMBOL_RE = re.compile(r"^[A-Z0-9\-_.]{1,20}$")
_STREAM_RE = re.compile(r"^[A-Za-z0-9!@_.\-]{1,128}$")
_ID_RE = re.compile(r"^[A-Za-z0-9]{1,36}$")
_METHODS = "`SUBSCRIBE`, `UNSUBSCRIBE`, `LIST_SUBSCRIPTIONS`, `SET_PROPERTY`, `GET_PROPERTY`"


def _quote_of(symbol: str) -> tuple[str, str]:
    for q in QUOTE_ASSETS:
        if symbol.endswith(q) and len(symbol) > len(q):
            return symbol[: -len(q)], q
    return symbol[:-3] or symbol, symbol[-3:]


def _pow10_units(exp: int) -> int:
    """10**exp in fixed-point units, clamped to the 1e-8 resolution."""
    return to_units(f"{10.0 ** max(exp, -8):.8f}")


def make_spec(symbol: str) -> InstrumentSpec:
    """Realistic parameters for a known symbol; deterministic made-up ones (from the name) otherwise."""
    if symbol in DEFAULT_SYMBOLS:
        base, quote, price, tick, lot, typ, rate = DEFAULT_SYMBOLS[symbol]
        lot_u = to_units(lot)
        return InstrumentSpec(
            symbol, base, quote, to_units(price), to_units(tick), lot_u, max(1, to_units(typ) // lot_u), rate
        )
    base, quote = _quote_of(symbol)
    rng = random.Random("spec:" + symbol)
    lo, hi = (-5.0, -1.5) if quote in ("BTC", "ETH") else (-1.0, 3.0)
    price_f = 10.0 ** rng.uniform(lo, hi)
    tick = _pow10_units(math.floor(math.log10(price_f)) - 4)  # ~5 significant digits, like Binance
    price = max(tick * 10_000, round(price_f * 1e8 / tick) * tick)
    notional = _TYPICAL_NOTIONAL.get(quote, 2000.0)
    typ_qty = notional / (price / 1e8)
    lot = _pow10_units(min(3, math.floor(math.log10(max(typ_qty, 1e-8))) - 3))
    typical_lots = max(1, round(typ_qty * 1e8 / lot))
    return InstrumentSpec(symbol, base, quote, price, tick, lot, typical_lots, rng.uniform(10.0, 60.0))


def _levels(levels: list[Level]) -> list[list[str]]:
    return [[fmt_units(p), fmt_units(q)] for p, q in levels]


def _now_ms() -> int:
    return int(time.time() * 1000)


class _Conn(WsConn):
    """One WebSocket client: a ``WsConn`` (with its injected faults) plus its subscriptions and pings."""

    def __init__(
        self, ws: web.WebSocketResponse, combined: bool, opened: float, venue: BinanceVenue, request: web.Request
    ) -> None:
        super().__init__(ws, opened, venue.counters, venue.faults, request)
        self.combined = combined
        self.streams: dict[str, None] = {}  # ordered set, for LIST_SUBSCRIPTIONS
        self.pings: dict[bytes, float] = {}  # outstanding ping payload -> sent at

    def carries(self, key: str) -> bool:
        prefix = key.lower() + "@"
        return any(s.startswith(prefix) for s in self.streams)


@dataclass
class _IpBudget:
    minute: int = -1
    used: int = 0
    backoff_until: float = 0.0
    ignored: int = 0
    banned_until: float = 0.0


class BinanceVenue(EngineVenue):
    """Routes, market engine and connection management for the Binance spot simulator.

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
        self._subs: dict[str, set[_Conn]] = {}
        self._conns: set[_Conn] = set()
        # ``<symbol>@trade``: every fill of the generated books (recorder/sim/binance_trades.py).
        self.tape = TradeTape(seed)
        for feed in self.feeds.values():
            feed.gen.on_fill = functools.partial(self._on_fill, feed)
        self._budgets: dict[str, _IpBudget] = {}
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
        return {**_symbol_info(spec), "status": self.listing_status(spec.symbol)}

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

    def open_conns(self) -> set[_Conn]:
        return self._conns

    def stats(self) -> dict[str, Any]:
        return {
            "venue": self.name,
            **self.counters,
            "connections_open": len(self._conns),
            "self_check_failures": sum(f.history.self_check_failures for f in self.feeds.values()),
            "symbols": {
                s: {
                    "last_update_id": f.last_id * self.id_scale,
                    "last_published_u": f.history.latest_id() * self.id_scale,
                }
                for s, f in self.feeds.items()
            },
        }

    # -- market engine ------------------------------------------------------------------------------

    def _tick_now(self, feed: SymbolFeed | None = None) -> int:
        tick_s = feed.tick_s if feed is not None else self.tick_s
        return int((asyncio.get_running_loop().time() - self._t0) / tick_s)

    def _advance(self, feed: SymbolFeed, tick: int) -> None:
        feed.catch_up(tick, asyncio.get_running_loop().time(), self._on_boundary)

    async def _run_engine(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if await self.paused():
                continue
            tick = self._tick_now()
            for feed in self.feeds.values():
                if feed.tick_s == self.tick_s:
                    self._advance(feed, tick)
                else:
                    ftick = self._tick_now(feed)
                    if ftick > feed.tick:
                        self._advance(feed, ftick)
            next_t = self._t0 + (tick // self.fast_ticks + 1) * self.fast_ticks * self.tick_s
            await asyncio.sleep(max(0.0, next_t - loop.time()) + 0.0005)

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
                        {"lastUpdateId": feed.last_id * self.id_scale, "bids": _levels(bids), "asks": _levels(asks)}
                    ).decode()
                self._fanout(name, payload, conns)

    def _diff_event(self, sym: str, event_ms: int, diff: WindowDiff) -> dict[str, Any]:
        return {
            "e": "depthUpdate", "E": event_ms, "s": sym, "U": diff.first_id,
            "u": diff.last_id, "b": _levels(diff.bids), "a": _levels(diff.asks),
        }  # fmt: skip

    @staticmethod
    def _depth_weight(limit: int | None) -> int:
        return 5 if limit is None or limit <= 100 else 25 if limit <= 500 else 50 if limit <= 1000 else 250

    def _fanout(self, name: str, payload: str, conns: set[_Conn]) -> None:
        wrapped: str | None = None
        for conn in list(conns):
            if conn.combined:
                if wrapped is None:
                    wrapped = f'{{"stream":"{name}","data":{payload}}}'
                ok = conn.send(wrapped)
            else:
                ok = conn.send(payload)
            if not ok:
                self.counters["closed_slow_consumer"] += 1
                conn.close(WSCloseCode.POLICY_VIOLATION, b"slow consumer", flush=False)

    # -- WebSocket ----------------------------------------------------------------------------------

    async def _ws_combined(self, request: web.Request) -> web.StreamResponse:
        raw = request.query.get("streams", "")
        return await self._ws_session(request, True, [s for s in raw.split("/") if s])

    async def _ws_raw(self, request: web.Request) -> web.StreamResponse:
        raw = request.match_info.get("streams", "")
        return await self._ws_session(request, False, [s for s in raw.split("/") if s])

    async def _ws_session(self, request: web.Request, combined: bool, streams: list[str]) -> web.StreamResponse:
        if len(dict.fromkeys(streams)) > MAX_STREAMS:
            return _json_error(400, -1, f"Too many streams requested; the limit is {MAX_STREAMS}.")
        # autoping off: ping/pong are handled here, to enforce the venue's own keepalive rules.
        ws = web.WebSocketResponse(autoping=False, compress=False, timeout=2.0, max_msg_size=1 << 16)
        if not ws.can_prepare(request).ok:
            return _json_error(400, -1, "WebSocket upgrade required.")
        await ws.prepare(request)
        loop = asyncio.get_running_loop()
        conn = _Conn(ws, combined, loop.time(), self, request)
        self._conns.add(conn)
        self.counters["connections_total"] += 1
        for s in streams:
            self._subscribe(conn, s)
        writer = asyncio.create_task(conn.writer())
        keeper = asyncio.create_task(self._keepalive(conn))
        try:
            async for msg in ws:
                if conn.closing:  # close already under way: ignore the rest
                    continue
                if conn.over_rate(loop.time(), self.opts.max_incoming_per_s):
                    self.counters["closed_rate_limit"] += 1
                    conn.close(WSCloseCode.POLICY_VIOLATION, b"Too many requests", flush=False)
                    continue
                if msg.type is WSMsgType.TEXT:
                    reply = self._handle_request(conn, msg.data)
                    if reply is not None:
                        conn.send(reply)
                elif msg.type is WSMsgType.PING:
                    await conn.on_ping(msg.data)
                elif msg.type is WSMsgType.PONG:
                    # Only a pong echoing an outstanding ping's payload counts (unsolicited ones don't).
                    payload = bytes(msg.data)
                    if payload in conn.pings:
                        sent = conn.pings[payload]
                        conn.pings = {p: t for p, t in conn.pings.items() if t > sent}
                elif msg.type is WSMsgType.BINARY:
                    conn.send(_ws_error(3, "Invalid JSON: expected value at line 1 column 1", None))
        finally:
            self._conns.discard(conn)
            for s in list(conn.streams):
                self._unsubscribe(conn, s)
            keeper.cancel()
            await conn.finish(writer)
        return ws

    async def _keepalive(self, conn: _Conn) -> None:
        """Server pings every ping_interval_s; no pong within pong_timeout_s or max age reached -> close."""
        loop = asyncio.get_running_loop()
        opts = self.opts
        next_ping = conn.opened + opts.ping_interval_s
        expires = conn.opened + opts.max_connection_age_s
        while not conn.closing:
            now = loop.time()
            if now >= expires:
                self.counters["closed_max_age"] += 1
                event = msgspec.json.encode({"e": "serverShutdown", "E": _now_ms()}).decode()
                conn.send(f'{{"stream":"serverShutdown","data":{event}}}' if conn.combined else event)
                conn.close(WSCloseCode.OK, b"", flush=True)
                return
            if conn.pings and now - min(conn.pings.values()) >= opts.pong_timeout_s:
                self.counters["closed_pong_timeout"] += 1
                conn.close(WSCloseCode.POLICY_VIOLATION, b"pong timeout", flush=False)
                return
            if now >= next_ping and conn.silent():
                next_ping += opts.ping_interval_s  # stalled: not even a ping
            elif now >= next_ping:
                payload = str(_now_ms()).encode()
                conn.pings[payload] = now
                try:
                    await conn.ws.ping(payload)
                except Exception:
                    return
                next_ping += opts.ping_interval_s
            wake = min(next_ping, expires)
            if conn.pings:
                wake = min(wake, min(conn.pings.values()) + opts.pong_timeout_s)
            await asyncio.sleep(max(0.0, wake - loop.time()) + 0.001)

    def _subscribe(self, conn: _Conn, stream: str) -> None:
        conn.streams[stream] = None
        self._subs.setdefault(stream, set()).add(conn)

    def _unsubscribe(self, conn: _Conn, stream: str) -> None:
        conn.streams.pop(stream, None)
        subs = self._subs.get(stream)
        if subs is not None:
            subs.discard(conn)
            if not subs:
                del self._subs[stream]

    def _handle_request(self, conn: _Conn, text: str) -> str | None:
        """JSON control messages (SUBSCRIBE & co.), answered like the venue, errors included."""
        try:
            req = json.loads(text)
        except ValueError as exc:
            line, col = getattr(exc, "lineno", 1), getattr(exc, "colno", 1)
            return _ws_error(3, f"Invalid JSON: expected value at line {line} column {col}", None)
        if not isinstance(req, dict):
            return _ws_error(2, "Invalid request: expected a JSON object", None)
        rid = req.get("id")
        if not (rid is None or (isinstance(rid, int) and not isinstance(rid, bool) and -(2**63) <= rid < 2**63)
                or (isinstance(rid, str) and _ID_RE.match(rid))):  # fmt: skip
            return _ws_error(2, "Invalid request: request ID must be an unsigned integer", None)
        method = req.get("method")
        if method is None:
            return _ws_error(2, "Invalid request: missing field `method`", rid)
        params = req.get("params")
        if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
            if not isinstance(params, list) or not all(isinstance(p, str) and _STREAM_RE.match(p) for p in params):
                return _ws_error(2, "Invalid request: params must be an array of stream names", rid)
            if method == "SUBSCRIBE":
                if len(dict.fromkeys([*conn.streams, *params])) > MAX_STREAMS:
                    return _ws_error(2, f"Invalid request: too many streams (max {MAX_STREAMS})", rid)
                for p in params:
                    self._subscribe(conn, p)
            else:
                for p in params:
                    self._unsubscribe(conn, p)
            return _ws_result(None, rid)
        if method == "LIST_SUBSCRIPTIONS":
            return _ws_result(list(conn.streams), rid)
        if method in ("SET_PROPERTY", "GET_PROPERTY"):
            if not isinstance(params, list) or not params or not isinstance(params[0], str):
                return _ws_error(2, "Invalid request: property name must be a string", rid)
            if params[0] != "combined":
                return _ws_error(0, "Unknown property", rid)
            if method == "GET_PROPERTY":
                return _ws_result(conn.combined, rid)
            if len(params) != 2 or not isinstance(params[1], bool):
                return _ws_error(1, "Invalid value type: expected Boolean", rid)
            conn.combined = params[1]
            return _ws_result(None, rid)
        return _ws_error(2, f"Invalid request: unknown variant `{method}`, expected one of {_METHODS}", rid)

    # -- REST ---------------------------------------------------------------------------------------

    def _charge(self, request: web.Request, weight: int) -> tuple[web.Response | None, int]:
        """Per-IP REQUEST_WEIGHT per wall-clock window; returns (error response or None, used weight)."""
        self.counters["rest_requests"] += 1
        now = time.time()
        ip = request.remote or "?"
        b = self._budgets.setdefault(ip, _IpBudget())
        window = self.opts.weight_window_s
        minute = int(now // window)
        if b.minute != minute:
            b.minute, b.used = minute, 0
        if b.banned_until > now:
            return self._banned(b, now), b.used
        if b.backoff_until > now:  # told to back off, came back early
            b.ignored += 1
            if self.opts.ban_after_ignored_429s > 0 and b.ignored >= self.opts.ban_after_ignored_429s:
                b.banned_until = now + BAN_DURATION_S
                return self._banned(b, now), b.used
            return self._too_many(b, now), b.used
        if b.used + weight > self.opts.weight_limit_per_min:
            b.backoff_until = (minute + 1) * window
            return self._too_many(b, now), b.used
        b.ignored = 0
        b.used += weight
        return None, b.used

    def _too_many(self, b: _IpBudget, now: float) -> web.Response:
        self.counters["http_429"] += 1
        limit = self.opts.weight_limit_per_min
        resp = _json_error(
            429, -1003,
            f"Too much request weight used; current limit is {limit} request weight per 1 MINUTE. "
            "Please use WebSocket Streams for live updates to avoid polling the API.",
        )  # fmt: skip
        resp.headers["Retry-After"] = str(max(1, math.ceil(b.backoff_until - now)))
        return resp

    def _banned(self, b: _IpBudget, now: float) -> web.Response:
        self.counters["http_418"] += 1
        until = int(b.banned_until * 1000)
        resp = _json_error(
            418, -1003,
            f"Way too much request weight used; IP banned until {until}. "
            "Please use WebSocket Streams for live updates to avoid bans.",
        )  # fmt: skip
        resp.headers["Retry-After"] = str(max(1, math.ceil(b.banned_until - now)))
        return resp

    def _with_weight(self, resp: web.Response, used: int) -> web.Response:
        resp.headers[f"X-MBX-USED-WEIGHT-{_interval_code(self.opts.weight_window_s)}"] = str(used)
        if resp.status == 400:
            self.counters["http_400"] += 1
        return resp

    async def _rest_depth(self, request: web.Request) -> web.Response:
        q = request.query
        raw_limit = q.get("limit")
        limit: int | None = 100
        if raw_limit is not None:
            limit = int(raw_limit) if raw_limit.isdigit() and len(raw_limit) <= 20 else None
            if limit is not None and not 1 <= limit <= self.depth_limit_max:
                limit = None
        weight = self._depth_weight(limit)
        err, used = self._charge(request, weight)
        if err is not None:
            return self._with_weight(err, used)
        if limit is None:
            msg = f"Illegal characters found in parameter 'limit'; legal range is '1' to '{self.depth_limit_max}'."
            return self._with_weight(_json_error(400, -1100, msg), used)
        symbol = q.get("symbol")
        if not symbol:
            return self._with_weight(_mandatory("symbol"), used)
        if not _SYMBOL_RE.match(symbol):
            return self._with_weight(_illegal_symbol(), used)
        feed = self.feeds.get(symbol)
        if feed is None:
            return self._with_weight(_json_error(400, -1121, "Invalid symbol."), used)
        refused = await self.faults.rest_fault()
        if refused is not None:
            return refused
        # Catch the generator up to *now*: the snapshot reflects mid-window state, so its lastUpdateId
        # normally lies inside the next diff's [U, u] (the straddle a client must handle).
        self._advance(feed, self._tick_now(feed))
        bids, asks = feed.book.top(limit)
        self._served[(symbol, feed.last_id)] = feed.book.encode()
        while len(self._served) > SERVED_BOOKS_KEPT:
            self._served.popitem(last=False)
        self.counters["snapshots_served"] += 1
        body = msgspec.json.encode(self._snapshot_body(feed.last_id, bids, asks))
        return self._with_weight(web.Response(body=body, content_type="application/json"), used)

    def _snapshot_body(self, last_id: int, bids: list[Level], asks: list[Level]) -> dict[str, Any]:
        return {"lastUpdateId": last_id * self.id_scale, "bids": _levels(bids), "asks": _levels(asks)}

    async def _rest_exchange_info(self, request: web.Request) -> web.Response:
        err, used = self._charge(request, 20)
        if err is not None:
            return self._with_weight(err, used)
        q = request.query
        if "symbol" in q and "symbols" in q:
            msg = "Combination of optional parameters invalid."
            return self._with_weight(_json_error(400, -1128, msg), used)
        if "symbol" in q:
            wanted = [q["symbol"]]
        elif "symbols" in q:
            try:
                wanted = json.loads(q["symbols"])
            except ValueError:
                wanted = None
            if not isinstance(wanted, list) or not wanted or not all(isinstance(s, str) for s in wanted):
                msg = "Illegal characters found in parameter 'symbols'; legal range is '^\\[(\"[A-Z0-9-_.]{1,20}\"(,\"[A-Z0-9-_.]{1,20}\"){0,}){0,1}\\]$'."  # noqa: E501
                return self._with_weight(_json_error(400, -1100, msg), used)
        else:
            wanted = list(self.feeds)
        if any(s not in self.feeds for s in wanted):
            return self._with_weight(_json_error(400, -1121, "Invalid symbol."), used)
        info = {
            "timezone": "UTC",
            "serverTime": _now_ms(),
            "rateLimits": [
                {"rateLimitType": "REQUEST_WEIGHT", **_interval_fields(self.opts.weight_window_s),
                 "limit": self.opts.weight_limit_per_min},
                {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
                {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 61000},
            ],
            "exchangeFilters": [],
            "symbols": [self.symbol_row(self.feeds[s].spec) for s in dict.fromkeys(wanted)],
            **self.exchange_info_extra(),
        }  # fmt: skip
        return self._with_weight(web.Response(body=msgspec.json.encode(info), content_type="application/json"), used)

    async def _rest_ping(self, request: web.Request) -> web.Response:
        err, used = self._charge(request, 1)
        return self._with_weight(err or web.Response(body=b"{}", content_type="application/json"), used)

    async def _rest_time(self, request: web.Request) -> web.Response:
        err, used = self._charge(request, 1)
        body = msgspec.json.encode({"serverTime": _now_ms()})
        return self._with_weight(err or web.Response(body=body, content_type="application/json"), used)

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
        return web.json_response({"lastUpdateId": update_id, "bids": _levels(bids), "asks": _levels(asks)})


def tail_symbols(n: int) -> list[str]:
    """``n`` generated symbols (``T0000USDT``, ``T0001BTC``...), mostly USDT-quoted like the real venue."""
    return [f"T{i:04d}{TAIL_QUOTES[i % len(TAIL_QUOTES)]}" for i in range(n)]


def _interval_code(window_s: float) -> str:
    """Window -> the header suffix Binance uses: 60 -> ``1M``, 10 -> ``10S``."""
    w = round(window_s)
    return f"{w // 60}M" if w % 60 == 0 else f"{w}S"


def _interval_fields(window_s: float) -> dict[str, Any]:
    w = round(window_s)
    return {"interval": "MINUTE", "intervalNum": w // 60} if w % 60 == 0 else {"interval": "SECOND", "intervalNum": w}


def _symbol_info(spec: InstrumentSpec) -> dict[str, Any]:
    return {
        "symbol": spec.symbol,
        "status": "TRADING",
        "baseAsset": spec.base,
        "baseAssetPrecision": 8,
        "quoteAsset": spec.quote,
        "quotePrecision": 8,
        "quoteAssetPrecision": 8,
        "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"],
        "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": False,
        "filters": [
            {"filterType": "PRICE_FILTER", "minPrice": fmt_units(spec.tick),
             "maxPrice": fmt_units(spec.price * 100), "tickSize": fmt_units(spec.tick)},
            {"filterType": "LOT_SIZE", "minQty": fmt_units(spec.lot), "maxQty": "9000000.00000000",
             "stepSize": fmt_units(spec.lot)},
        ],
        "permissions": [],
        "permissionSets": [["SPOT"]],
    }  # fmt: skip


def _corrupt_level(feed: SymbolFeed) -> list[list[str]]:
    """A bid at twice the best ask. Binance has no checksum, so the only corruption a client
    can prove is a crossed book; this one stays crossed (no later diff touches that price)
    until the client resyncs. A subtler corruption would be undetectable by design."""
    _, asks = feed.book.top(1)
    px = 2 * (asks[0][0] if asks else feed.spec.price)
    return [[fmt_units(px - px % feed.spec.tick), fmt_units(feed.spec.lot)]]


def _json_error(status: int, code: int, msg: str) -> web.Response:
    body = msgspec.json.encode({"code": code, "msg": msg})
    return web.Response(status=status, body=body, content_type="application/json")


def _mandatory(param: str) -> web.Response:
    return _json_error(400, -1102, f"Mandatory parameter '{param}' was not sent, was empty/null, or malformed.")


def _illegal_symbol() -> web.Response:
    msg = "Illegal characters found in parameter 'symbol'; legal range is '^[A-Z0-9-_.]{1,20}$'."
    return _json_error(400, -1100, msg)


def _ws_result(result: Any, rid: Any) -> str:
    return msgspec.json.encode({"result": result, "id": rid}).decode()


def _ws_error(code: int, msg: str, rid: Any) -> str:
    return msgspec.json.encode({"error": {"code": code, "msg": msg}, "id": rid}).decode()


def replay_routes(app: web.Application, symbols: list[str], venue: type[BinanceVenue] = BinanceVenue) -> None:
    """For a replayed recording (``recorder/sim/replay.py``): the instrument list ``check_pairs`` reads."""

    async def exchange_info(request: web.Request) -> web.Response:
        info = {
            "timezone": "UTC",
            "serverTime": _now_ms(),
            "symbols": [{"symbol": s, "status": "TRADING"} for s in symbols],
        }
        return web.Response(body=msgspec.json.encode(info), content_type="application/json")

    app.router.add_get(f"{venue.rest_prefix}/exchangeInfo", exchange_info)


def create_venue(opts: SimOptions) -> BinanceVenue:
    return BinanceVenue(opts)
