"""``python cli.py replay`` over the real Bybit and Coinbase recordings: the stored books are the
books of a reference rebuild from the raw frames at the stored update id, with zero gaps."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from recorder.venues.bybit import pair_for
from tests.conftest import capture_whole_replay, read_jsonl, run_cli, status
from tests.test_bybit import RefBook as BybitRef
from tests.test_coinbase import RefBook as CoinbaseRef
from tests.venue_live import RECORDINGS, VenueSim, read_jsonl_zst, write_venue_config

pytest.importorskip("recorder.replay.engine", reason="replay has not landed yet")

Top = tuple[list[tuple[float, float]], list[tuple[float, float]]]


def _stored_top(snap: dict[str, Any]) -> Top:
    return [(lv["price"], lv["qty"]) for lv in snap["bids"]], [(lv["price"], lv["qty"]) for lv in snap["asks"]]


def _bybit_reference(path: Path) -> dict[tuple[str, int], Top]:
    """Every book's top 20 after every orderbook message of the recording, by (pair, u)."""
    categories: dict[str, str] = {}
    refs: dict[str, BybitRef] = {}
    at: dict[tuple[str, int], Top] = {}
    for rec in read_jsonl_zst(path):
        if rec["t"] == "connect":
            categories[rec["conn"]] = rec["addr"].rsplit("/", 1)[1]
        if rec["t"] != "recv" or '"orderbook.' not in rec["data"][:60]:
            continue
        msg = json.loads(rec["data"])
        pair = pair_for(categories[rec["conn"]], msg["data"]["s"])
        ref = refs.setdefault(pair, BybitRef())
        ref.load(msg["data"]) if msg["type"] == "snapshot" else ref.apply(msg["data"])
        at[(pair, ref.u)] = ref.top(20)
    return at


def _coinbase_reference(path: Path, wanted: set[tuple[str, int]]) -> dict[tuple[str, int], Top]:
    """The products' top 20 after the ``wanted`` l2_data messages of the recording, by (pair, sequence_num).

    (Sorting books of ~46,000 levels after every message would dominate the test's run time.)"""
    refs: dict[str, CoinbaseRef] = {}
    at: dict[tuple[str, int], Top] = {}
    for rec in read_jsonl_zst(path):
        if rec["t"] != "recv" or '"l2_data"' not in rec["data"][:40]:
            continue
        msg = json.loads(rec["data"])
        for ev in msg["events"]:
            ref = refs.setdefault(ev["product_id"], CoinbaseRef())
            ref.apply(ev["updates"], reset=ev["type"] == "snapshot")
            if (ev["product_id"], msg["sequence_num"]) in wanted:
                at[(ev["product_id"], msg["sequence_num"])] = ref.top(20)
    return at


def _replay(venue: str, path: Path, data: Path) -> dict[str, Any]:
    if not path.exists():
        pytest.skip(f"recording not found: {path}")
    res = run_cli("replay", "--venue", venue, "--input", str(path), "--interval", "1s", "--data-dir", str(data),
                  "--session-id", f"r-{venue}", "--format", "jsonl", timeout=180)  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout)


def test_replay_bybit_recording(tmp_path: Path) -> None:
    path = RECORDINGS / "bybit" / "BYBIT.jsonl.zst"
    summary = _replay("bybit", path, tmp_path)
    assert summary["gaps"] == 0 and summary["malformed"] == 0
    assert set(summary["pairs"]) == {"BTC-USDT", "ETH-USDT", "BTC-USDT-PERP", "ETH-USDT-PERP", "SOL-USDT-PERP",
                                     "DOGE-USDT-PERP"}  # fmt: skip
    assert sum(p["updates"] for p in summary["pairs"].values()) == 2142
    at = _bybit_reference(path)
    stored = read_jsonl(tmp_path)
    assert len(stored) == summary["snapshots_written"] > 6 * 20
    for snap in stored:
        assert _stored_top(snap) == at[(snap["pair"], snap["update_id"])], (snap["pair"], snap["update_id"])


