"""The Binance connector over a real WebSocket + HTTP server on loopback.

The server here is deliberately tiny and scripted (not the simulator): it sends exactly the
bad frames and sequences a test needs, so each outcome can be asserted precisely.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable

import pytest
from aiohttp import WSMsgType, web

from recorder.config import VenueConfig
from recorder.venues.binance import BinanceConnector


def _diff(U: int, u: int, bid: str) -> str:
    data = {
        "e": "depthUpdate",
        "E": 1_700_000_000_000 + u,
        "s": "BTCUSDT",
        "U": U,
        "u": u,
        "b": [[bid, "1.00000000"]],
        "a": [],
    }
    return json.dumps({"stream": "btcusdt@depth@100ms", "data": data})


class Scripted:
    def __init__(self, frames: Callable[[int], list[str | bytes]]) -> None:
        self.frames = frames
        self.snapshot_ids: list[int] = [100]
        self.snapshot_calls = 0
        self.connections = 0
        self.pongs = 0

    async def ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=False)
        await ws.prepare(request)
        self.connections += 1
        for frame in self.frames(self.connections):
            if isinstance(frame, bytes):
                await ws.send_bytes(frame)
            else:
                await ws.send_str(frame)
            await asyncio.sleep(0.02)
        await ws.ping(b"hello")
        async for msg in ws:
            if msg.type == WSMsgType.PONG:
                self.pongs += 1
        return ws

    async def depth(self, request: web.Request) -> web.Response:
        self.snapshot_calls += 1
        last = self.snapshot_ids[min(self.snapshot_calls, len(self.snapshot_ids)) - 1]
        body = {"lastUpdateId": last, "bids": [["50.00000000", "2.00000000"]], "asks": [["60.00000000", "3.0"]]}
        return web.json_response(body)


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Scripted], asyncio.Future]]:
    runners: list[web.AppRunner] = []

    async def start(script: Scripted) -> str:
        app = web.Application()
        app.router.add_get("/stream", script.ws)
        app.router.add_get("/api/v3/depth", script.depth)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return f"127.0.0.1:{port}"

    yield start  # type: ignore[misc]
    for runner in runners:
        await runner.cleanup()


def _top_bids(c: BinanceConnector) -> list[float]:
    book = c.book("BTC-USDT")
    assert book is not None
    return [lv.price for lv in book.top(5)[0]]


async def _run_until(
    connector: BinanceConnector,
    cond: Callable[[], bool],
    timeout: float = 10.0,
    then: Callable[[], object] = lambda: None,
) -> object:
    """Run the connector until `cond` holds; `then` runs before the connector is closed."""
    task = asyncio.create_task(connector.run())
    try:
        for _ in range(int(timeout / 0.02)):
            if cond():
                return then()
            await asyncio.sleep(0.02)
        raise AssertionError("condition not reached")
    finally:
        await connector.close()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def _at(c: BinanceConnector, update_id: int) -> bool:
    book = c.book("BTC-USDT")
    return book is not None and book.update_id == update_id


def _connector(host: str, **kw: float) -> BinanceConnector:
    cfg = VenueConfig(pairs=["BTC-USDT"], ws_url=f"ws://{host}", rest_url=f"http://{host}", **kw)
    return BinanceConnector(cfg, ["BTC-USDT"])


async def test_malformed_frames_are_counted_not_fatal(serve) -> None:
    frames = [
        b"\x00\x01binary",
        "this is not json",
        '{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","U":"oops"}}',
        '{"result":null,"id":1}',
        _diff(99, 101, "51.00000000"),
        _diff(102, 103, "52.00000000"),
    ]
    script = Scripted(lambda n: frames)
    host = await serve(script)
    c = _connector(host)
    bids = await _run_until(c, lambda: _at(c, 103), then=lambda: _top_bids(c))
    assert c.counters.get("malformed") == 3
    assert c.counters.get("reconnects") == 0
    assert bids == [52.0, 51.0, 50.0]


async def test_gap_resyncs_the_book(serve) -> None:
    frames = [_diff(99, 101, "51.0"), _diff(102, 103, "52.0"), _diff(110, 111, "53.0"), _diff(112, 113, "54.0")]
    script = Scripted(lambda n: frames)
    script.snapshot_ids = [100, 111]
    host = await serve(script)
    c = _connector(host)
    bids = await _run_until(c, lambda: _at(c, 113), then=lambda: _top_bids(c))
    assert c.counters.get("gaps") == 1
    assert script.snapshot_calls == 2
    # The book was rebuilt from the second snapshot: levels from before the gap are gone.
    assert bids == [54.0, 50.0]


async def test_server_ping_is_answered(serve) -> None:
    script = Scripted(lambda n: [_diff(99, 101, "51.0")])
    host = await serve(script)
    c = _connector(host)
    await _run_until(c, lambda: script.pongs >= 1)


async def test_dropped_connection_reconnects_and_resyncs(serve) -> None:
    # The server closes after its frames on the first connection only.
    def frames(n: int) -> list[str | bytes]:
        return [_diff(99, 101, "51.0")] if n == 1 else [_diff(199, 201, "61.0")]

    script = Scripted(frames)
    script.snapshot_ids = [100, 200]
    host = await serve(script)
    c = _connector(host, stall_timeout_s=1.0)
    # With no data after its frames, the connection is declared stalled and replaced.
    await _run_until(c, lambda: _at(c, 201), timeout=15)
    assert c.counters.get("stalls") >= 1
    assert script.connections >= 2
