"""Exports of stored data into formats backtesters read: ``export(data, to=..., out=...)``.

- ``hftbacktest``: ``.npz`` event arrays, one per pair and day (``recorder.export.hftbacktest``);
- ``nautilus``: a nautilus_trader ``ParquetDataCatalog`` (``recorder.export.nautilus``);
- ``tardis``: tardis.dev CSV files, gzip (``recorder.export.tardis``).

Book data comes from one of two sources (``source=``): ``snapshots``, the stored snapshots (and
trades and quotes where the dataset has them), read one pair-day at a time (books in chunks of an
hour); or ``archive``, the lossless archive, replayed into every book change and trade
(``recorder.export.events``, spooled per pair-day on disk by ``recorder.export.event_units``):
hftbacktest depth events, tardis ``incremental_book_L2``, nautilus ``OrderBookDelta`` (beside the
catalog's snapshots, trades and quotes). ``auto`` (the default) takes a pair-day's events from the
archive when a session of the selection archived it (on S3: its files downloaded for the run),
else its snapshots. Memory stays bounded however long the selection.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recorder.dataset import DatasetError, open_dataset
from recorder.export.source import Source, Unit
from recorder.export.symbols import ExportError

FORMATS = ("hftbacktest", "nautilus", "tardis")
SOURCES = ("auto", "archive", "snapshots")

__all__ = ["FORMATS", "SOURCES", "DatasetError", "ExportError", "ExportResult", "export"]


@dataclass
class ExportResult:
    format: str
    out: Path
    units: int  # pair-days exported
    files: list[str] = field(default_factory=list)  # files (or nautilus instrument ids) written
    counts: dict[str, int] = field(default_factory=dict)


def export(
    data: str | os.PathLike[str],
    *,
    to: str,
    out: str | os.PathLike[str],
    exchanges: str | Iterable[str] | None = None,
    pairs: str | Iterable[str] | None = None,
    start: Any = None,
    end: Any = None,
    sessions: str | Iterable[str] | None = None,
    depth: int = 25,
    overwrite: bool = False,
    progress: Callable[[int, int, Unit], None] | None = None,
    endpoint_url: str | None = None,
    source: str = "auto",
) -> ExportResult:
    """Export a selection of the data at ``data`` (a data dir or ``s3://bucket/prefix``) to the
    format ``to`` under the directory ``out``. Selection keywords as ``recorder.dataset``;
    ``depth``: levels per side of tardis ``book_snapshot_{depth}``; ``source``: where book events
    come from (``auto``, ``archive``, ``snapshots``, see the module docstring); ``progress(done,
    total, unit)`` is called after each pair-day. Raises ExportError / DatasetError (one-line
    messages)."""
    if to not in FORMATS:
        raise ExportError(f"unknown export format {to!r}: use {', '.join(FORMATS)}")
    if source not in SOURCES:
        raise ExportError(f"unknown source {source!r}: use {', '.join(SOURCES)}")
    if to == "tardis" and not 1 <= depth <= 1000:
        raise ExportError(f"invalid depth {depth}: use 1..1000")
    local = _local_dir(data)
    try:
        ds = open_dataset(data, endpoint_url=endpoint_url)
    except DatasetError:
        if source == "snapshots" or local is None or not (local / "archive").is_dir():
            raise
        ds = None  # an archive and no stored data (a capture that stored no books): the archive alone
    sel = _selection(ds, exchanges, pairs, start, end, sessions)
    stored = Source(ds, sel) if ds is not None else None
    stored_units = stored.units() if stored is not None else []
    fetched = None
    if local is None and ds is not None and source != "snapshots":
        fetched = local = _fetch_archive(ds, sel, out)  # the archive on S3: its sessions downloaded
    try:
        return _export(to, out, depth, overwrite, progress, source, local, sel, stored, stored_units)
    finally:
        if fetched is not None:
            shutil.rmtree(fetched, ignore_errors=True)


def _export(
    to: str,
    out: str | os.PathLike[str],
    depth: int,
    overwrite: bool,
    progress: Callable[[int, int, Unit], None] | None,
    source: str,
    local: Path | None,
    sel: Any,
    stored: Source | None,
    stored_units: list[Unit],
) -> ExportResult:
    archive = _archive(local, sel, source, to)
    event_units = archive.planned() if archive is not None else []
    if to == "hftbacktest":  # a pair-day's book events from one source: the archive where it has them
        archived = set(event_units)
        stored_units = [u for u in stored_units if u not in archived]
    if not stored_units and not event_units:
        raise ExportError("nothing to export: no stored books match the selection")
    out_dir = _out_dir(out, to, stored_units, event_units, depth, overwrite)
    total = len(stored_units) + len(event_units)
    done = [0]

    def step(unit: Unit) -> None:
        done[0] += 1
        if progress is not None:
            progress(min(done[0], total), total, unit)

    spool = out_dir / f".spool-{os.getpid()}"
    try:
        if to == "hftbacktest":
            from recorder.export import hftbacktest

            writer = hftbacktest.Writer(out_dir)
            for unit in stored_units:
                writer.write(unit, hftbacktest.unit_chunks(stored, unit, writer.state(unit), writer.counts))  # type: ignore[arg-type]
                step(unit)
            if archive is not None:
                hftbacktest.export_archive_units(archive.spooled(spool), writer, step)
            files, counts = writer.finish()
        elif to == "nautilus":
            from recorder.export import nautilus

            files, counts = nautilus.export_units(
                stored, stored_units, archive, event_units, out_dir, spool, step, overwrite
            )
        else:
            from recorder.export import tardis

            files, counts = [], {}
            for unit in stored_units:
                for kind, n in tardis.export_unit(stored, unit, out_dir, depth).items():  # type: ignore[arg-type]
                    counts[kind] = counts.get(kind, 0) + n
                files += [f for f in tardis.planned_files(unit, depth) if (out_dir / f).exists()]
                step(unit)
            if archive is not None:
                for name, rows in tardis.export_incremental(archive.spooled(spool), out_dir, step):
                    files.append(name)
                    counts["incremental_book_L2"] = counts.get("incremental_book_L2", 0) + rows
    except OSError as exc:
        raise ExportError(f"cannot write the export under {out_dir}: {exc.strerror or exc}") from None
    finally:
        shutil.rmtree(spool, ignore_errors=True)
    units = len({(u.exchange, u.pair, u.day) for u in stored_units + event_units})
    return ExportResult(to, out_dir, units, files, counts)


def _fetch_archive(ds: Any, sel: Any, out: str | os.PathLike[str]) -> Path | None:
    """The S3 data dir's archive for the selection, downloaded under ``out`` (None: it has none)."""
    import tempfile

    from recorder.export.event_units import fetch_archive

    Path(out).mkdir(parents=True, exist_ok=True)
    dest = Path(tempfile.mkdtemp(prefix=".archive-", dir=out))
    names = lambda v: None if v is None else sorted(v)  # noqa: E731
    n = fetch_archive(ds.filesystem, ds.root, dest, names(sel.exchanges), names(sel.sessions), sel.start_ms, sel.end_ms)
    if not n:
        shutil.rmtree(dest, ignore_errors=True)
        return None
    return dest


def _local_dir(data: str | os.PathLike[str]) -> Path | None:
    text = os.fspath(data)
    return None if text.startswith("s3://") else Path(text)


def _selection(ds: Any, exchanges: Any, pairs: Any, start: Any, end: Any, sessions: Any) -> Any:
    if ds is not None:
        return ds.selection(exchanges=exchanges, pairs=pairs, start=start, end=end, sessions=sessions)
    from recorder.dataset.reader import Dataset

    return Dataset.selection(None, exchanges=exchanges, pairs=pairs, start=start, end=end, sessions=sessions)  # type: ignore[arg-type]


def _archive(local: Path | None, sel: Any, source: str, to: str) -> Any:
    """The archived sessions of the selection that give this export its book events, or None."""
    if source == "snapshots":
        return None
    if local is None:
        if source == "archive":
            raise ExportError("no archive matches the selection (kept when [archive] is enabled): use --from snapshots")
        return None
    from recorder.export.event_units import ArchiveUnits

    def names(v: Any) -> list[str] | None:
        return None if v is None else sorted(v)

    archive = ArchiveUnits(
        local,
        names(sel.exchanges),
        names(sel.pairs),
        names(sel.sessions),
        sel.start_ms,
        sel.end_ms,
    )
    if not archive.sessions:
        if source == "archive":
            raise ExportError("no archive matches the selection (kept when [archive] is enabled): use --from snapshots")
        return None
    return archive


def _out_dir(
    out: str | os.PathLike[str], to: str, units: list[Unit], event_units: list[Unit], depth: int, overwrite: bool
) -> Path:
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise ExportError(f"output {path} is not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"cannot create output directory {path}: {exc.strerror or exc}") from None
    if overwrite:
        return path
    if to == "hftbacktest":
        from recorder.export.hftbacktest import file_name

        planned = [file_name(u) for u in units + event_units]
    elif to == "tardis":
        from recorder.export.tardis import incremental_file, planned_files

        planned = [f for u in units for f in planned_files(u, depth)] + [incremental_file(u) for u in event_units]
    else:
        return path  # nautilus: the catalog is asked what it holds (recorder.export.nautilus)
    clash = next((f for f in planned if (path / f).exists()), None)
    if clash is not None:
        raise ExportError(f"{path / clash} exists: choose another --out or pass --overwrite")
    return path
