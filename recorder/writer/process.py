"""The writer process: drains every venue ring into rotated Parquet/JSONL segments.

Nothing is lost and nothing doubles because a ring is only committed after the segment holding
its records is durable (see ``journal.py`` for the commit protocol). Until then the records stay
in the ring, so a writer killed at any moment is restarted on the same rings and simply re-reads
from each ring's ``commit_pos``; sequence numbers are re-assigned identically because they
continue from the last *committed* value.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

import numpy as np
import pyarrow as pa

from recorder.compaction.store import PublishLock
from recorder.metrics import SharedCounters
from recorder.parent import parent_alive, spawning_parent_pid
from recorder.ring.shm_ring import ShmRing
from recorder.sinks.redis_stream import StreamPublisher
from recorder.writer.adding import add_read
from recorder.writer.commit import Committing, wall_ms
from recorder.writer.datasets import SPECS
from recorder.writer.intake import Intake, take_records
from recorder.writer.journal import Journal, load_journal
from recorder.writer.lines import read_lines
from recorder.writer.segment import Segment, SeqKey
from recorder.writer.spec import (
    CRASH_ENV,
    FORMATS,
    WRITER_COUNTER_FIELDS,
    WriterSpec,
    parse_crash_env,
    spec_from_config,
)

__all__ = ["CRASH_ENV", "FORMATS", "WRITER_COUNTER_FIELDS", "Writer", "WriterSpec", "run_writer", "spec_from_config"]

log = logging.getLogger("recorder.writer")


class _StopRequested:
    def __init__(self) -> None:
        self.flag = False
        self.signame = ""

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.flag = True
        self.signame = signal.Signals(signum).name


class Writer(Committing):
    """The writer's state machine; :func:`run_writer` drives it in its own process."""

    def __init__(self, spec: WriterSpec, rings: dict[str, ShmRing], counters: SharedCounters) -> None:
        bad = [f for f in spec.formats if f not in FORMATS]
        if bad or not spec.formats:
            raise ValueError(f"invalid writer formats {spec.formats!r}: use 'jsonl' and/or 'parquet'")
        count_ok = spec.rotate_snapshots is None or spec.rotate_snapshots >= 1
        if not count_ok or spec.rotate_seconds <= 0 or spec.rotate_bytes <= 0:
            raise ValueError("writer rotation limits must be positive")
        self.spec = spec
        self.data_dir = Path(spec.data_dir)
        self.rings = rings
        self.counters = counters
        self.read_pos: dict[str, int] = {}
        self.committed_seq: dict[SeqKey, int] = {}
        self.next_segment = 0
        self.journal = Journal(session_id=spec.session_id)
        self.segment = Segment()
        self.sealed: str | None = None  # rotation reason once the segment stops taking records
        self.retry_at = 0.0
        self.failures = 0
        self.newest_ts_ms: int | None = None
        self._last_decode_log = 0.0
        self._decode_errors_unlogged = 0
        self._clean_pending = False
        self._rr = 0
        self._crash_point, self._crash_count = parse_crash_env()
        # Held shared around every commit: a compaction never swaps a partition mid-publish.
        self._publish_lock = PublishLock(self.data_dir)
        self._compactor: threading.Thread | None = None
        self._next_compact = time.monotonic() + spec.compact_every_s
        # [stream.redis]: every snapshot taken in is also offered to Redis (never waited on).
        self._parquet = "parquet" in spec.formats
        self._jsonl = "jsonl" in spec.formats
        self.stream = StreamPublisher(spec.stream_redis, spec.session_id, counters) if spec.stream_redis else None

    # -- start-up --------------------------------------------------------------------------

    def recover(self) -> None:
        """Load the journal and set read positions; a pending commit left by a killed writer is
        finished first (by :meth:`step`, retried until it succeeds) before anything is read."""
        self.journal = load_journal(self.data_dir, self.spec.session_id)
        self._adopt_state(self.journal.next_seq, self.journal.dataset_seq, self.journal.next_segment)
        for venue, ring in self.rings.items():
            self.read_pos[venue] = ring.commit_pos
        if self.journal.pending is not None:
            log.info(
                "event=recover_pending segment=%d files=%d",
                self.journal.pending.segment,
                len(self.journal.pending.files),
            )
            self.counters.incr("recoveries")
            self._clean_pending = True  # temp files are cleaned once the pending ones are published
            with self._publish_lock.shared():
                self._finish_pending()
        else:
            self._clean_temp_files()
        log.info(
            "event=writer_start session=%s next_segment=%d pairs=%d rings=%s",
            self.spec.session_id,
            self.next_segment,
            len(self.committed_seq),
            ",".join(f"{v}@{p}" for v, p in self.read_pos.items()),
        )

    # -- reading ---------------------------------------------------------------------------

    def poll(self) -> int:
        """Read available records from every ring into the open segment; returns records read.

        A record whose file is full (``rotate_snapshots``, when set, x its dataset's
        ``rotate_factor``) is left in the ring (read position stays before it) and the segment is due for rotation.
        Rings are visited round-robin so a backlog on one ring can't starve the others.
        """
        total = 0
        venues = list(self.rings)
        if not venues:
            return 0
        self._rr = (self._rr + 1) % len(venues)
        for venue in venues[self._rr :] + venues[: self._rr]:
            ring = self.rings[venue]
            ends: list[int] = []
            limit = min(self.spec.rotate_snapshots or self.spec.max_read_records, self.spec.max_read_records)
            payloads, nxt = ring.read(self.read_pos[venue], limit, ends)
            # The stream wants each record's struct; Parquet files take the trades' and quotes'
            # rows from the columns read of them, kept by the segment.
            took = take_records(
                payloads,
                self.stream is not None,
                self.segment.keep_read_columns if self._parquet else None,
                group_ids=self.segment.group_ids,
            )
            added = add_read(
                self.segment,
                took,
                self.committed_seq,
                parquet=self._parquet,
                jsonl=self._jsonl_line(took) if self._jsonl else None,
                rotate_bytes=self.spec.rotate_bytes,
                file_limit=self._file_limit,
                now_mono=time.monotonic(),
            )
            for i in np.flatnonzero(took.group[: added.consumed] < 0).tolist():
                self._decode_error(took.records[i])
            if self.stream is not None:
                for i in np.flatnonzero(added.seqs >= 0).tolist():
                    self.stream.offer(took.specs[i], took.records[i], int(added.seqs[i]))
            if added.newest_ts_ms is not None and (self.newest_ts_ms is None or added.newest_ts_ms > self.newest_ts_ms):
                self.newest_ts_ms = added.newest_ts_ms
            total += added.consumed
            if added.consumed < len(payloads):  # the rest stays in the ring: the segment is due
                if added.consumed:
                    self.read_pos[venue] = ends[added.consumed - 1]
                self.counters.incr("records_read", total)
                return total
            self.read_pos[venue] = nxt  # may skip a trailing wrap marker
        if total:
            self.counters.incr("records_read", total)
        return total

    def _jsonl_line(self, took: Intake) -> Callable[[np.ndarray, np.ndarray], pa.Array | list[bytes]]:
        """The JSONL lines of records ``at`` of a read numbered ``seqs``."""
        return lambda at, seqs: read_lines(took, at, seqs, self.spec.session_id)

    def _file_limit(self, dataset: str) -> int | None:
        """Records one file of ``dataset`` may hold (``rotate_snapshots`` x its
        ``rotate_factor``); None: no count."""
        count = self.spec.rotate_snapshots
        return None if count is None else count * SPECS[dataset].rotate_factor

    def _decode_error(self, exc: Exception) -> None:
        self.counters.incr("decode_errors")
        self._decode_errors_unlogged += 1
        now = time.monotonic()
        if now - self._last_decode_log >= 10.0:  # one line per 10 s at most, not per record
            log.warning("event=decode_error skipped=%d error=%s", self._decode_errors_unlogged, str(exc)[:200])
            self._last_decode_log = now
            self._decode_errors_unlogged = 0

    def rotation_reason(self, now_mono: float) -> str | None:
        seg, spec = self.segment, self.spec
        if seg.records == 0:
            return None
        if seg.full:
            return "snapshots"
        if seg.started_mono is not None and now_mono - seg.started_mono >= spec.rotate_seconds:
            return "time"
        if seg.est_bytes >= spec.rotate_bytes:
            return "bytes"
        for venue, ring in self.rings.items():
            # Never let the ring fill up because we hold uncommitted records.
            if ring.uncommitted_bytes(self.read_pos[venue]) * 2 >= ring.capacity:
                return "ring"
        if len({d for _, _, d in seg.parts}) > 1:
            return "date"
        return None

    # -- loop ------------------------------------------------------------------------------

    def heartbeat(self) -> None:
        c = self.counters
        now_ms = wall_ms()
        c.set("heartbeat_ms", now_ms)
        c.set("pending_snapshots", self.segment.snapshots)
        if self.newest_ts_ms is not None:
            c.set("writer_lag_ms", now_ms - self.newest_ts_ms)
        held = unread = 0
        for venue, ring in self.rings.items():
            held += ring.uncommitted_bytes(self.read_pos[venue])
            unread += ring.unread_bytes(self.read_pos[venue])
        c.set("ring_held_bytes", held)
        c.set("ring_unread_bytes", unread)

    def step(self) -> bool:
        """One loop iteration; True when it did work (so the caller shouldn't sleep)."""
        if self.journal.pending is None and self.sealed is None:
            n = self.poll()
            self.sealed = self.rotation_reason(time.monotonic())
            if self.sealed is None:
                return n > 0
        return self.try_commit()

    def run(self, stop: _StopRequested, parent_pid: int) -> int:
        """Main loop until a stop signal or the parent's death; then drain. Returns exit status."""
        sleep = self.spec.poll_interval_s
        while not stop.flag:
            if not parent_alive(parent_pid):
                stop.signame = "parent_exit"
                break
            busy = self.step()
            self.heartbeat()
            self._maybe_compact()
            if not busy:
                time.sleep(sleep)
        return self.drain(stop.signame or "stop")

    def _maybe_compact(self) -> None:
        """Start a background compaction of closed files when one is due (crash-safe by design)."""
        if self.spec.compact_older_than_s is None or time.monotonic() < self._next_compact:
            return
        if self._compactor is not None and self._compactor.is_alive():
            return
        self._next_compact = time.monotonic() + self.spec.compact_every_s
        self._compactor = threading.Thread(target=self._compact_once, name="compactor", daemon=True)
        self._compactor.start()

    def _compact_once(self) -> None:
        from recorder.compaction import CompactionError, compact

        assert self.spec.compact_older_than_s is not None
        try:
            res = compact(
                str(self.data_dir),
                older_than_s=self.spec.compact_older_than_s,
                target_mb=self.spec.compact_target_mb,
            )
        except CompactionError as exc:  # e.g. a `compact` command is running: next time
            self.counters.incr("compaction_errors")
            log.warning("event=compaction_skipped error=%s", exc)
            return
        except Exception:
            self.counters.incr("compaction_errors")
            log.exception("event=compaction_failed")
            return
        if res.files_in:
            self.counters.incr("compactions")
            self.counters.incr("files_compacted", res.files_in)

    def drain(self, why: str) -> int:
        """Read every ring to empty (until producers are quiet), commit everything, return 0.

        Returns 1 if data read could not be made durable before the deadline.
        """
        self.counters.set("stopping", 1)
        log.info("event=writer_stopping reason=%s pending_snapshots=%d", why, self.segment.snapshots)
        start = time.monotonic()
        read_deadline = start + self.spec.stop_timeout_s
        final_deadline = start + 2 * self.spec.stop_timeout_s
        quiet_since: float | None = None
        done_reading = False
        while True:
            now = time.monotonic()
            busy = False
            if self.journal.pending is not None or self.sealed is not None:
                busy = self.try_commit()
            elif not done_reading:
                n = self.poll()
                self.sealed = self.rotation_reason(now)
                empty = all(r.write_pos == self.read_pos[v] for v, r in self.rings.items())
                if n or not empty:
                    quiet_since, busy = None, True
                elif quiet_since is None:
                    quiet_since = now
                elif now - quiet_since >= 5 * self.spec.poll_interval_s:
                    done_reading = True  # producers are stopped: every ring is empty
                if now >= read_deadline:
                    done_reading = True  # producers still running: stop reading anyway
            elif self.segment.records:
                self.sealed, busy = "stop", True
            else:
                break
            self.heartbeat()
            if now >= final_deadline:
                log.error(
                    "event=writer_stop_incomplete unsaved_snapshots=%d detail=%s",
                    self.segment.snapshots,
                    "records stay uncommitted in the rings",
                )
                return 1
            if not busy:
                time.sleep(self.spec.poll_interval_s)
        unread = sum(r.write_pos - self.read_pos[v] for v, r in self.rings.items())
        if unread:
            log.warning("event=writer_stop_unread bytes=%d detail=producers still running", unread)
        log.info("event=writer_stopped reason=%s", why)
        return 0


def run_writer(spec: WriterSpec) -> None:
    """Writer process main: blocks until SIGTERM/SIGINT or parent death, then drains and exits.

    Exits with status 1 (SystemExit) only if read data could not be stored before the stop
    deadline; those records remain uncommitted in the rings.
    """
    if not logging.getLogger().handlers:
        from recorder.logs import setup_logging  # the same one-line-per-event format as every process

        setup_logging("writer")
    parent_pid = spawning_parent_pid()
    stop = _StopRequested()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    counters = SharedCounters.attach(spec.counters_name, WRITER_COUNTER_FIELDS)
    rings: dict[str, ShmRing] = {}
    try:
        for venue, name in spec.rings.items():
            rings[venue] = ShmRing.attach(name)
        counters.set("pid", os.getpid())
        counters.set("started_ms", wall_ms())
        counters.set("stopping", 0)
        writer = Writer(spec, rings, counters)
        writer.recover()
        writer.heartbeat()
        if writer.stream is not None:
            writer.stream.start()
        try:
            status = writer.run(stop, parent_pid)
        finally:
            if writer.stream is not None:
                writer.stream.close()
    finally:
        for ring in rings.values():
            ring.close()
        counters.close()
    if status:
        raise SystemExit(status)
