"""Snapshots -> Arrow long form (one row per level) and JSONL lines, plus the file layout.

Long form because backtests filter and aggregate by level/price far more than they rebuild
whole books, and every engine (DuckDB, polars, pyarrow) handles flat columns best.

A snapshot whose both sides are empty is stored as ONE row with ``side``, ``level``, ``price``
and ``quantity`` null: it must not vanish, or the per-pair ``sequence_number`` would show a gap
in Parquet that isn't in JSONL. Readers rebuilding books skip rows whose ``side`` is null.

String columns are plain ``string`` in the Arrow schema (so polars/DuckDB don't produce
categoricals that clash across files); Parquet still stores them dictionary-encoded on disk,
which is where the space saving is.
"""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
import pyarrow as pa

from recorder.model import SampledBook, Snapshot, json_encoder

SCHEMA = pa.schema(
    [
        pa.field("exchange", pa.string(), nullable=False),
        pa.field("pair", pa.string(), nullable=False),
        pa.field("timestamp_ms", pa.int64(), nullable=False),
        pa.field("side", pa.string()),  # 'bid' | 'ask'; null only for a book with no levels
        pa.field("level", pa.int16()),  # 0 = best
        pa.field("price", pa.float64()),
        pa.field("quantity", pa.float64()),
        pa.field("capture_latency_ms", pa.float64()),
        pa.field("sequence_number", pa.int64(), nullable=False),
        pa.field("exchange_time_ms", pa.int64()),
        pa.field("update_id", pa.int64()),
        pa.field("verified", pa.bool_(), nullable=False),
        # Null in files written before the field existed (readers fill it so for them).
        pa.field("depth_complete", pa.bool_()),
        pa.field("session_id", pa.string(), nullable=False),
    ]
)

BID = "bid"
ASK = "ask"
_MS_PER_DAY = 86_400_000


# A book's levels as four best-first columns: bid prices, bid qtys, ask prices, ask qtys.
LevelColumns = tuple[Sequence[float], Sequence[float], Sequence[float], Sequence[float]]
_BID_I, _ASK_I, _NONE_I = 0, 1, 2  # indices into _side_names()


@lru_cache(maxsize=1)
def _side_names() -> pa.Array:
    # Built on first use, not at import: pyarrow's first pa.array() imports pandas (when it is
    # installed), ~35 MB that the supervisor, which imports this module, would carry for nothing.
    return pa.array([BID, ASK, None], pa.string())


def long_form_batch(
    books: Sequence[LevelColumns],
    exchange: list[str],
    pair: list[str],
    timestamp_ms: list[int],
    capture_latency_ms: list[float | None],
    sequence_number: list[int],
    exchange_time_ms: list[int | None],
    update_id: list[int | None],
    verified: list[bool],
    depth_complete: list[bool | None],
    session_id: list[str],
) -> pa.RecordBatch:
    """Long-form record batch, rows in input order: each book's bids (best first), then asks.

    The per-level columns are concatenated from the books' float columns (C-level ``extend``),
    the per-book ones are built once and repeated per level with one vectorised ``take``.
    """
    n = len(books)
    # Rows per book and side; a book with no level at all still takes one (null) row.
    nb = np.fromiter((len(b[0]) for b in books), np.int64, n)
    na = np.fromiter((len(b[2]) for b in books), np.int64, n)
    empty = (nb == 0) & (na == 0)
    runs = np.stack([nb, na + empty], axis=1).ravel()  # bids of book 0, asks of book 0, bids of book 1, ...
    run_side = np.tile(np.array([_BID_I, _ASK_I], np.int8), n)
    run_side[1::2][empty] = _NONE_I
    rows = nb + na + empty  # per book
    starts = np.cumsum(runs) - runs
    level = np.arange(int(runs.sum()), dtype=np.int64) - np.repeat(starts, runs)  # 0 = best, per run
    take = pa.array(np.repeat(np.arange(n, dtype=np.int32), rows))
    price: list[float | None] = []
    qty: list[float | None] = []
    for (bid_px, bid_qty, ask_px, ask_qty), none in zip(books, empty.tolist(), strict=True):
        price += bid_px
        price += ask_px
        qty += bid_qty
        qty += ask_qty
        if none:
            price.append(None)
            qty.append(None)
    run_of_row = np.repeat(run_side, runs)

    def per_book(values: Sequence[object], typ: pa.DataType) -> pa.Array:
        return pa.array(values, typ).take(take)

    columns = [
        per_book(exchange, pa.string()),
        per_book(pair, pa.string()),
        per_book(timestamp_ms, pa.int64()),
        _side_names().take(pa.array(run_of_row)),
        pa.array(level.astype(np.int16), mask=np.repeat(empty, rows)),
        pa.array(price, pa.float64()),
        pa.array(qty, pa.float64()),
        per_book(capture_latency_ms, pa.float64()),
        per_book(sequence_number, pa.int64()),
        per_book(exchange_time_ms, pa.int64()),
        per_book(update_id, pa.int64()),
        per_book(verified, pa.bool_()),
        per_book(depth_complete, pa.bool_()),
        per_book(session_id, pa.string()),
    ]
    return pa.RecordBatch.from_arrays(columns, schema=SCHEMA)


