"""Coinbase Advanced Trade simulator: the market-data WebSocket (``level2`` -> ``l2_data``,
``heartbeats``, ``subscriptions``) plus ``/api/v3/brokerage/market/products``, on one aiohttp app.

Wire format per venue-protocols.md §3a: subscribe within 5 s of connecting, one channel per
message; ``level2`` sends a ``snapshot`` event with the whole book, then ``update`` events with
absolute quantities (asks are ``offer``). Every message on a connection carries the next
``sequence_num`` of that connection (one counter across channels and products). Faults
(``POST /sim/fault``, ``recorder/sim/faults.py``): a ``gap`` withholds the next update of a product
from every connection carrying it, whose ``sequence_num`` then skips one; ``corrupt`` adds a bid
above the best ask (Coinbase has no checksum: a crossed book is what a client can prove).
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from bisect import bisect_left
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import msgspec
from aiohttp import WSCloseCode, WSMsgType, web

from recorder.sim.book import InstrumentSpec, Level, WindowDiff, fmt_units, to_units
from recorder.sim.faults import FaultInjector
from recorder.sim.feed import BookHistory, SymbolFeed
from recorder.sim.trades import SimTrade, SymbolTrades, flatten, record_route
from recorder.sim.wsconn import EngineVenue, WsConn, accept

if TYPE_CHECKING:
    from recorder.sim.options import SimOptions

TICK_MS = 10
SUBSCRIBE_DEADLINE_S = 5.0  # the venue drops a connection that subscribes to nothing by then
HEARTBEAT_S = 1.0
MAX_INCOMING_PER_S = 8
CHANNELS = ("level2", "heartbeats", "market_trades")
TRADE_REPLAY = 100  # trades replayed by a market_trades subscription (trades-protocols.md §4)

# product -> (price, tick, lot, typical resting size, events/s)
DEFAULT_PRODUCTS: dict[str, tuple[str, str, str, str, float]] = {
    "BTC-USD": ("65000", "0.01", "0.00000001", "0.05", 200.0),
    "ETH-USD": ("3200", "0.01", "0.00000001", "1", 150.0),
    "SOL-USD": ("150", "0.01", "0.00000001", "20", 80.0),
    "BTC-USDT": ("65000", "0.01", "0.00000001", "0.02", 40.0),
}


def make_spec(product: str) -> InstrumentSpec:
    base, _, quote = product.partition("-")
    price, tick, lot, typ, rate = DEFAULT_PRODUCTS.get(product, ("25", "0.001", "0.001", "50", 20.0))
    lot_u = to_units(lot)
    return InstrumentSpec(
        product, base, quote, to_units(price), to_units(tick), lot_u, max(1, to_units(typ) // lot_u), rate
    )


def _num(units: int) -> str:
    return fmt_units(units).rstrip("0").rstrip(".")


def _rfc3339(epoch_ms: float, ns: bool = False) -> str:
    """Exact for whole milliseconds (a float round-trip could print .122999 for .123)."""
    ms = int(round(epoch_ms))
    text = datetime.fromtimestamp(ms // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{text}.{ms % 1000:03d}{'000000' if ns else '000'}Z"


def _trades(product: str, trades: list[SimTrade]) -> list[dict[str, str]]:
    """Newest first, and ``side`` is the *maker's*, as Coinbase prints them."""
    return [{"product_id": product, "trade_id": str(t.trade_id), "price": _num(t.price), "size": _num(t.qty),
             "time": _rfc3339(t.time_ms), "side": "SELL" if t.taker_buy else "BUY"}
            for t in reversed(trades)]  # fmt: skip


def _updates(bids: list[Level], asks: list[Level], event_time: str) -> list[dict[str, str]]:
    out = [{"side": "bid", "event_time": event_time, "price_level": _num(p), "new_quantity": _num(q)} for p, q in bids]
    out += [
        {"side": "offer", "event_time": event_time, "price_level": _num(p), "new_quantity": _num(q)} for p, q in asks
    ]
    return out


class _Conn(WsConn):
    client: _Client | None = None

    def carries(self, key: str) -> bool:
        return self.client is not None and key in self.client.subs["level2"]


class _Client:
    def __init__(self, conn: _Conn) -> None:
        self.conn = conn
        conn.client = self
        self.seq = 0
        self.subs: dict[str, set[str]] = {c: set() for c in CHANNELS}

    def send(self, channel: str, events: list[Any]) -> bool:
        msg = {"channel": channel, "client_id": "", "timestamp": _rfc3339(time.time() * 1000, ns=True),
               "sequence_num": self.seq, "events": events}  # fmt: skip
        self.seq += 1
        return self.conn.send(msgspec.json.encode(msg).decode())


