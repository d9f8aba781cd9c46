"""`cli.py replay` end to end on the real Binance spot and futures recordings.

The expected figures come from an independent rebuild in this file (plain dicts and the documented
sync rules), never from the code under test.
"""

from __future__ import annotations

import gzip
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds
import pytest

from recorder.replay.readers import Kind, Record, capture_files, read_capture
from tests.conftest import read_jsonl, run_cli, snapshots_from_rows

RECORDINGS = Path(__file__).resolve().parent / "data" / "recordings" / "binance"
SPOT = RECORDINGS / "BINANCE.ws.1.0"
FUTURES = RECORDINGS / "BINANCE_FUTURES.ws.1.0"
COINBASE = RECORDINGS.parent / "coinbase" / "COINBASE.jsonl.zst"
QUOTES = ("USDT", "EUR", "ETH", "BTC")


def _pair(symbol: str, futures: bool) -> str:
    quote = next(q for q in QUOTES if symbol.endswith(q))
    return f"{symbol[: -len(quote)]}-{quote}" + ("-PERP" if futures else "")


class Reference:
    """Documented sync procedure per symbol; spot continuity U == u + 1, futures pu == u."""

    def __init__(self, futures: bool) -> None:
        self.futures = futures
        self.books: dict[str, tuple[dict[float, float], dict[float, float]]] = {}
        self.last: dict[str, int] = {}
        self.first: dict[str, bool] = {}
        self.buffer: dict[str, list[dict]] = defaultdict(list)
        self.pending: dict[str, dict] = {}
        self.time: dict[str, float] = {}  # E of the last applied diff

    def snapshot(self, symbol: str, body: dict) -> None:
        if symbol in self.books:
            return
        if not self.buffer[symbol]:
            self.pending[symbol] = body  # joined when its first diff arrives
            return
        self.books[symbol] = (
            {float(p): float(q) for p, q in body["bids"]},
            {float(p): float(q) for p, q in body["asks"]},
        )
        self.last[symbol] = body["lastUpdateId"]
        self.first[symbol] = True
        for d in self.buffer.pop(symbol):
            self.diff(d)

    def diff(self, d: dict) -> None:
        s = d["s"]
        if s not in self.books:
            self.buffer[s].append(d)
            if s in self.pending:
                self.snapshot(s, self.pending.pop(s))
            return
        last = self.last[s]
        if d["u"] <= last:
            return
        if self.first[s]:
            ok = d["pu"] <= last if self.futures else d["U"] <= last + 1
            self.first[s] = False
        else:
            ok = d["pu"] == last if self.futures else d["U"] == last + 1
        assert ok, f"gap in the recording at {s} {d['U']}..{d['u']}"
        for side, levels in zip(self.books[s], (d["b"], d["a"]), strict=True):
            for p, q in levels:
                if float(q) == 0:
                    side.pop(float(p), None)
                else:
                    side[float(p)] = float(q)
        self.last[s] = d["u"]
        self.time[s] = d["E"]

    def top(self, s: str, depth: int) -> dict[str, Any]:
        bids, asks = self.books[s]
        return {
            "bids": sorted(bids.items(), reverse=True)[:depth],
            "asks": sorted(asks.items())[:depth],
            "update_id": self.last[s],
        }


def expected_samples(records: list[Record], futures: bool, interval_ms: int = 1000, depth: int = 20) -> dict:
    """(pair, tick) -> the book the reference holds at that tick, sampled before the first record
    received at or after the tick."""
    ref = Reference(futures)
    out: dict[tuple[str, int], dict[str, Any]] = {}
    tick = None
    for r in records:
        if tick is None:
            tick = (int(r.recv_ms) // interval_ms + 1) * interval_ms
        while r.recv_ms >= tick:
            for s in ref.books:
                out[(_pair(s, futures), tick)] = ref.top(s, depth)
            tick += interval_ms
        if r.kind is Kind.HTTP and r.url:
            ref.snapshot(r.url.split("symbol=")[1].split("&")[0], json.loads(r.payload))
        elif r.kind is Kind.WS:
            data = json.loads(r.payload).get("data", {})
            if data.get("e") == "depthUpdate":
                ref.diff(data)
    return out


def _replay(
    tmp_path: Path, venue: str, *inputs: Path, extra: tuple[str, ...] = (), timeout: float = 120
) -> tuple[dict, Path]:
    data = tmp_path / "data"
    args = ["replay", "--venue", venue, "--data-dir", str(data), "--format", "both", *extra]
    for path in inputs:
        args += ["--input", str(path)]
    res = run_cli(*args, timeout=timeout)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout), data


