"""``Dataset.to_dask``: the same selection and pruning as ``table()``, one Dask partition per file.

Listing and pruning (partitions, the file-name time hint) happen once, here; each partition then
reads its one file with the selection's row filter (pushed down to Parquet row groups) on
whichever worker runs it. A snapshot never spans two files, so the wide form (``depth``) is built
per partition too. Columns are Arrow-backed pandas dtypes, the same in every partition (an
int column with nulls in one file and none in another would otherwise change dtype).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from recorder.dataset import frames
from recorder.dataset.decode import one_line
from recorder.dataset.source import DataFile, DatasetError, list_files
from recorder.writer.batches import SCHEMA

if TYPE_CHECKING:
    from recorder.dataset.reader import Dataset, Selection


class _ReadFile:
    """One partition: picklable (the dataset holds only its filesystem, paths and error policy)."""

    def __init__(self, ds: Dataset, sel: Selection, columns: Sequence[str] | None, depth: int | None) -> None:
        self.ds, self.sel, self.columns, self.depth = ds, sel, columns, depth

    def table(self, f: DataFile | None) -> pa.Table:
        if f is None:
            table = SCHEMA.empty_table()
        else:
            try:
                if f.format == "parquet":
                    table = self.ds._read_parquet([f], self.sel, self.depth)
                else:
                    table = self.ds._read_jsonl([f], self.sel, self.depth)
            except OSError as exc:
                if self.ds._is_gone(f.path) or isinstance(exc, FileNotFoundError):
                    raise DatasetError(f"{f.path} went away (compacted?): call to_dask() again") from None
                raise DatasetError(f"cannot read {f.path}: {one_line(exc)}") from None
        if self.depth is not None:
            return frames.wide(table, self.depth)
        table = frames.sort_long(table)
        return table.select(list(self.columns)) if self.columns is not None else table

    def __call__(self, f: DataFile | None) -> Any:
        import pandas as pd

        return self.table(f).to_pandas(types_mapper=pd.ArrowDtype)


def partition_files(ds: Dataset, sel: Selection) -> list[DataFile]:
    """The files a selection reads: partition pruning, then the writer's first-tick name hint."""
    from recorder.dataset.reader import _name_first_ts

    files = list_files(ds.filesystem, ds.base, ds.format, sel.prune())
    if sel.end_ms is not None:
        files = [f for f in files if (_name_first_ts(f.path) or 0) < sel.end_ms]
    return files


def to_dask(ds: Dataset, sel: Selection, columns: Sequence[str] | None, depth: int | None) -> Any:
    try:
        import dask.dataframe as dd
    except ImportError:
        raise DatasetError("to_dask needs Dask: pip install -e '.[fleet]' (or 'dask[dataframe]')") from None
    if depth is not None and columns is not None:
        raise DatasetError("to_dask takes columns (long form) or depth (wide form), not both")
    read = _ReadFile(ds, sel, columns, depth)
    meta = read(None)
    files = partition_files(ds, sel)
    if not files:
        return dd.from_pandas(meta, npartitions=1)
    return dd.from_map(read, files, meta=meta, label="recorder-read", enforce_metadata=False)
