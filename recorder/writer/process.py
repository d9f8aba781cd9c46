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
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import msgspec
import pyarrow as pa

from recorder.compaction.store import PublishLock
from recorder.metrics import SharedCounters
from recorder.parent import parent_alive, spawning_parent_pid
from recorder.ring.shm_ring import ShmRing
from recorder.sinks.local import PreparedFile, clean_temp_files, prepare_jsonl, prepare_parquet, publish
from recorder.writer.batches import data_file_path, utc_date
from recorder.writer.datasets import BOOKS_SPEC, SPECS, DatasetSpec, spec_by_first_byte
from recorder.writer.journal import (
    Journal,
    JournalFile,
    PendingCommit,
    RingPosition,
    SeqState,
    load_journal,
    save_journal,
)

if TYPE_CHECKING:
    from recorder.config import CaptureConfig

log = logging.getLogger("recorder.writer")

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
]

# Fault injection for the crash tests: "<point>:<n>" SIGKILLs the writer the n-th time it
# reaches <point> (after_prepare, after_journal, after_publish, after_ring_commit).
CRASH_ENV = "RECORDER_WRITER_CRASH_AT"

# Ring records kept as Python objects per partition before converting to an Arrow batch
# (bounds memory: Arrow columns are several times denser than msgspec structs).
_BATCH_SNAPSHOTS = 1024


class WriterSpec(msgspec.Struct, kw_only=True):
    session_id: str
    data_dir: str
    formats: list[str]  # subset of ["jsonl", "parquet"]
    rotate_snapshots: int
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
    )


@dataclass
class _Partition:
    """One (dataset, exchange, UTC date) part of the open segment -> one file per format."""

    dataset: DatasetSpec
    exchange: str
    date: str
    first_ts_ms: int
    # Ring records and their sequence numbers, not yet in an Arrow batch.
    records: list[object] = field(default_factory=list)
    seqs: list[int] = field(default_factory=list)
    batches: list[pa.RecordBatch] = field(default_factory=list)
    jsonl: bytearray = field(default_factory=bytearray)
    count: int = 0
    rows: int = 0

    def flush_records(self, session_id: str) -> None:
        if self.records:
            self.batches.append(self.dataset.batch(self.records, self.seqs, session_id))
            self.records, self.seqs = [], []


# (dataset name, exchange, pair): sequence numbers run per dataset, session and pair.
SeqKey = tuple[str, str, str]


@dataclass
class _Segment:
    parts: dict[tuple[str, str, str], _Partition] = field(default_factory=dict)
    # (dataset, exchange, pair) -> next sequence number, for pairs seen in this segment
    seq: dict[SeqKey, int] = field(default_factory=dict)
    started_mono: float | None = None
    snapshots: int = 0  # records stored, all datasets
    stored: dict[str, int] = field(default_factory=dict)  # dataset name -> records stored
    records: int = 0  # ring records consumed, including skipped ones
    est_bytes: int = 0  # ring payload bytes: ~ uncompressed size, an upper bound for Parquet
    full: bool = False  # a partition holds as many records as its file may


class _StopRequested:
    def __init__(self) -> None:
        self.flag = False
        self.signame = ""

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.flag = True
        self.signame = signal.Signals(signum).name