def snapshots_to_batch(snaps: Sequence[Snapshot]) -> pa.RecordBatch:
    """Long-form record batch of Snapshot structs (readers and tools; the writer's own path is
    :func:`sampled_to_batch`, which never builds a per-level object)."""
    return long_form_batch(
        [
            (
                [lv.price for lv in s.bids],
                [lv.qty for lv in s.bids],
                [lv.price for lv in s.asks],
                [lv.qty for lv in s.asks],
            )
            for s in snaps
        ],
        [s.exchange for s in snaps],
        [s.pair for s in snaps],
        [s.timestamp_ms for s in snaps],
        [s.capture_latency_ms for s in snaps],
        [s.sequence_number for s in snaps],
        [s.exchange_time_ms for s in snaps],
        [s.update_id for s in snaps],
        [s.verified for s in snaps],
        [s.depth_complete for s in snaps],
        [s.session_id for s in snaps],
    )


def sampled_to_batch(books: Sequence[SampledBook], sequence_numbers: list[int], session_id: str) -> pa.RecordBatch:
    """Long-form record batch of ring records, numbered by the writer."""
    return long_form_batch(
        [(b.bid_px, b.bid_qty, b.ask_px, b.ask_qty) for b in books],
        [b.exchange for b in books],
        [b.pair for b in books],
        [b.timestamp_ms for b in books],
        [b.capture_latency_ms for b in books],
        sequence_numbers,
        [b.exchange_time_ms for b in books],
        [b.update_id for b in books],
        [b.verified for b in books],
        [b.depth_complete for b in books],
        [session_id] * len(books),
    )


def batches_to_table(batches: Sequence[pa.RecordBatch]) -> pa.Table:
    """One file's table, ordered by pair then sequence_number (stable, so levels keep their
    order): clusters each pair's rows so Parquet row-group statistics on ``pair`` prune well."""
    table = pa.Table.from_batches(list(batches), schema=SCHEMA)
    return table.sort_by([("pair", "ascending"), ("sequence_number", "ascending")])


def snapshot_jsonl(snap: Snapshot) -> bytes:
    """One JSONL line (nested form, as ``recorder.model.json_encoder`` renders a Snapshot)."""
    return json_encoder.encode(snap) + b"\n"


# -- layout --------------------------------------------------------------------------------


@lru_cache(maxsize=64)
def _day_str(day: int) -> str:
    return (_dt.date(1970, 1, 1) + _dt.timedelta(days=day)).isoformat()


def utc_date(timestamp_ms: int) -> str:
    """``YYYY-MM-DD`` UTC date of an epoch-milliseconds timestamp."""
    return _day_str(timestamp_ms // _MS_PER_DAY)


def file_stem(session_id: str, first_ts_ms: int, segment: int) -> str:
    return f"{session_id}-{first_ts_ms}-{segment:06d}"


def partition_dir(data_dir: str | os.PathLike[str], fmt: str, exchange: str, date: str, root: str = "") -> Path:
    """``<data_dir>/[<root>/]<fmt>/exchange=<exchange>/date=<date>`` (hive layout; ``root`` is a
    dataset's directory, "" for the books: see ``recorder.layout``)."""
    return Path(data_dir) / root / fmt / f"exchange={exchange}" / f"date={date}"


def data_file_path(
    data_dir: str | os.PathLike[str],
    fmt: str,
    exchange: str,
    date: str,
    session_id: str,
    first_ts_ms: int,
    segment: int,
    root: str = "",
) -> Path:
    """Final path of one segment's file for one (dataset, format, exchange, date) partition."""
    name = f"{file_stem(session_id, first_ts_ms, segment)}.{fmt}"
    return partition_dir(data_dir, fmt, exchange, date, root) / name
