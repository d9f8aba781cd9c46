"""Writer: level-rows/s into zstd Parquet and into JSONL, and bytes per snapshot-level on disk.

Both paths start where the writer does: from ring records (the bytes the sampler pushed), so
the figures include decoding them. Baseline: the same rows written by pyarrow from an
already-built table (the floor of the Parquet path), so the ratio shows the cost of our
ring record -> Arrow conversion.
"""

from __future__ import annotations

import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from benchmarks.quick import mean_s, size
from recorder.model import Level, Snapshot, ring_decoder, ring_record
from recorder.sinks.local import DEFAULT_ROW_GROUP_ROWS, prepare_jsonl, prepare_parquet
from recorder.sinks.parquet_format import write_parquet
from recorder.writer.batches import batches_to_table, sampled_to_batch, snapshot_jsonl, snapshots_to_batch

SNAPSHOTS = size(5_000, 300)
DEPTH = 20


def _snapshots() -> list[Snapshot]:
    rng = random.Random(1)
    out = []
    for i in range(SNAPSHOTS):
        mid = 30_000 + rng.uniform(-50, 50)
        bids = [Level(round(mid - 0.01 * (k + 1), 2), round(rng.uniform(0.001, 3), 5)) for k in range(DEPTH)]
        asks = [Level(round(mid + 0.01 * (k + 1), 2), round(rng.uniform(0.001, 3), 5)) for k in range(DEPTH)]
        out.append(Snapshot(exchange="binance", pair=f"P{i % 10}-USDT", timestamp_ms=1_700_000_000_000 + i * 100,
                            bids=bids, asks=asks, capture_latency_ms=1.5, sequence_number=i // 10,
                            exchange_time_ms=1_700_000_000_000 + i * 100, update_id=i, session_id="bench"))  # fmt: skip
    return out


ROWS = SNAPSHOTS * 2 * DEPTH


def _rows_info(benchmark, path: Path) -> None:
    mean = mean_s(benchmark)
    nbytes = path.stat().st_size
    benchmark.extra_info.update(bytes_per_level=round(nbytes / ROWS, 2))
    if mean is not None:
        benchmark.extra_info.update(level_rows_per_s=round(ROWS / mean))


@pytest.mark.benchmark(group="writer")
def test_parquet_from_ring_records(benchmark, tmp_path: Path) -> None:
    # No snapshot structs stay alive while timing: the writer holds none, and 200k Level
    # objects would make every garbage collection of the run slower than the writer's.
    records = [ring_record(s) for s in _snapshots()]
    seqs = [s.sequence_number for s in _snapshots()]
    out = tmp_path / "a.parquet"

    def run() -> None:
        books = [ring_decoder.decode(r) for r in records]
        batches = [
            sampled_to_batch(books[i : i + 1024], seqs[i : i + 1024], "bench") for i in range(0, len(books), 1024)
        ]
        table = batches_to_table(batches)
        prepared = prepare_parquet(table, out)
        Path(prepared.tmp_path).replace(out)

    benchmark.pedantic(run, rounds=5, iterations=1)
    assert pq.read_table(out).equals(batches_to_table([snapshots_to_batch(_snapshots())]))
    _rows_info(benchmark, out)


@pytest.mark.benchmark(group="writer")
def test_parquet_pyarrow_floor(benchmark, tmp_path: Path) -> None:
    snaps = _snapshots()
    table = batches_to_table([snapshots_to_batch(snaps)])
    out = tmp_path / "b.parquet"

    def run() -> None:
        write_parquet(table, out, DEFAULT_ROW_GROUP_ROWS)  # the writer's options, minus the fsync

    benchmark.pedantic(run, rounds=5, iterations=1)
    assert pq.read_metadata(out).num_rows == ROWS
    _rows_info(benchmark, out)
    benchmark.extra_info["baseline"] = True


