"""The Binance simulators' WebSocket side: raw (``/ws/<streams>``) and combined
(``/stream?streams=``) connections, the JSON control messages (SUBSCRIBE & co.) answered like the
venue, errors included, its server pings, pong timeout and 24 h limit, and a stream's fan-out."""

from __future__ import annotations

import asyncio
import json
import re
from typing import TYPE_CHECKING

import msgspec
from aiohttp import WSCloseCode, WSMsgType, web

from recorder.sim.binance_wire import json_error, now_ms, ws_error, ws_result
from recorder.sim.faults import FaultInjector
from recorder.sim.wsconn import WsConn

if TYPE_CHECKING:
    from recorder.sim.options import SimOptions

MAX_STREAMS = 1024

_STREAM_RE = re.compile(r"^[A-Za-z0-9!@_.\-]{1,128}$")
_ID_RE = re.compile(r"^[A-Za-z0-9]{1,36}$")
_METHODS = "`SUBSCRIBE`, `UNSUBSCRIBE`, `LIST_SUBSCRIPTIONS`, `SET_PROPERTY`, `GET_PROPERTY`"


class BinanceConn(WsConn):
    """One WebSocket client: a ``WsConn`` (with its injected faults) plus its subscriptions and pings."""

    def __init__(
        self, ws: web.WebSocketResponse, combined: bool, opened: float, venue: BinanceWs, request: web.Request
    ) -> None:
        super().__init__(ws, opened, venue.counters, venue.faults, request)
        self.combined = combined
        self.streams: dict[str, None] = {}  # ordered set, for LIST_SUBSCRIPTIONS
        self.pings: dict[bytes, float] = {}  # outstanding ping payload -> sent at

    def carries(self, key: str) -> bool:
        prefix = key.lower() + "@"
        return any(s.startswith(prefix) for s in self.streams)


class BinanceWs:
    """The WebSocket routes of ``BinanceVenue`` (a mixin: the venue holds the state named below)."""

    opts: SimOptions
    counters: dict[str, int]
    faults: FaultInjector
    _subs: dict[str, set[BinanceConn]]
    _conns: set[BinanceConn]

    def _fanout(self, name: str, payload: str, conns: set[BinanceConn]) -> None:
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

    async def _ws_combined(self, request: web.Request) -> web.StreamResponse:
        raw = request.query.get("streams", "")
        return await self._ws_session(request, True, [s for s in raw.split("/") if s])

    async def _ws_raw(self, request: web.Request) -> web.StreamResponse:
        raw = request.match_info.get("streams", "")
        return await self._ws_session(request, False, [s for s in raw.split("/") if s])

    async def _ws_session(self, request: web.Request, combined: bool, streams: list[str]) -> web.StreamResponse:
        if len(dict.fromkeys(streams)) > MAX_STREAMS:
            return json_error(400, -1, f"Too many streams requested; the limit is {MAX_STREAMS}.")
        # autoping off: ping/pong are handled here, to enforce the venue's own keepalive rules.
        ws = web.WebSocketResponse(autoping=False, compress=False, timeout=2.0, max_msg_size=1 << 16)
        if not ws.can_prepare(request).ok:
            return json_error(400, -1, "WebSocket upgrade required.")
        await ws.prepare(request)
        loop = asyncio.get_running_loop()
        conn = BinanceConn(ws, combined, loop.time(), self, request)
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
                    conn.send(ws_error(3, "Invalid JSON: expected value at line 1 column 1", None))
        finally:
            self._conns.discard(conn)
            for s in list(conn.streams):
                self._unsubscribe(conn, s)
            keeper.cancel()
            await conn.finish(writer)
        return ws

    async def _keepalive(self, conn: BinanceConn) -> None:
        """Server pings every ping_interval_s; no pong within pong_timeout_s or max age reached -> close."""
        loop = asyncio.get_running_loop()
        opts = self.opts
        next_ping = conn.opened + opts.ping_interval_s
        expires = conn.opened + opts.max_connection_age_s
        while not conn.closing:
            now = loop.time()
            if now >= expires:
                self.counters["closed_max_age"] += 1
                event = msgspec.json.encode({"e": "serverShutdown", "E": now_ms()}).decode()
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
                payload = str(now_ms()).encode()
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

    def _subscribe(self, conn: BinanceConn, stream: str) -> None:
        conn.streams[stream] = None
        self._subs.setdefault(stream, set()).add(conn)

    def _unsubscribe(self, conn: BinanceConn, stream: str) -> None:
        conn.streams.pop(stream, None)
        subs = self._subs.get(stream)
        if subs is not None:
            subs.discard(conn)
            if not subs:
                del self._subs[stream]

    def _handle_request(self, conn: BinanceConn, text: str) -> str | None:
        """JSON control messages (SUBSCRIBE & co.), answered like the venue, errors included."""
        try:
            req = json.loads(text)
        except ValueError as exc:
            line, col = getattr(exc, "lineno", 1), getattr(exc, "colno", 1)
            return ws_error(3, f"Invalid JSON: expected value at line {line} column {col}", None)
        if not isinstance(req, dict):
            return ws_error(2, "Invalid request: expected a JSON object", None)
        rid = req.get("id")
        if not (rid is None or (isinstance(rid, int) and not isinstance(rid, bool) and -(2**63) <= rid < 2**63)
                or (isinstance(rid, str) and _ID_RE.match(rid))):  # fmt: skip
            return ws_error(2, "Invalid request: request ID must be an unsigned integer", None)
        method = req.get("method")
        if method is None:
            return ws_error(2, "Invalid request: missing field `method`", rid)
        params = req.get("params")
        if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
            if not isinstance(params, list) or not all(isinstance(p, str) and _STREAM_RE.match(p) for p in params):
                return ws_error(2, "Invalid request: params must be an array of stream names", rid)
            if method == "SUBSCRIBE":
                if len(dict.fromkeys([*conn.streams, *params])) > MAX_STREAMS:
                    return ws_error(2, f"Invalid request: too many streams (max {MAX_STREAMS})", rid)
                for p in params:
                    self._subscribe(conn, p)
            else:
                for p in params:
                    self._unsubscribe(conn, p)
            return ws_result(None, rid)
        if method == "LIST_SUBSCRIPTIONS":
            return ws_result(list(conn.streams), rid)
        if method in ("SET_PROPERTY", "GET_PROPERTY"):
            if not isinstance(params, list) or not params or not isinstance(params[0], str):
                return ws_error(2, "Invalid request: property name must be a string", rid)
            if params[0] != "combined":
                return ws_error(0, "Unknown property", rid)
            if method == "GET_PROPERTY":
                return ws_result(conn.combined, rid)
            if len(params) != 2 or not isinstance(params[1], bool):
                return ws_error(1, "Invalid value type: expected Boolean", rid)
            conn.combined = params[1]
            return ws_result(None, rid)
        return ws_error(2, f"Invalid request: unknown variant `{method}`, expected one of {_METHODS}", rid)
