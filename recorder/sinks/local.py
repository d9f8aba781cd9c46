"""Atomic local files, in two steps so the writer can journal between them.

``prepare_*`` writes ``.<name>.tmp`` next to the final path and fsyncs it; ``publish`` renames
it into place and fsyncs the directory. A reader therefore sees either no file or a complete
one, never a torn one. Temp names start with '.' so pyarrow.dataset, DuckDB/polars globs of
``*.parquet`` / ``*.jsonl`` ignore them.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import msgspec
import pyarrow as pa

from recorder.sinks.parquet_format import write_parquet

# Rows per Parquet row group: big enough for good compression and few footers, small enough
# that min/max statistics on pair/timestamp still let readers skip row groups.
DEFAULT_ROW_GROUP_ROWS = 256 * 1024
TEMP_SUFFIX = ".tmp"


class SinkError(OSError):
    """A file could not be written or published; ``filename`` is the path involved."""


class PreparedFile(msgspec.Struct, frozen=True):
    tmp_path: str
    final_path: str
    size_bytes: int
    rows: int


def temp_path_for(final_path: str | os.PathLike[str]) -> Path:
    final = Path(final_path)
    return final.with_name(f".{final.name}{TEMP_SUFFIX}")


def _error(exc: OSError, action: str, path: str | os.PathLike[str]) -> SinkError:
    reason = exc.strerror or str(exc) or type(exc).__name__
    return SinkError(exc.errno or errno.EIO, f"{action} ({reason})", str(path))


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Make a rename/creation inside ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def ensure_dir(path: str | os.PathLike[str]) -> None:
    """``mkdir -p`` that also fsyncs each new directory's parent, so the entry survives a crash."""
    path = Path(path)
    missing: list[Path] = []
    p = path
    while not p.is_dir():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    for d in reversed(missing):
        try:
            os.mkdir(d)
        except FileExistsError:
            if not d.is_dir():
                raise NotADirectoryError(errno.ENOTDIR, "not a directory", str(d)) from None
            continue
        fsync_dir(d.parent)


Writer = Callable[[BinaryIO], object]


def _write_synced(tmp: Path, write: Writer) -> int:
    with open(tmp, "wb") as fh:
        write(fh)
        fh.flush()
        os.fsync(fh.fileno())
        return fh.tell()


def _prepare(final_path: str | os.PathLike[str], write: Writer, rows: int, kind: str) -> PreparedFile:
    final = Path(final_path)
    tmp = temp_path_for(final)
    try:
        ensure_dir(final.parent)
    except OSError as exc:
        raise _error(exc, f"cannot create directory for {kind} file", final.parent) from exc
    try:
        size = _write_synced(tmp, write)
    except OSError as exc:
        # Don't leave a partial temp file eating the space that just ran out.
        try:
            tmp.unlink()
        except OSError:
            pass
        raise _error(exc, f"cannot write {kind} file", tmp) from exc
    return PreparedFile(tmp_path=str(tmp), final_path=str(final), size_bytes=size, rows=rows)


def prepare_parquet(
    table: pa.Table,
    final_path: str | os.PathLike[str],
    *,
    row_group_size: int = DEFAULT_ROW_GROUP_ROWS,
) -> PreparedFile:
    """Write ``table`` to the temp file of ``final_path`` (``parquet_format``'s encodings), fsynced."""

    def write(fh: BinaryIO) -> None:
        write_parquet(table, fh, row_group_size)

    return _prepare(final_path, write, table.num_rows, "parquet")


def prepare_jsonl(data: bytes | bytearray | memoryview, final_path: str | os.PathLike[str]) -> PreparedFile:
    """Write ``data`` (newline-terminated JSON lines) to the temp file of ``final_path``, fsynced."""
    rows = (data.tobytes() if isinstance(data, memoryview) else data).count(b"\n")
    return _prepare(final_path, lambda fh: fh.write(data), rows, "jsonl")


def publish(prepared: PreparedFile) -> None:
    """Rename the temp file into place and fsync the directory. Idempotent: if the temp file is
    gone and the final file exists, it was already published (e.g. before a crash)."""
    tmp, final = Path(prepared.tmp_path), Path(prepared.final_path)
    try:
        os.replace(tmp, final)
    except FileNotFoundError as exc:
        if not final.exists():
            raise _error(exc, "cannot publish: neither temp nor final file exists", final) from exc
    except OSError as exc:
        raise _error(exc, "cannot publish file", final) from exc
    try:
        fsync_dir(final.parent)
    except OSError as exc:
        raise _error(exc, "cannot fsync directory", final.parent) from exc


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically and durably (tmp + fsync + rename + dir fsync)."""
    final = Path(path)
    tmp = temp_path_for(final)
    try:
        ensure_dir(final.parent)
        _write_synced(tmp, lambda fh: fh.write(data))
        os.replace(tmp, final)
        fsync_dir(final.parent)
    except OSError as exc:
        raise _error(exc, "cannot write", final) from exc


def _temp_name_re(session_id: str) -> re.Pattern[str]:
    # Exactly "<session>-<digits>-<digits>.<ext>.tmp": anchored, so session "a" never matches
    # the temp files of session "a-b" or "a-1-2".
    return re.compile(rf"^\.{re.escape(session_id)}-\d+-\d+\.(parquet|jsonl){re.escape(TEMP_SUFFIX)}$")


def clean_temp_files(root: str | os.PathLike[str], session_id: str) -> list[Path]:
    """Remove leftover temp files of ``session_id`` anywhere under ``root``; returns them."""
    pattern = _temp_name_re(session_id)
    removed: list[Path] = []
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            if pattern.match(name):
                p = Path(dirpath) / name
                try:
                    p.unlink()
                except FileNotFoundError:
                    continue
                removed.append(p)
    return removed
