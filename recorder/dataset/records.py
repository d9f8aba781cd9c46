"""Reading the flat datasets (trades, quotes): one row per record, as stored.

Same selection and pruning as the books (exchange / pair / session / UTC time range; partition
directories and file names skip what cannot match). The time range applies to ``local_time``
(the receive clock, the one that dates partitions and, for books, the grid). The as-of join
attaches to each trade the book snapshot in force when it was received.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.fs as pafs

from recorder.dataset.decode import one_line
from recorder.dataset.source import DataFile, DatasetError, list_files
from recorder.layout import FORMATS, DatasetLayout
from recorder.writer.datasets import SPECS, decode_jsonl_rows

if TYPE_CHECKING:
    from recorder.dataset.reader import Selection

_US = pa.timestamp("us", tz="UTC")
SORT_KEYS = [
    ("local_time", "ascending"),
    ("exchange", "ascending"),
    ("pair", "ascending"),
    ("session_id", "ascending"),
    ("sequence_number", "ascending"),
]


def dataset_base(fs: pafs.FileSystem, root: str, layout: DatasetLayout, fmt: str) -> tuple[str, str] | None:
    """(directory, format) of a dataset under the opened root: ``fmt`` or, for "auto", Parquet
    when present, else JSONL. None when the dataset has no directory there."""
    for f in FORMATS if fmt == "auto" else (fmt,):
        path = f"{root.rstrip('/')}/{layout.format_dir(f)}"
        try:
            info = fs.get_file_info(path)
        except OSError as exc:
            raise DatasetError(f"cannot list {path}: {exc}") from None
        if info.type == pafs.FileType.Directory:
            return path, f
    return None


def _local_time_bound(ms: int) -> pa.Scalar:
    return pa.scalar(ms * 1000, _US)


def read_records(fs: pafs.FileSystem, base: str, fmt: str, layout: DatasetLayout, sel: Selection) -> pa.Table:
    """The selected rows of one dataset, sorted by local time, exchange, pair, session, sequence.

    A compaction that swaps a partition between our listing and our read makes a listed file
    vanish: list again (a few times), as the books' reader does."""
    for attempt in range(_ATTEMPTS):
        try:
            return _read_listed(fs, base, fmt, layout, sel)
        except _Vanished:
            time.sleep(0.05 * (attempt + 1))
    return _read_listed(fs, base, fmt, layout, sel, last=True)


_ATTEMPTS = 5


class _Vanished(Exception):
    pass


def _read_listed(
    fs: pafs.FileSystem, base: str, fmt: str, layout: DatasetLayout, sel: Selection, last: bool = False
) -> pa.Table:
    from recorder.dataset.reader import _name_first_ts

    spec = SPECS[layout.name]
    files = list_files(fs, base, fmt, sel.prune())
    if sel.end_ms is not None:
        # The writer (and compaction) name a file after its first (earliest) local time, in ms.
        files = [f for f in files if (_name_first_ts(f.path) or 0) < sel.end_ms]
    if not files:
        return spec.schema.empty_table()
    expr = sel.expression("local_time", _local_time_bound)
    try:
        if fmt == "parquet":
            dataset = pads.dataset([f.path for f in files], schema=spec.schema, format="parquet", filesystem=fs)
            table = dataset.to_table(filter=expr)
        else:
            table = pa.concat_tables([_jsonl_table(fs, f, layout) for f in files])
            if expr is not None:
                table = table.filter(expr)
    except (pa.ArrowException, OSError) as exc:
        if not last and _any_gone(fs, files):
            raise _Vanished from None
        # One line naming the dataset: a damaged file is not silently left out.
        raise DatasetError(f"cannot read the {layout.name} under {base}: {one_line(exc)}") from None
    return table.sort_by(SORT_KEYS) if table.num_rows else table


def _any_gone(fs: pafs.FileSystem, files: list[DataFile]) -> bool:
    try:
        return any(i.type == pafs.FileType.NotFound for i in fs.get_file_info([f.path for f in files]))
    except OSError:
        return False


def _jsonl_table(fs: pafs.FileSystem, f: DataFile, layout: DatasetLayout) -> pa.Table:
    spec = SPECS[layout.name]
    with fs.open_input_stream(f.path) as fh:
        data = fh.read()
    try:
        rows = decode_jsonl_rows(spec, data)
    except msgspec.DecodeError as exc:
        raise DatasetError(f"malformed JSONL file {f.path}: {exc}") from None
    columns = {name: [getattr(r, name) for r in rows] for name in spec.schema.names}
    arrays = [
        pa.array(columns[field.name], pa.int64()).cast(field.type)
        if pa.types.is_timestamp(field.type)
        else pa.array(columns[field.name], field.type)
        for field in spec.schema
    ]
    return pa.Table.from_arrays(arrays, schema=spec.schema)


def asof_join(trades: pa.Table, books: pa.Table, max_age_ms: int | None = None) -> pa.Table:
    """``trades`` with, on each row, the columns of the last book row (``books``: one row per
    snapshot, e.g. ``Dataset.wide``) of the same exchange and pair whose ``timestamp_ms`` is at or
    before the trade's ``local_time``: the snapshot's own columns as ``book_<name>``
    (``book_timestamp_ms``, ``book_sequence_number``, ...), its levels and metrics as named in
    ``wide`` (``bid_px_0``, ``mid``, ...); all null where no snapshot precedes the trade."""
    n = trades.num_rows
    take = np.full(n, -1, np.int64)
    if n and books.num_rows:
        t_ms = pc.divide(trades["local_time"].cast(pa.int64()), 1000).to_numpy()
        b_ms = books["timestamp_ms"].to_numpy()
        t_key = _keys(trades)
        b_key = _keys(books)
        for key in set(t_key.tolist()):
            rows_t = np.flatnonzero(t_key == key)
            rows_b = np.flatnonzero(b_key == key)
            if not len(rows_b):
                continue
            order = rows_b[np.argsort(b_ms[rows_b], kind="stable")]
            pos = np.searchsorted(b_ms[order], t_ms[rows_t], side="right") - 1
            found = pos >= 0
            if max_age_ms is not None:
                found &= t_ms[rows_t] - b_ms[order[np.maximum(pos, 0)]] <= max_age_ms
            take[rows_t[found]] = order[pos[found]]
    indices = pa.array(take, pa.int64(), mask=take < 0)
    out = trades
    for name in books.column_names:
        if name in ("exchange", "pair"):
            continue
        col = books[name].take(indices)
        per_level = name.startswith(("bid_", "ask_")) or name in ("mid", "spread", "microprice")
        out = out.append_column(name if per_level else f"book_{name}", col)
    return out


def _keys(table: pa.Table) -> np.ndarray:
    ex = table["exchange"].to_pylist()
    pair = table["pair"].to_pylist()
    return np.array([f"{e}\x00{p}" for e, p in zip(ex, pair, strict=True)], dtype=object)
