"""Where compaction reads and swaps files. ``LocalStore`` is a directory tree; ``S3Store``
(``s3store.py``) implements the same protocol with its own commit (a manifest, see
``manifest.py``). Both hold Parquet and JSONL partitions (``parquet/...``, ``jsonl/...``).

Local commit protocol (readers glob ``*.parquet`` in a partition directory, so the switch from
the small files to the merged ones must be a single atomic step):

    1. write the merged files into a private stage directory (fsync each, fsync the directory)
    2. journal {partition, stage, inputs, outputs}            <- from here recovery knows the plan
    3. under the exclusive publish lock: hard-link every partition file that is *not* an input
       (other sessions' files, a writer's temp files) into the stage, then exchange the stage and
       the partition directory with one ``renameat2(RENAME_EXCHANGE)``
    4. remove the old directory (now at the stage path), clear the journal

A reader sees either the old directory or the new one, never both or half. Killed before 3's
exchange: recovery drops the stage (the partition was never touched). Killed after it: recovery
finishes 4. Writers take the publish lock shared while they prepare and publish a segment, so no
file can appear in a partition between the hard-links and the exchange.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

import msgspec

from recorder.compaction.formats import codec_for
from recorder.layout import format_dirs
from recorder.sinks.local import atomic_write_bytes, ensure_dir, fsync_dir

WORK_DIR = ".compaction"
JOURNAL = "journal.json"
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


class StoreError(OSError):
    pass


@dataclass(frozen=True, slots=True)
class FileInfo:
    name: str
    size: int
    mtime: float


class Plan(msgspec.Struct, kw_only=True):
    """One partition's swap, journaled between staging and the exchange."""

    partition: str  # relative to the data dir, e.g. parquet/exchange=binance/date=2026-11-24
    stage: str  # the store's: locally a directory relative to the data dir; for S3 a local temp dir
    inputs: list[str]
    outputs: list[str]
    token: str = ""  # names the run's outputs (and on S3 its manifest)
    group_sizes: list[int] = []  # inputs per output, in order


WriteFn = Callable[[BinaryIO], object]


class PartitionStore(Protocol):
    def partitions(self) -> list[str]:
        """Every ``<format>/exchange=*/date=*`` partition, relative to the store's root."""

    def list_files(self, partition: str) -> list[FileInfo]:
        """The partition's visible data files of its format (temp and hidden names excluded)."""

    def read_bytes(self, partition: str, name: str) -> bytes: ...

    def begin(self, partition: str, token: str) -> str:
        """A private place for the merged files; returns its id (the stage)."""

    def write_staged(self, stage: str, name: str, write: WriteFn) -> int:
        """Write one merged file durably into the stage; returns its size in bytes."""

    def commit(self, plan: Plan) -> None:
        """Atomically replace ``plan.inputs`` by ``plan.outputs`` in the partition."""

    def abort(self, stage: str) -> None: ...

    def recover(self) -> str | None:
        """Finish or roll back an interrupted commit; returns what was done (for logs)."""

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """One compaction per store at a time (raises StoreError if another one runs)."""
        yield


def _renameat2_exchange(a: Path, b: Path) -> None:
    if not sys.platform.startswith("linux"):
        raise StoreError(errno.ENOTSUP, "atomic directory exchange needs Linux renameat2", str(a))
    libc = ctypes.CDLL(None, use_errno=True)
    fn = getattr(libc, "renameat2", None)
    if fn is None:
        raise StoreError(errno.ENOTSUP, "atomic directory exchange needs glibc >= 2.28 (renameat2)", str(a))
    rc = fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc != 0:
        err = ctypes.get_errno()
        raise StoreError(err, f"cannot exchange directories ({os.strerror(err)})", str(b))


@contextmanager
def publish_lock(data_dir: str | os.PathLike[str], shared: bool) -> Iterator[None]:
    """Writers hold it shared around a commit; a compaction's swap holds it exclusive."""
    path = Path(data_dir) / WORK_DIR / "publish.lock"
    ensure_dir(path.parent)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