class _Product:
    """One product's generator plus an index from published event time to generator update id."""

    def __init__(self, feed: SymbolFeed, seed: str) -> None:
        self.feed = feed
        self.trades = SymbolTrades(feed, feed.spec.symbol, seed)
        self.trade_subs: set[_Client] = set()
        self.event_ms: list[int] = []
        self.ids: list[int] = []
        self.last_event_ms = 0
        self.subs: set[_Client] = set()

    def publish(self, event_ms: int, last_id: int, retention_s: float) -> None:
        self.event_ms.append(event_ms)
        self.ids.append(last_id)
        self.last_event_ms = event_ms
        if len(self.event_ms) > 4096 and event_ms - self.event_ms[0] > retention_s * 1000 + 60_000:
            del self.event_ms[:2048], self.ids[:2048]

    def id_at(self, event_ms: int) -> int | None:
        i = bisect_left(self.event_ms, event_ms)
        return self.ids[i] if i < len(self.ids) and self.event_ms[i] == event_ms else None


class CoinbaseVenue(EngineVenue):
    name = "coinbase"

    def __init__(self, opts: SimOptions) -> None:
        self.opts = opts
        seed = opts.seed if opts.seed is not None else random.SystemRandom().randrange(2**63)
        products = [s.upper() for s in opts.symbols] if opts.symbols else list(DEFAULT_PRODUCTS)
        self.fast_ticks = max(1, round(opts.update_interval_ms / TICK_MS))
        self.tick_s = TICK_MS / 1000.0
        self.products: dict[str, _Product] = {
            p: _Product(
                SymbolFeed(make_spec(p), f"{seed}:{p}", self.tick_s, (self.fast_ticks,), opts.history_s), f"{seed}:{p}"
            )
            for p in dict.fromkeys(products)
        }
        self._clients: set[_Client] = set()
        self._next_beat: float | None = None  # engine clock of the next heartbeats
        self._tasks: set[asyncio.Task[None]] = set()
        self.faults = FaultInjector(
            self.name, opts.faults, symbols=lambda s: [s.upper()] if s.upper() in self.products else []
        )
        self.counters: dict[str, int] = dict.fromkeys(
            ("connections_total", "messages_sent", "updates_published", "snapshots_sent", "heartbeats_sent",
             "updates_withheld", "updates_corrupted", "closed_no_subscribe", "closed_rate_limit",
             "closed_slow_consumer", "rest_requests"),
            0,
        )  # fmt: skip

    # -- lifecycle ----------------------------------------------------------------------------------

    def setup(self, app: web.Application) -> None:
        app.router.add_get("/", self._ws)
        app.router.add_get("/api/v3/brokerage/market/products", self._rest_products)
        app.router.add_get("/sim/book", self._sim_book)
        app.router.add_get("/sim/stats", self._sim_stats)
        record_route(app, lambda s: getattr(self.products.get(s.upper()), "trades", None), _trade_row)
        self.faults.setup(app)

    def open_conns(self) -> list[WsConn]:
        return [client.conn for client in self._clients]

    def histories(self) -> Iterable[BookHistory]:
        return (p.feed.history for p in self.products.values())

    def own_stats(self) -> dict[str, Any]:
        return {
            "products": {
                name: {"last_update_id": p.feed.last_id, "last_event_ms": p.last_event_ms, "subscribers": len(p.subs)}
                for name, p in self.products.items()
            }
        }

    # -- market engine ------------------------------------------------------------------------------

    def step(self, tick: int, now: float) -> int:
        # Advance only to whole publication windows, so the generator's book is always exactly the
        # last published state (a new subscriber's snapshot then matches an event time).
        tick -= tick % self.fast_ticks
        for product in self.products.values():
            # resume on a window boundary, like every other tick here
            product.feed.catch_up(tick, now, self._on_boundary, resume_ticks=self.fast_ticks * 10)
        if self._next_beat is None:
            self._next_beat = now + HEARTBEAT_S
        elif now >= self._next_beat:
            self._next_beat = now + HEARTBEAT_S
            self._heartbeats()
        return tick + self.fast_ticks

    def _on_boundary(self, feed: SymbolFeed, cadence: int, diff: WindowDiff | None, tick: int) -> None:
        product = self.products[feed.spec.symbol]
        event_ms = self.event_ms(tick)
        if diff is not None:
            self._publish_book(product, feed, diff, event_ms)
        groups = product.trades.take(event_ms, self.faults, bool(product.trade_subs))
        if groups:
            trades = _trades(feed.spec.symbol, flatten(groups))
            for client in list(product.trade_subs):
                self._send(client, "market_trades", [{"type": "update", "trades": trades}])

    def _publish_book(self, product: _Product, feed: SymbolFeed, diff: WindowDiff, event_ms: int) -> None:
        product.publish(event_ms, diff.last_id, self.opts.history_s)
        self.counters["updates_published"] += 1
        if not product.subs:
            return
        sym = feed.spec.symbol
        if self.faults.take_gap(sym):
            self.counters["updates_withheld"] += 1
            for client in product.subs:
                client.seq += 1  # its sequence number is used up, the update never sent
            return
        bids = diff.bids
        if self.faults.take_corrupt(sym):
            self.counters["updates_corrupted"] += 1
            bids = [_crossing_bid(feed), *bids]
        events = [{"type": "update", "product_id": sym, "updates": _updates(bids, diff.asks, _rfc3339(event_ms))}]
        for client in list(product.subs):
            self._send(client, "l2_data", events)

    def _send(self, client: _Client, channel: str, events: list[Any]) -> None:
        if not client.send(channel, events):
            self.counters["closed_slow_consumer"] += 1
            client.conn.close(WSCloseCode.POLICY_VIOLATION, b"slow consumer", flush=False)

    def _heartbeats(self) -> None:
        now_ms = time.time() * 1000.0
        counter = int((now_ms - self._wall0_ms) / 1000.0)
        when = datetime.fromtimestamp(now_ms / 1000.0, UTC).strftime("%Y-%m-%d %H:%M:%S.%f000 +0000 UTC")
        for client in list(self._clients):
            if client.subs["heartbeats"]:
                self._send(client, "heartbeats", [{"current_time": when, "heartbeat_counter": counter}])
                self.counters["heartbeats_sent"] += 1

    # -- WebSocket ----------------------------------------------------------------------------------

    async def _ws(self, request: web.Request) -> web.StreamResponse:
        ws = await accept(request, 1 << 16, {"error": "WebSocket upgrade required"})
        if not isinstance(ws, web.WebSocketResponse):
            return ws
        loop = asyncio.get_running_loop()
        client = _Client(_Conn(ws, loop.time(), self.counters, self.faults, request))
        self._clients.add(client)
        self.counters["connections_total"] += 1
        writer = asyncio.create_task(client.conn.writer())
        deadline = loop.call_later(SUBSCRIBE_DEADLINE_S, self._subscribe_deadline, client)
        try:
            async for msg in ws:
                if client.conn.closing:
                    continue
                if client.conn.over_rate(loop.time(), MAX_INCOMING_PER_S):
                    self.counters["closed_rate_limit"] += 1
                    client.conn.send(_error("rate limit exceeded"))
                    client.conn.close(WSCloseCode.POLICY_VIOLATION, b"rate limit exceeded", flush=True)
                    continue
                if msg.type is WSMsgType.PING:
                    await client.conn.on_ping(msg.data)
                elif msg.type is WSMsgType.TEXT:
                    self._handle(client, msg.data)
                elif msg.type is WSMsgType.BINARY:
                    client.conn.send(_error("binary frames are not supported"))
        finally:
            deadline.cancel()
            self._clients.discard(client)
            for product in self.products.values():
                product.subs.discard(client)
                product.trade_subs.discard(client)
            await client.conn.finish(writer)
        return ws

    def _subscribe_deadline(self, client: _Client) -> None:
        if not any(client.subs.values()):
            self.counters["closed_no_subscribe"] += 1
            client.conn.close(WSCloseCode.POLICY_VIOLATION, b"no subscription within 5 s", flush=False)

    def _handle(self, client: _Client, text: str) -> None:
        try:
            req = json.loads(text)
        except ValueError:
            client.conn.send(_error("failed to parse message"))
            return
        if not isinstance(req, dict):
            client.conn.send(_error("message must be a JSON object"))
            return
        kind, channel, products = req.get("type"), req.get("channel"), req.get("product_ids")
        if kind not in ("subscribe", "unsubscribe"):
            client.conn.send(_error(f"unknown message type {kind!r}"))
            return
        if channel not in CHANNELS:
            client.conn.send(_error(f"channel {channel!r} is not supported by this simulator"))
            return
        if not isinstance(products, list) or not products or not all(isinstance(p, str) for p in products):
            client.conn.send(_error("product_ids must be a non-empty list"))
            return
        unknown = [p for p in products if p not in self.products]
        if unknown:
            client.conn.send(_error(f"Failed to subscribe: unknown product_ids {','.join(unknown)}"))
            return
        subs = client.subs[channel]
        if kind == "unsubscribe":
            for p in products:
                subs.discard(p)
                if channel == "level2":
                    self.products[p].subs.discard(client)
                elif channel == "market_trades":
                    self.products[p].trade_subs.discard(client)
            self._send(client, "subscriptions", [{"subscriptions": self._sub_list(client)}])
            return
        fresh = [p for p in dict.fromkeys(products) if p not in subs]
        subs.update(products)
        self._send(client, "subscriptions", [{"subscriptions": self._sub_list(client)}])
        if channel == "market_trades":
            for p in fresh:  # the last 100 trades first (a snapshot event), then every new one
                trades = _trades(p, self.products[p].trades.replayed(TRADE_REPLAY))
                self._send(client, "market_trades", [{"type": "snapshot", "trades": trades}])
                self.products[p].trade_subs.add(client)
            return
        if channel != "level2":
            return
        for p in fresh:
            hold = self.faults.take_hold(p)
            if hold > 0:  # a slow venue: the snapshot (and the updates after it) come later
                asyncio.get_running_loop().call_later(hold, self._start_product, client, p)
            else:
                self._start_product(client, p)

    def _start_product(self, client: _Client, p: str) -> None:
        product = self.products[p]
        if client not in self._clients or p not in client.subs["level2"] or client in product.subs:
            return
        bids, asks = product.feed.book.top(len(product.feed.book.bids) + len(product.feed.book.asks))
        event_time = _rfc3339(product.last_event_ms or self._wall0_ms)
        events = [{"type": "snapshot", "product_id": p, "updates": _updates(bids, asks, event_time)}]
        self._send(client, "l2_data", events)
        product.subs.add(client)
        self.counters["snapshots_sent"] += 1

    @staticmethod
    def _sub_list(client: _Client) -> dict[str, list[str]]:
        return {c: sorted(s) for c, s in client.subs.items() if s}

    # -- REST ---------------------------------------------------------------------------------------

    async def _rest_products(self, request: web.Request) -> web.Response:
        self.counters["rest_requests"] += 1
        items = []
        for name, product in self.products.items():
            spec = product.feed.spec
            best = product.feed.book.best_bid() or spec.price
            items.append({
                "product_id": name, "price": _num(best), "base_increment": _num(spec.lot),
                "quote_increment": _num(spec.tick), "base_currency_id": spec.base, "quote_currency_id": spec.quote,
                "status": "online", "is_disabled": False, "trading_disabled": False, "product_type": "SPOT",
            })  # fmt: skip
        return web.json_response({"products": items, "num_products": len(items)})

    # -- verification (not Coinbase) ----------------------------------------------------------------

    async def _sim_book(self, request: web.Request) -> web.Response:
        """The book after the update with this event time (``event_ms``) or generator id (``update_id``)."""
        q = request.query
        product = self.products.get(q.get("symbol", "").upper())
        if product is None:
            return web.json_response({"error": "unknown symbol"}, status=400)
        try:
            limit = int(q.get("limit", "20"))
            if "event_ms" in q:
                update_id = product.id_at(int(q["event_ms"]))
            elif "update_id" in q:
                update_id = int(q["update_id"])
            else:
                update_id = product.feed.history.latest_id()
        except ValueError:
            return web.json_response({"error": "limit, event_ms and update_id must be integers"}, status=400)
        book = product.feed.history.state_at(update_id) if update_id is not None else None
        if book is None:
            return web.json_response({"error": "unknown or expired update"}, status=404)
        bids, asks = book.top(limit)
        return web.json_response({
            "update_id": update_id,
            "bids": [[_num(p), _num(q)] for p, q in bids],
            "asks": [[_num(p), _num(q)] for p, q in asks],
        })  # fmt: skip


