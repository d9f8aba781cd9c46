"""Exports of stored data into formats backtesters read: ``export(data, to=..., out=...)``.

- ``hftbacktest``: ``.npz`` event arrays, one per pair and day (``recorder.export.hftbacktest``);
- ``nautilus``: a nautilus_trader ``ParquetDataCatalog`` (``recorder.export.nautilus``);
- ``tardis``: tardis.dev CSV files, gzip (``recorder.export.tardis``).

Everything is built from the stored snapshots (and trades and quotes where the dataset has
them). Event-level exports (every book change: hftbacktest depth events, tardis
``incremental_book_L2``, nautilus ``OrderBookDelta``) need the lossless archive and are not made.
The data is read one pair-day at a time (books in chunks of an hour), so memory stays bounded
however long the selection.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recorder.dataset import DatasetError, open_dataset
from recorder.export.source import Source, Unit
from recorder.export.symbols import ExportError

FORMATS = ("hftbacktest", "nautilus", "tardis")

__all__ = ["FORMATS", "DatasetError", "ExportError", "ExportResult", "export"]


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
) -> ExportResult:
    """Export a selection of the data at ``data`` (a data dir or ``s3://bucket/prefix``) to the
    format ``to`` under the directory ``out``. Selection keywords as ``recorder.dataset``;
    ``depth``: levels per side of tardis ``book_snapshot_{depth}``; ``progress(done, total, unit)``
    is called after each pair-day. Raises ExportError / DatasetError (one-line messages)."""
    if to not in FORMATS:
        raise ExportError(f"unknown export format {to!r}: use {', '.join(FORMATS)}")
    if to == "tardis" and not 1 <= depth <= 1000:
        raise ExportError(f"invalid depth {depth}: use 1..1000")
    ds = open_dataset(data, endpoint_url=endpoint_url)
    sel = ds.selection(exchanges=exchanges, pairs=pairs, start=start, end=end, sessions=sessions)
    source = Source(ds, sel)
    units = source.units()
    if not units:
        raise ExportError("nothing to export: no stored books match the selection")
    out_dir = _out_dir(out, to, units, depth, overwrite)
    done = [0]

    def advance_for(unit_list: list[Unit]) -> Callable[[], None]:
        it = iter(unit_list)

        def advance() -> None:
            done[0] += 1
            if progress is not None:
                progress(done[0], len(units), next(it))

        return advance

    try:
        if to == "hftbacktest":
            from recorder.export import hftbacktest

            files, counts = hftbacktest.export_units(source, units, out_dir, advance_for(units))
        elif to == "nautilus":
            from recorder.export import nautilus

            ordered = sorted(units, key=lambda u: (u.exchange, u.pair, u.day))
            files, counts = nautilus.export_units(source, ordered, out_dir, advance_for(ordered), overwrite)
        else:
            from recorder.export import tardis

            files, counts = [], {}
            step = advance_for(units)
            for unit in units:
                for kind, n in tardis.export_unit(source, unit, out_dir, depth).items():
                    counts[kind] = counts.get(kind, 0) + n
                files += [f for f in tardis.planned_files(unit, depth) if (out_dir / f).exists()]
                step()
    except OSError as exc:
        raise ExportError(f"cannot write the export under {out_dir}: {exc.strerror or exc}") from None
    return ExportResult(to, out_dir, len(units), files, counts)


def _out_dir(out: str | os.PathLike[str], to: str, units: list[Unit], depth: int, overwrite: bool) -> Path:
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

        planned = [file_name(u) for u in units]
    elif to == "tardis":
        from recorder.export.tardis import planned_files

        planned = [f for u in units for f in planned_files(u, depth)]
    else:
        return path  # nautilus: the catalog is asked what it holds (recorder.export.nautilus)
    clash = next((f for f in planned if (path / f).exists()), None)
    if clash is not None:
        raise ExportError(f"{path / clash} exists: choose another --out or pass --overwrite")
    return path
