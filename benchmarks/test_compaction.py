"""Compaction: merge throughput, and what it buys — a time-range read of one pair.

Baselines: pyarrow reading, concatenating and writing the same files (the floor of a merge), and
the same query over the small files the writer left (what compaction is for).
"""

from __future__ import annotations

import os
import random
import shutil
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from benchmarks.quick import mean_s, size
from recorder.compaction import compact
from recorder.compaction.compactor import DEFAULT_ROW_GROUP_ROWS
from recorder.model import Level, Snapshot
from recorder.sinks.local import prepare_parquet, publish
from recorder.sinks.parquet_format import COMPACTION_ZSTD_LEVEL, write_parquet
from recorder.writer.batches import batches_to_table, data_file_path, snapshots_to_batch

FILES = size(120, 12)
SNAPS_PER_FILE = 200  # 20 pairs x 10 ticks per file, depth 20: 8,000 level rows per file
PAIRS = [f"P{i:02d}-USDT" for i in range(20)]
T0 = 1_795_000_000_000
ROWS = FILES * SNAPS_PER_FILE * 40


def _make(data: Path) -> None:
    rng = random.Random(2)
    old = time.time() - 7200
    for f in range(FILES):
        snaps = []
        for k in range(SNAPS_PER_FILE):
            mid = 100 + rng.uniform(-1, 1)
            ts = T0 + (f * SNAPS_PER_FILE + k) // len(PAIRS) * 1000
            snaps.append(
                Snapshot(exchange="binance", pair=PAIRS[k % len(PAIRS)], timestamp_ms=ts,
                         bids=[Level(round(mid - 0.01 * (j + 1), 2), 1.0) for j in range(20)],
                         asks=[Level(round(mid + 0.01 * (j + 1), 2), 1.0) for j in range(20)],
                         capture_latency_ms=1.0, sequence_number=f * 10 + k // len(PAIRS), session_id="bench")
            )  # fmt: skip
        path = data_file_path(data, "parquet", "binance", "2026-11-18", "bench", T0 + f, f)
        publish(prepare_parquet(batches_to_table([snapshots_to_batch(snaps)]), path))
        os.utime(path, (old, old))


@pytest.fixture(scope="module")
def small_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("small") / "data"
    _make(data)
    return data


@pytest.mark.benchmark(group="compaction")
def test_compact_partition(benchmark, small_files: Path, tmp_path: Path) -> None:
    work = tmp_path / "data"

    def setup() -> tuple[tuple, dict]:
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(small_files, work, copy_function=shutil.copy2)
        return (), {}

    benchmark.pedantic(lambda: compact(str(work)), setup=setup, rounds=3, iterations=1)
    assert len(list(work.rglob("compacted-*.parquet"))) == 1
    if (mean := mean_s(benchmark)) is not None:
        benchmark.extra_info["level_rows_per_s"] = round(ROWS / mean)


@pytest.mark.benchmark(group="compaction")
def test_merge_pyarrow_floor(benchmark, small_files: Path, tmp_path: Path) -> None:
    files = sorted(small_files.rglob("*.parquet"))
    out = tmp_path / "merged.parquet"

    def run() -> None:
        table = pa.concat_tables([pq.read_table(p) for p in files])
        write_parquet(table, out, DEFAULT_ROW_GROUP_ROWS, zstd_level=COMPACTION_ZSTD_LEVEL)  # compaction's options

    benchmark.pedantic(run, rounds=3, iterations=1)
    benchmark.extra_info["baseline"] = True


def _query(data: Path) -> int:
    dataset = ds.dataset(data / "parquet", format="parquet")
    expr = (
        (ds.field("pair") == "P03-USDT")
        & (ds.field("timestamp_ms") >= T0 + 100_000)
        & (ds.field("timestamp_ms") < T0 + 200_000)
    )
    return dataset.to_table(filter=expr, columns=["timestamp_ms", "price"]).num_rows


@pytest.mark.benchmark(group="query-one-pair-time-range")
def test_query_small_files(benchmark, small_files: Path) -> None:
    rows = benchmark(_query, small_files)
    assert rows > 0
    benchmark.extra_info["baseline"] = True


@pytest.mark.benchmark(group="query-one-pair-time-range")
def test_query_compacted(benchmark, small_files: Path, tmp_path: Path) -> None:
    work = tmp_path / "data"
    shutil.copytree(small_files, work, copy_function=shutil.copy2)
    compact(str(work), row_group_rows=16 * 1024)
    assert benchmark(_query, work) == _query(small_files)
