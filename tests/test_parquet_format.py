"""The Parquet encodings (recorder/sinks/parquet_format.py): every engine still reads the files
exactly, the chosen encodings and statistics are the ones in the file, compaction writes the same."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from recorder.compaction.formats import ParquetCodec
from recorder.model import Level, Quote, Snapshot, Trade, quote_record, trade_record
from recorder.sinks import parquet_format
from recorder.sinks.local import prepare_parquet, publish
from recorder.sinks.parquet_format import parquet_options, write_parquet_pieces
from recorder.writer.batches import SCHEMA, batches_to_table, snapshots_to_batch
from recorder.writer.datasets import QUOTES_SCHEMA, QUOTES_SPEC, TRADES_SCHEMA, TRADES_SPEC, build_table

T0 = 1_786_310_819_600


def _books() -> pa.Table:
    snaps = []
    for i in range(300):
        pair = ("BTC-USDT", "ETH-USDT")[i % 2]
        mid = 60_000.0 + (i // 7) * 0.1
        bids = [Level(round(mid - 0.1 * (k + 1), 1), round(0.001 * (i % 5 + k + 1), 6)) for k in range(20)]
        asks = [Level(round(mid + 0.1 * (k + 1), 1), round(0.002 * (i % 3 + k + 1), 6)) for k in range(20 - i % 4)]
        snaps.append(
            Snapshot(
                exchange="bybit",
                pair=pair,
                timestamp_ms=T0 + (i // 2) * 100,
                bids=[] if i == 11 else bids,
                asks=[] if i == 11 else asks,  # an empty book: one row of nulls
                capture_latency_ms=None if i < 4 else round(100 + (i * 37 % 1000) / 1000, 3),
                sequence_number=i // 2,
                exchange_time_ms=None if i < 2 else T0 + (i // 2) * 100 - 3,
                update_id=None if i == 5 else 1_000 + i * 3,
                verified=i % 9 != 0,
                depth_complete=None if i == 7 else i % 4 == 0,
                session_id="s",
            )
        )
    return batches_to_table([snapshots_to_batch(snaps)])


def _trades() -> pa.Table:
    recs = [
        (
            trade_record(
                Trade(
                    "bybit",
                    "BTC-USDT",
                    str(9_000 + i),
                    60_000.0 + i,
                    0.01 * i,
                    "buy" if i % 3 else "sell",
                    None if i == 3 else T0 * 1000 + i,
                    T0 * 1000 + i,
                )
            )
        )  # fmt: skip
        for i in range(50)
    ]
    return build_table(TRADES_SPEC, recs, list(range(50)), "s")


def _quotes() -> pa.Table:
    recs = [
        (
            quote_record(
                Quote(
                    "bybit",
                    "BTC-USDT",
                    None if i == 2 else 60_000.0 + i,
                    1.0,
                    60_001.0 + i,
                    2.0,
                    T0 * 1000 + i,
                    T0 * 1000 + i,
                    None if i == 4 else i,
                )
            )
        )  # fmt: skip
        for i in range(50)
    ]
    return build_table(QUOTES_SPEC, recs, list(range(50)), "s")


def _write(table: pa.Table, path: Path) -> Path:
    publish(prepare_parquet(table, path))
    return path


def _encodings(path: Path) -> dict[str, tuple[set[str], bool]]:
    """Column -> (its encodings, has min/max statistics), over every row group."""
    md = pq.read_metadata(path)
    out: dict[str, tuple[set[str], bool]] = {}
    for g in range(md.num_row_groups):
        for i in range(md.num_columns):
            c = md.row_group(g).column(i)
            out[c.path_in_schema] = (set(c.encodings), c.statistics is not None and c.statistics.has_min_max)
    return out


def test_every_engine_reads_the_books_exactly(tmp_path: Path) -> None:
    table = _books()
    path = _write(table, tmp_path / "parquet" / "exchange=bybit" / "date=2026-08-09" / "s-1-000000.parquet")
    back = pq.read_table(path, partitioning=None)
    assert back.schema.equals(SCHEMA) and back.equals(table)  # no Arrow schema stored: same types
    rows = [tuple(r.values()) for r in table.to_pylist()]
    cols = ", ".join(SCHEMA.names)
    assert duckdb.sql(f"SELECT {cols} FROM read_parquet('{path}')").fetchall() == rows
    assert pl.read_parquet(path).rows() == rows
    pd.testing.assert_frame_equal(pd.read_parquet(path, partitioning=None), table.to_pandas())
    # The README's hive recipes see the same rows (plus the partition columns).
    glob = str(tmp_path / "parquet" / "**" / "*.parquet")
    hive = duckdb.sql(f"SELECT {cols} FROM read_parquet('{glob}', hive_partitioning=true)").fetchall()
    assert hive == rows
    assert pl.scan_parquet(glob, hive_partitioning=True).select(SCHEMA.names).collect().rows() == rows


def test_trades_and_quotes_read_back_exactly(tmp_path: Path) -> None:
    for table, schema in ((_trades(), TRADES_SCHEMA), (_quotes(), QUOTES_SCHEMA)):
        path = _write(table, tmp_path / f"{schema.names[2]}.parquet")
        back = pq.read_table(path)
        assert back.schema.equals(schema) and back.equals(table)
        assert pl.read_parquet(path).to_arrow().cast(schema).equals(table)
        assert duckdb.sql(f"SELECT count(*) FROM '{path}'").fetchall() == [(table.num_rows,)]


def test_encodings_and_statistics_are_the_chosen_ones(tmp_path: Path) -> None:
    path = _write(_books(), tmp_path / "b.parquet")
    enc = _encodings(path)
    for col in ("exchange", "pair", "side", "session_id", "capture_latency_ms"):
        assert "RLE_DICTIONARY" in enc[col][0], (col, enc[col])
    # exchange_time_ms and update_id step regularly here (+100 ms, +6 per snapshot): delta wins.
    for col in ("timestamp_ms", "sequence_number", "exchange_time_ms", "update_id"):
        assert "DELTA_BINARY_PACKED" in enc[col][0], (col, enc[col])
    for col in ("price", "quantity", "level"):
        assert enc[col][0] <= {"PLAIN", "RLE"}, (col, enc[col])  # RLE: the null levels
    # Min/max where a reader skips row groups by them; none for prices, levels or ids.
    assert {c for c, (_, stats) in enc.items() if stats} == {
        "exchange", "pair", "timestamp_ms", "exchange_time_ms", "session_id"
    }  # fmt: skip
    md = pq.read_metadata(path)
    assert md.row_group(0).column(0).compression == "ZSTD"
    assert b"ARROW:schema" not in (md.metadata or {})


def test_irregular_update_ids_and_times_stay_plain(tmp_path: Path) -> None:
    """Kraken's update id is a µs time, USD-M's jumps by thousands: where the steps are irregular,
    delta packing is larger than the plain values, and the file keeps them plain (and exact)."""
    books = _books()
    pair = np.asarray(books.column("pair").to_pylist())
    tick = books.column("timestamp_ms").to_numpy()
    new_book = np.r_[True, (pair[1:] != pair[:-1]) | (tick[1:] != tick[:-1])]
    book = np.cumsum(new_book) - 1  # each row's snapshot, 0, 1, 2, ...
    rng = np.random.default_rng(7)
    irregular = {
        "update_id": np.cumsum(rng.integers(1, 1 << 40, book[-1] + 1))[book],
        "exchange_time_ms": T0 + np.cumsum(rng.integers(1, 1 << 30, book[-1] + 1))[book],
    }
    table = books
    for name, values in irregular.items():
        at = table.schema.get_field_index(name)
        table = table.set_column(at, table.schema.field(name), pa.array(values, pa.int64()))
    path = _write(table, tmp_path / "irregular.parquet")
    enc = _encodings(path)
    for col in irregular:
        assert enc[col][0] <= {"PLAIN", "RLE"}, (col, enc[col])
    assert "DELTA_BINARY_PACKED" in enc["timestamp_ms"][0]
    assert pq.read_table(path, partitioning=None).equals(table)


def test_compaction_writes_the_same_encodings(tmp_path: Path) -> None:
    table = _books()
    a = _write(table.slice(0, 4_000), tmp_path / "a.parquet")
    b = _write(table.slice(4_000), tmp_path / "b.parquet")
    merged = ParquetCodec().merge([(p.name, p.read_bytes()) for p in (a, b)], 1_000)
    out = tmp_path / "merged.parquet"
    with open(out, "wb") as fh:
        merged.write(fh)
    assert pq.read_metadata(out).num_row_groups > 1
    assert _encodings(out) == _encodings(a)
    assert pq.read_table(out).equals(table)


def test_a_file_written_in_pieces_is_the_file_of_its_whole_table(monkeypatch) -> None:
    """The writer builds a file's rows a piece at a time and joins them into row groups as it
    writes (``write_parquet_pieces``): the file must be byte for byte the one pyarrow writes of
    the whole table, pieces ending inside row groups, on their edges and past them; the
    encodings are chosen on the same first rows (a sample shorter than the books here)."""
    monkeypatch.setattr(parquet_format, "SAMPLE_ROWS", 1_000)
    for table in (_books(), _trades(), _quotes()):
        for piece_rows, group_rows in ((31, 97), (97, 97), (500, 97), (7, 10_000)):
            whole, pieced = pa.BufferOutputStream(), pa.BufferOutputStream()
            options = parquet_options(table.schema, sample=table)
            pq.write_table(table, whole, row_group_size=group_rows, **options)
            pieces = (table.slice(at, piece_rows) for at in range(0, table.num_rows, piece_rows))
            assert write_parquet_pieces(table.schema, pieces, pieced, group_rows) == table.num_rows
            assert pieced.getvalue().to_pybytes() == whole.getvalue().to_pybytes()
            assert pq.read_metadata(pa.BufferReader(pieced.getvalue())).num_row_groups == -(
                -table.num_rows // group_rows
            )
