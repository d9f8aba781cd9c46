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

import pyarrow as pa

from recorder.model import Snapshot, json_encoder

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
        pa.field("session_id", pa.string(), nullable=False),
    ]
)

BID = "bid"
ASK = "ask"
_MS_PER_DAY = 86_400_000


def snapshot_rows(snap: Snapshot) -> int:
    """Rows a snapshot occupies in the long form."""
    return max(1, len(snap.bids) + len(snap.asks))


def snapshots_to_batch(snaps: Sequence[Snapshot]) -> pa.RecordBatch:
    """Long-form record batch, rows in input order: each snapshot's bids (best first), then asks."""
    idx: list[int] = []
    side: list[str | None] = []
    level: list[int | None] = []
    price: list[float | None] = []
    qty: list[float | None] = []
    for i, s in enumerate(snaps):
        bids, asks = s.bids, s.asks
        nb, na = len(bids), len(asks)
        if nb:
            idx.extend([i] * nb)
            side.extend([BID] * nb)
            level.extend(range(nb))
            price.extend([lv.price for lv in bids])
            qty.extend([lv.qty for lv in bids])
        if na:
            idx.extend([i] * na)
            side.extend([ASK] * na)
            level.extend(range(na))
            price.extend([lv.price for lv in asks])
            qty.extend([lv.qty for lv in asks])
        if not nb and not na:
            idx.append(i)
            side.append(None)
            level.append(None)
            price.append(None)
            qty.append(None)
    take = pa.array(idx, pa.int32())

    def per_snapshot(values: list[object], typ: pa.DataType) -> pa.Array:
        # Build once per snapshot, then repeat per level with one vectorised take.
        return pa.array(values, typ).take(take)

    columns = [
        per_snapshot([s.exchange for s in snaps], pa.string()),
        per_snapshot([s.pair for s in snaps], pa.string()),
        per_snapshot([s.timestamp_ms for s in snaps], pa.int64()),
        pa.array(side, pa.string()),
        pa.array(level, pa.int16()),
        pa.array(price, pa.float64()),
        pa.array(qty, pa.float64()),
        per_snapshot([s.capture_latency_ms for s in snaps], pa.float64()),
        per_snapshot([s.sequence_number for s in snaps], pa.int64()),
        per_snapshot([s.exchange_time_ms for s in snaps], pa.int64()),
        per_snapshot([s.update_id for s in snaps], pa.int64()),
        per_snapshot([s.verified for s in snaps], pa.bool_()),
        per_snapshot([s.session_id for s in snaps], pa.string()),
    ]
    return pa.RecordBatch.from_arrays(columns, schema=SCHEMA)


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


def partition_dir(data_dir: str | os.PathLike[str], fmt: str, exchange: str, date: str) -> Path:
    """``<data_dir>/<fmt>/exchange=<exchange>/date=<date>`` (hive layout)."""
    return Path(data_dir) / fmt / f"exchange={exchange}" / f"date={date}"


def data_file_path(
    data_dir: str | os.PathLike[str],
    fmt: str,
    exchange: str,
    date: str,
    session_id: str,
    first_ts_ms: int,
    segment: int,
) -> Path:
    """Final path of one segment's file for one (format, exchange, date) partition."""
    name = f"{file_stem(session_id, first_ts_ms, segment)}.{fmt}"
    return partition_dir(data_dir, fmt, exchange, date) / name
