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

from recorder.model import Snapshot, json_encoder
from recorder.writer.columns import field_array

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


_BID_I, _ASK_I, _NONE_I = 0, 1, 2  # indices into _side_names()
_LEVEL_COLUMNS = frozenset(("side", "level", "price", "quantity"))
# A book's columns that are not its levels, and the Snapshot / SampledBook attribute of each
# (sequence_number and session_id come from the writer).
BOOK_FIELDS: tuple[tuple[str, str], ...] = (
    ("exchange", "exchange"),
    ("pair", "pair"),
    ("timestamp_ms", "timestamp_ms"),
    ("capture_latency_ms", "capture_latency_ms"),
    ("exchange_time_ms", "exchange_time_ms"),
    ("update_id", "update_id"),
    ("verified", "verified"),
    ("depth_complete", "depth_complete"),
)


@lru_cache(maxsize=1)
def _side_names() -> pa.Array:
    # Built on first use, not at import: pyarrow's first pa.array() imports pandas (when it is
    # installed), ~35 MB that the supervisor, which imports this module, would carry for nothing.
    return pa.array([BID, ASK, None], pa.string())


def long_form_batch(
    per_book: dict[str, pa.Array | pa.ChunkedArray],
    bids: np.ndarray,
    asks: np.ndarray,
    price: np.ndarray,
    quantity: np.ndarray,
    order: np.ndarray | None = None,
) -> pa.RecordBatch:
    """Long-form record batch: each book's bids (best first), then asks.

    ``bids`` and ``asks`` are the books' level counts, ``price`` and ``quantity`` their levels'
    values laid out book after book, bids then asks. ``per_book`` holds every other column, one
    value per book: book ``order[i]`` of it is book ``i`` here (None: the same order). All
    vectorised: the per-book columns are repeated per level (and reordered) by one ``take``,
    the level columns come straight from the arrays.
    """
    n = len(bids)
    empty = (bids == 0) & (asks == 0)  # a book with no level at all still takes one (null) row
    runs = np.stack([bids, asks + empty], axis=1).ravel()  # bids of book 0, asks of book 0, ...
    run_side = np.tile(np.array([_BID_I, _ASK_I], np.int8), n)
    run_side[1::2][empty] = _NONE_I
    rows = bids + asks + empty  # per book
    starts = np.cumsum(runs) - runs
    level = np.arange(int(runs.sum()), dtype=np.int64) - np.repeat(starts, runs)  # 0 = best, per run
    mask = None
    if empty.any():
        at = (np.cumsum(bids + asks) - (bids + asks))[empty]  # where each null row goes
        price = np.insert(price, at, np.nan)
        quantity = np.insert(quantity, at, np.nan)
        mask = np.repeat(empty, rows)
    take = pa.array(np.repeat(np.arange(n, dtype=np.int64) if order is None else order, rows))
    level_columns = {
        "side": _side_names().take(pa.array(np.repeat(run_side, runs))),
        "level": pa.array(level.astype(np.int16), mask=mask),
        "price": pa.array(price, pa.float64(), mask=mask),
        "quantity": pa.array(quantity, pa.float64(), mask=mask),
    }
    columns = [
        level_columns[f.name] if f.name in _LEVEL_COLUMNS else _array(per_book[f.name].take(take)) for f in SCHEMA
    ]
    return pa.RecordBatch.from_arrays(columns, schema=SCHEMA)


def _array(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    return column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column


def snapshots_to_batch(snaps: Sequence[Snapshot]) -> pa.RecordBatch:
    """Long-form record batch of Snapshot structs, in input order (readers and tools; the
    writer's own path starts from ring records, see ``recorder.writer.datasets``)."""
    per_book = {name: field_array(snaps, attr, SCHEMA.field(name).type) for name, attr in BOOK_FIELDS}
    per_book["sequence_number"] = field_array(snaps, "sequence_number", pa.int64())
    per_book["session_id"] = field_array(snaps, "session_id", pa.string())
    n = len(snaps)
    bids = np.fromiter((len(s.bids) for s in snaps), np.int64, n)
    asks = np.fromiter((len(s.asks) for s in snaps), np.int64, n)
    levels = [lv for s in snaps for lv in (*s.bids, *s.asks)]
    price = np.fromiter((lv.price for lv in levels), np.float64, len(levels))
    quantity = np.fromiter((lv.qty for lv in levels), np.float64, len(levels))
    return long_form_batch(per_book, bids, asks, price, quantity)


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