class PublishLock:
    """A writer's long-lived handle on the publish lock (one open file, locked per commit)."""

    def __init__(self, data_dir: str | os.PathLike[str]) -> None:
        self.path = Path(data_dir) / WORK_DIR / "publish.lock"
        self._fd: int | None = None

    @contextmanager
    def shared(self) -> Iterator[None]:
        try:
            if self._fd is None:
                ensure_dir(self.path.parent)
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            fcntl.flock(self._fd, fcntl.LOCK_SH)
        except OSError:
            # No lock (e.g. a read-only work dir) must not stop the recorder from storing data.
            yield
            return
        try:
            yield
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class LocalStore:
    def __init__(self, data_dir: str | os.PathLike[str], crash_hook: object = None) -> None:
        self.root = Path(data_dir)
        self.work = self.root / WORK_DIR
        self._crash = crash_hook if callable(crash_hook) else (lambda point: None)

    # -- reading --------------------------------------------------------------------------

    def partitions(self) -> list[str]:
        out = []
        for _, _, rel in format_dirs():
            base = self.root / rel
            out += [p.relative_to(self.root).as_posix() for p in base.glob("exchange=*/date=*") if p.is_dir()]
        return sorted(out)

    def list_files(self, partition: str) -> list[FileInfo]:
        suffix = f".{codec_for(partition).ext}"
        out = []
        for entry in os.scandir(self.root / partition):
            if entry.name.startswith((".", "_")) or not entry.name.endswith(suffix) or not entry.is_file():
                continue
            st = entry.stat()
            out.append(FileInfo(entry.name, st.st_size, st.st_mtime))
        return sorted(out, key=lambda f: f.name)

    def read_bytes(self, partition: str, name: str) -> bytes:
        return (self.root / partition / name).read_bytes()

    # -- staging --------------------------------------------------------------------------

    def begin(self, partition: str, token: str) -> str:
        stage = self.work / f"stage-{token}"
        ensure_dir(stage)
        return str(stage.relative_to(self.root))

    def write_staged(self, stage: str, name: str, write: WriteFn) -> int:
        path = self.root / stage / name
        with open(path, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
            size = fh.tell()
        return size

    def abort(self, stage: str) -> None:
        shutil.rmtree(self.root / stage, ignore_errors=True)

    # -- the swap ---------------------------------------------------------------------------

    def commit(self, plan: Plan) -> None:
        stage, part = self.root / plan.stage, self.root / plan.partition
        fsync_dir(stage)
        self._save_journal(plan)
        self._crash("after_journal")
        inputs = set(plan.inputs)
        with publish_lock(self.root, shared=False):
            for entry in os.scandir(part):
                if entry.name in inputs or not entry.is_file(follow_symlinks=False):
                    continue
                # Files that stay (other sessions', a writer's temp files) go along as hard links.
                os.link(entry.path, stage / entry.name)
                self._crash("mid_link")
            fsync_dir(stage)
            self._crash("before_exchange")
            _renameat2_exchange(stage, part)
            fsync_dir(part.parent)
            fsync_dir(stage.parent)
        self._crash("after_exchange")
        self._finish(plan)

    def _finish(self, plan: Plan) -> None:
        """After the exchange: the old directory sits at the stage path; drop what it holds."""
        old, part = self.root / plan.stage, self.root / plan.partition
        inputs = set(plan.inputs)
        if old.is_dir():
            for n, entry in enumerate(sorted(os.scandir(old), key=lambda e: e.name)):
                target = part / entry.name
                if entry.name in inputs or (target.exists() and os.path.samefile(entry.path, target)):
                    os.unlink(entry.path)
                elif not target.exists():
                    os.replace(entry.path, target)  # defensive: nothing may be lost
                else:
                    os.unlink(entry.path)
                if n == 1:
                    self._crash("mid_cleanup")
            os.rmdir(old)
            fsync_dir(old.parent)
        self._clear_journal()

    def recover(self) -> str | None:
        plan = self._load_journal()
        did: str | None = None
        if plan is not None:
            part = self.root / plan.partition
            if plan.outputs and all((part / o).exists() for o in plan.outputs):
                self._finish(plan)
                did = f"finished the swap of {plan.partition}"
            else:
                self.abort(plan.stage)
                self._clear_journal()
                did = f"rolled back an unfinished compaction of {plan.partition}"
        # Stages without a journal were never visible to anyone: drop them.
        if self.work.is_dir():
            for stage in self.work.glob("stage-*"):
                shutil.rmtree(stage, ignore_errors=True)
        return did

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        ensure_dir(self.work)
        fd = os.open(self.work / "run.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                msg = "another compaction is running on this data dir"
                raise StoreError(errno.EBUSY, msg, str(self.root)) from None
            yield
        finally:
            os.close(fd)

    # -- journal ----------------------------------------------------------------------------

    def _save_journal(self, plan: Plan) -> None:
        atomic_write_bytes(self.work / JOURNAL, msgspec.json.encode(plan))

    def _load_journal(self) -> Plan | None:
        try:
            return msgspec.json.decode((self.work / JOURNAL).read_bytes(), type=Plan)
        except FileNotFoundError:
            return None

    def _clear_journal(self) -> None:
        try:
            os.unlink(self.work / JOURNAL)
        except FileNotFoundError:
            return
        fsync_dir(self.work)