def _stored(data: Path) -> dict[tuple[str, int], dict[str, Any]]:
    rows = ds.dataset(data / "parquet", format="parquet", partitioning="hive").to_table().to_pylist()
    parquet = snapshots_from_rows(rows)
    jsonl = read_jsonl(data)
    assert len(jsonl) == len(parquet)
    out = {}
    for s in jsonl:
        p = parquet[(s["pair"], s["sequence_number"])]
        book = {
            "bids": [(lv["price"], lv["qty"]) for lv in s["bids"]],
            "asks": [(lv["price"], lv["qty"]) for lv in s["asks"]],
            "update_id": s["update_id"],
        }
        assert (p["bids"], p["asks"], p["update_id"]) == (book["bids"], book["asks"], book["update_id"])
        assert s["verified"] is True
        out[(s["pair"], s["timestamp_ms"])] = book
    return out


@pytest.mark.parametrize(
    ("venue", "path", "futures", "diffs"),
    [("binance", SPOT, False, 177), ("binance-futures", FUTURES, True, 764)],
)
def test_replay_recording_end_to_end(tmp_path: Path, venue: str, path: Path, futures: bool, diffs: int) -> None:
    summary, data = _replay(tmp_path, venue, path)
    records = list(read_capture(capture_files(path)))
    expected = expected_samples(records, futures)
    stored = _stored(data)
    # Every stored book equals the reference rebuild at its tick, and no tick is missing.
    assert stored == expected
    ws_lines = [line for line in path.read_text().splitlines()[1:] if line.strip()]
    assert summary["frames_read"] == len(ws_lines)
    assert summary["records_by_kind"] == {"connect": 1, "ws": len(ws_lines), "http": 4}
    assert summary["frames_by_kind"]["depthUpdate"] == diffs
    assert summary["frames_by_kind"]["rest_snapshot"] == 4
    assert summary["gaps"] == 0 and summary["malformed"] == 0 and summary["checksums_failed"] == 0
    assert summary["snapshots_written"] == len(expected)
    per_pair: dict[str, int] = defaultdict(int)
    for pair, _ in expected:
        per_pair[pair] += 1
    assert {p: v["snapshots_written"] for p, v in summary["pairs"].items()} == dict(per_pair)
    assert all(v["gaps"] == 0 and v["resyncs"] == 1 for v in summary["pairs"].values())
    ticks = sorted({t for _, t in expected})
    first_tick = (int(records[0].recv_ms) // 1000 + 1) * 1000  # before any book is synced
    assert (summary["first_tick_ms"], summary["last_tick_ms"]) == (first_tick, ticks[-1])
    assert summary["ticks"] == (ticks[-1] - first_tick) // 1000 + 1
    assert all(t % 1000 == 0 for t in ticks)
    # The same session cannot be written twice.
    again = run_cli("replay", "--venue", venue, "--input", str(path), "--data-dir", str(data))
    assert again.returncode == 2 and "already has data" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1


def ns_records() -> list[Record]:
    """The Binance spot capture as `<unix ns> <frame>` records: each REST snapshot inline, just
    before the first diff of its symbol that follows it."""
    original = [r for r in read_capture(capture_files(SPOT)) if r.kind is not Kind.CONNECT]
    waiting = {r.url.split("symbol=")[1].split("&")[0]: r for r in original if r.kind is Kind.HTTP and r.url}
    records: list[Record] = []
    for r in original:
        if r.kind is Kind.WS:
            data = json.loads(r.payload)["data"]
            if data.get("e") == "depthUpdate" and data["s"] in waiting:
                snap = waiting.pop(data["s"])
                records.append(Record(r.recv_ms, "x", Kind.HTTP, snap.payload, snap.url))
            records.append(r)
    assert not waiting  # every snapshot found its diff
    return records


def test_replay_ns_gzip_format_matches_text_capture(tmp_path: Path) -> None:
    """The third format: `<unix ns> <frame>` gzip with bare inline snapshots before their diffs."""
    records = ns_records()
    lines = [b"%d %s" % (round(r.recv_ms * 1e6), r.payload) for r in records]
    path = tmp_path / "binance-depth.txt.gz"
    path.write_bytes(gzip.compress(b"\n".join(lines) + b"\n"))
    summary, data = _replay(tmp_path, "binance", path, extra=("--interval", "500ms"))
    assert summary["gaps"] == 0 and summary["frames_by_kind"]["rest_snapshot"] == 4
    assert _stored(data) == expected_samples(records, False, interval_ms=500)


def test_dropped_diff_stops_that_pair_being_stored(tmp_path: Path) -> None:
    lines = SPOT.read_text().splitlines(keepends=True)
    nkn = [i for i, line in enumerate(lines) if '"nknusdt@depth@100ms"' in line]
    drop = nkn[len(nkn) // 2]
    fault_ms = float(lines[next(i for i in nkn if i > drop)].split(": ", 1)[0]) * 1000
    cut = tmp_path / "BINANCE.ws.1.0"
    cut.write_text("".join(lines[:drop] + lines[drop + 1 :]))
    (tmp_path / "BINANCE.http.0.0").write_bytes((RECORDINGS / "BINANCE.http.0.0").read_bytes())
    summary, data = _replay(tmp_path, "binance", cut)
    assert summary["gaps"] == 1
    nkn_summary = summary["pairs"]["NKN-USDT"]
    assert nkn_summary["gaps"] == 1 and nkn_summary["missed_ticks"] > 0
    stored = _stored(data)
    nkn_ticks = [t for p, t in stored if p == "NKN-USDT"]
    # Nothing after the fault is stored for that pair (the recording has no later snapshot)...
    assert nkn_ticks and max(nkn_ticks) <= fault_ms
    assert len(nkn_ticks) == nkn_summary["snapshots_written"]
    # ...and everything before it equals the reference; the other pairs are untouched.
    expected = expected_samples(list(read_capture(capture_files(SPOT))), False)
    for key, book in stored.items():
        assert book == expected[key]
    assert all(summary["pairs"][p]["gaps"] == 0 for p in ("BLZ-ETH", "LRC-BTC", "RUNE-EUR"))


def test_replay_bad_inputs_give_one_line_errors(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.txt"
    garbage.write_text("hello\nworld\n")
    cases = [
        (("--venue", "nope", "--input", str(SPOT)), "unknown venue"),
        (("--venue", "binance", "--input", str(tmp_path / "missing.ws.1.0")), "not a readable file"),
        (("--venue", "binance", "--input", str(garbage)), "no WebSocket frames"),
        (("--venue", "binance", "--input", str(SPOT), "--pairs", "BTC-USDT"), "pairs not in the capture"),
        (("--venue", "binance", "--input", str(SPOT), "--session-id", "../x"), "invalid session id"),
        (("--venue", "binance", "--input", str(SPOT), "--interval", "0"), "invalid interval"),
        (("--venue", "binance", "--input", str(SPOT), "--depth", "0"), "invalid depth"),
        (("--venue", "binance", "--input", str(COINBASE)), "no binance order-book frames"),
    ]
    for args, message in cases:
        res = run_cli("replay", *args, "--data-dir", str(tmp_path / "d"))
        assert res.returncode == 2, (args, res.stderr)
        assert message in res.stderr, (args, res.stderr)
        assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr


def test_corrupted_level_that_crosses_the_book_is_never_stored(tmp_path: Path) -> None:
    """Binance has no checksum: a corrupt level is caught when it crosses the book. The sampler
    drops that tick and resyncs the pair; with no later snapshot in the recording, nothing of
    that pair is stored after the fault."""
    lines = SPOT.read_text().splitlines(keepends=True)
    nkn = [i for i, line in enumerate(lines) if '"nknusdt@depth@100ms"' in line]
    bad = nkn[len(nkn) // 2]
    head, frame = lines[bad].split(": ", 1)
    msg = json.loads(frame)
    msg["data"]["b"].append(["9.99000000", "1.00000000"])  # far above every ask
    lines[bad] = f"{head}: {json.dumps(msg, separators=(',', ':'))}\n"
    fault_ms = float(head) * 1000
    cut = tmp_path / "BINANCE.ws.1.0"
    cut.write_text("".join(lines))
    (tmp_path / "BINANCE.http.0.0").write_bytes((RECORDINGS / "BINANCE.http.0.0").read_bytes())
    summary, data = _replay(tmp_path, "binance", cut)
    stored = _stored(data)
    nkn_ticks = sorted(t for p, t in stored if p == "NKN-USDT")
    assert nkn_ticks and nkn_ticks[-1] < fault_ms
    assert summary["pairs"]["NKN-USDT"]["missed_ticks"] > 0
    expected = expected_samples(list(read_capture(capture_files(SPOT))), False)
    for key, book in stored.items():
        assert book == expected[key]
        assert book["bids"][0][0] < book["asks"][0][0]
    # The other pairs kept every tick.
    for pair in ("BLZ-ETH", "LRC-BTC", "RUNE-EUR"):
        assert summary["pairs"][pair]["snapshots_written"] == sum(1 for p, _ in expected if p == pair)
