"""The records' way from the event loop to the archive writer's thread, bounded in bytes.

A disk that stalls (or a writer thread starved of CPU) must not grow the venue process until the
OOM killer ends the capture: past ``limit`` bytes of buffered records, new records are dropped
instead of queued. A drop is never silent: the dropped run is counted (``lost_frames``) and, at
the point of the stream where it happened, a ``lost`` record says how many records and frames of
which span are missing, so a replay knows its books are unknown from there (README: Archive).

Two threads touch the queue: the event loop only appends (``put``), the writer's thread only
takes (``take``). Each keeps its own byte count (``added``, ``taken``), so neither races the
other's; only the rare hand-over of a pending loss takes a lock.
"""

from __future__ import annotations

import logging
import threading
from collections import deque

log = logging.getLogger("recorder.archive")

# Bytes a record costs besides its payload (the tuple, its ints and strings): an estimate, so
# that a flood of tiny records is bounded too.
RECORD_OVERHEAD = 64


def record_size(record: tuple) -> int:
    """What ``put`` counted for ``record`` (the same formula ``ConnTap.recv`` inlines)."""
    kind = record[0]
    if kind in ("recv", "send"):
        return len(record[3]) + RECORD_OVERHEAD
    if kind == "http":
        return len(record[5]) + RECORD_OVERHEAD
    return RECORD_OVERHEAD


class Loss:
    """A run of consecutive records that never reached the file."""

    __slots__ = ("records", "frames", "bytes", "first_ns", "last_ns", "why")

    def __init__(self, why: str, first_ns: int) -> None:
        self.why = why
        self.records = self.frames = self.bytes = 0
        self.first_ns = self.last_ns = first_ns

    def add(self, record: tuple, size: int) -> None:
        """``record`` (of ``size`` bytes, see ``record_size``) is lost too; a ``lost`` record adds
        the run it stood for (a write that failed with an earlier loss in its batch)."""
        ns = record[2]
        if record[0] == "lost":
            info = record[3]
            self.records += info["records"]
            self.frames += info["frames"]
            self.bytes += info["bytes"]
            self.first_ns = min(self.first_ns, info["from_ns"])
        else:
            self.records += 1
            self.bytes += size
            if record[0] == "recv":
                self.frames += 1
        if isinstance(ns, int) and ns > self.last_ns:
            self.last_ns = ns

    def record(self) -> tuple:
        """The ``lost`` record that stands for the run in the archive (dated at its last record,
        so the file's times never go back)."""
        info = {
            "why": self.why,
            "records": self.records,
            "frames": self.frames,
            "bytes": self.bytes,
            "from_ns": self.first_ns,
        }
        return ("lost", "", self.last_ns, info)


class RecordQueue:
    def __init__(self, limit_bytes: int = 0, venue: str = "") -> None:
        self.records: deque[tuple] = deque()
        self.limit = limit_bytes  # 0: unbounded
        self.venue = venue
        self.added = 0  # bytes put (event loop only)
        self.taken = 0  # bytes taken (writer thread only)
        self.lost_frames = 0  # frames dropped for a full buffer (event loop only)
        self.lost_records = 0
        self._loss: Loss | None = None
        self._lock = threading.Lock()

    @property
    def buffered_bytes(self) -> int:
        return max(0, self.added - self.taken)

    def put(self, record: tuple, size: int) -> None:
        """Queue ``record`` (``size``: ``record_size(record)``), or drop it when the buffer is full."""
        limit = self.limit
        if limit:
            buffered = self.added - self.taken
            if self._loss is not None:
                # Resume only once the writer has made room, not at the first free byte: one
                # ``lost`` record per stall, not one per frame.
                if buffered > limit // 2:
                    self._drop(record, size)
                    return
                self._end_loss()
            elif buffered + size > limit:
                self._drop(record, size)
                return
        self.added += size
        self.records.append(record)

    def _drop(self, record: tuple, size: int) -> None:
        loss = self._loss
        if loss is None:
            with self._lock:
                loss = self._loss = Loss("buffer_full", record[2] if isinstance(record[2], int) else 0)
            log.error(
                "event=archive_buffer_full venue=%s limit_mb=%.0f detail=the archive writer is behind; "
                "frames are left out of the archive (not out of the books) until it catches up",
                self.venue,
                self.limit / 2**20,
            )
        loss.add(record, size)
        self.lost_records += 1
        if record[0] == "recv":
            self.lost_frames += 1

    def _end_loss(self) -> None:
        with self._lock:
            loss, self._loss = self._loss, None
            if loss is not None:  # (the writer may have taken it meanwhile)
                self.added += RECORD_OVERHEAD
                self.records.append(loss.record())
        if loss is not None:
            log.warning(
                "event=archive_resumed venue=%s lost_frames=%d lost_records=%d",
                self.venue,
                loss.frames,
                loss.records,
            )

    def take(self) -> list[tuple]:
        """Everything queued, in order; a loss still running ends the batch (writer thread)."""
        records = self.records
        batch = [records.popleft() for _ in range(len(records))]
        taken = 0
        for r in batch:
            taken += record_size(r)
        self.taken += taken
        if self._loss is not None:
            with self._lock:
                loss, self._loss = self._loss, None
            # Nothing was queued since the loss began (``put`` ends it first), so it follows
            # everything just taken.
            if loss is not None:
                batch.append(loss.record())
        return batch
