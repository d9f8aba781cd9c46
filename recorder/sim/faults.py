"""Fault injection for the exchange simulator, the same for every venue.

A fault is scheduled (``at_s`` seconds after the simulator started, from ``--faults``) or
injected now over HTTP (``POST /sim/fault`` with a JSON :class:`Fault`). ``GET /sim/faults``
lists every fault injected so far, so a test or the demo can compare detections with injections.

Kinds (``FAULT_KINDS``):

* ``drop``       abort every client TCP connection (no close frame)
* ``stall``      connections stay open but send nothing, not even pings/pongs, for ``duration_s``
                 (``quiet``: only market data stops, requests and pings are still answered)
* ``close``      close every WebSocket with ``code`` (default 1011, internal error)
* ``malformed``  send each client one undecodable text frame
* ``gap``        withhold ``count`` diffs of ``symbol`` (every symbol if None): update ids skip
                 (``hold_s``: the snapshot that resyncs the book comes that much later, on
                 venues whose snapshot comes over the WebSocket)
* ``corrupt``    corrupt one level of ``symbol``'s next diff (checksum venues: the checksum no
                 longer matches; venues without one: the level crosses the book)
* ``rest_refuse`` answer REST book snapshots with HTTP ``code`` (default 503) for ``duration_s``
* ``rest_delay`` delay REST book snapshots by ``delay_s`` for ``duration_s``
* ``slow``       throttle every client to ``rate`` messages/s for ``duration_s`` (backpressure)
* ``restart``    restart the whole simulator: close all sockets, stop listening for ``duration_s``
* ``trade_gap``  withhold the next ``count`` trades of ``symbol`` (every symbol if None): their ids
                 are used, never sent (venues whose trade ids are contiguous show a gap)
* ``trade_silence`` the trade stream of ``symbol`` (every symbol if None) sends nothing for
                 ``duration_s`` while subscriptions are still acknowledged and books keep moving
                 (the symptom of a stream on the wrong route)

With a ``symbol``, the connection faults (drop, stall, close, malformed, slow) hit only the
connections carrying it. Symbols are the venue's own (``BTCUSDT``, ``BTC/USD``, ``BTC-USD``,
Bybit's ``linear:BTCUSDT`` or ``BTCUSDT`` for both markets); an unknown one is refused.
``rest_*`` faults only matter on venues whose books start from a REST snapshot (Binance); the
others accept and record them, but no client request is affected. Some venues know extra kinds
(``VENUE_KINDS``).

Every simulator gets the hooks the same way: a ``WsConn`` (``recorder/sim/wsconn.py``) built with
the injector applies the connection faults on its send path; the venue's publish path asks
``take_gap(key)`` / ``take_corrupt(key)`` before each diff, REST snapshot handlers await
``rest_fault()``, and the market engine pauses while ``data_paused()`` (a quiet stall)::

    self.faults = FaultInjector(self.name, opts.faults, symbols=resolve)   # in __init__
    self.faults.setup(app); await self.faults.start() / stop()
    conn = WsConn(ws, opened, counters, faults=self.faults, request=request)
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import time
import tomllib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec
from aiohttp import web

log = logging.getLogger("recorder.sim.faults")

FAULT_KINDS = (
    "drop",
    "stall",
    "close",
    "malformed",
    "gap",
    "corrupt",
    "rest_refuse",
    "rest_delay",
    "slow",
    "restart",
    "trade_gap",
    "trade_silence",
)
# Kinds only some venues know: kind -> what it does (the venue registers a handler).
VENUE_KINDS = {
    "notice": "OKX: announce a service upgrade (notice 64008) on every connection",
    "refuse_subscribe": "Bybit: refuse the next subscribe request for ``symbol``",
}
# The frame sent by a ``malformed`` fault: valid UTF-8, invalid JSON, shaped like a real event.
MALFORMED_FRAME = '{"stream":"fault","data":{"e":"depthUpdate","E":1,"U":'


class FaultError(ValueError):
    """A fault spec or file that cannot be used; one line for the user."""


class Fault(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    kind: str
    at_s: float = 0.0  # schedule: seconds after the simulator started
    venue: str | None = None  # schedule: only this venue's simulator (None: any)
    duration_s: float = 5.0  # stall, slow, rest_refuse, rest_delay, restart
    symbol: str | None = None  # gap, corrupt: venue symbol (None: every symbol)
    code: int | None = None  # close (WebSocket code, default 1011), rest_refuse (HTTP status, default 503)
    count: int = 1  # gap: diffs withheld per symbol
    delay_s: float = 3.0  # rest_delay
    rate: float = 2.0  # slow: messages per second per client
    quiet: bool = False  # stall: only market data stops; requests and pings are still answered
    hold_s: float = 0.0  # gap: the snapshot resyncing the book comes this much later (WebSocket-snapshot venues)


def check_fault(f: Fault) -> Fault:
    if f.kind not in FAULT_KINDS and f.kind not in VENUE_KINDS:
        raise FaultError(f"unknown fault kind {f.kind!r}: use one of {', '.join((*FAULT_KINDS, *VENUE_KINDS))}")
    numbers = (f.at_s, f.duration_s, f.delay_s, f.hold_s, f.rate)
    if not all(math.isfinite(x) for x in numbers) or min(numbers[:4]) < 0 or f.count < 1 or f.rate <= 0:
        raise FaultError(f"invalid {f.kind} fault: times must be finite and >= 0, count >= 1, rate > 0")
    if (
        f.kind == "close"
        and f.code is not None
        and not (f.code == 1000 or 3000 <= f.code <= 4999 or 1001 <= f.code <= 1014)
    ):
        raise FaultError(f"invalid WebSocket close code {f.code}")
    if f.kind == "rest_refuse" and f.code is not None and not 400 <= f.code <= 599:
        raise FaultError(f"invalid HTTP status {f.code} for rest_refuse")
    return f


# kind[@at][+duration][:symbol][#code], optionally prefixed by "venue/"; e.g. "binance/stall@10+5"
_SPEC_ITEM = re.compile(
    r"^(?:(?P<venue>[a-z0-9_]+)/)?(?P<kind>[a-z_]+)(?:@(?P<at>\d+(?:\.\d+)?))?"
    r"(?:\+(?P<dur>\d+(?:\.\d+)?))?(?::(?P<symbol>[A-Za-z0-9_\-/:]+))?(?:#(?P<code>\d+))?$"
)


def parse_faults(value: str) -> list[Fault]:
    """A schedule from a file (.json list or .toml ``[[fault]]`` tables) or an inline spec
    (``"drop@5,stall@10+4,gap@15:BTCUSDT,close@20#4000,restart@30+3"``)."""
    path = Path(value)
    if value.endswith((".json", ".toml")) or path.is_file():
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise FaultError(f"cannot read fault file {value}: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise FaultError(f"fault file {value} is not UTF-8 text") from None
        try:
            raw: Any = tomllib.loads(text).get("fault", []) if value.endswith(".toml") else json.loads(text)
        except (ValueError, tomllib.TOMLDecodeError) as exc:
            raise FaultError(f"fault file {value} is not valid: {exc}") from None
        try:
            faults = msgspec.convert(raw, list[Fault])
        except msgspec.ValidationError as exc:
            raise FaultError(f"fault file {value}: {exc}") from None
        return sorted((check_fault(f) for f in faults), key=lambda f: f.at_s)
    faults = []
    for item in filter(None, (s.strip() for s in value.split(","))):
        m = _SPEC_ITEM.match(item)
        if not m:
            raise FaultError(f"invalid fault spec {item!r}: use kind[@at_s][+duration_s][:symbol][#code]")
        f = Fault(kind=m["kind"], at_s=float(m["at"] or 0), venue=m["venue"], symbol=m["symbol"])
        if m["dur"] is not None:
            f.duration_s = float(m["dur"])
            f.delay_s = min(f.delay_s, f.duration_s) if f.kind == "rest_delay" else f.delay_s
        if m["code"] is not None:
            f.code = int(m["code"])
        faults.append(check_fault(f))
    return sorted(faults, key=lambda f: f.at_s)


class ConnFaults:
    """Per-connection fault state, owned by the injector."""

    __slots__ = ("transport", "close", "carries", "malformed_pending", "stall_until", "slow_until", "slow_rate")

    def __init__(
        self,
        transport: asyncio.BaseTransport | None,
        close: Callable[[int, str], None],
        carries: Callable[[str], bool] | None = None,
    ) -> None:
        self.transport = transport
        self.close = close
        self.carries = carries  # does this connection carry a symbol (key)? None: it carries none
        self.malformed_pending = False
        self.stall_until = 0.0  # faults scoped to this connection's symbols
        self.slow_until = 0.0
        self.slow_rate = 2.0


class FaultInjector:
    def __init__(
        self,
        venue: str,
        schedule: list[Fault] | None = None,
        symbols: Callable[[str], list[str]] | None = None,
        venue_kinds: dict[str, Callable[[Fault], None]] | None = None,
    ) -> None:
        self.venue = venue
        self.schedule = [f for f in (schedule or []) if f.venue in (None, venue)]
        # A fault's symbol -> the venue's keys it names ([] = unknown); default: the name itself.
        self.symbols = symbols or (lambda s: [s])
        self.venue_kinds = venue_kinds or {}
        self.injected: list[dict[str, Any]] = []
        self.conns: set[ConnFaults] = set()
        self.stall_until = 0.0
        self.quiet_until = 0.0
        self.slow_until = 0.0
        self.slow_rate = 2.0
        self.rest_refuse_until = 0.0
        self.rest_refuse_code = 503
        self.rest_delay_until = 0.0
        self.rest_delay_s = 0.0
        # "every symbol" faults: a total per kind and how many each symbol has taken so far.
        self._pending: dict[tuple[str, str], int] = {}  # (kind, key) -> still to apply
        self._all_total: dict[str, int] = {"gap": 0, "corrupt": 0, "trade_gap": 0}
        self._all_taken: dict[tuple[str, str], int] = {}
        self._hold: dict[str, float] = {}  # key -> delay of its next WebSocket snapshot (s)
        self._quiet: dict[str, float] = {}  # key -> end of a quiet stall of that symbol alone
        self._trade_silence: dict[str, float] = {}  # key ("*": every symbol) -> end of its silence
        # Set by the server: stop listening, wait, listen again on the same port.
        self.restart_handler: Callable[[float], Awaitable[None]] | None = None
        self._task: asyncio.Task[None] | None = None
        self._bg: set[asyncio.Task[None]] = set()
        self._t0 = time.monotonic()

    # -- wiring ----------------------------------------------------------------------------

    def setup(self, app: web.Application) -> None:
        app.router.add_post("/sim/fault", self._http_inject)
        app.router.add_get("/sim/faults", self._http_list)

    async def start(self) -> None:
        self._t0 = time.monotonic()
        if self.schedule:
            self._task = asyncio.create_task(self._run_schedule(), name=f"{self.venue}-faults")

    async def stop(self) -> None:
        for task in [self._task, *self._bg]:
            if task is not None:
                task.cancel()
        self._task = None

    async def _run_schedule(self) -> None:
        for f in self.schedule:
            await asyncio.sleep(max(0.0, self._t0 + f.at_s - time.monotonic()))
            try:
                self.inject(f)
            except FaultError as exc:
                log.warning("event=fault_refused venue=%s kind=%s error=%s", self.venue, f.kind, exc)

    # -- injecting -------------------------------------------------------------------------

    def check(self, f: Fault) -> list[str] | None:
        """The venue keys ``f`` targets (None: every symbol); FaultError if this venue can't apply it."""
        check_fault(f)
        if f.kind in VENUE_KINDS and f.kind not in self.venue_kinds:
            raise FaultError(f"fault kind {f.kind!r} is not known to the {self.venue} simulator")
        if f.symbol is None:
            return None
        keys = self.symbols(f.symbol)
        if not keys:
            raise FaultError(f"unknown symbol {f.symbol!r} on {self.venue}")
        return keys

    def _targets(self, keys: list[str] | None) -> list[ConnFaults]:
        if keys is None:
            return list(self.conns)
        return [c for c in self.conns if c.carries is not None and any(c.carries(k) for k in keys)]

    def inject(self, f: Fault) -> dict[str, Any]:
        """Start fault ``f`` now; returns its record (also kept in ``injected``)."""
        keys = self.check(f)
        now = time.monotonic()
        k = f.kind
        targets = self._targets(keys)
        if k in ("drop", "restart"):
            for c in targets if k == "drop" else list(self.conns):
                if c.transport is not None:
                    c.transport.abort()  # type: ignore[attr-defined]
        elif k == "stall" and f.quiet:
            if keys is None:
                self.quiet_until = now + f.duration_s
            for key in keys or ():
                self._quiet[key] = now + f.duration_s
        elif k == "stall":
            if keys is None:
                self.stall_until = now + f.duration_s
            for c in targets:
                c.stall_until = now + f.duration_s
        elif k == "close":
            for c in targets:
                c.close(f.code or 1011, "fault injected")
        elif k == "malformed":
            for c in targets:
                c.malformed_pending = True
        elif k == "trade_silence":
            for key in keys or ("*",):
                self._trade_silence[key] = now + f.duration_s
        elif k in ("gap", "corrupt", "trade_gap"):
            n = f.count if k in ("gap", "trade_gap") else 1
            if keys is None:
                self._all_total[k] += n
            for key in keys or ():
                self._pending[(k, key)] = self._pending.get((k, key), 0) + n
            if k == "gap" and f.hold_s > 0:
                for key in keys or ():
                    self._hold[key] = f.hold_s
                if keys is None:
                    self._hold["*"] = f.hold_s
        elif k == "rest_refuse":
            self.rest_refuse_until, self.rest_refuse_code = now + f.duration_s, f.code or 503
        elif k == "rest_delay":
            self.rest_delay_until, self.rest_delay_s = now + f.duration_s, f.delay_s
        elif k == "slow":
            if keys is None:
                self.slow_until, self.slow_rate = now + f.duration_s, f.rate
            for c in targets:
                c.slow_until, c.slow_rate = now + f.duration_s, f.rate
        elif k in self.venue_kinds:
            self.venue_kinds[k](f)
        if k == "restart":
            if self.restart_handler is not None:
                task = asyncio.get_running_loop().create_task(self.restart_handler(f.duration_s))
                self._bg.add(task)
                task.add_done_callback(self._bg.discard)
        timed = ("stall", "slow", "rest_refuse", "rest_delay", "restart", "trade_silence")
        record = {
            "kind": k,
            "venue": self.venue,
            "at_ms": int(time.time() * 1000),
            "duration_s": f.duration_s if k in timed else 0.0,
            "symbol": f.symbol,
            "connections": len(targets) if keys is not None else len(self.conns),
        }
        self.injected.append(record)
        log.info("event=fault_injected venue=%s kind=%s symbol=%s conns=%d", self.venue, k, f.symbol, len(self.conns))
        return record

    async def _http_inject(self, request: web.Request) -> web.Response:
        try:
            f = msgspec.json.decode(await request.read(), type=Fault)
            return web.json_response(self.inject(f))
        except (msgspec.DecodeError, msgspec.ValidationError, FaultError) as exc:
            return web.json_response({"error": str(exc)}, status=400)

    async def _http_list(self, request: web.Request) -> web.Response:
        return web.json_response({"venue": self.venue, "injected": self.injected})

    # -- hooks for venue simulators --------------------------------------------------------

    def attach(
        self,
        transport: asyncio.BaseTransport | None,
        close: Callable[[int, str], None],
        carries: Callable[[str], bool] | None = None,
    ) -> ConnFaults:
        """Register a client connection; ``close(code, reason)`` closes it the venue's way,
        ``carries(key)`` tells whether it carries a symbol (for symbol-scoped faults)."""
        h = ConnFaults(transport, close, carries)
        self.conns.add(h)
        return h

    def detach(self, h: ConnFaults) -> None:
        self.conns.discard(h)

    def silent(self, h: ConnFaults | None = None) -> bool:
        """True while a stall is on: send nothing, answer no ping."""
        now = time.monotonic()
        return now < self.stall_until or (h is not None and now < h.stall_until)

    def data_paused(self, key: str | None = None) -> bool:
        """True during a quiet stall (of every symbol, or of ``key``): the market engine publishes
        nothing (and catches up afterwards)."""
        now = time.monotonic()
        return now < self.quiet_until or (key is not None and now < self._quiet.get(key, 0.0))

    async def before_send(self, h: ConnFaults) -> str | None:
        """Await this before sending each message: holds it during a stall, paces it while
        slow. Returns a frame to send first (a malformed one), or None."""
        while True:
            now = time.monotonic()
            stall_until = max(self.stall_until, h.stall_until)
            slow_until, rate = (h.slow_until, h.slow_rate) if h.slow_until > now else (self.slow_until, self.slow_rate)
            if now < stall_until:
                await asyncio.sleep(stall_until - now)
            elif now < slow_until:
                await asyncio.sleep(1.0 / rate)
                break
            else:
                break
        if h.malformed_pending:
            h.malformed_pending = False
            return MALFORMED_FRAME
        return None

    def take_gap(self, key: str) -> bool:
        """True: withhold this diff of ``key`` (a symbol) from every client."""
        return self._take("gap", key)

    def take_corrupt(self, key: str) -> bool:
        """True: corrupt one level of this diff of ``key``."""
        return self._take("corrupt", key)

    def take_trade_gap(self, key: str) -> bool:
        """True: withhold this trade of ``key`` from every client (its id is used anyway)."""
        return self._take("trade_gap", key)

    def trades_silent(self, key: str) -> bool:
        """True while the trade stream of ``key`` is silenced (``trade_silence``)."""
        now = time.monotonic()
        return now < self._trade_silence.get(key, 0.0) or now < self._trade_silence.get("*", 0.0)

    def take_hold(self, key: str) -> float:
        """Seconds to delay the next WebSocket snapshot of ``key`` (after a ``gap`` with ``hold_s``)."""
        return self._hold.pop(key, 0.0) or self._hold.pop("*", 0.0)

    def _take(self, kind: str, key: str) -> bool:
        pk = (kind, key)
        n = self._pending.get(pk, 0)
        if n:
            self._pending[pk] = n - 1
            return True
        taken = self._all_taken.get(pk, 0)
        if taken < self._all_total[kind]:
            self._all_taken[pk] = taken + 1
            return True
        return False

    async def rest_fault(self) -> web.Response | None:
        """A refusal to return instead of the snapshot, or None (after any injected delay)."""
        now = time.monotonic()
        if now < self.rest_refuse_until:
            return web.json_response(
                {"code": -1001, "msg": "Service unavailable (fault injected)."}, status=self.rest_refuse_code
            )
        if now < self.rest_delay_until:
            await asyncio.sleep(self.rest_delay_s)
        return None