def test_replay_coinbase_recording(tmp_path: Path) -> None:
    path = RECORDINGS / "coinbase" / "COINBASE.jsonl.zst"
    summary = _replay("coinbase", path, tmp_path)
    assert summary["gaps"] == 0 and summary["malformed"] == 0
    assert set(summary["pairs"]) == {"BTC-USD", "ETH-USD"}
    assert sum(p["updates"] for p in summary["pairs"].values()) == 773
    stored = read_jsonl(tmp_path)
    at = _coinbase_reference(path, {(s["pair"], s["update_id"]) for s in stored})
    assert len(stored) == summary["snapshots_written"] > 2 * 20
    for snap in stored:
        assert _stored_top(snap) == at[(snap["pair"], snap["update_id"])], (snap["pair"], snap["update_id"])


def _capture_through_replaying_simulator(tmp_path: Path, venue: str, path: Path, pairs: list[str]) -> tuple[dict, list]:
    """``simulate --replay`` serving the recording, a real ``start-capture`` against it."""
    if not path.exists():
        pytest.skip(f"recording not found: {path}")
    sim = VenueSim(venue, "--replay", str(path), "--speed", "8")
    try:
        data = tmp_path / "data"
        cfg = write_venue_config(tmp_path / "c.toml", venue, sim.urls, pairs, data)
        capture_whole_replay(sim, cfg, data, "replayed", "0.5")
        code, stats = sim.get("/sim/stats")
    finally:
        sim.stop()
    assert code == 200 and stats["done"] is True
    final = status(data, "replayed")
    assert final is not None and final["flushed"] is True
    counters = final["venues"][venue]
    assert counters["gaps"] == 0 and counters["malformed"] == 0
    return final, read_jsonl(data)


def test_live_capture_of_the_bybit_recording_through_the_simulator(tmp_path: Path) -> None:
    path = RECORDINGS / "bybit" / "BYBIT.jsonl.zst"
    pairs = ["BTC-USDT", "ETH-USDT", "BTC-USDT-PERP", "DOGE-USDT-PERP"]
    _, stored = _capture_through_replaying_simulator(tmp_path, "bybit", path, pairs)
    assert {s["pair"] for s in stored} == set(pairs)
    at = _bybit_reference(path)
    for snap in stored:
        assert _stored_top(snap) == at[(snap["pair"], snap["update_id"])], (snap["pair"], snap["update_id"])
    # The spot and linear books of BTCUSDT came over their own sockets.
    last = {p: max(s["update_id"] for s in stored if s["pair"] == p) for p in pairs}
    assert last["BTC-USDT"] == max(u for p, u in at if p == "BTC-USDT")
    assert last["BTC-USDT-PERP"] == max(u for p, u in at if p == "BTC-USDT-PERP")


def test_live_capture_of_the_coinbase_recording_through_the_simulator(tmp_path: Path) -> None:
    # One product: the recorder opens one socket per product, and a replayed socket that joins the
    # timeline late has missed the recording's snapshots (a replay cannot answer a resubscribe).
    path = RECORDINGS / "coinbase" / "COINBASE.jsonl.zst"
    _, stored = _capture_through_replaying_simulator(tmp_path, "coinbase", path, ["BTC-USD"])
    at = _coinbase_reference(path, {(s["pair"], s["update_id"]) for s in stored})
    assert len(stored) >= 8
    for snap in stored:
        assert _stored_top(snap) == at[(snap["pair"], snap["update_id"])], (snap["pair"], snap["update_id"])
    # The recording's last BTC-USD update made it into the stored books.
    last = max(json.loads(r["data"])["sequence_num"] for r in read_jsonl_zst(path)
               if r["t"] == "recv" and '"l2_data"' in r["data"][:40] and '"BTC-USD"' in r["data"][:400])  # fmt: skip
    assert max(s["update_id"] for s in stored) == last
