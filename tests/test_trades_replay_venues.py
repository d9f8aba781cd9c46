"""``cli.py replay`` of the real Coinbase, Bybit and OKX recordings stores their trades: every
trade once, with the taker's side and the venue's times, as a parse written here (plain json, the
digest's rules) finds them in the recording, beside the books and quotes, through the live Feed and
writer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.checksum_venue_support import read_text_capture
from tests.conftest import run_cli, stored_trade_rows
from tests.test_trades_venues import _us
from tests.venue_live import RECORDINGS, read_jsonl_zst

pytest.importorskip("recorder.writer.datasets", reason="the trades dataset has not landed yet")


def _coinbase(path: Path) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for rec in read_jsonl_zst(path):
        if rec["t"] != "recv" or '"market_trades"' not in rec["data"][:40]:
            continue
        for ev in json.loads(rec["data"])["events"]:
            for t in sorted(ev["trades"], key=lambda t: int(t["trade_id"])):  # newest first on the wire
                if (t["product_id"], t["trade_id"]) in seen:  # a subscribe replays the last 100
                    continue
                seen.add((t["product_id"], t["trade_id"]))
                out.append({"pair": t["product_id"], "trade_id": t["trade_id"], "price": float(t["price"]),
                            "quantity": float(t["size"]), "side": {"BUY": "sell", "SELL": "buy"}[t["side"]],
                            "exchange_time": _us(t["time"]), "local_time": rec["ts"] * 1e6})  # fmt: skip
    return out


def _bybit(path: Path) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    market: dict[str, str] = {}
    for rec in read_jsonl_zst(path):
        if rec["t"] == "connect":
            market[rec["conn"]] = rec["addr"].rsplit("/", 1)[1]
        if rec["t"] != "recv" or '"publicTrade.' not in rec["data"][:40]:
            continue
        for t in json.loads(rec["data"])["data"]:
            pair = f"{t['s'][:-4]}-USDT" + ("-PERP" if market[rec["conn"]] == "linear" else "")
            out.append({"pair": pair, "trade_id": t["i"], "price": float(t["p"]), "quantity": float(t["v"]),
                        "side": t["S"].lower(), "exchange_time": t["T"] * 1000,
                        "local_time": rec["ts"] * 1e6})  # fmt: skip
    return out


def _okx(path: Path) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for recv_ms, payload in read_text_capture(path):
        msg = json.loads(payload) if payload.startswith(b"{") else {}
        if msg.get("arg", {}).get("channel") != "trades" or "data" not in msg:
            continue
        for t in msg["data"]:
            inst = t["instId"]
            pair = inst[: -len("-SWAP")] + "-PERP" if inst.endswith("-SWAP") else inst
            out.append({"pair": pair, "trade_id": t["tradeId"], "price": float(t["px"]), "quantity": float(t["sz"]),
                        "side": t["side"], "exchange_time": int(t["ts"]) * 1000,
                        "local_time": recv_ms * 1000})  # fmt: skip
    return out


CASES = {
    "coinbase": (RECORDINGS / "coinbase" / "COINBASE.jsonl.zst", _coinbase, 279),
    "bybit": (RECORDINGS / "bybit" / "BYBIT.jsonl.zst", _bybit, 347),
    "okx": (RECORDINGS / "okx" / "OKX.ws.1.0", _okx, 74),
}


@pytest.mark.parametrize("venue", sorted(CASES))
def test_replay_stores_every_recorded_trade_once(tmp_path: Path, venue: str) -> None:
    path, parse, total = CASES[venue]
    if not path.exists():
        pytest.skip(f"recording not found: {path}")
    data = tmp_path / "data"
    res = run_cli("replay", "--venue", venue, "--input", str(path), "--data-dir", str(data), "--format", "both",
                  "--session-id", "rp", timeout=240)  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads(res.stdout)
    rows = stored_trade_rows(data)
    expected = parse(path)
    assert len(expected) == total
    want = [w for w in expected if w["pair"] in summary["pairs"]]  # the pairs replayed (those with books)
    assert want and summary["trades_written"] == len(want) == len(rows)
    rows.sort(key=lambda r: (r["pair"], r["sequence_number"]))
    for pair in summary["pairs"]:
        got = [r for r in rows if r["pair"] == pair]
        ref = [w for w in want if w["pair"] == pair]
        assert [r["sequence_number"] for r in got] == list(range(len(got)))
        assert len(got) == len(ref), pair
        for r, w in zip(got, ref, strict=True):
            assert r["exchange"] == venue and r["session_id"] == "rp"
            for key in ("trade_id", "price", "quantity", "side", "exchange_time"):
                assert r[key] == w[key], (key, r, w)
            assert abs(r["local_time"] - w["local_time"]) <= 2  # µs, the recorded receive time
    assert summary["trade_gaps"] == 0  # contiguous in these captures (Bybit: never countable)
    assert summary["quotes_written"] > 0  # the top-of-book changes of the books replayed
