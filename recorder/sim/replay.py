"""Simulator replay: serve a recorded raw capture over the venue's real WebSocket and REST.

One timeline for the whole server, started by the first WebSocket client: a connection receives
the recorded frames from the timeline's current position on, each at its recorded time divided
by ``speed`` (like a live exchange, a late client does not see the past). A REST request for a
depth snapshot gets the recording's latest snapshot of that symbol at the current position, or
waits for its first one, so the recorded snapshot-to-stream join happens again for real.

Which recorded socket a client gets: the one whose recorded URL path matches the request's path
(Bybit spot and linear are two sockets), else the first. Frames the client sends are read and
ignored (the recording holds the venue's answers). Venue specifics come from the venue module
(``capture_pairs``, ``snapshot_pair``, ``symbol_for``) and the simulator module's
``replay_routes(app, symbols)`` (instrument endpoints ``check_pairs`` calls).
"""

from __future__ import annotations

import asyncio
import bisect
import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from aiohttp import WSCloseCode, WSMsgType, web

from recorder.replay.readers import Kind, Record, capture_files, read_capture
from recorder.venues import venue_module

if TYPE_CHECKING:
    from recorder.sim.options import SimOptions

MAX_SNAPSHOT_WAIT_S = 60.0


class ReplayError(ValueError):
    pass


class _Socket:
    """One recorded WebSocket: its URL path and frames (payload, recorded ms)."""

    def __init__(self, conn: str, url: str | None) -> None:
        self.conn = conn
        self.path = urlsplit(url).path if url else ""
        self.times: list[float] = []
        self.frames: list[str] = []
        self.served = False  # a connection has taken this socket's frames


