"""OKX v5 public simulator: ``books`` / ``books-l2-tbt`` / ``books50-l2-tbt`` (snapshot + updates
with ``prevSeqId``/``seqId``), ``books5`` (top-5 pushes), the text ``ping``/``pong`` keepalive, and
REST ``/api/v5/public/instruments``.

Checksum (venue-protocols.md §5): OKX now sends ``checksum: 0`` on every book frame, so that is the
default (``okx_checksum="zero"``): a client must prove books by the ``seqId`` chain alone, and a
``corrupt`` fault sends a bid above the best ask (a crossed book is all a client can prove, as on
Bybit). ``okx_checksum="crc"`` sends the documented signed CRC32 of the top 25 levels instead (the
feed of older captures; ``corrupt`` then sends one wrong level with the true book's checksum).

Per venue-protocols.md §5: levels are ``[price, size, "0", orders]`` strings (OKX prints no
trailing zeros: ``"3366"``, ``"0.2"``), size ``"0"`` deletes; ``seqId`` is the generator's update
id of the published state, so ``/sim/book?update_id=<seqId>`` is the truth for a stored book.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from recorder.sim.book import InstrumentSpec, Level, WindowDiff, fmt_units
from recorder.sim.faults import Fault
from recorder.sim.feed import SymbolFeed
from recorder.sim.subscribed import SimConn, SubscribedSimVenue, decimals_of, json_text, spec_for
from recorder.sim.trades import SimTrade, SymbolTrades, record_route

if TYPE_CHECKING:
    from recorder.sim.options import SimOptions

INCREMENTAL = ("books", "books-l2-tbt", "books50-l2-tbt")
CHANNELS = (*INCREMENTAL, "books5")
TRADES = "trades"  # aggregated: one push per taker fill, ``count`` matches, the last id
CHECKSUM_LEVELS = 25
CHECKSUM_MODES = ("zero", "crc")  # today's feed, the documented CRC32 (older captures)
DEFAULT_SYMBOLS = (
    "BTC-USDT", "ETH-USDT", "SOL-USDT", "XRP-USDT", "DOGE-USDT", "LTC-USDT", "ETH-BTC",
    "BTC-USDT-SWAP", "ETH-USDT-SWAP", "SOL-USDT-SWAP",
)  # fmt: skip


def inst_type(inst_id: str) -> str:
    """``BTC-USDT`` SPOT, ``BTC-USDT-SWAP`` SWAP, ``BTC-USD-220527`` FUTURES."""
    if inst_id.endswith("-SWAP"):
        return "SWAP"
    last = inst_id.rsplit("-", 1)[-1]
    return "FUTURES" if inst_id.count("-") == 2 and last.isdigit() else "SPOT"


def _text(units: int, decimals: int) -> str:
    text = fmt_units(units, decimals)
    return text.rstrip("0").rstrip(".") if "." in text else text


class OkxVenue(SubscribedSimVenue):
    name = "okx"
    ws_paths = ("/", "/ws/v5/public")

    def __init__(self, opts: SimOptions) -> None:
        symbols = [s.upper() for s in opts.symbols] if opts.symbols else list(DEFAULT_SYMBOLS)
        specs: list[InstrumentSpec] = []
        for s in dict.fromkeys(symbols):
            parts = s.split("-")
            base, quote = parts[0], parts[1] if len(parts) > 1 else "USDT"
            specs.append(spec_for(s, base, quote, contracts=s.endswith("-SWAP")))
        super().__init__(opts, specs)
        if opts.okx_checksum not in CHECKSUM_MODES:
            raise ValueError(f"unknown OKX checksum mode {opts.okx_checksum!r}: use one of {', '.join(CHECKSUM_MODES)}")
        self.send_crc = opts.okx_checksum == "crc"
        self.dec = {s.symbol: (decimals_of(s.tick), decimals_of(s.lot)) for s in specs}
        self._subs: dict[tuple[str, str], set[SimConn]] = {}  # (channel, instId) -> clients
        self._last_pub = {s: f.last_id for s, f in self.feeds.items()}
        self.trades = {s: SymbolTrades(f, s, f"{opts.seed}:{s}") for s, f in self.feeds.items()}

    def level_text(self, feed: SymbolFeed, units: int, is_price: bool) -> str:
        pd, qd = self.dec[feed.spec.symbol]
        return _text(units, pd if is_price else qd)

    def _levels(self, feed: SymbolFeed, levels: list[Level]) -> list[list[str]]:
        pd, qd = self.dec[feed.spec.symbol]
        lot = feed.spec.lot
        # The order count is cosmetic (clients ignore it) but keeps the real 4-field shape.
        return [[_text(p, pd), _text(q, qd), "0", str(1 + (q // lot) % 7 if q else 0)] for p, q in levels]

    def _checksum(self, feed: SymbolFeed) -> int:
        if not self.send_crc:
            return 0  # what OKX sends today
        bids, asks = feed.book.top(CHECKSUM_LEVELS)
        pd, qd = self.dec[feed.spec.symbol]
        parts: list[str] = []
        for i in range(CHECKSUM_LEVELS):
            if i < len(bids):
                parts += (_text(bids[i][0], pd), _text(bids[i][1], qd))
            if i < len(asks):
                parts += (_text(asks[i][0], pd), _text(asks[i][1], qd))
        crc = zlib.crc32(":".join(parts).encode())
        return crc - (1 << 32) if crc >= 1 << 31 else crc

    # -- publication -----------------------------------------------------------------------------

    def publish(self, feed: SymbolFeed, diff: WindowDiff | None, event_ms: int, fault: str | None) -> None:
        if diff is None:
            return
        sym = feed.spec.symbol
        prev, self._last_pub[sym] = self._last_pub[sym], diff.last_id
        crc: int | None = None
        for channel in CHANNELS:
            conns = self._subs.get((channel, sym))
            if not conns:
                continue
            arg = {"channel": channel, "instId": sym}
            if channel == "books5":
                bids, asks = feed.book.top(5)
                data = {"asks": self._levels(feed, asks), "bids": self._levels(feed, bids), "instId": sym,
                        "ts": str(event_ms), "seqId": diff.last_id}  # fmt: skip
                self.fanout(conns, json_text({"arg": arg, "data": [data]}))
                continue
            if fault == "drop":
                continue
            if crc is None:
                crc = self._checksum(feed)
            bids, asks = diff.bids, diff.asks
            if fault == "corrupt" and not self.send_crc:
                bids = [_crossing_bid(feed), *bids]
            elif fault == "corrupt":
                best = feed.book.best_bid()
                if best is not None:
                    wrong = feed.book.bids[best] + feed.spec.lot
                    bids = sorted([(p, q) for p, q in bids if p != best] + [(best, wrong)], reverse=True)
            data = {"asks": self._levels(feed, asks), "bids": self._levels(feed, bids), "ts": str(event_ms),
                    "checksum": crc, "prevSeqId": prev, "seqId": diff.last_id}  # fmt: skip
            self.fanout(conns, json_text({"arg": arg, "action": "update", "data": [data]}))

    def publish_trades(self, feed: SymbolFeed, event_ms: int) -> None:
        sym = feed.spec.symbol
        conns = self._subs.get((TRADES, sym))
        pd, qd = self.dec[sym]
        for group in self.trades[sym].take(event_ms, self.faults, bool(conns)):
            last = group[-1]
            data = {"instId": sym, "tradeId": str(last.trade_id), "px": _text(last.price, pd),
                    "sz": _text(sum(t.qty for t in group), qd), "side": "buy" if last.taker_buy else "sell",
                    "ts": str(last.time_ms), "count": str(len(group)), "source": "0",
                    "seqId": feed.last_id}  # fmt: skip
            self.fanout(conns or (), json_text({"arg": {"channel": TRADES, "instId": sym}, "data": [data]}))

    def _trade_row(self, tape: SymbolTrades, t: SimTrade) -> dict[str, Any]:
        pd, qd = self.dec[tape.key]
        return {"id": str(t.trade_id), "price": _text(t.price, pd), "qty": _text(t.qty, qd),
                "side": "buy" if t.taker_buy else "sell", "time_us": t.time_ms * 1000}  # fmt: skip

    def send_snapshot(self, conn: SimConn, feed: SymbolFeed, key: Any, event_ms: int) -> None:
        channel, sym = key
        arg = {"channel": channel, "instId": sym}
        if channel == "books5":
            bids, asks = feed.book.top(5)
            data = {"asks": self._levels(feed, asks), "bids": self._levels(feed, bids), "instId": sym,
                    "ts": str(event_ms), "seqId": feed.last_id}  # fmt: skip
            conn.send(json_text({"arg": arg, "data": [data]}))
        else:
            depth = 50 if channel == "books50-l2-tbt" else 400
            bids, asks = feed.book.top(depth)
            data = {"asks": self._levels(feed, asks), "bids": self._levels(feed, bids), "ts": str(event_ms),
                    "checksum": self._checksum(feed), "prevSeqId": -1, "seqId": feed.last_id}  # fmt: skip
            conn.send(json_text({"arg": arg, "action": "snapshot", "data": [data]}))
        self._subs.setdefault(key, set()).add(conn)

    def venue_kinds(self) -> dict[str, Callable[[Fault], None]]:
        return {"notice": self._notice}  # the service-upgrade notice (64008)

    def conn_carries(self, conn: SimConn, symbol: str) -> bool:
        return any(key[1] == symbol for key in conn.subs)

    def damage_applies(self, feed: SymbolFeed, diff: WindowDiff) -> bool:
        return any(self._subs.get((channel, feed.spec.symbol)) for channel in INCREMENTAL)

    def _notice(self, fault: Fault) -> None:
        notice = {"event": "notice", "code": "64008",
                  "msg": "The connection will soon be closed for a service upgrade. Please reconnect."}  # fmt: skip
        for conn in list(self.conns):
            conn.send(json_text({**notice, "connId": f"{conn.id:08x}"}))

    # -- requests --------------------------------------------------------------------------------

    def on_text(self, conn: SimConn, text: str) -> None:
        if text == "ping":
            self.counters["pings"] += 1
            conn.send("pong")
            return
        try:
            req = json.loads(text)
        except ValueError:
            req = None
        if not isinstance(req, dict):
            conn.send(json_text({"event": "error", "code": "60012", "msg": f"Invalid request: {text[:200]}",
                                 "connId": f"{conn.id:08x}"}))  # fmt: skip
            return
        op, rid, args = req.get("op"), req.get("id"), req.get("args")
        base: dict[str, Any] = {"id": rid} if rid is not None else {}
        if op not in ("subscribe", "unsubscribe") or not isinstance(args, list) or not args:
            self._error(conn, base, "60012", f"Invalid request: {text[:200]}")
            return
        for arg in args:
            channel = arg.get("channel") if isinstance(arg, dict) else None
            sym = arg.get("instId") if isinstance(arg, dict) else None
            if channel not in (*CHANNELS, TRADES) or sym not in self.feeds:
                self.counters["subscribe_errors"] += 1
                self._error(
                    conn, base, "60018",
                    f"Wrong URL or channel:{channel},instId:{sym} doesn't exist. Please use the correct URL, "
                    "channel and parameters referring to API document.",
                )  # fmt: skip
                continue
            key = (channel, sym)
            if op == "subscribe":
                conn.subs[key] = True
                conn.send(json_text({**base, "event": "subscribe", "arg": arg, "connId": f"{conn.id:08x}"}))
                if channel == TRADES:  # no snapshot: every trade from now on
                    self._subs.setdefault(key, set()).add(conn)
                else:
                    self.owe_snapshot(conn, sym, key)
            else:
                conn.subs.pop(key, None)
                self._drop_sub(conn, key)
                conn.send(json_text({**base, "event": "unsubscribe", "arg": arg, "connId": f"{conn.id:08x}"}))

    def _error(self, conn: SimConn, base: dict[str, Any], code: str, msg: str) -> None:
        conn.send(json_text({**base, "event": "error", "code": code, "msg": msg, "connId": f"{conn.id:08x}"}))

    def _drop_sub(self, conn: SimConn, key: tuple[str, str]) -> None:
        subs = self._subs.get(key)
        if subs is not None:
            subs.discard(conn)
            if not subs:
                del self._subs[key]

    def forget(self, conn: SimConn) -> None:
        for key in list(conn.subs):
            self._drop_sub(conn, key)

    # -- REST ------------------------------------------------------------------------------------

    def extra_routes(self, app: web.Application) -> None:
        app.router.add_get("/api/v5/public/instruments", self._instruments)
        record_route(app, lambda s: self.trades.get(s), self._trade_row)

    async def _instruments(self, request: web.Request) -> web.Response:
        kind = request.query.get("instType", "")
        if kind not in ("SPOT", "SWAP", "FUTURES", "OPTION", "MARGIN"):
            return web.json_response({"code": "51000", "msg": "Parameter instType error", "data": []}, status=400)
        data = []
        for sym, feed in self.feeds.items():
            if inst_type(sym) != kind:
                continue
            is_swap = kind != "SPOT"
            spec = feed.spec
            data.append(
                {"instType": kind, "instId": sym, "baseCcy": spec.base if not is_swap else "",
                 "quoteCcy": spec.quote if not is_swap else "", "settleCcy": spec.quote if is_swap else "",
                 "tickSz": _text(spec.tick, 8), "lotSz": _text(spec.lot, 8), "state": "live"}
            )  # fmt: skip
        return web.json_response({"code": "0", "msg": "", "data": data})


def _crossing_bid(feed: SymbolFeed) -> Level:
    """A bid at twice the best ask: no later update touches that price, so without a checksum the
    client's book stays crossed until it resubscribes."""
    spec = feed.spec
    px = 2 * (feed.book.best_ask() or spec.price)
    return (px - px % spec.tick, spec.lot)


def replay_routes(app: web.Application, symbols: list[str]) -> None:
    """For a replayed recording (``recorder/sim/replay.py``): the instrument list ``check_pairs`` reads."""

    async def instruments(request: web.Request) -> web.Response:
        kind = request.query.get("instType", "")
        data = [{"instType": kind, "instId": s, "state": "live"} for s in symbols if inst_type(s) == kind]
        return web.json_response({"code": "0", "msg": "", "data": data})

    app.router.add_get("/api/v5/public/instruments", instruments)


def create_venue(opts: SimOptions) -> OkxVenue:
    return OkxVenue(opts)
