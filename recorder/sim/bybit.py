"""Bybit v5 public simulator: ``/v5/public/{spot,linear}`` WebSockets with ``orderbook.<depth>.<symbol>``
plus ``/v5/market/instruments-info``, on one aiohttp app.

Wire format per venue-protocols.md §6: subscribing sends a ``snapshot`` of the top ``depth`` levels,
then a ``delta`` per push interval that turns the previous top-``depth`` book into the current one
(levels leaving the depth are deleted explicitly), with ``u`` rising by exactly 1 per delta per
topic. Depth 1 is snapshot-only (re-sent with the same ``u`` after 3 s without change). The same
symbol on the spot and linear sockets is two independent markets. Faults (``POST /sim/fault``,
``recorder/sim/faults.py``) name a market as ``linear:BTCUSDT`` (``BTCUSDT``: both markets): a
``gap`` withholds a delta (``u`` skips), ``corrupt`` adds a bid above the best ask (Bybit has no
checksum: a crossed book is what a client can prove), ``refuse_subscribe`` fails the next
subscribe request for the market.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import msgspec
from aiohttp import WSCloseCode, WSMsgType, web

from recorder.sim.binance_symbols import make_spec
from recorder.sim.book import Book, InstrumentSpec, Level, WindowDiff, fmt_units
from recorder.sim.bybit_trades import BybitTrades
from recorder.sim.faults import Fault, FaultInjector
from recorder.sim.feed import BookHistory, SymbolFeed
from recorder.sim.wsconn import EngineVenue, WsConn, accept

if TYPE_CHECKING:
    from recorder.sim.options import SimOptions

TICK_MS = 10
# depth -> push interval (ms), per the docs (spot 200 moved to 100 ms on 2026-03-19)
DEPTH_INTERVAL_MS = {200: 100, 50: 20, 1: 10, 1000: 200}  # first = the primary cadence
DEPTH1_RESEND_S = 3.0
MAX_SPOT_ARGS = 10
CATEGORIES = ("spot", "linear")
DEFAULT_SYMBOLS = {
    "spot": ("BTCUSDT", "ETHUSDT", "SOLUSDT"),
    "linear": ("BTCUSDT", "ETHUSDT", "SOLUSDT", "DOGEUSDT"),
}


def _levels(levels: list[Level]) -> list[list[str]]:
    return [[fmt_units(p).rstrip("0").rstrip("."), fmt_units(q).rstrip("0").rstrip(".")] for p, q in levels]


def _now_ms() -> int:
    return int(time.time() * 1000)


class _Topic:
    """One ``orderbook.<depth>.<symbol>`` stream of one market: its published top-N book and ``u``."""

    def __init__(self, category: str, feed: SymbolFeed, depth: int, rng: random.Random, retention_s: float) -> None:
        self.category, self.feed, self.depth = category, feed, depth
        self.name = f"orderbook.{depth}.{feed.spec.symbol}"
        self.u = rng.randrange(1_000_000, 90_000_000)
        self.book = Book()
        bids, asks = feed.book.top(depth)
        for px, q in bids:
            self.book.set_level(True, px, q)
        for px, q in asks:
            self.book.set_level(False, px, q)
        self.history = BookHistory(retention_s)
        self.history.start(self.u, self.book)
        self.subs: set[WsConn] = set()
        self.last_sent = 0.0
        self.fault_key = f"{category}:{feed.spec.symbol}"

    def step(self, now: float) -> tuple[list[Level], list[Level]] | None:
        """Bring the published book to the generator's current top; the net change or None."""
        bids, asks = self.feed.book.top(self.depth)
        out: list[list[Level]] = []
        for is_bid, new in ((True, bids), (False, asks)):
            old = self.book.bids if is_bid else self.book.asks
            new_map = dict(new)
            changes = [(px, 0) for px in old if px not in new_map]
            changes += [(px, q) for px, q in new if old.get(px) != q]
            for px, q in changes:
                self.book.set_level(is_bid, px, q)
            changes.sort(reverse=is_bid)
            out.append(changes)
        if not out[0] and not out[1]:
            return None
        self.u += 1
        self.history.record(now, WindowDiff(self.u, self.u, out[0], out[1]), self.book)
        return out[0], out[1]

    def message(self, kind: str, bids: list[Level], asks: list[Level], ts: int) -> str:
        data = {
            "s": self.feed.spec.symbol,
            "b": _levels(bids),
            "a": _levels(asks),
            "u": self.u,
            "seq": self.feed.last_id,
        }
        if self.category == "spot":  # key order differs between products on the real feed
            msg = {"topic": self.name, "ts": ts, "type": kind, "data": data, "cts": ts - 1}
        else:
            msg = {"topic": self.name, "type": kind, "ts": ts, "data": data, "cts": ts - 1}
        return msgspec.json.encode(msg).decode()

    def snapshot(self, ts: int) -> str:
        bids, asks = self.book.top(self.depth)
        return self.message("snapshot", bids, asks, ts)


