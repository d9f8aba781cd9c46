"""The Bybit and Coinbase simulators speak their venue's wire protocol (real sockets, real processes)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from tests.venue_live import VenueSim


@pytest.fixture(scope="module")
def bybit() -> Iterator[VenueSim]:
    sim = VenueSim("bybit", "--seed", "21", "--symbols", "BTCUSDT,ETHUSDT")
    yield sim
    sim.stop()


@pytest.fixture(scope="module")
def coinbase() -> Iterator[VenueSim]:
    sim = VenueSim("coinbase", "--seed", "21", "--symbols", "BTC-USD,ETH-USD")
    yield sim
    sim.stop()


async def _recv(ws: aiohttp.ClientWebSocketResponse, timeout: float = 10.0) -> dict[str, Any]:
    msg = await ws.receive(timeout=timeout)
    assert msg.type is aiohttp.WSMsgType.TEXT, msg
    return json.loads(msg.data)


async def test_bybit_subscribe_snapshot_contiguous_deltas_and_ping(bybit: VenueSim) -> None:
    async with aiohttp.ClientSession() as http, http.ws_connect(f"{bybit.urls['ws_url']}/v5/public/spot") as ws:
        await ws.send_str(json.dumps({"req_id": "a", "op": "subscribe", "args": ["orderbook.50.BTCUSDT"]}))
        ack = await _recv(ws)
        assert ack["success"] is True and ack["op"] == "subscribe" and ack["req_id"] == "a"
        snap = await _recv(ws)
        assert snap["topic"] == "orderbook.50.BTCUSDT" and snap["type"] == "snapshot"
        assert len(snap["data"]["b"]) == len(snap["data"]["a"]) == 50
        bids = {p: q for p, q in snap["data"]["b"]}
        asks = {p: q for p, q in snap["data"]["a"]}
        u = snap["data"]["u"]
        for _ in range(20):
            delta = await _recv(ws)
            assert delta["type"] == "delta" and delta["data"]["u"] == u + 1
            u = delta["data"]["u"]
            for side, levels in ((bids, delta["data"]["b"]), (asks, delta["data"]["a"])):
                for p, q in levels:
                    side.pop(p, None) if float(q) == 0 else side.__setitem__(p, q)
            # A depth-limited stream keeps exactly the top 50: leavers are deleted explicitly.
            assert len(bids) == len(asks) == 50
            assert max(float(p) for p in bids) < min(float(p) for p in asks)
        await ws.send_str(json.dumps({"req_id": "p", "op": "ping"}))
        while (msg := await _recv(ws)).get("topic"):
            pass
        assert msg["op"] == "ping" and msg["ret_msg"] == "pong" and msg["req_id"] == "p"


async def test_bybit_subscribe_errors_follow_the_venue(bybit: VenueSim) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(f"{bybit.urls['ws_url']}/v5/public/spot") as ws:
            too_many = [f"orderbook.1.X{i}USDT" for i in range(11)]
            await ws.send_str(json.dumps({"op": "subscribe", "args": too_many}))
            assert (await _recv(ws))["ret_msg"] == "error:args size >10"
            await ws.send_str(json.dumps({"op": "subscribe", "args": ["orderbook.7.BTCUSDT"]}))
            reply = await _recv(ws)
            assert reply["success"] is False and "handler not found" in reply["ret_msg"]
            await ws.send_str(json.dumps({"op": "unsubscribe", "args": ["orderbook.200.BTCUSDT"]}))
            assert (await _recv(ws))["success"] is False
        async with http.ws_connect(f"{bybit.urls['ws_url']}/v5/public/linear") as ws:
            await ws.send_str(json.dumps({"req_id": "q", "op": "ping"}))
            pong = await _recv(ws)
            assert pong["op"] == "ping" and pong["ret_msg"] == "pong" and pong["success"] is True
        async with http.get(f"{bybit.urls['rest_url']}/v5/market/instruments-info?category=linear") as resp:
            body = await resp.json()
            assert body["retCode"] == 0 and {i["symbol"] for i in body["result"]["list"]} == {"BTCUSDT", "ETHUSDT"}
        async with http.get(f"{bybit.urls['rest_url']}/v5/market/instruments-info?category=nope") as resp:
            assert (await resp.json())["retCode"] == 10001


async def test_bybit_spot_and_linear_are_different_markets(bybit: VenueSim) -> None:
    async with aiohttp.ClientSession() as http:
        snaps = []
        for category in ("spot", "linear"):
            async with http.ws_connect(f"{bybit.urls['ws_url']}/v5/public/{category}") as ws:
                await ws.send_str(json.dumps({"op": "subscribe", "args": ["orderbook.200.BTCUSDT"]}))
                await _recv(ws)
                snaps.append((await _recv(ws))["data"])
        assert snaps[0]["b"] != snaps[1]["b"] and snaps[0]["u"] != snaps[1]["u"]


async def test_coinbase_sequence_is_one_counter_per_connection(coinbase: VenueSim) -> None:
    async with aiohttp.ClientSession() as http, http.ws_connect(coinbase.urls["ws_url"]) as ws:
        await ws.send_str(json.dumps({"type": "subscribe", "product_ids": ["BTC-USD"], "channel": "heartbeats"}))
        await ws.send_str(json.dumps({"type": "subscribe", "product_ids": ["BTC-USD", "ETH-USD"], "channel": "level2"}))
        seen: dict[str, int] = {}
        seqs = []
        snapshots = set()
        while len(seqs) < 60 or "heartbeats" not in seen:
            msg = await _recv(ws)
            seqs.append(msg["sequence_num"])
            seen[msg["channel"]] = seen.get(msg["channel"], 0) + 1
            if msg["channel"] == "l2_data":
                for ev in msg["events"]:
                    if ev["type"] == "snapshot":
                        snapshots.add(ev["product_id"])
                        assert len(ev["updates"]) > 150
                    assert {u["side"] for u in ev["updates"]} <= {"bid", "offer"}
        assert seqs == list(range(len(seqs)))
        assert snapshots == {"BTC-USD", "ETH-USD"} and seen["subscriptions"] == 2
        await ws.send_str(json.dumps({"type": "subscribe", "product_ids": ["NOPE-USD"], "channel": "level2"}))
        while (msg := await _recv(ws)).get("type") != "error":
            pass
        assert "NOPE-USD" in msg["message"]


async def test_coinbase_drops_a_connection_that_never_subscribes(coinbase: VenueSim) -> None:
    async with aiohttp.ClientSession() as http, http.ws_connect(coinbase.urls["ws_url"]) as ws:
        msg = await ws.receive(timeout=15)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{coinbase.urls['rest_url']}/api/v3/brokerage/market/products") as resp:
            products = (await resp.json())["products"]
    assert {p["product_id"] for p in products} == {"BTC-USD", "ETH-USD"}


async def test_bybit_cuts_only_silent_connections_after_the_idle_timeout() -> None:
    """The venue cuts a connection with no ping and no data for 10 min (venue-protocols.md §6), not
    one that streams deltas without pings. With the timeout at 1 s: a subscribed socket that never
    pings lives on for 4 s, a socket that only pings lives on, a silent one is cut."""
    sim = VenueSim("bybit", "--seed", "22", "--symbols", "linear:BTCUSDT", "--idle-timeout", "1")
    url = f"{sim.urls['ws_url']}/v5/public/linear"
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.ws_connect(url, autoping=False, heartbeat=None) as streaming,
            http.ws_connect(url, autoping=False, heartbeat=None) as pinging,
            http.ws_connect(url, autoping=False, heartbeat=None) as silent,
        ):
            await streaming.send_str(json.dumps({"req_id": "s", "op": "subscribe", "args": ["orderbook.50.BTCUSDT"]}))
            assert (await _recv(streaming))["success"] is True
            loop = asyncio.get_running_loop()
            start = loop.time()
            deltas = pongs = 0
            while loop.time() - start < 4.0:
                await pinging.send_str(json.dumps({"req_id": "p", "op": "ping"}))
                pongs += (await _recv(pinging))["ret_msg"] == "pong"
                t_round = loop.time()
                while loop.time() - t_round < 0.3:  # drain the stream meanwhile, never pinging it
                    deltas += (await _recv(streaming)).get("type") == "delta"
            assert deltas > 20 and pongs >= 10
            msg = await silent.receive(timeout=5)  # cut long ago: only the close is left
            assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), msg
            assert not streaming.closed and not pinging.closed
            assert (await _recv(streaming))["topic"] == "orderbook.50.BTCUSDT"
        code, stats = sim.get("/sim/stats")
        assert code == 200 and stats["closed_idle"] == 1, stats
    finally:
        sim.stop()