class Writer:
    """The writer's state machine; :func:`run_writer` drives it in its own process."""

    def __init__(self, spec: WriterSpec, rings: dict[str, ShmRing], counters: SharedCounters) -> None:
        bad = [f for f in spec.formats if f not in FORMATS]
        if bad or not spec.formats:
            raise ValueError(f"invalid writer formats {spec.formats!r}: use 'jsonl' and/or 'parquet'")
        if spec.rotate_snapshots < 1 or spec.rotate_seconds <= 0 or spec.rotate_bytes <= 0:
            raise ValueError("writer rotation limits must be positive")
        self.spec = spec
        self.data_dir = Path(spec.data_dir)
        self.rings = rings
        self.counters = counters
        self.read_pos: dict[str, int] = {}
        self.committed_seq: dict[SeqKey, int] = {}
        self.next_segment = 0
        self.journal = Journal(session_id=spec.session_id)
        self.segment = _Segment()
        self.sealed: str | None = None  # rotation reason once the segment stops taking records
        self.retry_at = 0.0
        self.failures = 0
        self.newest_ts_ms: int | None = None
        self._last_decode_log = 0.0
        self._decode_errors_unlogged = 0
        self._clean_pending = False
        self._rr = 0
        self._crash_point, self._crash_count = _parse_crash_env()
        self._dataset_of = spec_by_first_byte()
        # Held shared around every commit: a compaction never swaps a partition mid-publish.
        self._publish_lock = PublishLock(self.data_dir)
        self._compactor: threading.Thread | None = None
        self._next_compact = time.monotonic() + spec.compact_every_s

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

    def _clean_temp_files(self) -> None:
        self._clean_pending = False
        removed = clean_temp_files(self.data_dir, self.spec.session_id)
        if removed:
            self.counters.incr("temp_files_cleaned", len(removed))
            log.info("event=temp_cleaned files=%d", len(removed))

    def _adopt_state(self, next_seq: SeqState, dataset_seq: dict[str, SeqState], next_segment: int) -> None:
        # The journal keeps the books' numbers in ``next_seq`` (its format before trades) and
        # every other dataset's in ``dataset_seq``.
        self.committed_seq = {}
        for name, state in {**dataset_seq, BOOKS_SPEC.name: next_seq}.items():
            for ex, pairs in state.items():
                for pair, n in pairs.items():
                    self.committed_seq[(name, ex, pair)] = n
        self.next_segment = next_segment

    def _seq_state(self, seq: dict[SeqKey, int]) -> tuple[SeqState, dict[str, SeqState]]:
        """(books' state, other datasets' states) as the journal stores them."""
        by_dataset: dict[str, SeqState] = {}
        for (name, ex, pair), n in sorted(seq.items()):
            by_dataset.setdefault(name, {}).setdefault(ex, {})[pair] = n
        return by_dataset.pop(BOOKS_SPEC.name, {}), by_dataset

    # -- reading ---------------------------------------------------------------------------

    def poll(self) -> int:
        """Read available records from every ring into the open segment; returns records read.

        A record whose file is full (``rotate_snapshots`` x its dataset's ``rotate_factor``) is
        left in the ring (read position stays before it) and the segment is due for rotation.
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
            limit = min(self.spec.rotate_snapshots, self.spec.max_read_records)
            payloads, nxt = ring.read(self.read_pos[venue], limit, ends)
            for payload, end in zip(payloads, ends, strict=True):
                if not self._add(payload):
                    self.counters.incr("records_read", total)
                    return total  # read_pos stays before the refused record
                self.read_pos[venue] = end
                total += 1
            self.read_pos[venue] = nxt  # may skip a trailing wrap marker
        if total:
            self.counters.incr("records_read", total)
        return total

    def _add(self, payload: bytes) -> bool:
        """Add one ring record to the open segment; False if its file is full (not consumed)."""
        seg = self.segment
        dataset = self._dataset_of[payload[0]] if payload else BOOKS_SPEC
        try:
            rec = dataset.decode(payload)
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
            self._note_record(seg)
            self._decode_error(exc)
            return True
        ts_ms = dataset.time_ms(rec)
        date = utc_date(ts_ms)
        pkey = (dataset.name, rec.exchange, date)
        part = seg.parts.get(pkey)
        limit = self.spec.rotate_snapshots * dataset.rotate_factor
        if part is not None and part.count >= limit:
            return False
        self._note_record(seg)
        if part is None:
            part = seg.parts[pkey] = _Partition(dataset, rec.exchange, date, ts_ms)
        key = (dataset.name, rec.exchange, rec.pair)
        seq = seg.seq.get(key)
        if seq is None:
            seq = self.committed_seq.get(key, 0)
        seg.seq[key] = seq + 1
        if "parquet" in self.spec.formats:
            part.records.append(rec)
            part.seqs.append(seq)
            if len(part.records) >= _BATCH_SNAPSHOTS:
                part.flush_records(self.spec.session_id)
        if "jsonl" in self.spec.formats:
            part.jsonl += dataset.jsonl(rec, seq, self.spec.session_id)
        part.count += 1
        part.rows += dataset.rows(rec)
        seg.snapshots += 1
        seg.stored[dataset.name] = seg.stored.get(dataset.name, 0) + 1
        seg.est_bytes += len(payload)
        seg.full = seg.full or part.count >= limit
        if self.newest_ts_ms is None or ts_ms > self.newest_ts_ms:
            self.newest_ts_ms = ts_ms
        return True

    @staticmethod
    def _note_record(seg: _Segment) -> None:
        seg.records += 1
        if seg.started_mono is None:
            seg.started_mono = time.monotonic()

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

    # -- committing ------------------------------------------------------------------------

    def _final_paths(self, segno: int) -> list[tuple[_Partition, str, Path]]:
        out = []
        for part in self.segment.parts.values():
            for fmt in self.spec.formats:
                path = data_file_path(
                    self.data_dir,
                    fmt,
                    part.exchange,
                    part.date,
                    self.spec.session_id,
                    part.first_ts_ms,
                    segno,
                    part.dataset.layout.root,
                )
                out.append((part, fmt, path))
        return out

    def try_commit(self) -> bool:
        """Make the sealed segment durable and commit the rings. False: retry later."""
        with self._publish_lock.shared():
            return self._try_commit()

    def _try_commit(self) -> bool:
        if self.journal.pending is not None:
            return self._finish_pending()
        now = time.monotonic()
        if now < self.retry_at:
            return False
        seg = self.segment
        if seg.snapshots == 0:
            # Only skipped records: nothing to store, nothing that could double.
            for venue, ring in self.rings.items():
                ring.commit(self.read_pos[venue])
            self._reset_segment()
            return True
        segno = self.next_segment
        # Never overwrite a published file (e.g. a hand-edited journal): take the next number.
        while any(p.exists() for _, _, p in self._final_paths(segno)):
            segno += 1
        prepared: list[PreparedFile] = []
        step = "prepare"
        try:
            for part, fmt, path in self._final_paths(segno):
                if fmt == "parquet":
                    part.flush_records(self.spec.session_id)
                    prepared.append(prepare_parquet(part.dataset.table(part.batches), path))
                else:
                    prepared.append(prepare_jsonl(part.jsonl, path))
            self._maybe_crash("after_prepare")
            step = "journal"
            next_seq = dict(self.committed_seq)
            next_seq.update(seg.seq)
            books_seq, dataset_seq = self._seq_state(next_seq)
            pending = PendingCommit(
                segment=segno,
                files=[JournalFile(tmp=self._rel(p.tmp_path), final=self._rel(p.final_path)) for p in prepared],
                rings={
                    venue: RingPosition(name=ring.name, instance=ring.instance_id, pos=self.read_pos[venue])
                    for venue, ring in self.rings.items()
                },
                next_seq=books_seq,
                dataset_seq=dataset_seq,
                next_segment=segno + 1,
                snapshots=seg.stored.get(BOOKS_SPEC.name, 0),
                stored=dict(seg.stored),
                rows=sum(p.rows for p in seg.parts.values() if p.dataset is BOOKS_SPEC),  # book levels
                bytes=sum(p.size_bytes for p in prepared),
                created_ms=_now_ms(),
            )
            journal = Journal(
                session_id=self.spec.session_id,
                next_segment=self.next_segment,
                next_seq=self.journal.next_seq,
                dataset_seq=self.journal.dataset_seq,
                pending=pending,
            )
            save_journal(self.data_dir, journal)
        except OSError as exc:
            for p in prepared:
                try:
                    os.unlink(p.tmp_path)
                except OSError:
                    pass
            self._write_failed(step, exc)
            return False
        self._maybe_crash("after_journal")
        self.journal = journal
        log.info(
            "event=segment_sealed segment=%d reason=%s snapshots=%d trades=%d quotes=%d files=%d bytes=%d",
            segno,
            self.sealed,
            seg.stored.get("books", 0),
            seg.stored.get("trades", 0),
            seg.stored.get("quotes", 0),
            len(prepared),
            pending.bytes,
        )
        return self._finish_pending()

    def _finish_pending(self) -> bool:
        """Publish the journal's pending files, commit rings, clear pending. Idempotent."""
        pending = self.journal.pending
        assert pending is not None
        try:
            for i, f in enumerate(pending.files):
                tmp, final = self.data_dir / f.tmp, self.data_dir / f.final
                if not tmp.exists() and not final.exists():
                    # Only if someone deleted it: retrying forever would stall the recorder.
                    log.error("event=pending_file_missing path=%s", final)
                    continue
                publish(PreparedFile(str(tmp), str(final), 0, 0))
                if i == 0:
                    self._maybe_crash("mid_publish")
        except OSError as exc:
            self._write_failed("publish", exc)
            return False
        self._maybe_crash("after_publish")
        for venue, rp in pending.rings.items():
            ring = self.rings.get(venue)
            if ring is None or ring.name != rp.name or ring.instance_id != rp.instance:
                continue  # that ring is gone (recreated): its records are not ours to free
            if rp.pos > ring.write_pos:
                log.error("event=ring_position_invalid venue=%s pos=%d write_pos=%d", venue, rp.pos, ring.write_pos)
                continue
            ring.commit(rp.pos)
            # After a restart read_pos is the old commit_pos: skip what this segment holds.
            self.read_pos[venue] = max(self.read_pos.get(venue, 0), rp.pos)
        self._maybe_crash("after_ring_commit")
        self._adopt_state(pending.next_seq, pending.dataset_seq, pending.next_segment)
        self.journal = Journal(
            session_id=self.spec.session_id,
            next_segment=pending.next_segment,
            next_seq=pending.next_seq,
            dataset_seq=pending.dataset_seq,
        )
        try:
            save_journal(self.data_dir, self.journal)
        except OSError as exc:
            # Harmless: the stale pending entry is idempotent and the next commit replaces it.
            self.counters.incr("write_errors")
            log.warning("event=journal_clear_failed error=%s", exc)
        c = self.counters
        c.incr("snapshots_written", pending.snapshots)
        for name, n in pending.stored.items():
            if name != BOOKS_SPEC.name and name in SPECS:
                c.incr(SPECS[name].counter, n)
        c.incr("rows_written", pending.rows)
        c.incr("files_written", len(pending.files))
        c.incr("bytes_written", pending.bytes)
        c.incr("segments_committed")
        c.set("last_commit_ts_ms", _now_ms())
        if self.failures:
            log.info("event=write_recovered after_failures=%d", self.failures)
        c.set("storage_failing", 0)
        self.failures = 0
        self.retry_at = 0.0
        log.info(
            "event=segment_committed segment=%d snapshots=%d files=%d",
            pending.segment,
            pending.snapshots,
            len(pending.files),
        )
        self._reset_segment()
        if self._clean_pending:
            self._clean_temp_files()
        return True

    def _reset_segment(self) -> None:
        self.segment = _Segment()
        self.sealed = None

    def _write_failed(self, step: str, exc: OSError) -> None:
        self.counters.incr("write_errors")
        if not self.failures:
            self.counters.incr("storage_outages")
        self.counters.set("storage_failing", 1)
        self.failures += 1
        delay = self._backoff()
        self.retry_at = time.monotonic() + delay
        if self.failures > 3 and self.failures % 30:
            return  # an outage lasting hours logs a line a minute, not one per retry
        log.error(
            "event=write_error step=%s attempt=%d retry_in_s=%.1f pending_snapshots=%d error=%s",
            step,
            self.failures,
            delay,
            self.segment.snapshots,
            exc,
        )

    def _backoff(self) -> float:
        return 1.0 if self.failures <= 1 else 2.0

    def _rel(self, path: str) -> str:
        return os.path.relpath(path, self.data_dir)

    def _maybe_crash(self, point: str) -> None:
        if self._crash_point == point:
            self._crash_count -= 1
            if self._crash_count <= 0:
                os.kill(os.getpid(), signal.SIGKILL)

    # -- loop ------------------------------------------------------------------------------

    def heartbeat(self) -> None:
        c = self.counters
        now_ms = _now_ms()
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


def _now_ms() -> int:
    return int(time.time() * 1000)


def _parse_crash_env() -> tuple[str | None, int]:
    raw = os.environ.get(CRASH_ENV)
    if not raw:
        return None, 0
    point, _, n = raw.partition(":")
    return point, int(n or 1)


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
        counters.set("started_ms", _now_ms())
        counters.set("stopping", 0)
        writer = Writer(spec, rings, counters)
        writer.recover()
        writer.heartbeat()
        status = writer.run(stop, parent_pid)
    finally:
        for ring in rings.values():
            ring.close()
        counters.close()
    if status:
        raise SystemExit(status)
