"""Making a sealed segment durable: files prepared, journaled, published, rings committed.

Nothing is lost and nothing doubles because a ring is only committed after the segment holding
its records is durable (see ``journal.py`` for the protocol); a writer killed at any step finishes
the journal's pending commit on start-up. :class:`Committing` is the part of the
:class:`~recorder.writer.process.Writer` that does it.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING

from recorder.compaction.store import PublishLock
from recorder.metrics import SharedCounters
from recorder.ring.shm_ring import ShmRing
from recorder.sinks.local import (
    DEFAULT_ROW_GROUP_ROWS,
    PreparedFile,
    clean_temp_files,
    prepare_jsonl,
    prepare_parquet_pieces,
    publish,
)
from recorder.writer.batches import data_file_path
from recorder.writer.datasets import BOOKS_SPEC, SPECS, build_pieces
from recorder.writer.journal import (
    Journal,
    JournalFile,
    PendingCommit,
    RingPosition,
    SeqState,
    save_journal,
)
from recorder.writer.segment import Partition, Segment, SeqKey

if TYPE_CHECKING:
    from recorder.writer.spec import WriterSpec

log = logging.getLogger("recorder.writer")

# A Parquet file is built and written this many rows at a time: its whole table would take
# several times the bytes held for it (rotate_mb). A quarter row group: pieces are joined into
# row groups as they are written, so smaller pieces hold less at once (1000 pairs: -10 % RSS).
PIECE_ROWS = DEFAULT_ROW_GROUP_ROWS // 4


class Committing:
    """The writer's commit steps (mixed into the Writer, whose state they share)."""

    spec: WriterSpec
    data_dir: Path
    rings: dict[str, ShmRing]
    counters: SharedCounters
    read_pos: dict[str, int]
    committed_seq: dict[SeqKey, int]
    next_segment: int
    journal: Journal
    segment: Segment
    sealed: str | None
    retry_at: float
    failures: int
    _clean_pending: bool
    _crash_point: str | None
    _crash_count: int
    _publish_lock: PublishLock

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

    def _final_paths(self, segno: int) -> list[tuple[Partition, str, Path]]:
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
                    pieces = build_pieces(
                        part.dataset,
                        part.payloads,
                        part.seqs,
                        self.spec.session_id,
                        PIECE_ROWS,
                        seg.columns_of(part),
                    )
                    prepared.append(prepare_parquet_pieces(part.dataset.schema, pieces, path))
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
                created_ms=wall_ms(),
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
        c.set("last_commit_ts_ms", wall_ms())
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
        self.segment = Segment()
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


def wall_ms() -> int:
    return int(time.time() * 1000)