def _trade_row(tape: SymbolTrades, t: SimTrade) -> dict[str, Any]:
    return {"id": str(t.trade_id), "price": _num(t.price), "qty": _num(t.qty), "side": "buy" if t.taker_buy else "sell",
            "time_us": t.time_ms * 1000}  # fmt: skip


def _crossing_bid(feed: SymbolFeed) -> Level:
    """A bid at twice the best ask: no later update touches that price, so the client's book stays
    crossed until it resubscribes."""
    spec = feed.spec
    best_ask = feed.book.best_ask() or spec.price
    px = 2 * best_ask
    return (px - px % spec.tick, spec.lot)


def _error(message: str) -> str:
    return msgspec.json.encode({"type": "error", "message": message}).decode()


def create_venue(opts: SimOptions) -> CoinbaseVenue:
    return CoinbaseVenue(opts)


def replay_routes(app: web.Application, symbols: list[str]) -> None:
    """For a replayed recording (``recorder/sim/replay.py``): the product list ``check_pairs`` reads."""

    async def products(request: web.Request) -> web.Response:
        items = [{"product_id": s, "status": "online", "is_disabled": False, "trading_disabled": False}
                 for s in symbols]  # fmt: skip
        return web.json_response({"products": items, "num_products": len(items)})

    app.router.add_get("/api/v3/brokerage/market/products", products)
