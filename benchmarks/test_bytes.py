"""Bytes per stored book level: our Parquet against the same snapshots as tardis' CSV.gz.

Each real recording in ``tests/data/recordings`` is replayed at 100 ms, depth 20, through the
real replay (live Feed, Sampler, ring, Writer) into Parquet and JSONL; the JSONL snapshots are
then written here, independently of the writer, in the layout of tardis.dev's
``book_snapshot_20`` CSV (``exchange,symbol,timestamp,local_timestamp,asks[0].price,
asks[0].amount,bids[0].price,bids[0].amount,asks[1].price,...``) and gzipped. Both are divided
by the same count of stored levels. The Parquet is measured as the writer leaves it (files of
``rotate_snapshots``) and after ``compact`` merged the partition (what a day is kept as).

The figure is bytes, not time: deterministic for a given pyarrow / zstd. The timed part (the
replay) is incidental. Quick mode replays Binance spot and USD-M only.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from benchmarks.quick import quick
from recorder.compaction.compactor import compact
from recorder.replay.engine import ReplayOptions, replay
from recorder.replay.readers import capture_files

RECORDINGS = Path(__file__).resolve().parent.parent / "tests" / "data" / "recordings"
DEPTH = 20
INTERVAL_MS = 100
GZIP_LEVEL = 6  # gzip's own default

CASES = [
    ("binance", "binance/BINANCE.ws.1.0"),
    ("binance-futures", "binance/BINANCE_FUTURES.ws.1.0"),
    ("kraken", "kraken/KRAKEN.ws.50.0"),
    ("okx", "okx/OKX.ws.1.0"),
    ("bybit", "bybit/BYBIT.jsonl.zst"),
    ("coinbase", "coinbase/COINBASE.jsonl.zst"),
]
if quick():
    CASES = CASES[:2]


def _number(x: float) -> str:
    """A decimal as a venue prints it: positional, shortest round-trip digits, no trailing dot."""
    return np.format_float_positional(x, trim="-")


def tardis_csv_gz(snapshots: list[dict], exchange: str) -> bytes:
    """``book_snapshot_20`` CSV, rows in local time order, gzipped. Timestamps in µs: the venue's
    event time of the last update (the tick where the venue gives none) and the tick."""
    header = ["exchange", "symbol", "timestamp", "local_timestamp"]
    for i in range(DEPTH):
        header += [f"asks[{i}].price", f"asks[{i}].amount", f"bids[{i}].price", f"bids[{i}].amount"]
    lines = [",".join(header)]
    for s in sorted(snapshots, key=lambda s: (s["timestamp_ms"], s["pair"])):
        event_ms = s["exchange_time_ms"] if s["exchange_time_ms"] is not None else s["timestamp_ms"]
        row = [exchange, s["pair"], str(event_ms * 1000), str(s["timestamp_ms"] * 1000)]
        for i in range(DEPTH):
            for side in ("asks", "bids"):
                levels = s[side]
                row += [_number(levels[i]["price"]), _number(levels[i]["qty"])] if i < len(levels) else ["", ""]
        lines.append(",".join(row))
    return gzip.compress(("\n".join(lines) + "\n").encode(), compresslevel=GZIP_LEVEL, mtime=0)


def _jsonl_snapshots(data: Path) -> list[dict]:
    return [json.loads(line) for f in sorted((data / "jsonl").rglob("*.jsonl")) for line in f.read_text().splitlines()]


def _parquet_files(data: Path) -> list[Path]:
    return sorted((data / "parquet").rglob("*.parquet"))


def _levels(snapshots: list[dict]) -> set[tuple]:
    return {
        (s["pair"], s["timestamp_ms"], side, i, lv["price"], lv["qty"])
        for s in snapshots
        for side in ("bid", "ask")
        for i, lv in enumerate(s[side + "s"])
    }


def _parquet_levels(files: list[Path]) -> set[tuple]:
    columns = ["pair", "timestamp_ms", "side", "level", "price", "quantity"]
    t = pa.concat_tables(pq.read_table(f, columns=columns, partitioning=None) for f in files)
    t = t.filter(pc.is_valid(t.column("side")))
    return set(zip(*(t.column(c).to_pylist() for c in t.column_names), strict=True))


@pytest.mark.benchmark(group="bytes per level")
@pytest.mark.parametrize("venue,recording", CASES, ids=[c[0] for c in CASES])
def test_bytes_per_level(benchmark, tmp_path: Path, venue: str, recording: str) -> None:
    inputs = capture_files(RECORDINGS / recording)
    runs = iter(range(1_000))

    def run() -> Path:
        data = tmp_path / f"run{next(runs)}"
        opts = ReplayOptions(venue, inputs, INTERVAL_MS, DEPTH, ["jsonl", "parquet"], str(data), "bytes")
        replay(opts)
        return data

    data = benchmark.pedantic(run, rounds=1, iterations=1)
    snapshots = _jsonl_snapshots(data)
    levels = sum(len(s["bids"]) + len(s["asks"]) for s in snapshots)
    files = _parquet_files(data)
    # The Parquet holds exactly the levels the CSV gets (the JSONL is the independent reference).
    assert _parquet_levels(files) == _levels(snapshots) and levels > 0
    written = sum(f.stat().st_size for f in files)
    csv_gz = len(tardis_csv_gz(snapshots, venue))

    compact(str(data), older_than_s=0)  # a partition of one file stays as it is
    merged = _parquet_files(data)
    assert len(merged) == 1
    assert _parquet_levels(merged) == _levels(snapshots)
    compacted = merged[0].stat().st_size
    benchmark.extra_info.update(
        snapshots=len(snapshots),
        levels=levels,
        parquet_files=len(files),
        parquet_bytes_per_level=round(written / levels, 3),
        compacted_bytes_per_level=round(compacted / levels, 3),
        tardis_csv_gz_bytes_per_level=round(csv_gz / levels, 3),
        parquet_vs_csv_gz=round(written / csv_gz, 2),
        compacted_vs_csv_gz=round(compacted / csv_gz, 2),
    )