class _Conn(WsConn):
    client: _Client | None = None
    last_active = 0.0  # loop time of the last ping from the client or frame to it

    def send(self, text: str) -> bool:
        """Every frame the venue sends (data, replies, pongs) shows the connection is not silent."""
        self.last_active = asyncio.get_running_loop().time()
        return super().send(text)

    def carries(self, key: str) -> bool:
        """``key`` is ``category:SYMBOL``: is this client subscribed to that market?"""
        c = self.client
        cat, _, sym = key.partition(":")
        return c is not None and cat == c.category and any(t.rpartition(".")[2] == sym for t in c.topics)


class _Client:
    def __init__(self, conn: _Conn, category: str) -> None:
        self.conn = conn
        conn.client = self
        self.category = category
        self.conn_id = uuid.uuid4().hex[:20]
        self.topics: set[str] = set()
        conn.last_active = conn.opened


class BybitVenue(EngineVenue):
    name = "bybit"

    def __init__(self, opts: SimOptions) -> None:
        self.opts = opts
        seed = opts.seed if opts.seed is not None else random.SystemRandom().randrange(2**63)
        self.rng = random.Random(f"{seed}:topics")
        self.tick_s = TICK_MS / 1000.0
        self.cadences = tuple(max(1, round(ms / TICK_MS)) for ms in DEPTH_INTERVAL_MS.values())
        self.depth_of_cadence = list(DEPTH_INTERVAL_MS)
        self.primary_ticks = self.cadences[0]
        wanted: dict[str, list[str]] = {c: [] for c in CATEGORIES}
        for raw in opts.symbols or []:
            cat, _, sym = raw.lower().rpartition(":")
            for c in [cat] if cat else CATEGORIES:
                if c in wanted:
                    wanted[c].append(sym.upper())
        if not any(wanted.values()):
            wanted = {c: list(s) for c, s in DEFAULT_SYMBOLS.items()}
        self.feeds: dict[tuple[str, str], SymbolFeed] = {}
        for cat, syms in wanted.items():
            for sym in dict.fromkeys(syms):
                spec = make_spec(sym)
                if cat == "linear":  # perps: coarser lots, busier book, its own market
                    spec = InstrumentSpec(sym, spec.base, spec.quote, spec.price, spec.tick * 10, spec.lot * 100,
                                          max(1, spec.typical_lots // 50), spec.events_per_s * 1.5)  # fmt: skip
                self.feeds[(cat, sym)] = SymbolFeed(spec, f"{seed}:{cat}:{sym}", self.tick_s, self.cadences, 60.0)
        self.topics: dict[tuple[str, str], _Topic] = {}  # (category, topic name) -> topic
        self._clients: set[_Client] = set()
        self._refuse: dict[str, int] = {}  # category:SYMBOL -> subscribe requests to refuse
        if opts.idle_timeout_s <= 0:
            raise ValueError(f"idle_timeout_s must be > 0, got {opts.idle_timeout_s}")
        # A connection with no ping/pong and no data this long (10 min) is cut (venue-protocols.md
        # §6): only a silent one, so a socket that streams deltas lives on without pings.
        self.idle_timeout_s = opts.idle_timeout_s
        self.faults = FaultInjector(
            self.name, opts.faults, symbols=self._fault_keys, venue_kinds={"refuse_subscribe": self._refuse_next}
        )
        self.trades = BybitTrades(self.feeds, self.faults, seed)
        self.counters: dict[str, int] = dict.fromkeys(
            ("connections_total", "messages_sent", "deltas_published", "snapshots_sent", "deltas_withheld",
             "deltas_corrupted", "closed_idle", "closed_slow_consumer", "rest_requests"),
            0,
        )  # fmt: skip

    # -- lifecycle ----------------------------------------------------------------------------------

    def setup(self, app: web.Application) -> None:
        app.router.add_get("/v5/public/{category}", self._ws)
        app.router.add_get("/v5/market/instruments-info", self._rest_instruments)
        app.router.add_get("/sim/book", self._sim_book)
        app.router.add_get("/sim/stats", self._sim_stats)
        self.trades.route(app)
        self.faults.setup(app)

    def open_conns(self) -> list[WsConn]:
        return [client.conn for client in self._clients]

    def histories(self) -> Iterable[BookHistory]:
        return (t.history for t in self.topics.values())

    def own_stats(self) -> dict[str, Any]:
        return {"topics": {f"{c}:{n}": {"u": t.u, "subscribers": len(t.subs)} for (c, n), t in self.topics.items()}}

    # -- market engine ------------------------------------------------------------------------------

    def step(self, tick: int, now: float) -> int:
        for (cat, _), feed in self.feeds.items():
            feed.catch_up(tick, now, lambda f, ci, d, t, cat=cat: self._on_boundary(cat, f, ci, t))
        self._idle_check(now)
        # Wake as often as the fastest subscribed depth pushes (the primary 100 ms otherwise).
        step = min([self.primary_ticks] + [self.cadences[self.depth_of_cadence.index(t.depth)]
                                            for t in self.topics.values() if t.subs])  # fmt: skip
        return (tick // step + 1) * step

    def _on_boundary(self, category: str, feed: SymbolFeed, cadence: int, tick: int) -> None:
        if cadence == 0:  # the trades of the primary window (publicTrade, bybit_trades.py)
            self.trades.publish(category, feed, self.event_ms(tick), self._slow)
        depth = self.depth_of_cadence[cadence]
        topic = self.topics.get((category, f"orderbook.{depth}.{feed.spec.symbol}"))
        if topic is None or (depth != 1 and self.faults.data_paused(topic.fault_key)):
            return  # (a quiet stall of this market: the next delta carries the net change)
        ts = self.event_ms(tick)
        now = asyncio.get_running_loop().time()
        change = topic.step(now)
        if depth == 1:
            if change is None and now - topic.last_sent < DEPTH1_RESEND_S:
                return
            topic.last_sent = now
            self._fanout(topic, topic.snapshot(ts))
            return
        if change is None:
            return
        self.counters["deltas_published"] += 1
        bids, asks = change
        if topic.subs and self.faults.take_gap(topic.fault_key):
            self.counters["deltas_withheld"] += 1
            return  # its u never reaches a client: the next delta skips one
        if topic.subs and self.faults.take_corrupt(topic.fault_key):
            self.counters["deltas_corrupted"] += 1
            bids = [self._crossing_bid(topic), *bids]
        self._fanout(topic, topic.message("delta", bids, asks, ts))

    @staticmethod
    def _crossing_bid(topic: _Topic) -> Level:
        """A bid at twice the best ask: no later delta touches that price, so the client's book stays
        crossed until it resubscribes."""
        spec = topic.feed.spec
        best_ask = topic.book.best_ask() or spec.price
        px = 2 * best_ask
        return (px - px % spec.tick, spec.lot)

    def _slow(self, conn: WsConn) -> None:
        self.counters["closed_slow_consumer"] += 1

    def _fanout(self, topic: _Topic, payload: str) -> None:
        for conn in list(topic.subs):
            if not conn.send(payload):
                self.counters["closed_slow_consumer"] += 1
                conn.close(WSCloseCode.POLICY_VIOLATION, b"slow consumer", flush=False)

    def _idle_check(self, now: float) -> None:
        for client in list(self._clients):
            if now - client.conn.last_active > self.idle_timeout_s:
                self.counters["closed_idle"] += 1
                client.conn.close(WSCloseCode.OK, b"idle", flush=False)

    # -- WebSocket ----------------------------------------------------------------------------------

    async def _ws(self, request: web.Request) -> web.StreamResponse:
        category = request.match_info["category"]
        if category not in CATEGORIES:
            return web.json_response({"retCode": 10001, "retMsg": f"unknown market {category}"}, status=404)
        ws = await accept(request, 1 << 16, {"retCode": 10001, "retMsg": "WebSocket upgrade required"})
        if not isinstance(ws, web.WebSocketResponse):
            return ws
        loop = asyncio.get_running_loop()
        client = _Client(_Conn(ws, loop.time(), self.counters, self.faults, request), category)
        self._clients.add(client)
        self.counters["connections_total"] += 1
        writer = asyncio.create_task(client.conn.writer())
        try:
            async for msg in ws:
                if client.conn.closing:
                    continue
                if msg.type is WSMsgType.PING:
                    client.conn.last_active = loop.time()
                    await client.conn.on_ping(msg.data)
                elif msg.type is WSMsgType.TEXT:
                    for reply in self._handle(client, msg.data):
                        client.conn.send(reply)
        finally:
            self._clients.discard(client)
            for name in client.topics:
                topic = self.topics.get((category, name))
                if topic is not None:
                    topic.subs.discard(client.conn)
                self.trades.unsubscribe(category, name, client.conn)
            await client.conn.finish(writer)
        return ws

    def _reply(self, client: _Client, op: str, req_id: str, ok: bool, ret_msg: str) -> str:
        body = {"success": ok, "ret_msg": ret_msg, "conn_id": client.conn_id, "req_id": req_id, "op": op}
        return msgspec.json.encode(body).decode()

    def _handle(self, client: _Client, text: str) -> list[str]:
        try:
            req = json.loads(text)
        except ValueError:
            return [self._reply(client, "", "", False, "error:invalid json")]
        if not isinstance(req, dict):
            return [self._reply(client, "", "", False, "error:invalid request")]
        op, req_id = req.get("op"), str(req.get("req_id") or "")
        if op == "ping":
            client.conn.last_active = asyncio.get_running_loop().time()
            # Public channels answer like this; {"op":"pong","args":[ms]} is the private channels' form.
            return [self._reply(client, "ping", req_id, True, "pong")]
        args = req.get("args")
        if op not in ("subscribe", "unsubscribe"):
            return [self._reply(client, str(op or ""), req_id, False, f"error:unknown op {op}")]
        if not isinstance(args, list) or not args or not all(isinstance(a, str) for a in args):
            return [self._reply(client, op, req_id, False, "error:args must be a non-empty list of topics")]
        if client.category == "spot" and len(args) > MAX_SPOT_ARGS:
            return [self._reply(client, op, req_id, False, f"error:args size >{MAX_SPOT_ARGS}")]
        if op == "unsubscribe":
            for name in args:
                if name not in client.topics:
                    return [self._reply(client, op, req_id, False, f"error:topic not subscribed,topic:{name}")]
            for name in args:
                client.topics.discard(name)
                topic = self.topics.get((client.category, name))
                if topic is not None:
                    topic.subs.discard(client.conn)
                self.trades.unsubscribe(client.category, name, client.conn)
            return [self._reply(client, op, req_id, True, "")]
        topics: list[_Topic] = []
        trade_topics: list[str] = []
        for name in args:
            if name in client.topics:
                return [self._reply(client, op, req_id, False, f"error:already subscribed,topic:{name}")]
            refuse_key = f"{client.category}:{name.rpartition('.')[2]}"
            if self._refuse.get(refuse_key, 0) > 0:
                self._refuse[refuse_key] -= 1
                return [self._reply(client, op, req_id, False, f"error:service busy,topic:{name}")]
            if self.trades.known(client.category, name):
                trade_topics.append(name)
                continue
            topic = self._topic(client.category, name)
            if topic is None:
                return [self._reply(client, op, req_id, False, f"error:handler not found,topic:{name}")]
            topics.append(topic)
        out = [self._reply(client, op, req_id, True, "subscribe" if client.category == "spot" else "")]
        for name in trade_topics:  # no snapshot: every trade from now on
            client.topics.add(name)
            self.trades.subscribe(client.category, name, client.conn)
        for topic in topics:
            client.topics.add(topic.name)
            hold = self.faults.take_hold(topic.fault_key)
            if hold > 0:  # a slow venue: the snapshot (and the deltas after it) come later
                asyncio.get_running_loop().call_later(hold, self._start_topic, client, topic)
                continue
            topic.subs.add(client.conn)
            out.append(topic.snapshot(_now_ms()))
            self.counters["snapshots_sent"] += 1
        return out

    def _start_topic(self, client: _Client, topic: _Topic) -> None:
        if client in self._clients and topic.name in client.topics and client.conn not in topic.subs:
            topic.subs.add(client.conn)
            client.conn.send(topic.snapshot(_now_ms()))
            self.counters["snapshots_sent"] += 1

    def _topic(self, category: str, name: str) -> _Topic | None:
        topic = self.topics.get((category, name))
        if topic is not None:
            return topic
        parts = name.split(".")
        if len(parts) != 3 or parts[0] != "orderbook" or not parts[1].isdigit():
            return None
        depth = int(parts[1])
        feed = self.feeds.get((category, parts[2]))
        if feed is None or depth not in DEPTH_INTERVAL_MS:
            return None
        topic = _Topic(category, feed, depth, self.rng, self.opts.history_s)
        self.topics[(category, name)] = topic
        return topic

    # -- REST ---------------------------------------------------------------------------------------

    async def _rest_instruments(self, request: web.Request) -> web.Response:
        self.counters["rest_requests"] += 1
        category = request.query.get("category", "")
        if category not in ("spot", "linear", "inverse", "option"):
            body = {"retCode": 10001, "retMsg": "params error: category is invalid", "result": {}, "time": _now_ms()}
            return web.json_response(body)
        items = [_instrument(cat, f.spec) for (cat, _), f in self.feeds.items() if cat == category]
        body = {
            "retCode": 0, "retMsg": "OK", "result": {"category": category, "list": items, "nextPageCursor": ""},
            "retExtInfo": {}, "time": _now_ms(),
        }  # fmt: skip
        return web.json_response(body)

    # -- verification (not Bybit) -------------------------------------------------------------------

    def _query_topic(self, q: Any) -> tuple[_Topic | None, str]:
        category = q.get("category", "spot")
        depth = q.get("depth", "200")
        topic = self.topics.get((category, f"orderbook.{depth}.{q.get('symbol', '').upper()}"))
        return topic, "" if topic is not None else "unknown or never subscribed topic"

    async def _sim_book(self, request: web.Request) -> web.Response:
        q = request.query
        topic, err = self._query_topic(q)
        if topic is None:
            return web.json_response({"error": err}, status=400)
        try:
            limit = int(q.get("limit", "20"))
            update_id = int(q["update_id"]) if "update_id" in q else topic.u
        except ValueError:
            return web.json_response({"error": "limit and update_id must be integers"}, status=400)
        book = topic.history.state_at(update_id)
        if book is None:
            return web.json_response({"error": "unknown or expired update_id"}, status=404)
        bids, asks = book.top(limit)
        return web.json_response({"u": update_id, "bids": _levels(bids), "asks": _levels(asks)})

    def _fault_keys(self, symbol: str) -> list[str]:
        """``linear:BTCUSDT`` -> that market; ``BTCUSDT`` -> every market listing it."""
        cat, _, sym = symbol.lower().rpartition(":")
        return [f"{c}:{s}" for c, s in self.feeds if (not cat or c == cat) and s == sym.upper()]

    def _refuse_next(self, fault: Fault) -> None:
        keys = self._fault_keys(fault.symbol) if fault.symbol else [f"{c}:{s}" for c, s in self.feeds]
        for key in keys:
            self._refuse[key] = self._refuse.get(key, 0) + fault.count


def _instrument(category: str, spec: InstrumentSpec) -> dict[str, Any]:
    item: dict[str, Any] = {
        "symbol": spec.symbol, "baseCoin": spec.base, "quoteCoin": spec.quote, "status": "Trading",
        "priceFilter": {"tickSize": fmt_units(spec.tick).rstrip("0").rstrip(".")},
        "lotSizeFilter": {"basePrecision": fmt_units(spec.lot).rstrip("0").rstrip(".")},
    }  # fmt: skip
    if category == "linear":
        item["contractType"] = "LinearPerpetual"
    return item


def create_venue(opts: SimOptions) -> BybitVenue:
    return BybitVenue(opts)


def replay_routes(app: web.Application, symbols: list[Any]) -> None:
    """For a replayed recording (``recorder/sim/replay.py``): the instrument lists ``check_pairs`` reads.

    A recording's symbols may come as ``(category, symbol)`` or bare; every recorded symbol is listed
    in every market, since the recording (not this list) decides what is served.
    """
    names = sorted({s[1] if isinstance(s, tuple) else str(s) for s in symbols})

    async def instruments(request: web.Request) -> web.Response:
        category = request.query.get("category", "")
        items = [{"symbol": s, "status": "Trading"} for s in names]
        body = {"retCode": 0, "retMsg": "OK", "result": {"category": category, "list": items, "nextPageCursor": ""},
                "retExtInfo": {}, "time": _now_ms()}  # fmt: skip
        return web.json_response(body)

    app.router.add_get("/v5/market/instruments-info", instruments)
