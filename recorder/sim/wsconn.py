"""Parts every venue simulator shares: one client connection with an ordered outgoing queue
drained by a writer task (where the connection faults of ``recorder/sim/faults.py`` act: stall,
slow, malformed, drop, close), the WebSocket upgrade, and the market engine's lifecycle with its
``/sim/stats`` and fault endpoints.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from aiohttp import WSCloseCode, web

from recorder.sim.faults import ConnFaults, FaultInjector

if TYPE_CHECKING:
    from recorder.sim.feed import BookHistory

MAX_QUEUED = 50_000  # outgoing messages buffered before the client is dropped as too slow


class _Close:
    __slots__ = ("code", "message")

    def __init__(self, code: int, message: bytes) -> None:
        self.code = code
        self.message = message


class WsConn:
    def __init__(
        self,
        ws: web.WebSocketResponse,
        opened: float,
        counters: dict[str, int] | None = None,
        faults: FaultInjector | None = None,
        request: web.Request | None = None,
    ) -> None:
        self.ws = ws
        self.opened = opened
        self.counters = counters if counters is not None else {}  # the venue's: counts messages_sent
        self.queue: deque[str | _Close] = deque()
        self.wake = asyncio.Event()
        self.closing = False
        self.incoming: deque[float] = deque()
        self.faults = faults
        self.fault: ConnFaults | None = None
        if faults is not None:
            transport = request.transport if request is not None else None
            self.fault = faults.attach(transport, self._fault_close, lambda key: self.carries(key))

    def carries(self, key: str) -> bool:
        """Does this connection carry ``key`` (a venue symbol)? Venues override it."""
        return False

    def _fault_close(self, code: int, reason: str) -> None:
        self.close(code, reason.encode(), flush=False)

    def silent(self) -> bool:
        """A stall is on: answer nothing, not even a ping."""
        return self.faults is not None and self.faults.silent(self.fault)

    async def on_ping(self, payload: bytes) -> None:
        """A client's WebSocket ping (servers run with autoping off, so that a stall can swallow it)."""
        if not self.silent():
            await self.ws.pong(payload)

    def send(self, text: str) -> bool:
        """Queue a text frame; False when the client is too slow (the caller drops it)."""
        if self.closing:
            return True
        if len(self.queue) >= MAX_QUEUED:
            return False
        self.queue.append(text)
        self.wake.set()
        return True

    def close(self, code: int = WSCloseCode.GOING_AWAY, message: bytes = b"closing", flush: bool = True) -> None:
        if self.closing:
            return
        self.closing = True
        if not flush:
            self.queue.clear()
        self.queue.append(_Close(code, message))
        self.wake.set()

    def over_rate(self, now: float, limit: int) -> bool:
        """Sliding one-second window over client frames; True = this frame exceeds ``limit``."""
        if limit <= 0:
            return False
        q = self.incoming
        q.append(now)
        while q and now - q[0] >= 1.0:
            q.popleft()
        return len(q) > limit

    async def writer(self) -> None:
        ws = self.ws
        while True:
            await self.wake.wait()
            self.wake.clear()
            while self.queue:
                item = self.queue.popleft()
                if isinstance(item, _Close):
                    await ws.close(code=item.code, message=item.message)
                    return
                try:
                    if self.fault is not None:
                        assert self.faults is not None
                        extra = await self.faults.before_send(self.fault)
                        if extra is not None:
                            await ws.send_str(extra)
                    await ws.send_str(item)
                except Exception:  # peer gone; the reader loop ends on its own
                    return
                self.counters["messages_sent"] = self.counters.get("messages_sent", 0) + 1

    async def finish(self, writer: asyncio.Task[None]) -> None:
        """After the reader loop: let a requested close flush, then stop the writer."""
        if self.faults is not None and self.fault is not None:
            self.faults.detach(self.fault)
        if self.closing and not writer.done():
            try:
                await asyncio.wait_for(writer, 5.0)
            except (TimeoutError, asyncio.CancelledError):
                pass
        writer.cancel()
        if not self.ws.closed:
            await self.ws.close()


async def accept(request: web.Request, max_msg_size: int, refusal: dict[str, Any]) -> web.StreamResponse:
    """The upgraded WebSocket, or (not an upgrade request) a 400 with the venue's error body."""
    # autoping off: the reader answers pings (``WsConn.on_ping``), so a stall can swallow them.
    ws = web.WebSocketResponse(autoping=False, compress=False, max_msg_size=max_msg_size)
    if not ws.can_prepare(request).ok:
        return web.json_response(refusal, status=400)
    await ws.prepare(request)
    return ws


class EngineVenue:
    """A simulator whose market engine runs as one task from ``start`` to ``stop``, with the
    fault injector every simulator has (``self.faults``)."""

    name = ""
    counters: dict[str, int]
    tick_s: float
    faults: FaultInjector
    _engine: asyncio.Task[None] | None = None
    _t0 = 0.0
    _wall0_ms = 0.0

    async def _run_engine(self) -> None:
        """The market: at every wake-up (none during a quiet stall) ``step`` moves the feeds to the
        current tick and names the tick to wake at next."""
        loop = asyncio.get_running_loop()
        while True:
            if await self.paused():
                continue
            now = loop.time()
            wake_tick = self.step(int((now - self._t0) / self.tick_s), now)
            await asyncio.sleep(max(0.0, self._t0 + wake_tick * self.tick_s - loop.time()) + 0.0005)

    def step(self, tick: int, now: float) -> int:
        """Advance the market to ``tick`` (engine clock ``now``); returns the tick to wake at next."""
        raise NotImplementedError

    def open_conns(self) -> Iterable[WsConn]:
        """Every client connection (closed by ``stop``)."""
        raise NotImplementedError

    def histories(self) -> Iterable[BookHistory]:
        """Every book history the venue keeps (``/sim/stats`` counts their self-check failures)."""
        raise NotImplementedError

    def own_stats(self) -> dict[str, Any]:
        """What ``/sim/stats`` shows of this venue beyond the common part: its symbols, topics..."""
        return {}

    def stats(self) -> dict[str, Any]:
        """``/sim/stats``: the venue, its counters, open connections, history self-check failures."""
        return {
            "venue": self.name,
            **self.counters,
            "connections_open": len(list(self.open_conns())),
            "self_check_failures": sum(h.self_check_failures for h in self.histories()),
            **self.own_stats(),
        }

    async def start(self) -> None:
        self._t0 = asyncio.get_running_loop().time()
        self._wall0_ms = time.time() * 1000.0
        self._engine = asyncio.create_task(self._run_engine(), name=f"{self.name}-sim-engine")
        await self.faults.start()

    async def stop(self) -> None:
        await self.faults.stop()
        if self._engine is not None:
            self._engine.cancel()
            try:
                await self._engine
            except asyncio.CancelledError:
                pass
            self._engine = None
        for conn in list(self.open_conns()):
            conn.close(WSCloseCode.GOING_AWAY, b"server stopping", flush=False)

    def event_ms(self, tick: int) -> int:
        """Wall-clock time (ms) of an engine tick."""
        return int(self._wall0_ms + tick * self.tick_s * 1000.0)

    async def _sim_stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats())

    async def paused(self) -> bool:
        """Engine loops call this first: during a quiet stall the market waits (and catches up
        afterwards, a burst, like a venue that resumes)."""
        if self.faults.data_paused():
            await asyncio.sleep(0.05)
            return True
        return False
