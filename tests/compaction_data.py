"""Small files like a writer rotating often, in both formats, for the compaction tests."""

from __future__ import annotations

import os
import subprocess
import time
from collections import Counter
from pathlib import Path

import pyarrow as pa

from recorder.model import Level, Snapshot
from recorder.sinks.local import prepare_jsonl, prepare_parquet, publish
from recorder.writer.batches import data_file_path, snapshot_jsonl, snapshots_to_batch
from tests.conftest import CLI, ROOT

DAY_MS = 86_400_000
T0 = 1_795_000_000_000 - (1_795_000_000_000 % DAY_MS)  # a UTC midnight
PAIRS = ("ETH-USDT", "BTC-USDT")


def make_small_files(
    data: Path,
    files_per_day: int = 12,
    snaps_per_file: int = 20,
    formats: tuple[str, ...] = ("parquet", "jsonl"),
    fresh: int = 1,
) -> int:
    """Two days x two sessions of small files, two hours old but the last ``fresh`` of each day
    (still in the current hour); returns the files written."""
    old = time.time() - 7200
    written = 0
    for day in range(2):
        for i in range(files_per_day):
            session = f"s{i % 2}"
            first = T0 + day * DAY_MS + i * snaps_per_file * 1000
            snaps = [
                Snapshot(
                    exchange="binance",
                    pair=pair,
                    timestamp_ms=first + k * 1000,
                    bids=[Level(100.0 - j, 1.0 + j + k / 7) for j in range(5)],
                    asks=[Level(101.0 + j, 2.0 + j) for j in range(5 if k % 9 else 0)],  # some one-sided
                    capture_latency_ms=1.5,
                    sequence_number=i * snaps_per_file + k,
                    update_id=k,
                    session_id=session,
                )
                for k in range(snaps_per_file)
                for pair in PAIRS
            ]
            date = time.strftime("%Y-%m-%d", time.gmtime(first / 1000))
            for fmt in formats:
                path = data_file_path(data, fmt, "binance", date, session, first, i)
                if fmt == "parquet":
                    prepared = prepare_parquet(pa.Table.from_batches([snapshots_to_batch(snaps)]), path)
                else:
                    prepared = prepare_jsonl(b"".join(snapshot_jsonl(s) for s in snaps), path)
                publish(prepared)
                if i < files_per_day - fresh:
                    os.utime(path, (old, old))
                written += 1
    return written


def jsonl_lines(blobs: list[bytes]) -> Counter[bytes]:
    """Every JSONL line of these files, with its count (a multiset: no line lost or doubled)."""
    return Counter(line for blob in blobs for line in blob.split(b"\n") if line.strip())


def run_compact(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``cli.py compact`` in a child process, as a user runs it."""
    return subprocess.run(
        [*CLI, "compact", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )
