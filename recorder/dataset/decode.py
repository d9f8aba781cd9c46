"""Reading the stored files a selection needs, and what to do with one that cannot be read.

A file can be unreadable: random bytes, an empty or truncated Parquet file (a copy cut short, a
disk that filled), a JSONL file whose last line a crash cut in half, a file the reader may not
open. ``on_error="raise"`` (the default) stops with a :class:`DatasetError` naming the file;
``on_error="skip"`` leaves out what cannot be read (a whole Parquet file; only the malformed lines
of a JSONL file), logs one warning per file and lists it in ``Dataset.skipped``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import msgspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.fs as pafs

from recorder.dataset.source import DataFile, DatasetError, ListingChanged
from recorder.model import Snapshot
from recorder.writer.batches import SCHEMA

ON_ERROR = ("raise", "skip")
log = logging.getLogger("recorder.dataset")

_jsonl_decoder = msgspec.json.Decoder(list[Snapshot])
_line_decoder = msgspec.json.Decoder(Snapshot)


def one_line(exc: BaseException) -> str:
    """An exception's message on one line (Arrow's can carry context lines)."""
    return " ".join(str(exc).split()) or type(exc).__name__


class Unreadable:
    """What the reader does with a file it cannot read: raise, or skip it and say so."""

    def __init__(self, on_error: str, display: Callable[[str], str]) -> None:
        if not isinstance(on_error, str) or on_error not in ON_ERROR:
            raise DatasetError(f"invalid on_error {on_error!r}: use 'raise' or 'skip'")
        self.on_error = on_error
        self.display = display  # path in the filesystem -> the name a user knows (s3://...)
        self.skipped: dict[str, str] = {}  # file -> why
        self._whole: set[tuple[str, int]] = set()  # Parquet files skipped whole, by (path, size)

    def found(self, f: DataFile, reason: str, whole_file: bool = True) -> None:
        name = self.display(f.path)
        if self.on_error == "raise":
            raise DatasetError(f"cannot read {name}: {reason}")
        if whole_file:
            self._whole.add((f.path, f.size))  # not opened again (unless it is replaced)
        if name not in self.skipped:
            log.warning("event=dataset_file_skipped file=%s reason=%s", name, reason)
        self.skipped[name] = reason

    def readable(self, files: list[DataFile]) -> list[DataFile]:
        """``files`` but those already skipped whole."""
        return [f for f in files if (f.path, f.size) not in self._whole] if self._whole else files


def read_parquet(
    fs: pafs.FileSystem,
    files: list[DataFile],
    expr: pc.Expression | None,
    unreadable: Unreadable,
    gone: Callable[[str], bool],
) -> pa.Table:
    """The rows of ``files`` that pass ``expr``, in one scan; when it fails, file by file, to
    name (or skip) the files that cannot be read. Files written before a column existed give
    nulls in it (the scan's schema is the writer's current one)."""
    files = unreadable.readable(files)
    if not files:
        return SCHEMA.empty_table()
    try:
        return _scan(fs, [f.path for f in files], expr)
    except (pa.ArrowException, OSError):
        pass  # which file? below
    tables = []
    for f in files:
        try:
            tables.append(_scan(fs, [f.path], expr))
        except (pa.ArrowException, OSError) as exc:
            if isinstance(exc, FileNotFoundError) or gone(f.path):
                raise ListingChanged(f"{f.path} went away while read ({one_line(exc)})") from None
            unreadable.found(f, one_line(exc))
    return pa.concat_tables(tables) if tables else SCHEMA.empty_table()


def _scan(fs: pafs.FileSystem, paths: list[str], expr: pc.Expression | None) -> pa.Table:
    dataset = pads.dataset(paths, schema=SCHEMA, format="parquet", filesystem=fs)
    return dataset.to_table(filter=expr)


def read_jsonl(fs: pafs.FileSystem, f: DataFile, unreadable: Unreadable, gone: Callable[[str], bool]) -> list[Snapshot]:
    """The snapshots of one JSONL file; its malformed lines raise or are skipped."""
    try:
        with fs.open_input_stream(f.path) as fh:
            data = fh.read()
    except OSError as exc:
        if isinstance(exc, FileNotFoundError) or gone(f.path):
            raise ListingChanged(f"{f.path} went away while read ({one_line(exc)})") from None
        unreadable.found(f, one_line(exc))
        return []
    lines = [line for line in data.split(b"\n") if line.strip()]
    if not lines:
        return []
    try:
        return _jsonl_decoder.decode(b"[" + b",".join(lines) + b"]")  # one call: fast
    except msgspec.DecodeError:
        pass  # which lines? below
    snaps: list[Snapshot] = []
    bad: list[tuple[int, str]] = []
    for number, line in enumerate(data.split(b"\n"), 1):
        if not line.strip():
            continue
        try:
            snaps.append(_line_decoder.decode(line))
        except msgspec.DecodeError as exc:
            bad.append((number, one_line(exc)))
    if bad:
        number, why = bad[0]
        more = f" (and {len(bad) - 1} more malformed line(s))" if len(bad) > 1 else ""
        unreadable.found(f, f"malformed JSONL line {number}: {why}{more}", whole_file=False)
    return snaps
