"""What the writer is told: its spec (from a capture config), formats, counters, crash points."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import msgspec

from recorder.sinks.redis_stream import STREAM_COUNTER_FIELDS, RedisStreamConfig

if TYPE_CHECKING:
    from recorder.config import CaptureConfig

FORMATS = ("jsonl", "parquet")

WRITER_COUNTER_FIELDS: list[str] = [
    "snapshots_written",  # snapshots in published segments
    "trades_written",  # trades in published segments
    "quotes_written",  # quotes in published segments
    "rows_written",  # Parquet rows (levels) in published segments
    "files_written",
    "bytes_written",
    "segments_committed",
    "write_errors",  # failed prepare/journal/publish attempts (each retried)
    "storage_failing",  # 1 while writes fail (disk full, unwritable): data waits in the rings
    "storage_outages",  # episodes of the above
    "decode_errors",  # ring records skipped: undecodable or unusable (bad exchange/timestamp)
    "pending_snapshots",  # snapshots read but not yet durable
    "last_commit_ts_ms",
    "writer_lag_ms",  # now - timestamp_ms of the newest record read
    "heartbeat_ms",  # wall clock, every loop: the supervisor's liveness signal
    "records_read",
    "ring_held_bytes",  # read but uncommitted ring bytes, all rings
    "ring_unread_bytes",  # published by producers, not yet read, all rings
    "recoveries",  # pending journal entries finished at start-up
    "temp_files_cleaned",
    "stopping",  # 1 once a stop was requested
    "pid",
    "started_ms",
    "compactions",  # background compaction runs that merged something
    "files_compacted",
    "compaction_errors",
    *STREAM_COUNTER_FIELDS,  # [stream.redis]: published, dropped, connected
]

# Fault injection for the crash tests: "<point>:<n>" SIGKILLs the writer the n-th time it
# reaches <point> (after_prepare, after_journal, after_publish, after_ring_commit).
CRASH_ENV = "RECORDER_WRITER_CRASH_AT"


class WriterSpec(msgspec.Struct, kw_only=True):
    session_id: str
    data_dir: str
    formats: list[str]  # subset of ["jsonl", "parquet"]
    rotate_snapshots: int | None  # records of one (dataset, venue, date) per file; None: no count
    rotate_seconds: float
    rotate_bytes: int
    rings: dict[str, str]  # venue id -> ring shm name
    counters_name: str
    poll_interval_s: float = 0.02
    # On stop: keep reading while producers still publish, at most this long; then keep
    # retrying the final commit until twice this long before giving up (exit status 1).
    stop_timeout_s: float = 15.0
    # Max records taken from one ring per poll (fairness between rings, bounded latency).
    max_read_records: int = 4096
    # Compact closed files by itself (background thread): None = off.
    compact_older_than_s: float | None = None
    compact_target_mb: float = 128.0
    compact_every_s: float = 300.0
    stream_redis: RedisStreamConfig | None = None  # [stream.redis]


def spec_from_config(
    cfg: CaptureConfig, rings: dict[str, str], counters_name: str, session_id: str | None = None
) -> WriterSpec:
    """The writer's spec from a validated capture config (``format = "both"`` -> both)."""
    formats = ["jsonl", "parquet"] if cfg.format == "both" else [cfg.format]
    w = cfg.writer
    return WriterSpec(
        session_id=session_id or cfg.resolved_session_id(),
        data_dir=cfg.data_dir,
        formats=formats,
        rotate_snapshots=w.rotate_snapshots,
        rotate_seconds=w.rotate_seconds,
        rotate_bytes=int(w.rotate_mb * 1024 * 1024),
        rings=dict(rings),
        counters_name=counters_name,
        compact_older_than_s=w.compact_older_than_s if w.compact else None,
        compact_target_mb=w.compact_target_mb,
        compact_every_s=w.compact_every_s,
        stream_redis=cfg.stream.redis if cfg.stream is not None else None,
    )


def parse_crash_env() -> tuple[str | None, int]:
    raw = os.environ.get(CRASH_ENV)
    if not raw:
        return None, 0
    point, _, n = raw.partition(":")
    return point, int(n or 1)