class ReplayVenue:
    def __init__(self, opts: SimOptions, path: str | Path) -> None:
        if opts.speed <= 0:
            raise ReplayError(f"invalid speed {opts.speed}: must be positive")
        self.name = opts.venue
        self.opts = opts
        self.path = Path(path)
        if not self.path.is_file():
            raise ReplayError(f"replay file {self.path} is not a readable file")
        self.module = venue_module(opts.venue)
        self.sim_module = importlib.import_module(_sim_module_name(opts.venue))
        records = list(read_capture(capture_files(self.path)))
        self.sockets = self._sockets(records)
        if not self.sockets:
            raise ReplayError(f"no WebSocket frames in {self.path}")
        self.rec0 = min(s.times[0] for s in self.sockets.values())
        self.rec_end = max(s.times[-1] for s in self.sockets.values())
        self.snapshots = self._snapshots(records)
        self.symbols = self._symbols()
        self._t0: float | None = None  # loop time at which the timeline started
        self._conns: set[web.WebSocketResponse] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.counters = {"connections_total": 0, "frames_sent": 0, "snapshots_served": 0, "http_404": 0}

    # -- loading ------------------------------------------------------------------------------

    @staticmethod
    def _sockets(records: list[Record]) -> dict[str, _Socket]:
        urls = {r.conn: r.url for r in records if r.kind is Kind.CONNECT}
        sockets: dict[str, _Socket] = {}
        for r in records:
            if r.kind is Kind.WS:
                s = sockets.get(r.conn)
                if s is None:
                    s = sockets[r.conn] = _Socket(r.conn, urls.get(r.conn))
                s.times.append(r.recv_ms)
                s.frames.append(r.payload.decode("utf-8", "replace"))
        for s in sockets.values():
            # Recorded local times can step back a little; keep file order, never wait backwards.
            for i in range(1, len(s.times)):
                s.times[i] = max(s.times[i], s.times[i - 1])
        return sockets

    def _snapshots(self, records: list[Record]) -> dict[tuple[str, str], list[tuple[float, bytes]]]:
        """(url path, pair) -> [(recorded ms, body)] of the recorded REST depth snapshots."""
        pair_of = getattr(self.module, "snapshot_pair", None)
        out: dict[tuple[str, str], list[tuple[float, bytes]]] = {}
        if pair_of is None:
            return out
        for r in records:
            if r.kind is Kind.HTTP and r.url:
                pair = pair_of(r.url)
                if pair is not None:
                    out.setdefault((urlsplit(r.url).path, pair), []).append((r.recv_ms, r.payload))
        return out

    def _symbols(self) -> list[str]:
        finder = getattr(self.module, "capture_pairs", None)
        if finder is None:
            return []
        pairs: dict[str, None] = {}
        for s in self.sockets.values():
            for pair in finder([f.encode() for f in s.frames], url=None):
                pairs[pair] = None
        return [self.module.symbol_for(p) for p in pairs]

    # -- lifecycle ----------------------------------------------------------------------------

    def setup(self, app: web.Application) -> None:
        app.router.add_get("/sim/stats", self._sim_stats)
        routes = getattr(self.sim_module, "replay_routes", None)
        if routes is not None:
            routes(app, self.symbols)
        app.router.add_get("/{tail:.*}", self._any)

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for ws in list(self._conns):
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server stopping")

    def stats(self) -> dict[str, Any]:
        return {
            "venue": self.name,
            "replay": str(self.path),
            "speed": self.opts.speed,
            **self.counters,
            "connections_open": len(self._conns),
            "frames_recorded": sum(len(s.frames) for s in self.sockets.values()),
            "position_ms": self._position(),
            "done": self._position() >= self.rec_end,
        }

    # -- the timeline -------------------------------------------------------------------------

    def _position(self) -> float:
        """The recorded time (ms) the timeline has reached."""
        if self._t0 is None:
            return self.rec0
        return self.rec0 + (asyncio.get_running_loop().time() - self._t0) * 1000.0 * self.opts.speed

    def _loop_time_of(self, recorded_ms: float) -> float:
        assert self._t0 is not None
        return self._t0 + (recorded_ms - self.rec0) / 1000.0 / self.opts.speed

    # -- handlers -----------------------------------------------------------------------------

    async def _any(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._ws(request)
        return await self._rest(request)

    async def _ws(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(autoping=True, heartbeat=None, compress=False)
        await ws.prepare(request)
        loop = asyncio.get_running_loop()
        if self._t0 is None:
            self._t0 = loop.time()
        self.counters["connections_total"] += 1
        self._conns.add(ws)
        socket = self._socket_for(request.path)
        sender = loop.create_task(self._send(ws, socket))
        self._tasks.add(sender)
        sender.add_done_callback(self._tasks.discard)
        try:
            async for msg in ws:
                if msg.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
                    break
        finally:
            sender.cancel()
            self._conns.discard(ws)
        return ws

    def _socket_for(self, path: str) -> _Socket:
        for s in self.sockets.values():
            if s.path and s.path.rstrip("/") == path.rstrip("/"):
                return s
        return next(iter(self.sockets.values()))

    async def _send(self, ws: web.WebSocketResponse, socket: _Socket) -> None:
        loop = asyncio.get_running_loop()
        # The first connection gets the recording from its first frame, even when a REST
        # request started the timeline a moment before it (under load the handshake can lose
        # that race, and the frames of those first milliseconds were skipped). A reconnection
        # joins at the timeline's position, as a live feed does.
        i = bisect.bisect_left(socket.times, self._position()) if socket.served else 0
        socket.served = True
        while i < len(socket.frames) and not ws.closed:
            delay = self._loop_time_of(socket.times[i]) - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            try:
                await ws.send_str(socket.frames[i])
            except (ConnectionError, RuntimeError):
                return
            self.counters["frames_sent"] += 1
            i += 1

    async def _rest(self, request: web.Request) -> web.Response:
        pair_of = getattr(self.module, "snapshot_pair", None)
        pair = pair_of(str(request.rel_url)) if pair_of is not None else None
        recorded = self.snapshots.get((request.path, pair)) if pair is not None else None
        if not recorded:
            self.counters["http_404"] += 1
            return web.json_response({"code": -1121, "msg": "Invalid symbol (not in the recording)."}, status=400)
        times = [t for t, _ in recorded]
        idx = bisect.bisect_right(times, self._position()) - 1
        if idx < 0:
            # Not recorded yet at this point of the timeline: answer when it was.
            if self._t0 is None:
                self._t0 = asyncio.get_running_loop().time()
            wait = self._loop_time_of(times[0]) - asyncio.get_running_loop().time()
            await asyncio.sleep(min(max(0.0, wait), MAX_SNAPSHOT_WAIT_S))
            idx = 0
        self.counters["snapshots_served"] += 1
        return web.Response(body=recorded[idx][1], content_type="application/json")

    async def _sim_stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats())


def _sim_module_name(venue: str) -> str:
    from recorder.sim.options import VENUES

    if venue not in VENUES:
        raise ReplayError(f"the simulator does not serve venue {venue!r} yet (known: {', '.join(VENUES)})")
    return VENUES[venue]
