"""Live capture of Binance trades and quotes from the simulator, in real processes (simulator,
supervisor, venue process, writer).

The reference is the simulator's own record of every trade it sent, withheld (``trade_gap``) or
silenced (``trade_silence``): ``GET /sim/trades``. The stored files are read with plain pyarrow
and ``json``, independently of the recorder's reader, and compared with both.
"""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.request
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from recorder.dataset import open_dataset
from tests.conftest import (
    Sim,
    VenueSim,
    free_port,
    run_cli,
    running_cli,
    status,
    stop_cli,
    stored_trade_rows,
    wait_for,
    write_config,
)

pytestmark = pytest.mark.timeout(180)
SESSION = "trades-live"


def _pair_status(data: Path, venue: str, pair: str) -> dict[str, Any]:
    st = status(data, SESSION) or {}
    return ((st.get("venues") or {}).get(venue) or {}).get("pairs", {}).get(pair) or {}


def _scrape(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            return resp.read().decode()
    except OSError:
        return ""


def _venue(data: Path) -> dict[str, Any]:
    return ((status(data, SESSION) or {}).get("venues") or {}).get("binance") or {}


def _stored_jsonl(data: Path, dataset: str) -> list[dict[str, Any]]:
    rows = []
    for path in sorted((data / dataset / "jsonl").rglob("*.jsonl")):
        rows += [json.loads(line) for line in path.read_text().splitlines() if line]
    return sorted(rows, key=lambda r: (r["pair"], r["sequence_number"]))


def _check_against_sim(
    rows: list[dict[str, Any]],
    sim_trades: dict[str, Any],
    pair: str,
    venue: str,
    lost_ms: tuple[int, int] | None = None,
) -> list[int]:
    """Every trade the simulator sent is stored exactly once, in order, with its side, price,
    quantity and time; nothing withheld or silenced is; the sequence numbers are gap-free.
    Trades sent within ``lost_ms`` (a venue process killed) may be missing. Returns the ids
    between the first and the last stored one that are not stored."""
    mine = [r for r in rows if r["pair"] == pair]
    assert mine, f"no {pair} trade stored"
    assert [r["sequence_number"] for r in mine] == list(range(len(mine)))
    assert all(r["exchange"] == venue and r["session_id"] == SESSION for r in mine)
    sent = {int(t["id"]): t for t in sim_trades["trades"] if t["sent"]}
    ids = [int(r["trade_id"]) for r in mine]
    assert len(set(ids)) == len(ids), "a trade stored twice"
    assert ids == sorted(ids)
    # The capture subscribed before the first trade it stored and stopped after the last one:
    # in between, every trade the simulator sent is there (the last few, sent while the capture
    # was closing its socket, may be missing; none is missing before the last stored one), but
    # for those sent while its venue process was dead.
    stored = set(ids)
    unstored = [t for i, t in sent.items() if ids[0] <= i <= ids[-1] and i not in stored]
    for t in unstored:
        assert lost_ms is not None and lost_ms[0] <= t["time_us"] // 1000 <= lost_ms[1], f"trade {t} sent, never stored"
    for r in mine:
        t = sent[int(r["trade_id"])]
        assert r["side"] == t["side"]
        assert r["price"] == float(t["price"]) and r["quantity"] == float(t["qty"])
        assert r["exchange_time"] == t["time_us"]
    assert not _lost(sim_trades) & set(ids)
    return [i for i in range(ids[0], ids[-1] + 1) if i not in stored]


def _lost(sim_trades: dict[str, Any], why: tuple[str, ...] = ("gap", "silence")) -> set[int]:
    """The ids the simulator withheld (``trade_gap``) or silenced (``trade_silence``)."""
    return {int(t["id"]) for t in sim_trades["trades"] if t["withheld"] in why}


def _capture(sim: VenueSim, tmp: Path, venue: str, pairs: list[str], channels: list[str]) -> tuple[Path, Path]:
    data = tmp / "data"
    cfg = write_config(
        tmp / "cfg.toml",
        sim.urls,
        pairs,
        data,
        venue_extra={"channels": channels, "trade_silence_s": 2.0},
        writer={"rotate_seconds": 1.0},
        format="both",
    )
    if venue != "binance":
        cfg.write_text(cfg.read_text().replace("[venues.binance]", f"[venues.{venue}]"))
    return data, cfg


def test_binance_spot_trades_gaps_silence_and_quotes_live(tmp_path: Path) -> None:
    sim = Sim("--seed", "5", "--ping-interval", "2")
    pairs = ["BTC-USDT", "ETH-USDT"]
    try:
        data, cfg = _capture(sim, tmp_path, "binance", pairs, ["book", "trades", "quotes"])
        port = free_port()
        args = ["--config", str(cfg), "--interval", "0.5", "--session-id", SESSION, "--metrics-port", str(port)]
        with running_cli("start-capture", *args) as proc:
            wait_for(lambda: all(_pair_status(data, "binance", p).get("trades", 0) >= 10 for p in pairs), 60, "trades")
            sim.fault(kind="trade_gap", symbol="BTCUSDT", count=3)
            wait_for(lambda: _pair_status(data, "binance", "BTC-USDT").get("trade_gaps") == 3, 30, "trade gap")
            gap_metric = 'recorder_pair_trade_gaps_total{venue="binance",pair="BTC-USDT"} 3'
            wait_for(lambda: gap_metric in _scrape(port), 30, "the trade gap in Prometheus")
            sim.fault(kind="trade_silence", symbol="ETHUSDT", duration_s=8.0)
            wait_for(lambda: _pair_status(data, "binance", "ETH-USDT").get("trade_silent"), 30, "silence flag")
            assert not _pair_status(data, "binance", "BTC-USDT")["trade_silent"]
            text = run_cli("capture-status", "--session-id", SESSION, "--data-dir", str(data)).stdout
            assert "TRADES SILENT" in text and "trade gaps 3" in text
            # The stream comes back: the flag clears, the silenced trades count as lost.
            wait_for(lambda: not _pair_status(data, "binance", "ETH-USDT").get("trade_silent"), 30, "resumed")
            # kill -9 of the venue process: its successor counts the trades lost meanwhile.
            venue0 = (status(data, SESSION) or {})["venues"]["binance"]
            killed_ms = int(time.time() * 1000)
            os.kill(venue0["pid"], signal.SIGKILL)
            wait_for(lambda: _venue(data)["restarts"] > venue0["restarts"], 60, "venue process restarted")
            resumed = {p: _pair_status(data, "binance", p)["trades"] for p in pairs}
            wait_for(lambda: all(_pair_status(data, "binance", p)["trades"] >= resumed[p] + 5 for p in pairs), 60, "")
            back_ms = int(time.time() * 1000)
            stop_cli(proc)
        st = status(data, SESSION)
        assert st is not None
        v = st["venues"]["binance"]
        assert v["trade_silences"] >= 1 and v["channels"] == ["book", "trades", "quotes"]
        rows = stored_trade_rows(data)
        for pair, sym in (("BTC-USDT", "BTCUSDT"), ("ETH-USDT", "ETHUSDT")):
            _, sim_trades = sim.get(f"/sim/trades?symbol={sym}")
            missing = _check_against_sim(rows, sim_trades, pair, "binance", (killed_ms - 1000, back_ms))
            # Every id not stored is counted as a gap, none more: withheld, silenced, and those
            # lost with the killed venue process.
            assert v["pairs"][pair]["trade_gaps"] == len(missing)
            assert _lost(sim_trades) <= set(missing)
            # Counted once pushed to the ring (a kill between push and count: one uncounted).
            counted, stored = v["pairs"][pair]["trades"], sum(1 for r in rows if r["pair"] == pair)
            assert counted <= stored <= counted + 1
        _, btc = sim.get("/sim/trades?symbol=BTCUSDT")
        assert len(_lost(btc, ("gap",))) == 3
        # Both formats hold the same rows; the dataset reader returns exactly what plain pyarrow reads.
        assert _stored_jsonl(data, "trades") == rows
        table = open_dataset(data).trades()
        for name in ("exchange_time", "local_time"):
            table = table.set_column(table.schema.get_field_index(name), name, table[name].cast(pa.int64()))
        assert sorted(table.to_pylist(), key=lambda r: (r["pair"], r["sequence_number"])) == rows
        _check_quotes(sim, data)
        # The data-quality report: trades, trade gaps and quotes per pair.
        res = run_cli("report", "--data-dir", str(data), "--session-id", SESSION, "--json")
        assert res.returncode == 0, res.stderr
        (session,) = json.loads(res.stdout)["sessions"]
        quotes = _stored_jsonl(data, "quotes")
        got = {r["pair"]: r for r in session["records"]}
        assert set(got) == set(pairs)
        for pair in pairs:
            r = got[pair]
            assert r["trades"] == sum(1 for x in rows if x["pair"] == pair)
            assert r["quotes"] == sum(1 for x in quotes if x["pair"] == pair) > 0
            assert r["trade_gaps"] == v["pairs"][pair]["trade_gaps"]
            assert r["trade_seq_missing"] == r["quote_seq_missing"] == r["trade_id_duplicates"] == 0
        text = run_cli("report", "--data-dir", str(data), "--session-id", SESSION).stdout
        assert "trades and quotes:" in text
    finally:
        sim.stop()


def _check_quotes(sim: VenueSim, data: Path) -> None:
    """Quotes: each a change of the top of book, equal to the simulator's book at its update id."""
    quotes = _stored_jsonl(data, "quotes")
    assert quotes
    checked = 0
    for pair, sym in (("BTC-USDT", "BTCUSDT"), ("ETH-USDT", "ETHUSDT")):
        mine = [q for q in quotes if q["pair"] == pair]
        assert [q["sequence_number"] for q in mine] == list(range(len(mine)))
        tops = [(q["bid_price"], q["bid_qty"], q["ask_price"], q["ask_qty"]) for q in mine]
        assert all(a != b for a, b in zip(tops, tops[1:], strict=False)), "a quote that changes nothing"
        for q in mine[-5:]:  # recent ones: still in the simulator's history
            code, book = sim.get(f"/sim/book?symbol={sym}&update_id={q['update_id']}&limit=1")
            if code != 200:
                continue
            assert (float(book["bids"][0][0]), float(book["bids"][0][1])) == (q["bid_price"], q["bid_qty"])
            assert (float(book["asks"][0][0]), float(book["asks"][0][1])) == (q["ask_price"], q["ask_qty"])
            checked += 1
    assert checked >= 3


def test_binance_usdm_trades_on_the_public_route_live(tmp_path: Path) -> None:
    sim = VenueSim("binance-futures", "--seed", "9", "--ping-interval", "2")
    pair = "BTC-USDT-PERP"
    try:
        data, cfg = _capture(sim, tmp_path, "binance-futures", [pair], ["book", "trades"])
        # The route that carries raw @trade since the 2026 URL split (with the depth streams).
        cfg.write_text(cfg.read_text().replace(sim.urls["ws_url"], sim.urls["ws_url"].rstrip("/") + "/public"))
        args = ["--config", str(cfg), "--interval", "0.5", "--session-id", SESSION]
        with running_cli("start-capture", *args) as proc:
            wait_for(lambda: _pair_status(data, "binance-futures", pair).get("trades", 0) >= 10, 60, "trades")
            stop_cli(proc)
        rows = stored_trade_rows(data)
        _, sim_trades = sim.get("/sim/trades?symbol=BTCUSDT")
        missing = _check_against_sim(rows, sim_trades, pair, "binance-futures")
        assert not missing
        assert not list((data / "quotes").rglob("*.parquet"))  # quotes not asked for
    finally:
        sim.stop()


def test_channels_are_validated_in_one_line(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[venues.binance]\npairs = ["BTC-USDT"]\nchannels = ["book", "tradez"]\n')
    res = run_cli("start-capture", "--config", str(cfg), "--duration", "1s")
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        "Error: invalid [venues.binance] channels = ['book', 'tradez']: use one or more of book, trades, quotes"
    ]
