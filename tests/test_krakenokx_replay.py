"""The Kraken and OKX recordings through `cli.py replay` (the live Feed on the recorded clock) and
through `cli.py simulate --replay` into a live capture (real processes, real sockets)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from recorder.venues.kraken import KrakenFeed
from recorder.venues.okx import OkxFeed
from tests.checksum_venue_support import RECORDINGS, VenueSim, read_text_capture, venue_config
from tests.conftest import capture_whole_replay, read_jsonl, run_cli, status

KRAKEN = RECORDINGS / "kraken" / "KRAKEN.ws.50.0"
OKX = RECORDINGS / "okx" / "OKX.ws.1.0"


def _states(path: Path, feed: Any, depth: int = 20) -> dict[tuple[str, int | None, int], list[Any]]:
    """(pair, update id, exchange ms) -> every top-``depth`` book the Feed served with that id."""
    out: dict[tuple[str, int | None, int], list[Any]] = {}
    for ts, payload in read_text_capture(path):
        feed.on_frame(payload, ts)
        for pair in feed.pairs():
            book = feed.book(pair)
            if book is not None:
                bids, asks = book.top(depth)
                top = ([(lv.price, lv.qty) for lv in bids], [(lv.price, lv.qty) for lv in asks])
                tops = out.setdefault((pair, book.update_id, book.exchange_time_ms), [])
                if top not in tops:
                    tops.append(top)
    return out


def _stored_top(s: dict[str, Any]) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    return [(lv["price"], lv["qty"]) for lv in s["bids"]], [(lv["price"], lv["qty"]) for lv in s["asks"]]


@pytest.mark.parametrize(
    ("venue", "path", "feed", "checksums", "pairs"),
    [
        ("kraken", KRAKEN, KrakenFeed, 4269, 10),
        ("okx", OKX, OkxFeed, 290, 3),
    ],
)
def test_replay_verifies_every_checksum_and_stores_the_feed_books(
    tmp_path: Path, venue: str, path: Path, feed: type, checksums: int, pairs: int
) -> None:
    data = tmp_path / "data"
    res = run_cli(
        "replay", "--venue", venue, "--input", str(path), "--interval", "250ms", "--depth", "20",
        "--format", "jsonl", "--data-dir", str(data), "--session-id", f"rp-{venue}",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads(res.stdout)
    assert summary["checksums_verified"] == checksums and summary["checksums_failed"] == 0
    assert summary["gaps"] == 0 and summary["malformed"] == 0 and len(summary["pairs"]) == pairs
    assert summary["resyncs"] == pairs  # one snapshot per book, never a second
    stored = read_jsonl(data)
    assert len(stored) == summary["snapshots_written"] > 0
    states = _states(path, feed())
    for s in stored:
        tops = states.get((s["pair"], s["update_id"], s["exchange_time_ms"]))
        assert tops is not None and _stored_top(s) in tops, (s["pair"], s["update_id"])


def test_live_capture_of_the_kraken_recording_through_the_simulator(tmp_path: Path) -> None:
    """The v1 recording served over a real socket: the live connector (which subscribes in v2 but
    parses v1 too) verifies every checksum of its pairs and stores the books a replay computes."""
    sim = VenueSim("kraken", "--replay", str(KRAKEN), "--speed", "4")
    pairs = ["XMR-USD", "BTC-CHF", "SC-EUR"]
    try:
        data = tmp_path / "data"
        cfg = venue_config(tmp_path / "k.toml", "kraken", sim.urls, pairs, data)
        capture_whole_replay(sim, cfg, data, "krakenrp", "0.5")  # ~31 s recorded, played at 4x
    finally:
        sim.stop()
    final = status(data, "krakenrp")
    assert final is not None and final["flushed"] is True
    v = final["venues"]["kraken"]
    # XMR/USD 846 + XBT/CHF 289 + SC/EUR 818 updates in the recording, all verified.
    assert v["checksums_ok"] == 846 + 289 + 818 and v["checksums_failed"] == 0 and v["malformed"] == 0
    stored = read_jsonl(data)
    assert {s["pair"] for s in stored} == set(pairs)
    states = _states(KRAKEN, KrakenFeed(pairs))
    for s in stored:
        tops = states.get((s["pair"], s["update_id"], s["exchange_time_ms"]))
        assert tops is not None and _stored_top(s) in tops, (s["pair"], s["update_id"])


def test_live_capture_of_the_okx_recording_through_the_simulator(tmp_path: Path) -> None:
    """The 2022 OKX recording (spot, swap, dated future; no seqId yet) over a real socket."""
    sim = VenueSim("okx", "--replay", str(OKX), "--speed", "2")
    pairs = ["BTC-USDT", "UNI-USD-PERP", "BTC-USD-220527"]
    try:
        data = tmp_path / "data"
        cfg = venue_config(tmp_path / "o.toml", "okx", sim.urls, pairs, data)
        capture_whole_replay(sim, cfg, data, "okxrp", "0.25")  # ~12 s recorded, played at 2x
    finally:
        sim.stop()
    final = status(data, "okxrp")
    assert final is not None and final["flushed"] is True
    v = final["venues"]["okx"]
    assert v["checksums_ok"] == 290 and v["checksums_failed"] == 0 and v["malformed"] == 0
    stored = read_jsonl(data)
    assert {s["pair"] for s in stored} == set(pairs)
    states = _states(OKX, OkxFeed(pairs))
    for s in stored:
        tops = states.get((s["pair"], s["update_id"], s["exchange_time_ms"]))
        assert tops is not None and _stored_top(s) in tops, (s["pair"], s["update_id"])


@pytest.mark.parametrize(
    ("venue", "path", "pair", "marker"),
    [
        ("kraken", KRAKEN, "XMR-USD", b'"book-1000","XMR/USD"]'),
        ("okx", OKX, "BTC-USDT", b'"instId":"BTC-USDT"},"action":"update"'),
    ],
)
def test_replay_of_a_corrupted_level_stores_nothing_of_that_book_after_the_fault(
    tmp_path: Path, venue: str, path: Path, pair: str, marker: bytes
) -> None:
    """One level's quantity changed in the middle of the capture (its checksum left as recorded):
    the replay reports the failure for that pair only, and no snapshot of it after the fault is
    stored (a recording cannot resubscribe) while the other books are stored to the end."""
    lines = path.read_bytes().split(b"\n")
    hits = [i for i, line in enumerate(lines) if marker in line]
    k = hits[len(hits) // 2]
    ts, _, frame = lines[k].partition(b": ")
    fault_ms = float(ts) * 1000
    if venue == "kraken":
        msg = json.loads(frame)
        level = (msg[1].get("a") or msg[1].get("b"))[0]
    else:
        msg = json.loads(frame)
        level = (msg["data"][0]["bids"] or msg["data"][0]["asks"])[0]
    level[1] = f"{float(level[1]) + 1000:.8f}"  # far outside any real size: the top levels change
    lines[k] = ts + b": " + json.dumps(msg, separators=(",", ":")).encode()
    damaged = tmp_path / path.name
    damaged.write_bytes(b"\n".join(lines))
    data = tmp_path / "data"
    res = run_cli(
        "replay", "--venue", venue, "--input", str(damaged), "--interval", "100ms", "--format", "jsonl",
        "--data-dir", str(data), "--session-id", "damaged",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads(res.stdout)
    assert summary["checksums_failed"] == 1 and summary["pairs"][pair]["checksums_failed"] == 1
    assert all(p == pair or v["checksums_failed"] == 0 for p, v in summary["pairs"].items())
    assert summary["pairs"][pair]["missed_ticks"] > 0
    stored = read_jsonl(data)
    last = max(s["timestamp_ms"] for s in stored)
    assert max(s["timestamp_ms"] for s in stored if s["pair"] == pair) <= fault_ms
    assert all(max(s["timestamp_ms"] for s in stored if s["pair"] == p) == last for p in summary["pairs"] if p != pair)