@pytest.mark.benchmark(group="writer")
def test_jsonl_from_ring_records(benchmark, tmp_path: Path) -> None:
    records = [ring_record(s) for s in _snapshots()]
    numbers = [(s.sequence_number, s.session_id) for s in _snapshots()]
    out = tmp_path / "c.jsonl"

    def run() -> None:
        lines = [snapshot_jsonl(ring_decoder.decode(r).to_snapshot(*n)) for r, n in zip(records, numbers, strict=True)]
        prepared = prepare_jsonl(b"".join(lines), out)
        Path(prepared.tmp_path).replace(out)

    benchmark.pedantic(run, rounds=5, iterations=1)
    assert out.read_bytes() == b"".join(snapshot_jsonl(s) for s in _snapshots())
    _rows_info(benchmark, out)


def test_arrow_types_are_stable() -> None:
    """The benchmark measures the real schema, not a simplified one."""
    batch = snapshots_to_batch(_snapshots()[:2])
    assert batch.schema.field("price").type == pa.float64()


# -- trades: rows/s through the writer's trades dataset (decode, Arrow batch, table, file) ------

TRADES = size(200_000, 2_000)


def _trade_records() -> list[bytes]:
    from recorder.model import Trade, trade_record

    rng = random.Random(2)
    out = []
    for i in range(TRADES):
        t_us = 1_700_000_000_000_000 + i * 1_000
        out.append(trade_record(Trade("binance", f"P{i % 10}-USDT", str(3_000_000_000 + i),
                                      round(30_000 + rng.uniform(-50, 50), 2), round(rng.uniform(0.0001, 2), 5),
                                      "buy" if rng.random() < 0.5 else "sell", t_us - 700, t_us)))  # fmt: skip
    return out


def _trade_rows_info(benchmark, path: Path) -> None:
    mean = mean_s(benchmark)
    benchmark.extra_info.update(bytes_per_trade=round(path.stat().st_size / TRADES, 2))
    if mean is not None:
        benchmark.extra_info.update(trade_rows_per_s=round(TRADES / mean))


@pytest.mark.benchmark(group="writer trades")
def test_trades_parquet_from_ring_records(benchmark, tmp_path: Path) -> None:
    from recorder.writer.datasets import TRADES_SPEC as spec

    records = _trade_records()
    seqs = [i // 10 for i in range(TRADES)]
    out = tmp_path / "t.parquet"

    def run() -> None:
        recs = [spec.decode(r) for r in records]
        batches = [spec.batch(recs[i : i + 1024], seqs[i : i + 1024], "bench") for i in range(0, len(recs), 1024)]
        prepared = prepare_parquet(spec.table(batches), out)
        Path(prepared.tmp_path).replace(out)

    benchmark.pedantic(run, rounds=5, iterations=1)
    assert pq.read_metadata(out).num_rows == TRADES
    _trade_rows_info(benchmark, out)


@pytest.mark.benchmark(group="writer trades")
def test_trades_parquet_pyarrow_floor(benchmark, tmp_path: Path) -> None:
    from recorder.writer.datasets import TRADES_SPEC as spec

    recs = [spec.decode(r) for r in _trade_records()]
    table = spec.table([spec.batch(recs, [i // 10 for i in range(TRADES)], "bench")])
    out = tmp_path / "u.parquet"

    def run() -> None:
        write_parquet(table, out, DEFAULT_ROW_GROUP_ROWS)  # the writer's options, minus the fsync

    benchmark.pedantic(run, rounds=5, iterations=1)
    _trade_rows_info(benchmark, out)
    benchmark.extra_info["baseline"] = True


@pytest.mark.benchmark(group="writer trades")
def test_trades_jsonl_from_ring_records(benchmark, tmp_path: Path) -> None:
    from recorder.writer.datasets import TRADES_SPEC as spec

    records = _trade_records()
    out = tmp_path / "t.jsonl"

    def run() -> None:
        lines = [spec.jsonl(spec.decode(r), i // 10, "bench") for i, r in enumerate(records)]
        prepared = prepare_jsonl(b"".join(lines), out)
        Path(prepared.tmp_path).replace(out)

    benchmark.pedantic(run, rounds=5, iterations=1)
    assert out.read_bytes().count(b"\n") == TRADES
    _trade_rows_info(benchmark, out)
