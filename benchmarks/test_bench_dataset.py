"""Reader and report throughput on synthetic data in the writer's layout.

Run: ``python -m pytest benchmarks/test_bench_dataset.py -n 0 --benchmark-only`` (not part of the test suite).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.quick import size
from recorder.dataset import open_dataset, to_ms
from recorder.report import build_report
from tests.month_data import HOUR_MS, snapshot, write_month, write_segment

T0 = to_ms("2026-11-01T00:00:00Z")
SEGMENTS = size(24, 2)  # 15-minute files (quick: 2 of them)
TICKS = SEGMENTS * 900  # one snapshot a second per pair
SNAPS = 2 * TICKS
DAYS = size(30, 2)


@pytest.fixture(scope="module")
def six_hours(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6 h at 1 s, 2 pairs, depth 20, 15-minute files: 43,200 snapshots, 1.7 M level rows (quick: 30 min)."""
    data = tmp_path_factory.mktemp("bench") / "data"
    seq = {"BTC-USDT": 0, "ETH-USDT": 0}
    for seg in range(SEGMENTS):
        snaps = []
        for i in range(900):
            ts = T0 + (seg * 900 + i) * 1000
            for pair in seq:
                snaps.append(snapshot(pair, ts, seq[pair], 100.0 + i % 7, depth=20))
                seq[pair] += 1
        write_segment(data, snaps, seg)
    return data


@pytest.fixture(scope="module")
def month(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("bench-month") / "data"
    write_month(data, T0, DAYS)
    return data


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_table(benchmark, six_hours: Path, fmt: str) -> None:  # type: ignore[no-untyped-def]
    ds = open_dataset(six_hours, format=fmt)
    t = benchmark.pedantic(ds.table, rounds=3)
    assert t.num_rows == SNAPS * 40


def test_wide_depth5(benchmark, six_hours: Path) -> None:  # type: ignore[no-untyped-def]
    ds = open_dataset(six_hours)
    w = benchmark.pedantic(lambda: ds.wide(depth=5), rounds=3)
    assert w.num_rows == SNAPS


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_snapshots(benchmark, six_hours: Path, fmt: str) -> None:  # type: ignore[no-untyped-def]
    ds = open_dataset(six_hours, format=fmt)
    n = benchmark.pedantic(lambda: sum(1 for _ in ds.snapshots()), rounds=2)
    assert n == SNAPS


def test_one_hour_of_a_month(benchmark, month: Path) -> None:  # type: ignore[no-untyped-def]
    ds = open_dataset(month)
    start = T0 + DAYS // 2 * 24 * HOUR_MS + 13 * HOUR_MS
    t = benchmark.pedantic(lambda: ds.table(pairs="ETH-USDT", start=start, end=start + HOUR_MS), rounds=5)
    assert t.num_rows == 48


def test_asof(benchmark, six_hours: Path) -> None:  # type: ignore[no-untyped-def]
    ds = open_dataset(six_hours)
    at = T0 + TICKS * 1000 * 5 // 6  # 5 h into the 6 (quick: 25 min into 30)
    snap = benchmark.pedantic(lambda: ds.asof(at + 500, exchange="binance", pair="BTC-USDT"), rounds=5)
    assert snap is not None and snap.timestamp_ms == at


def test_report(benchmark, six_hours: Path) -> None:  # type: ignore[no-untyped-def]
    rep = benchmark.pedantic(lambda: build_report(str(six_hours)), rounds=2)
    assert rep.sessions[0].pairs[0].stored == TICKS
