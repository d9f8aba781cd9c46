"""A live capture (real processes: simulators, supervisor, venue processes, writer) of Coinbase,
Kraken, OKX and Bybit with their trades, through a ``trade_silence``, a ``trade_gap`` and a kill -9
of two venue processes. Reference: each simulator's own record of the trades it made and sent
(``/sim/trades``); the stored Parquet files are read with plain pyarrow.

A silenced trade stream (subscribed, acknowledged, no frames) is reported. Stored: every trade at
most once, each the simulator's (id, taker side, price, size, time); where ids are contiguous, the
ids never stored are exactly the trade gaps counted. Coinbase replays its last 100 trades after a
subscribe: its restarted venue process (which finds the last id it took in shared memory) stores
none of them twice and loses none.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from recorder.demo import SIM_SYMBOLS, VENUE_PAIRS
from tests.conftest import VenueSim, running_cli, status, stop_cli, stored_trade_rows, wait_for

pytest.importorskip("recorder.writer.datasets", reason="the trades dataset has not landed yet")
pytestmark = pytest.mark.timeout(240)

SESSION = "trades-venues"
VENUES = ["bybit", "coinbase", "kraken", "okx"]
CONTIGUOUS = {"coinbase", "kraken", "okx"}  # Bybit's ids cannot show a lost trade
KILLED = ["coinbase", "okx"]  # a venue that replays recent trades, and one that does not


def _sim_symbol(venue: str, pair: str) -> str:
    return {"coinbase": pair, "kraken": pair.replace("-", "/"), "okx": pair.replace("-PERP", "-SWAP"),
            "bybit": ("linear:" if pair.endswith("-PERP") else "spot:") + pair.replace("-PERP", "").replace("-", "")
            }[venue]  # fmt: skip


def _pairs(data: Path, venue: str) -> dict[str, Any]:
    return (((status(data, SESSION) or {}).get("venues") or {}).get(venue) or {}).get("pairs") or {}


def test_live_capture_of_four_venues_trades_through_a_gap_and_kill_9(tmp_path: Path) -> None:
    sims = {v: VenueSim(v, "--seed", str(30 + i), "--symbols", SIM_SYMBOLS[v]) for i, v in enumerate(VENUES)}
    data = tmp_path / "data"
    lines = [f'data_dir = "{data}"', f'session_id = "{SESSION}"', 'format = "parquet"']
    for v, sim in sims.items():
        lines += ["", f"[venues.{v}]", f"pairs = {json.dumps(VENUE_PAIRS[v])}", f'ws_url = "{sim.urls["ws_url"]}"',
                  f'rest_url = "{sim.urls["rest_url"]}"', 'channels = ["book", "trades"]',
                  "trade_silence_s = 1.5"]  # fmt: skip
    lines += ["", "[writer]", "rotate_seconds = 1.0"]
    cfg = tmp_path / "venues.toml"
    cfg.write_text("\n".join(lines) + "\n")
    try:
        with running_cli("start-capture", "--config", str(cfg), "--interval", "0.5") as proc:

            def trades_each(n: dict[tuple[str, str], float]) -> bool:
                return all(_pairs(data, v).get(p, {}).get("trades", 0) >= n.get((v, p), 0) + 10
                           for v in VENUES for p in VENUE_PAIRS[v])  # fmt: skip

            wait_for(lambda: trades_each({}), 90, "trades of every pair")
            # A trade stream that stays subscribed but silent while its book moves is reported.
            sims["kraken"].fault(kind="trade_silence", symbol="ETH/USD", duration_s=4.0)
            wait_for(lambda: _pairs(data, "kraken")["ETH-USD"].get("trade_silent"), 30, "the silent stream reported")
            assert not _pairs(data, "kraken")["BTC-USD"].get("trade_silent")
            for v in VENUES:
                sims[v].fault(kind="trade_gap", symbol=_sim_symbol(v, VENUE_PAIRS[v][0]), count=2)
            before = {v: (status(data, SESSION) or {})["venues"][v] for v in KILLED}
            killed_ms = time.time() * 1000
            for v in KILLED:
                os.kill(before[v]["pid"], signal.SIGKILL)
            wait_for(lambda: all((status(data, SESSION) or {})["venues"][v]["restarts"] > before[v]["restarts"]
                                 for v in KILLED), 60, "venue processes restarted")  # fmt: skip
            # No Coinbase trade subscription then: the supervisor waits 0.25 s to restart, the new
            # process starts a Python, connects, and sends market_trades third, 0.3 s apart.
            down = (killed_ms + 100, killed_ms + 800)
            now = {(v, p): _pairs(data, v)[p]["trades"] for v in VENUES for p in VENUE_PAIRS[v]}
            wait_for(lambda: trades_each(now), 90, "trades after the restarts")
            stop_cli(proc)
        rows = stored_trade_rows(data)
        final = status(data, SESSION)
        assert final is not None
        for v in VENUES:
            for pair in VENUE_PAIRS[v]:
                _check(v, pair, rows, sims[v], final["venues"][v]["pairs"][pair], down)
    finally:
        for sim in sims.values():
            sim.stop()


def _check(
    venue: str, pair: str, rows: list[dict[str, Any]], sim: VenueSim, counted: dict[str, Any], down: tuple[float, float]
) -> None:
    mine = [r for r in rows if r["exchange"] == venue and r["pair"] == pair]
    assert [r["sequence_number"] for r in mine] == list(range(len(mine))), (venue, pair)
    ids = [r["trade_id"] for r in mine]
    assert len(set(ids)) == len(ids), f"{venue} {pair}: a trade stored twice"
    code, body = sim.get(f"/sim/trades?symbol={_sim_symbol(venue, pair)}")
    assert code == 200
    record = body["trades"]
    if venue == "okx":  # one aggregated trade per fill: its last id, the fill's total size
        fills: dict[int, list[dict[str, Any]]] = {}
        for r in record:
            fills.setdefault(r["fill"], []).append(r)
        record = [{**g[-1], "qty": sum(float(r["qty"]) for r in g), "first": int(g[0]["id"])} for g in fills.values()]
    by_id = {r["id"]: r for r in record}
    for row in mine:
        r = by_id[row["trade_id"]]
        assert r["sent"], (venue, pair, r)  # (a withheld one may come with a replay after a subscribe)
        assert (row["side"], row["price"], row["exchange_time"]) == (r["side"], float(r["price"]), r["time_us"])
        assert row["quantity"] == pytest.approx(float(r["qty"]))
    if venue not in CONTIGUOUS:
        assert counted["trade_gaps"] == 0
        return
    covered: set[int] = set()
    for row in mine:
        r = by_id[row["trade_id"]]
        covered.update(range(r.get("first", int(r["id"])), int(r["id"]) + 1))
    never = set(range(min(covered), max(covered) + 1)) - covered
    assert counted["trade_gaps"] == len(never), (venue, pair, counted["trade_gaps"], len(never))
    if venue == "coinbase":  # the restarted process's subscribe replayed (some of) what the kill lost
        made_while_down = [row for row in mine if down[0] <= row["exchange_time"] / 1000 <= down[1]]
        assert made_while_down, pair
