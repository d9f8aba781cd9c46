"""The local spool: finished data files of a session that S3 has not confirmed yet.

The spool is the data directory itself. The writer publishes complete files there (atomic
rename, journaled) and never changes one afterwards; a file is "spooled" until the uploader
has confirmed its upload and recorded it in an append-only ledger
(``.sessions/<session>/s3-uploads.jsonl``). So a recorder restart resumes the spool by
scanning: whatever is on disk and not in the ledger is uploaded, in segment order. A crash
between upload and ledger line only re-uploads that file to the same key (no duplicate).
"""

from __future__ import annotations

import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import msgspec

from recorder.layout import format_dirs
from recorder.sinks.local import atomic_write_bytes

log = logging.getLogger("recorder.uploader")

LEDGER_NAME = "s3-uploads.jsonl"
# Every dataset's format directories (books ``parquet``, trades ``trades/parquet``, ...), and the
# venue processes' archives (finished files only: a file being written has a hidden name).
FORMAT_DIRS = (*(rel for _, _, rel in format_dirs()), "archive")
# Directory listings are cached by mtime; a full listing every so often covers filesystems
# whose mtime is too coarse to see two changes within one tick.
FULL_RESCAN_S = 30.0


class LedgerEntry(msgspec.Struct, kw_only=True):
    path: str  # relative to the data dir, '/'-separated
    dest: str  # s3://bucket/prefix the file went to
    key: str
    size: int
    etag: str
    uploaded_ms: int


@dataclass(frozen=True)
class SpoolFile:
    segment: int
    rel: str
    size: int
    mtime: float

    def path(self, data_dir: Path) -> Path:
        return data_dir / self.rel


class _PendingFiles(msgspec.Struct):
    final: str


class _Pending(msgspec.Struct):
    files: list[_PendingFiles] = []


class _JournalView(msgspec.Struct):
    """The one part of the writer journal (an on-disk format) the spool needs."""

    pending: _Pending | None = None


# A directory's mtime, its subdirectories (path, relative path) and this session's files in it.
_Listing = tuple[int, list[tuple[Path, str]], list[SpoolFile]]


def _order(f: SpoolFile) -> tuple[int, str]:
    return (f.segment, f.rel)  # the order the writer produced them


def session_file_re(session_id: str) -> re.Pattern[str]:
    # The writer's final names: "<session>-<first tick ms>-<segment>.<fmt>", anchored so
    # session "a" never claims the files of session "a-b".
    # An archive file is "<session>-<first ms>-<seq>.jsonl.zst".
    return re.compile(rf"^{re.escape(session_id)}-(\d+)-(\d+)\.(parquet|jsonl|jsonl\.zst)$")


class Spool:
    def __init__(self, data_dir: str | os.PathLike[str], session_id: str, dest: str) -> None:
        self.data_dir = Path(data_dir)
        self.session_id = session_id
        self.dest = dest
        self.session_dir = self.data_dir / ".sessions" / session_id
        self.ledger_path = self.session_dir / LEDGER_NAME
        self.journal_path = self.session_dir / "writer-journal.json"
        self._name_re = session_file_re(session_id)
        self.uploaded: set[str] = set()
        self._dirs: dict[Path, _Listing] = {}
        self._last_full = 0.0

    # -- ledger ----------------------------------------------------------------------------

    def load(self) -> None:
        """Read the ledger (tolerating a torn last line) and rewrite it with only the entries
        for this destination whose local file still exists, so it stays small."""
        keep: list[LedgerEntry] = []
        try:
            raw = self.ledger_path.read_bytes()
        except FileNotFoundError:
            raw = b""
        dec = msgspec.json.Decoder(LedgerEntry)
        for line in raw.splitlines():
            try:
                entry = dec.decode(line)
            except (msgspec.DecodeError, msgspec.ValidationError):
                continue  # a line torn by a crash: that file is simply uploaded again
            if entry.dest == self.dest and (self.data_dir / entry.path).exists():
                keep.append(entry)
        self.uploaded = {e.path for e in keep}
        data = b"".join(msgspec.json.encode(e) + b"\n" for e in keep)
        if data != raw:
            atomic_write_bytes(self.ledger_path, data)

    def mark_uploaded(self, f: SpoolFile, key: str, etag: str) -> None:
        entry = LedgerEntry(path=f.rel, dest=self.dest, key=key, size=f.size, etag=etag, uploaded_ms=_now_ms())
        self.session_dir.mkdir(parents=True, exist_ok=True)
        with open(self.ledger_path, "ab") as fh:
            fh.write(msgspec.json.encode(entry) + b"\n")
            fh.flush()
            os.fsync(fh.fileno())
        self.uploaded.add(f.rel)

    # -- scanning --------------------------------------------------------------------------

    def scan(self) -> list[SpoolFile]:
        """This session's finished files not yet uploaded, oldest segment first."""
        now = time.monotonic()
        full = now - self._last_full >= FULL_RESCAN_S
        if full:
            self._last_full = now
        out: list[SpoolFile] = []
        for rel in FORMAT_DIRS:
            self._walk(self.data_dir / rel, rel, full, out)
        out.sort(key=_order)
        return out

    def _walk(self, directory: Path, rel_dir: str, full: bool, out: list[SpoolFile]) -> None:
        try:
            mtime = directory.stat().st_mtime_ns
        except OSError:
            self._dirs.pop(directory, None)
            return
        cached = self._dirs.get(directory)
        if cached is None or cached[0] != mtime or full:
            cached = self._list(directory, rel_dir, mtime)
            if cached is None:
                return
        _, subdirs, files = cached
        uploaded = self.uploaded
        out.extend(f for f in files if f.rel not in uploaded)
        for sub, rel_sub in subdirs:
            self._walk(sub, rel_sub, full, out)

    def _list(self, directory: Path, rel_dir: str, mtime: int) -> _Listing | None:
        subdirs: list[tuple[Path, str]] = []
        files: list[SpoolFile] = []
        try:
            with os.scandir(directory) as it:
                for entry in it:
                    if entry.name.startswith("."):
                        continue  # temp files and hidden dirs
                    if entry.is_dir(follow_symlinks=False):
                        subdirs.append((Path(entry.path), f"{rel_dir}/{entry.name}"))
                        continue
                    m = self._name_re.match(entry.name)
                    if m is None:
                        continue
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue
                    rel = f"{rel_dir}/{entry.name}"
                    files.append(SpoolFile(segment=int(m.group(2)), rel=rel, size=st.st_size, mtime=st.st_mtime))
        except OSError:
            return None
        listing = (mtime, subdirs, files)
        self._dirs[directory] = listing
        return listing

    # -- deletion --------------------------------------------------------------------------

    def in_pending_commit(self, rel: str) -> bool:
        """True while the writer's journal lists the file in an unfinished commit: a writer that
        restarts then re-publishes it, and would report it missing had we deleted it."""
        try:
            view = msgspec.json.decode(self.journal_path.read_bytes(), type=_JournalView)
        except (OSError, msgspec.DecodeError, msgspec.ValidationError):
            return False
        if view.pending is None:
            return False
        return any(f.final.replace(os.sep, "/") == rel for f in view.pending.files)

    def delete(self, f: SpoolFile) -> bool:
        """Delete an uploaded file's local copy; False if it has to wait (pending commit)."""
        if self.in_pending_commit(f.rel):
            return False
        try:
            f.path(self.data_dir).unlink()
        except FileNotFoundError:
            pass
        return True


def _now_ms() -> int:
    return int(time.time() * 1000)
