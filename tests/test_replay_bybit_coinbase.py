"""``python cli.py replay`` over the real Bybit and Coinbase recordings: the stored books are the
books of a reference rebuild from the raw frames at the stored update id, with zero gaps."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from recorder.venues.bybit import pair_for
from tests.conftest import read_jsonl, run_cli
from tests.test_bybit import RefBook as BybitRef
from tests.test_coinbase import RefBook as CoinbaseRef
from tests.venue_live import RECORDINGS, read_jsonl_zst

pytest.importorskip("recorder.replay.engine", reason="replay has not landed yet")

Top = tuple[list[tuple[float, float]], list[tuple[float, float]]]


def _stored_top(snap: dict[str, Any]) -> Top:
    return [(lv["price"], lv["qty"]) for lv in snap["bids"]], [(lv["price"], lv["qty"]) for lv in snap["asks"]]


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
    # Reference: every book's top 20 after every message, by (pair, u).
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
    refs: dict[str, CoinbaseRef] = {}
    at: dict[tuple[str, int], Top] = {}
    for rec in read_jsonl_zst(path):
        if rec["t"] != "recv" or '"l2_data"' not in rec["data"][:40]:
            continue
        msg = json.loads(rec["data"])
        for ev in msg["events"]:
            ref = refs.setdefault(ev["product_id"], CoinbaseRef())
            ref.apply(ev["updates"], reset=ev["type"] == "snapshot")
            at[(ev["product_id"], msg["sequence_num"])] = ref.top(20)
    stored = read_jsonl(tmp_path)
    assert len(stored) == summary["snapshots_written"] > 2 * 20
    for snap in stored:
        assert _stored_top(snap) == at[(snap["pair"], snap["update_id"])], (snap["pair"], snap["update_id"])
