"""Synthetic recorder datasets written with the writer's own layout and encoders (no capture).

A month of data takes seconds to write this way; the files are exactly what the writer
produces (same schema, sort order, names and partitions) minus the fsyncs.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from recorder.model import Level, Snapshot
from recorder.sinks.local import DEFAULT_ROW_GROUP_ROWS
from recorder.sinks.parquet_format import write_parquet
from recorder.writer.batches import batches_to_table, data_file_path, snapshot_jsonl, snapshots_to_batch, utc_date

HOUR_MS = 3_600_000


def snapshot(pair: str, ts: int, seq: int, mid: float, depth: int = 2, **kw: object) -> Snapshot:
    bids = [Level(round(mid - 0.5 - i, 2), 1.0 + i) for i in range(depth)]
    asks = [Level(round(mid + 0.5 + i, 2), 2.0 + i) for i in range(depth)]
    fields: dict[str, object] = {
        "exchange": "binance",
        "pair": pair,
        "timestamp_ms": ts,
        "bids": bids,
        "asks": asks,
        "capture_latency_ms": 1.5,
        "sequence_number": seq,
        "exchange_time_ms": ts - 2,
        "update_id": 1000 + seq,
        "verified": True,
        "session_id": "synthetic",
    }
    fields.update(kw)
    return Snapshot(**fields)  # type: ignore[arg-type]


def write_segment(
    data: Path, snaps: list[Snapshot], segment: int, formats: Iterable[str] = ("parquet", "jsonl")
) -> None:
    first = snaps[0]
    for fmt in formats:
        path = data_file_path(
            data, fmt, first.exchange, utc_date(first.timestamp_ms), first.session_id, first.timestamp_ms, segment
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        if fmt == "parquet":
            write_parquet(batches_to_table([snapshots_to_batch(snaps)]), str(path), DEFAULT_ROW_GROUP_ROWS)
        else:
            path.write_bytes(b"".join(snapshot_jsonl(s) for s in snaps))


def write_month(data: Path, start_ms: int, days: int, step_ms: int = 300_000) -> int:
    """One file per hour per format, two pairs, a snapshot every ``step_ms``; returns files per format."""
    seq = {"BTC-USDT": 0, "ETH-USDT": 0}
    segment = 0
    for hour in range(days * 24):
        t0 = start_ms + hour * HOUR_MS
        snaps = []
        for ts in range(t0, t0 + HOUR_MS, step_ms):
            for pair, base in (("BTC-USDT", 60000.0), ("ETH-USDT", 3000.0)):
                snaps.append(snapshot(pair, ts, seq[pair], base + (ts // step_ms) % 100))
                seq[pair] += 1
        write_segment(data, snaps, segment)
        segment += 1
    return segment
