"""A synthetic pair-day of any length (books and trades), written in the writer's layout, schemas
and Parquet options: what export memory is measured and checked on (``benchmarks/test_export_memory.py``,
``tests/test_export_nautilus.py``)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from recorder.layout import TRADES
from recorder.sinks.local import DEFAULT_ROW_GROUP_ROWS
from recorder.sinks.parquet_format import write_parquet
from recorder.writer.batches import data_file_path, utc_date
from recorder.writer.datasets import TRADES_SCHEMA
from tests.month_data import HOUR_MS, snapshot, write_segment


def write_busy_day(
    data: Path,
    start_ms: int,
    minutes: int,
    *,
    pair: str = "BTC-USDT",
    step_ms: int = 1000,
    depth: int = 20,
    trades_per_step: int = 2,
) -> tuple[int, int]:
    """``minutes`` of one pair from ``start_ms``: a snapshot of ``depth`` levels every ``step_ms``
    (its mid moving every tick, so every tick changes the top of book) and ``trades_per_step``
    trades per tick (one frame's: they share a receive time), one file per hour and dataset
    (Parquet). Returns (snapshots, trades)."""
    end = start_ms + minutes * 60_000
    seq = trade_seq = segment = 0
    t0 = start_ms
    while t0 < end:  # a file per clock hour, as the writer rotates (never across midnight)
        t1 = min(end, (t0 // HOUR_MS + 1) * HOUR_MS)
        snaps, trades = [], []  # trades: rows of TRADES_SCHEMA
        for ts in range(t0, t1, step_ms):
            mid = 60000.0 + (ts // step_ms) % 100 + (ts // step_ms) % 7 * 0.01
            snaps.append(snapshot(pair, ts, seq, mid, depth=depth, session_id="busy"))
            seq += 1
            for k in range(trades_per_step):  # one frame's trades: they share its receive time
                price, side = round(mid + 0.5 - k * 0.01, 2), "buy" if (seq + k) % 2 else "sell"
                qty, venue_us, local_us = 0.001 * (1 + k), ts * 1000 - 900, ts * 1000 + 3
                trades.append(
                    ("binance", pair, f"t{trade_seq}", price, qty, side, venue_us, local_us, "busy", trade_seq)
                )
                trade_seq += 1
        write_segment(data, snaps, segment, formats=("parquet",))
        if trades:
            path = data_file_path(data, "parquet", "binance", utc_date(t0), "busy", t0, segment, root=TRADES.root)
            path.parent.mkdir(parents=True, exist_ok=True)
            columns = [pa.array(list(col)) for col in zip(*trades, strict=True)]
            columns[6:8] = [c.cast(TRADES_SCHEMA.field(6 + i).type) for i, c in enumerate(columns[6:8])]  # µs
            write_parquet(pa.Table.from_arrays(columns, schema=TRADES_SCHEMA), str(path), DEFAULT_ROW_GROUP_ROWS)
        segment += 1
        t0 = t1
    return seq, trade_seq
