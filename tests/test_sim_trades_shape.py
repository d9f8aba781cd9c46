"""``GET /sim/trades`` has one shape on every simulator (documented in ``recorder/sim/trades.py``):
``{"symbol", "trades": [row]}``, each row with the same keys and types; an unknown symbol is a 400.
On Binance, whose tape lists the trades made while a client listened, the rows marked sent are
exactly the trades a raw ``<symbol>@trade`` client received, with the taker's side from ``m``."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import pytest

from recorder.sim.server import SimOptions, Simulator

# venue -> the simulator symbol asked for
SYMBOLS = {
    "binance": "BTCUSDT",
    "binance-futures": "BTCUSDT",
    "kraken": "BTC/USD",
    "okx": "BTC-USDT",
    "bybit": "linear:BTCUSDT",
    "coinbase": "BTC-USD",
}
ROW = {"id": str, "price": str, "qty": str, "side": str, "time_us": int, "fill": int, "sent": bool, "withheld": str}


async def _rows(http: aiohttp.ClientSession, sim: Simulator, symbol: str) -> tuple[int, Any]:
    async with http.get(f"{sim.urls['sim_url']}/sim/trades", params={"symbol": symbol}) as resp:
        return resp.status, await resp.json()


async def _until_rows(http: aiohttp.ClientSession, sim: Simulator, symbol: str, n: int) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status, body = await _rows(http, sim, symbol)
        assert status == 200, body
        if len(body["trades"]) >= n:
            return body  # type: ignore[no-any-return]
        await asyncio.sleep(0.1)
    raise AssertionError(f"fewer than {n} trades of {symbol}")


@pytest.mark.parametrize("venue", sorted(SYMBOLS))
async def test_one_shape_on_every_simulator(venue: str) -> None:
    symbol = SYMBOLS[venue]
    sim = Simulator(SimOptions(venue=venue, port=0, seed=5, symbols=[symbol]))
    await sim.start()
    received: list[dict[str, Any]] = []
    try:
        async with aiohttp.ClientSession() as http:
            if venue.startswith("binance"):  # its tape lists what was made while someone listened
                ws = await http.ws_connect(f"{sim.urls['ws_url']}/ws/{symbol.lower()}@trade")
                while len(received) < 5:
                    msg = await asyncio.wait_for(ws.receive(), 30)
                    received.append(json.loads(msg.data))
                await ws.close()
            body = await _until_rows(http, sim, symbol, 5)
            status, unknown = await _rows(http, sim, "NOPE")
    finally:
        await sim.stop()
    assert set(body) == {"symbol", "trades"} and body["symbol"] == symbol
    for row in body["trades"]:
        assert {k: type(v) for k, v in row.items()} == ROW, row
        assert row["side"] in ("buy", "sell") and row["withheld"] in ("", "gap", "silence")
        assert float(row["price"]) > 0 and float(row["qty"]) > 0
    assert status == 400 and unknown == {"error": "unknown symbol"}
    if venue.startswith("binance"):
        sent = {int(r["id"]): r for r in body["trades"] if r["sent"]}
        for t in received:
            r = sent[t["t"]]
            assert (r["price"], r["qty"], r["time_us"]) == (t["p"], t["q"], t["T"] * 1000)
            assert r["side"] == ("sell" if t["m"] else "buy")  # m: the buyer made, the taker sold
