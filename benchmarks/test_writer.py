"""Writer: level-rows/s into zstd Parquet and into JSONL, and bytes per snapshot-level on disk.

Every path starts where the writer does: from ring records (the bytes the sampler pushed), and
runs the writer's own code (``decode_records``, ``build_pieces``, ``prepare_parquet_pieces``), so the
figures include decoding them. Baseline: the same rows written by pyarrow from an already-built
table with the stored files' options (``parquet_format.write_parquet``: the floor of the Parquet path),
so the ratio shows the cost of our ring record -> Arrow conversion.
"""

from __future__ import annotations

import random
from array import array
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from benchmarks.quick import mean_s, size
from recorder.model import Level, Quote, Snapshot, Trade, quote_record, ring_record, trade_record
from recorder.sinks.local import DEFAULT_ROW_GROUP_ROWS, prepare_jsonl, prepare_parquet_pieces
from recorder.sinks.parquet_format import write_parquet
from recorder.writer.batches import batches_to_table, snapshot_jsonl, snapshots_to_batch
from recorder.writer.commit import PIECE_ROWS
from recorder.writer.datasets import SPECS, build_pieces, build_table
from recorder.writer.intake import decode_records, take_records
from recorder.writer.lines import lines_bytes, read_lines
from recorder.writer.segment import Partition, Segment

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


def _write_from_ring_records(records: list[bytes], seqs: array[int], out: Path) -> None:
    """What the writer does with one file's ring records (its journal, numbering and rename aside)."""
    seg = Segment()
    took = take_records(records, row_base=seg.keep_read_columns)
    spec = took.specs[0]
    part = Partition(spec, "bench", "2023-11-14", 0, payloads=took.stored, seqs=seqs, read_rows=took.row)
    pieces = build_pieces(spec, took.stored, seqs, "bench", PIECE_ROWS, seg.columns_of(part))
    prepared = prepare_parquet_pieces(spec.schema, pieces, out)
    Path(prepared.tmp_path).replace(out)


@pytest.mark.benchmark(group="writer")
def test_parquet_from_ring_records(benchmark, tmp_path: Path) -> None:
    # No snapshot structs stay alive while timing: the writer holds none, and 200k Level
    # objects would make every garbage collection of the run slower than the writer's.
    records = [ring_record(s) for s in _snapshots()]
    seqs = array("q", [s.sequence_number for s in _snapshots()])  # as the writer holds them
    out = tmp_path / "a.parquet"
    benchmark.pedantic(_write_from_ring_records, args=(records, seqs, out), rounds=5, iterations=1)
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
    seqs = [s.sequence_number for s in _snapshots()]
    out = tmp_path / "c.jsonl"

    def run() -> None:
        specs, decoded, _ = decode_records(records)
        lines = [spec.jsonl(rec, seq, "bench") for spec, rec, seq in zip(specs, decoded, seqs, strict=True)]
        prepared = prepare_jsonl(b"".join(lines), out)
        Path(prepared.tmp_path).replace(out)

    benchmark.pedantic(run, rounds=5, iterations=1)
    assert out.read_bytes() == b"".join(snapshot_jsonl(s) for s in _snapshots())
    _rows_info(benchmark, out)


def test_arrow_types_are_stable() -> None:
    """The benchmark measures the real schema, not a simplified one."""
    batch = snapshots_to_batch(_snapshots()[:2])
    assert batch.schema.field("price").type == pa.float64()


# -- trades and quotes: rows/s through the writer's own path (decode, Arrow table, file) ----------

TRADES = size(200_000, 2_000)


def _trade_records() -> list[bytes]:
    rng = random.Random(2)
    out = []
    for i in range(TRADES):
        t_us = 1_700_000_000_000_000 + i * 1_000
        out.append(trade_record(Trade("binance", f"P{i % 10}-USDT", str(3_000_000_000 + i),
                                      round(30_000 + rng.uniform(-50, 50), 2), round(rng.uniform(0.0001, 2), 5),
                                      "buy" if rng.random() < 0.5 else "sell", t_us - 700, t_us)))  # fmt: skip
    return out


def _quote_records() -> list[bytes]:
    rng = random.Random(3)
    out = []
    for i in range(TRADES):
        t_us = 1_700_000_000_000_000 + i * 1_000
        mid = 30_000 + rng.uniform(-50, 50)
        bid = None if i % 97 == 0 else round(mid - 0.01, 2)  # an emptied side now and then
        bid_qty = None if bid is None else round(rng.uniform(0.001, 3), 5)
        ask, ask_qty = round(mid + 0.01, 2), round(rng.uniform(0.001, 3), 5)
        out.append(
            quote_record(Quote("binance", f"P{i % 10}-USDT", bid, bid_qty, ask, ask_qty, t_us - 700, t_us, 10 * i))
        )
    return out


RECORDS = {"trades": _trade_records, "quotes": _quote_records}


def _trade_rows_info(benchmark, path: Path) -> None:
    mean = mean_s(benchmark)
    benchmark.extra_info.update(bytes_per_row=round(path.stat().st_size / TRADES, 2))
    if mean is not None:
        benchmark.extra_info.update(rows_per_s=round(TRADES / mean))


@pytest.mark.parametrize("dataset", ["trades", "quotes"])
def test_trades_parquet_from_ring_records(benchmark, tmp_path: Path, dataset: str) -> None:
    benchmark.group = f"writer {dataset}"
    records = RECORDS[dataset]()
    seqs = array("q", [i // 10 for i in range(TRADES)])  # as the writer holds them
    out = tmp_path / "t.parquet"
    benchmark.pedantic(_write_from_ring_records, args=(records, seqs, out), rounds=5, iterations=1)
    assert pq.read_metadata(out).num_rows == TRADES
    _trade_rows_info(benchmark, out)


@pytest.mark.parametrize("dataset", ["trades", "quotes"])
def test_trades_parquet_pyarrow_floor(benchmark, tmp_path: Path, dataset: str) -> None:
    benchmark.group = f"writer {dataset}"
    table = build_table(
        SPECS[dataset], decode_records(RECORDS[dataset]())[2], [i // 10 for i in range(TRADES)], "bench"
    )
    out = tmp_path / "u.parquet"

    def run() -> None:
        write_parquet(table, out, DEFAULT_ROW_GROUP_ROWS)  # the writer's options, minus the fsync

    benchmark.pedantic(run, rounds=5, iterations=1)
    _trade_rows_info(benchmark, out)
    benchmark.extra_info["baseline"] = True


@pytest.mark.parametrize("dataset", ["trades", "quotes"])
def test_trades_jsonl_from_ring_records(benchmark, tmp_path: Path, dataset: str) -> None:
    """What the writer does with JSONL on (and the Redis stream off): the read taken in bulk, its
    lines rendered from the columns read (``lines.read_lines``)."""
    benchmark.group = f"writer {dataset}"
    records = RECORDS[dataset]()
    seqs = np.arange(TRADES, dtype=np.int64) // 10
    out = tmp_path / "t.jsonl"

    def run() -> None:
        took = take_records(records)
        at = np.flatnonzero(took.group >= 0)
        prepared = prepare_jsonl(lines_bytes(read_lines(took, at, seqs[at], "bench")), out)
        Path(prepared.tmp_path).replace(out)

    benchmark.pedantic(run, rounds=5, iterations=1)
    lines = out.read_bytes().splitlines(keepends=True)
    spec = SPECS[dataset]
    assert len(lines) == TRADES and lines[-1] == spec.jsonl(spec.decode(records[-1]), (TRADES - 1) // 10, "bench")
    _trade_rows_info(benchmark, out)
