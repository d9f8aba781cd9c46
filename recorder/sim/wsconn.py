"""One simulated WebSocket client connection: an ordered outgoing queue drained by a writer task.

Shared by the simulators whose venues sync entirely over the socket (Bybit, Coinbase).
"""

from __future__ import annotations

import asyncio
from collections import deque

from aiohttp import web

MAX_QUEUED = 50_000  # outgoing messages buffered before the client is dropped as too slow


class _Close:
    __slots__ = ("code", "message")

    def __init__(self, code: int, message: bytes) -> None:
        self.code = code
        self.message = message


class WsConn:
    def __init__(self, ws: web.WebSocketResponse, opened: float) -> None:
        self.ws = ws
        self.opened = opened
        self.queue: deque[str | _Close] = deque()
        self.wake = asyncio.Event()
        self.closing = False
        self.sent = 0
        self.incoming: deque[float] = deque()

    def send(self, text: str) -> bool:
        """Queue a text frame; False when the client is too slow (the caller drops it)."""
        if self.closing:
            return True
        if len(self.queue) >= MAX_QUEUED:
            return False
        self.queue.append(text)
        self.wake.set()
        return True

    def close(self, code: int, message: bytes, flush: bool) -> None:
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
                    await ws.send_str(item)
                except Exception:  # peer gone; the reader loop ends on its own
                    return
                self.sent += 1

    async def finish(self, writer: asyncio.Task[None]) -> None:
        """After the reader loop: let a requested close flush, then stop the writer."""
        if self.closing and not writer.done():
            try:
                await asyncio.wait_for(writer, 5.0)
            except (TimeoutError, asyncio.CancelledError):
                pass
        writer.cancel()
        if not self.ws.closed:
            await self.ws.close()
