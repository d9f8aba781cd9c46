"""The venue process's archive files: records buffered in memory, written by a thread.

The event loop only appends records to a list (``add``); a thread takes the list about every
``flush_s``, encodes it as JSON lines (``format.py``) and writes it through one zstd stream per file,
flushed to a complete zstd block each time. So a process killed with SIGKILL loses at most the
records of its last interval, and the file on disk decompresses up to its last flush.

A file is written under a hidden temp name (``.<name>.part``: the spool, globs and the writer's
temp cleanup skip it) and renamed to its final name when it is finished (rotation by time, size
or day, or the process stopping), then listed in the session's archive index. A venue process
that starts finds the parts a killed predecessor left and publishes them as they are.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import zstandard

from recorder.archive.format import (
    PART_SUFFIX,
    ArchiveIndexEntry,
    archive_file_name,
    encode_records,
    file_name_re,
    index_path,
    part_name_re,
    scan_archive_file,
    venue_archive_dir,
)
from recorder.archive.queue import Loss, RecordQueue, record_size
from recorder.sinks.local import ensure_dir, fsync_dir

log = logging.getLogger("recorder.archive")


@dataclass(frozen=True)
class ArchiveSettings:
    rotate_s: float = 3600.0
    rotate_bytes: int = 256 * 1024 * 1024
    flush_s: float = 1.0
    level: int = 3
    max_buffer_bytes: int = 256 * 1024 * 1024  # records waiting for the thread; past it they are dropped, counted


class _OpenFile:
    def __init__(self, final: Path, level: int, first_ns: int) -> None:
        self.final = final
        self.part = final.with_name(f".{final.name}{PART_SUFFIX}")
        ensure_dir(final.parent)
        self.fh = open(self.part, "wb")
        self.z = zstandard.ZstdCompressor(level=level).compressobj()
        self.opened_s = time.monotonic()
        self.day = time.gmtime(first_ns / 1e9)[:3]
        self.first_ns = first_ns
        self.last_ns = first_ns
        self.bytes = 0
        self.raw_bytes = 0
        self.frames = 0
        self.records = 0
        self.lost_frames = 0  # frames the file's ``lost`` records stand for


class ArchiveWriter:
    """One venue process's archive (see the module doc). ``add`` is the only method the event loop
    calls per record; it never blocks on I/O."""

    def __init__(
        self, data_dir: str, venue: str, session_id: str, settings: ArchiveSettings, header: dict[str, Any]
    ) -> None:
        self.data_dir = Path(data_dir)
        self.venue, self.session_id, self.settings = venue, session_id, settings
        self.header = header
        # Appended by the event loop, taken by the thread, bounded (queue.py).
        self.queue = RecordQueue(settings.max_buffer_bytes, venue)
        self.records = self.queue.records
        self._write_loss: Loss | None = None  # records taken but not written (a failed write)
        self.write_lost_frames = 0
        self._file: _OpenFile | None = None
        self._seq = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()  # one flush at a time (the thread's, or close()'s)
        self._thread: threading.Thread | None = None
        self.error: str | None = None
        self.published: list[Path] = []

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self._seq = self._next_seq()
        self.recover()
        self._thread = threading.Thread(target=self._run, name="archive", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Write what is buffered and publish the open file (a clean stop)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        with self._lock:
            try:
                self._flush()
                self._finish()
            except Exception as exc:  # e.g. a full disk: the part stays, the next start publishes it
                log.error("event=archive_close_failed venue=%s error=%s", self.venue, exc)

    def _next_seq(self) -> int:
        """Past every file of the session a previous process of this venue wrote: file order is
        the order of the seq numbers."""
        pattern = file_name_re(self.session_id)
        seq = -1
        for path in venue_archive_dir(self.data_dir, self.venue).glob("date=*/*"):
            m = pattern.match(path.name.lstrip(".").removesuffix(PART_SUFFIX))
            if m is not None:
                seq = max(seq, int(m.group(2)))
        return seq + 1

    def recover(self) -> None:
        """Publish the parts a killed process of this session and venue left (readable up to its
        last flush), each listed in the index with what it holds."""
        pattern = part_name_re(self.session_id)
        root = venue_archive_dir(self.data_dir, self.venue)
        if not root.is_dir():
            return
        for part in sorted(root.glob("date=*/.*" + PART_SUFFIX)):
            m = pattern.match(part.name)
            if m is None:
                continue
            final = part.with_name(part.name[1 : -len(PART_SUFFIX)])
            try:
                stats = scan_archive_file(part)
                os.replace(part, final)
                fsync_dir(final.parent)
            except OSError as exc:
                log.warning("event=archive_recover_failed path=%s error=%s", part, exc)
                continue
            self._index(final, stats.first_ns, stats.last_ns, stats.frames, stats.records, 0, stats.lost_frames)
            log.info("event=archive_recovered path=%s frames=%d", final, stats.frames)

    # -- the thread --------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.wait(self.settings.flush_s):
            with self._lock:
                try:
                    self._flush()
                except Exception as exc:  # e.g. a full disk: the records are lost, the capture goes on
                    if self.error is None:
                        log.error("event=archive_write_failed venue=%s error=%s", self.venue, exc)
                    self.error = str(exc)

    def _flush(self) -> None:
        batch = self.queue.take()
        if self._write_loss is not None:  # what the last failed write took says so first
            batch.insert(0, self._write_loss.record())
            self._write_loss = None
        try:
            f = self._file
            if f is not None and self._should_rotate(f, batch):
                self._finish()
                f = None
            if not batch:
                return
            if f is None:
                f = self._open(batch[0][2])
            data = encode_records(batch)
            out = f.z.compress(data) + f.z.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)
            f.fh.write(out)
            f.fh.flush()
        except Exception:
            self._lost_in_write(batch)
            raise
        f.bytes += len(out)
        f.raw_bytes += len(data)
        f.records += len(batch)
        for r in batch:
            if r[0] == "recv":
                f.frames += 1
            elif r[0] == "lost":
                f.lost_frames += r[3]["frames"]
        f.last_ns = max(f.last_ns, batch[-1][2])
        self.error = None

    def _lost_in_write(self, batch: list[tuple]) -> None:
        """A write failed (e.g. a full disk): ``batch`` is gone. It becomes a ``lost`` record at the
        head of the next write, and the file is closed where it was last whole: its zstd stream
        may end in a partial block, and the next records go to a new file."""
        loss = Loss("write_failed", batch[0][2] if batch else time.time_ns())
        for r in batch:
            loss.add(r, record_size(r))
            if r[0] == "recv":  # (a ``lost`` record's frames were counted where they were lost)
                self.write_lost_frames += 1
        if batch:
            self._write_loss = loss
        f, self._file = self._file, None
        if f is None:
            return
        try:
            f.fh.close()  # (its buffered tail may fail to write again: the file ends where it was whole)
        except OSError:
            pass
        try:
            os.replace(f.part, f.final)
            fsync_dir(f.final.parent)
            self.published.append(f.final)
            self._index(f.final, f.first_ns, f.last_ns, f.frames, f.records, f.raw_bytes, f.lost_frames)
        except OSError as exc:  # the part stays; the next process of the venue publishes it
            log.warning("event=archive_publish_failed path=%s error=%s", f.part, exc)

    @property
    def lost_frames(self) -> int:
        """Frames left out of the archive so far: a full buffer's and failed writes'."""
        return self.queue.lost_frames + self.write_lost_frames

    def _should_rotate(self, f: _OpenFile, batch: list[tuple]) -> bool:
        s = self.settings
        if f.bytes >= s.rotate_bytes or time.monotonic() - f.opened_s >= s.rotate_s:
            return True
        return bool(batch) and time.gmtime(batch[0][2] / 1e9)[:3] != f.day

    def _open(self, first_ns: int) -> _OpenFile:
        day = time.strftime("%Y-%m-%d", time.gmtime(first_ns / 1e9))
        name = archive_file_name(self.session_id, first_ns // 1_000_000, self._seq)
        self._seq += 1
        f = _OpenFile(
            venue_archive_dir(self.data_dir, self.venue) / f"date={day}" / name, self.settings.level, first_ns
        )
        header = {**self.header, "file_seq": self._seq - 1, "ns": first_ns}
        data = msgspec.json.encode({"t": "header", **header}) + b"\n"
        f.fh.write(f.z.compress(data))
        f.raw_bytes += len(data)
        self._file = f
        return f

    def _finish(self) -> None:
        f, self._file = self._file, None
        if f is None:
            return
        out = f.z.flush()
        f.fh.write(out)
        f.bytes += len(out)
        f.fh.flush()
        os.fsync(f.fh.fileno())
        f.fh.close()
        os.replace(f.part, f.final)
        fsync_dir(f.final.parent)
        self.published.append(f.final)
        self._index(f.final, f.first_ns, f.last_ns, f.frames, f.records, f.raw_bytes, f.lost_frames)

    def _index(
        self, final: Path, first_ns: int, last_ns: int, frames: int, records: int, raw: int, lost_frames: int = 0
    ) -> None:
        entry = ArchiveIndexEntry(
            path=final.relative_to(self.data_dir).as_posix(),
            venue=self.venue,
            first_ns=first_ns,
            last_ns=last_ns,
            frames=frames,
            records=records,
            bytes=final.stat().st_size,
            raw_bytes=raw,
            lost_frames=lost_frames,
        )
        path = index_path(self.data_dir, self.session_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "ab") as fh:
            fh.write(msgspec.json.encode(entry) + b"\n")
