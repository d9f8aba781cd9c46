"""Fault injection in the simulator, seen from a real WebSocket/HTTP client over loopback."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest

from recorder.sim.faults import MALFORMED_FRAME, Fault, FaultError, parse_faults
from recorder.sim.server import SimOptions, Simulator
from tests.conftest import run_cli

pytestmark = pytest.mark.timeout(60)


@asynccontextmanager
async def client(**kw: Any) -> AsyncIterator[tuple[Simulator, aiohttp.ClientSession, str]]:
    sim = Simulator(SimOptions(seed=3, symbols=["BTCUSDT", "ETHUSDT"], **kw))
    await sim.start()
    base = sim.urls["rest_url"]
    try:
        async with aiohttp.ClientSession() as http:
            yield sim, http, base
    finally:
        await sim.stop()


async def inject(http: aiohttp.ClientSession, base: str, **fault: Any) -> dict[str, Any]:
    async with http.post(f"{base}/sim/fault", json=fault) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()  # type: ignore[no-any-return]


async def diffs(ws: aiohttp.ClientWebSocketResponse, n: int) -> list[Any]:
    out = []
    while len(out) < n:
        msg = await ws.receive(timeout=10)
        if msg.type is aiohttp.WSMsgType.PING:
            continue
        assert msg.type is aiohttp.WSMsgType.TEXT, msg
        out.append(json.loads(msg.data) if msg.data != MALFORMED_FRAME else MALFORMED_FRAME)
    return out


async def drain(ws: aiohttp.ClientWebSocketResponse) -> None:
    """Read until nothing came for 0.2 s (what was sent before a fault took effect)."""
    while True:
        try:
            await ws.receive(timeout=0.2)
        except TimeoutError:
            return


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_parse_inline_spec_and_files(tmp_path: Any) -> None:
    faults = parse_faults("binance/stall@10+4,drop@5,gap@15:BTCUSDT,close@20#4000,rest_refuse@1+2#429")
    assert [f.kind for f in faults] == ["rest_refuse", "drop", "stall", "gap", "close"]
    assert faults[2].venue == "binance" and faults[2].duration_s == 4.0
    assert faults[3].symbol == "BTCUSDT" and faults[4].code == 4000 and faults[0].code == 429
    (tmp_path / "f.toml").write_text('[[fault]]\nkind = "slow"\nat_s = 3\nrate = 1.5\n')
    assert parse_faults(str(tmp_path / "f.toml")) == [Fault(kind="slow", at_s=3, rate=1.5)]
    (tmp_path / "f.json").write_text('[{"kind": "restart", "at_s": 2, "duration_s": 1}]')
    assert parse_faults(str(tmp_path / "f.json"))[0].kind == "restart"
    for bad in ("explode@3", "stall@x", "close@1#99", "gap@1@2"):
        with pytest.raises(FaultError):
            parse_faults(bad)
    (tmp_path / "bad.json").write_text('[{"kind": "drop", "when": 3}]')
    with pytest.raises(FaultError):
        parse_faults(str(tmp_path / "bad.json"))


def test_cli_rejects_bad_fault_spec() -> None:
    res = run_cli("simulate", "--faults", "explode@3", timeout=60)
    assert res.returncode == 2
    assert "unknown fault kind 'explode'" in res.stderr and "Traceback" not in res.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--idle-timeout", "0"], "'--idle-timeout': 0 must be above 0"),
        (["--symbol-status", "FOOUSDT"], "invalid --symbol-status item 'FOOUSDT'"),
        (["--okx-checksum", "md5"], "Invalid value for '--okx-checksum'"),
    ],
)
def test_cli_rejects_bad_simulator_options(args: list[str], message: str) -> None:
    res = run_cli("simulate", *args, timeout=60)
    assert res.returncode == 2 and message in res.stderr and "Traceback" not in res.stderr, res.stderr


def test_gap_malformed_corrupt_close_over_http() -> None:
    async def main() -> None:
        async with client() as (sim, http, base):
            async with http.post(f"{base}/sim/fault", json={"kind": "nope"}) as resp:
                assert resp.status == 400
            async with http.ws_connect(f"{sim.urls['ws_url']}/ws/btcusdt@depth@100ms") as ws:
                first = await diffs(ws, 2)
                assert first[1]["U"] == first[0]["u"] + 1
                await inject(http, base, kind="gap", symbol="BTCUSDT", count=2)
                seq = [first[-1], *await diffs(ws, 6)]
                jumps = [b["U"] - a["u"] - 1 for a, b in zip(seq, seq[1:], strict=False) if b["U"] != a["u"] + 1]
                assert len(jumps) == 1 and jumps[0] > 0  # one hole: the two withheld windows
                await inject(http, base, kind="malformed")
                assert MALFORMED_FRAME in await diffs(ws, 2)
                await inject(http, base, kind="corrupt", symbol="BTCUSDT")
                d = (await diffs(ws, 1))[0]
                best_bid = max(float(p) for p, _ in d["b"])
                async with http.get(f"{base}/api/v3/depth", params={"symbol": "BTCUSDT", "limit": "5"}) as resp:
                    snap = await resp.json()
                assert best_bid > 1.5 * float(snap["asks"][0][0])  # a bid far above the best ask: crossed
                await inject(http, base, kind="close", code=4000)
                while True:
                    msg = await ws.receive(timeout=10)
                    if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                        break
                assert ws.close_code == 4000
            async with http.get(f"{base}/sim/faults") as resp:
                kinds = [f["kind"] for f in (await resp.json())["injected"]]
            assert kinds == ["gap", "malformed", "corrupt", "close"]

    run(main())


def test_drop_stall_slow() -> None:
    async def main() -> None:
        async with client(ping_interval_s=0.5) as (sim, http, base):
            url = f"{sim.urls['ws_url']}/ws/btcusdt@depth@100ms/ethusdt@depth@100ms"
            async with http.ws_connect(url, autoping=False) as ws:
                await diffs(ws, 2)
                await inject(http, base, kind="slow", duration_s=2.0, rate=2.0)
                await asyncio.sleep(0.2)  # let what was already sent arrive
                await drain(ws)
                t0 = time.monotonic()
                await diffs(ws, 3)  # text frames only: server pings don't count
                assert time.monotonic() - t0 >= 0.9  # paced at ~2 msgs/s instead of ~20
                await asyncio.sleep(2.0)
                await inject(http, base, kind="stall", duration_s=2.0)
                await asyncio.sleep(0.2)
                await drain(ws)
                t0 = time.monotonic()
                msg = await ws.receive(timeout=10)  # nothing (no data, no ping) until the stall ends
                assert time.monotonic() - t0 >= 1.2, msg
                await inject(http, base, kind="drop")
                msg = await ws.receive(timeout=10)
                while msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.PING):  # what was in flight
                    msg = await ws.receive(timeout=10)
                assert msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSE)

    run(main())


def test_rest_refuse_delay_and_restart() -> None:
    async def main() -> None:
        async with client() as (sim, http, base):
            params = {"symbol": "BTCUSDT", "limit": "5"}
            await inject(http, base, kind="rest_refuse", duration_s=30, code=503)
            async with http.get(f"{base}/api/v3/depth", params=params) as resp:
                assert resp.status == 503
            sim.venue.faults.rest_refuse_until = 0.0  # type: ignore[attr-defined]
            await inject(http, base, kind="rest_delay", duration_s=30, delay_s=1.0)
            t0 = time.monotonic()
            async with http.get(f"{base}/api/v3/depth", params=params) as resp:
                assert resp.status == 200
            assert time.monotonic() - t0 >= 0.9
            sim.venue.faults.rest_delay_until = 0.0  # type: ignore[attr-defined]
            await inject(http, base, kind="restart", duration_s=1.5)
            await asyncio.sleep(0.3)
            async with aiohttp.ClientSession() as fresh:
                with pytest.raises(aiohttp.ClientConnectionError):
                    async with fresh.get(f"{base}/api/v3/ping"):
                        pass
                deadline = time.monotonic() + 10
                while True:
                    try:
                        async with fresh.get(f"{base}/api/v3/ping") as resp:
                            assert resp.status == 200
                            break
                    except aiohttp.ClientConnectionError:
                        assert time.monotonic() < deadline, "simulator did not come back"
                        await asyncio.sleep(0.2)
            assert sim.restarts == 1

    run(main())


def test_schedule_runs_at_its_times() -> None:
    async def main() -> None:
        async with client(faults=parse_faults("gap@0.5:ETHUSDT,binance/malformed@0.6,other/drop@0.1")) as (
            _,
            http,
            base,
        ):
            await asyncio.sleep(1.5)
            async with http.get(f"{base}/sim/faults") as resp:
                injected = (await resp.json())["injected"]
            assert [f["kind"] for f in injected] == ["gap", "malformed"]  # the other venue's drop is not ours

    run(main())


def test_sim_book_knows_the_books_it_served_as_snapshots() -> None:
    """A client sampling right after a sync stores the snapshot's book, whose id is mid-window:
    /sim/book must still be able to verify it."""

    async def main() -> None:
        async with client() as (_, http, base):
            await asyncio.sleep(0.35)
            async with http.get(f"{base}/api/v3/depth", params={"symbol": "BTCUSDT", "limit": "20"}) as resp:
                snap = await resp.json()
            params = {"symbol": "BTCUSDT", "update_id": str(snap["lastUpdateId"]), "limit": "20"}
            async with http.get(f"{base}/sim/book", params=params) as resp:
                assert resp.status == 200
                ref = await resp.json()
            assert (ref["bids"], ref["asks"]) == (snap["bids"], snap["asks"])

    run(main())


def test_symbols_of_every_venue_parse() -> None:
    faults = parse_faults("kraken/gap@1:BTC/USD,bybit/stall@2+3:linear:BTCUSDT,okx/corrupt@3:ETH-USDT-SWAP#1")
    assert [(f.venue, f.symbol) for f in faults] == [
        ("kraken", "BTC/USD"),
        ("bybit", "linear:BTCUSDT"),
        ("okx", "ETH-USDT-SWAP"),
    ]


def test_a_symbol_scopes_connection_faults_and_unknown_ones_are_refused() -> None:
    async def main() -> None:
        async with client() as (sim, http, base):
            for bad in ({"kind": "gap", "symbol": "NOPEUSDT"}, {"kind": "notice"}):
                async with http.post(f"{base}/sim/fault", json=bad) as resp:
                    assert resp.status == 400, bad
            ws_url = sim.urls["ws_url"]
            async with (
                http.ws_connect(f"{ws_url}/ws/btcusdt@depth@100ms") as btc,
                http.ws_connect(f"{ws_url}/ws/ethusdt@depth@100ms") as eth,
            ):
                await diffs(btc, 1)
                await diffs(eth, 1)
                assert (await inject(http, base, kind="drop", symbol="BTCUSDT"))["connections"] == 1
                msg = await btc.receive(timeout=10)
                while msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.PING):  # what was in flight
                    msg = await btc.receive(timeout=10)
                assert msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSE)
                assert all(d["s"] == "ETHUSDT" for d in await diffs(eth, 5))  # the other connection lives on

    run(main())


@pytest.mark.parametrize("venue", ["kraken", "okx"])
def test_gap_with_hold_delays_the_resubscription_snapshot(venue: str) -> None:
    """WebSocket-snapshot venues: after a gap with ``hold_s`` the snapshot a resubscribe asks for
    comes that much later (a slow venue)."""
    symbol = {"kraken": "BTC/USD", "okx": "BTC-USDT"}[venue]

    def request(op: str) -> dict[str, Any]:
        if venue == "kraken":
            return {"method": op, "params": {"channel": "book", "symbol": [symbol], "depth": 10}}
        return {"op": op, "args": [{"channel": "books", "instId": symbol}]}

    def is_snapshot(m: Any) -> bool:
        return isinstance(m, dict) and m.get("type" if venue == "kraken" else "action") == "snapshot"

    async def next_snapshot(ws: aiohttp.ClientWebSocketResponse) -> float:
        while True:
            msg = await ws.receive(timeout=10)
            if msg.type is aiohttp.WSMsgType.TEXT and msg.data != "pong" and is_snapshot(json.loads(msg.data)):
                return time.monotonic()

    async def main() -> None:
        sim = Simulator(SimOptions(venue=venue, seed=3, symbols=[symbol]))
        await sim.start()
        try:
            async with aiohttp.ClientSession() as http, http.ws_connect(sim.urls["ws_url"]) as ws:
                await ws.send_json(request("subscribe"))
                await next_snapshot(ws)
                await inject(http, sim.urls["sim_url"], kind="gap", symbol=symbol, hold_s=1.5)
                deadline = time.monotonic() + 10
                while sim.venue.stats()["updates_withheld"] < 1:  # type: ignore[attr-defined]
                    assert time.monotonic() < deadline, "the gap was never taken"
                    await asyncio.sleep(0.05)
                await ws.send_json(request("unsubscribe"))
                await ws.send_json(request("subscribe"))
                t0 = time.monotonic()
                assert await next_snapshot(ws) - t0 >= 1.2
        finally:
            await sim.stop()

    run(main())
