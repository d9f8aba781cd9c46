"""Writer rotation: bounded by the bytes it holds (its memory), not by a count that is one tick
of a universe. Real writer, real ring, simulated clock (``tests/universe_writer.py``)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq

from recorder.config import WriterConfig
from tests.universe_writer import run_universe

MB = 1024 * 1024


def _snapshots_per_pair(path: Path) -> Counter[str]:
    t = pq.read_table(path, columns=["pair", "sequence_number"])
    return Counter(p for p, _ in set(zip(t["pair"].to_pylist(), t["sequence_number"].to_pylist(), strict=True)))


def test_default_has_no_count_cap() -> None:
    assert WriterConfig().rotate_snapshots is None


def test_a_universe_gets_few_files_each_holding_many_snapshots_of_every_pair(tmp_path: Path) -> None:
    # 300 pairs a second for 40 s, JSONL only so what the writer held is exactly what the files
    # hold: every file but the last stops at the first record that reaches rotate_mb.
    pairs, ticks, rotate_mb = 300, 40, 1.0
    r = run_universe(tmp_path, pairs, ticks, formats=["jsonl"], rotate_mb=rotate_mb)
    files = sorted((tmp_path / "jsonl").rglob("*.jsonl"), key=lambda f: int(f.stem.split("-")[-1]))
    sizes = [f.stat().st_size for f in files]
    lines = [f.read_bytes().count(b"\n") for f in files]
    assert sum(lines) == pairs * ticks
    longest = max(len(line) + 1 for f in files for line in f.read_bytes().splitlines())
    assert len(files) >= 3
    for size in sizes[:-1]:
        assert rotate_mb * MB <= size < rotate_mb * MB + longest  # the bound, overshot by one record
    assert r["held_peak_bytes"] < rotate_mb * MB + longest
    assert len(files) == len(r["commits"]) + 1  # the last one at stop
    assert min(lines[:-1]) > 2 * pairs  # several ticks per file, where the old default wrote one


def test_parquet_files_hold_every_pair_many_times_and_memory_stays_bounded(tmp_path: Path) -> None:
    pairs, ticks = 200, 30
    r = run_universe(tmp_path, pairs, ticks, formats=["parquet"], rotate_mb=1.0)
    assert r["snapshots_written"] == pairs * ticks
    assert 2 <= len(r["files"]) < ticks
    for f in r["files"][:-1]:
        per_pair = _snapshots_per_pair(f)
        assert len(per_pair) == pairs and min(per_pair.values()) >= 3
    assert r["held_peak_bytes"] < 1.1 * MB


def test_time_rule_for_a_small_universe(tmp_path: Path) -> None:
    # 10 pairs at 1 s: nothing near rotate_mb, so files follow rotate_seconds: a file's first
    # tick at t, it is sealed with the tick at t + 300 s (301 ticks), the rest at stop.
    r = run_universe(tmp_path, 10, 650, formats=["parquet"])
    assert [round(t - r["commits"][0]) for t in r["commits"]] == [0, 301]
    counts = [pq.read_metadata(f).num_rows // 40 for f in r["files"]]
    assert sorted(counts) == [480, 3010, 3010]


def test_an_explicit_rotate_snapshots_still_caps_each_file(tmp_path: Path) -> None:
    r = run_universe(tmp_path, 50, 10, formats=["parquet"], rotate_snapshots=120)
    counts = sorted(pq.read_metadata(f).num_rows // 40 for f in r["files"])
    assert counts == [20] + [120] * 4
