"""The two stored formats as compaction sees them: read one small file, merge a group, write it.

The planner and the commit (``compactor.py``, ``store.py``, ``s3store.py``) never look inside a
file; everything format-specific is here. Both formats sort by the dataset's sort keys (pair,
time, session, sequence: ``recorder.layout``) and keep every row / line exactly once. A codec
serves one dataset (books, trades or quotes) in one format.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO, Protocol

import msgspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from recorder.layout import BOOKS, DATASETS, FORMATS, DatasetLayout, partition_layout
from recorder.sinks.parquet_format import COMPACTION_ZSTD_LEVEL, write_parquet

SORT_KEYS = BOOKS.sort_keys


class FormatError(ValueError):
    """A source file cannot be read (one line; the file is left as it is)."""


@dataclass
class Merged:
    """A merged group, ready to be written."""

    rows: int  # Parquet rows / JSONL lines
    first_ts: int  # earliest tick: it goes into the output's name (readers skip files by it)
    write: Callable[[BinaryIO], None]


class Codec(Protocol):
    ext: str  # file suffix without the dot; also the format directory under the data dir

    def merge(self, sources: list[tuple[str, bytes]], row_group_rows: int) -> Merged:
        """``sources``: (file name, content) of each file of the group."""


class ParquetCodec:
    ext = "parquet"

    def __init__(self, layout: DatasetLayout = BOOKS) -> None:
        self.layout = layout

    def merge(self, sources: list[tuple[str, bytes]], row_group_rows: int) -> Merged:
        tables = []
        for name, data in sources:
            try:
                tables.append(read_parquet_bytes(data))
            except (pa.ArrowException, OSError) as exc:
                raise FormatError(f"cannot read {name}: {exc}") from None
        keys = self.layout.sort_keys
        table = merge_tables(tables, keys)
        sorting = [pq.SortingColumn(table.schema.names.index(k)) for k in keys if k in table.schema.names]

        def write(fh: BinaryIO) -> None:
            write_parquet(table, fh, row_group_rows, sorting, COMPACTION_ZSTD_LEVEL)

        first = pc.min(table.column(self.layout.time_column).cast(pa.int64())).as_py()
        return Merged(rows=table.num_rows, first_ts=int(first) // self.layout.time_units_per_ms, write=write)


def read_parquet_bytes(data: bytes) -> pa.Table:
    """A Parquet file's table from its bytes, without Arrow ever holding Python memory.

    ``pq.read_table(pa.BufferReader(data))`` wraps the Python ``bytes`` and scans it as a
    dataset: a worker thread of Arrow's pool can drop the last reference to that wrapper after
    the read has returned (or failed). When that happens while the interpreter exits (a command
    ending right after a read, e.g. on a corrupt file), releasing Python memory needs the GIL,
    the finalizing interpreter ends the thread inside a C++ destructor and the process aborts
    ("terminate called without an active exception", SIGABRT; seen in about 1 exit in 20 right
    after a read). A copy into Arrow memory and a plain, closed ``ParquetFile`` read leave
    nothing of Python's to any Arrow thread.
    """
    out = pa.BufferOutputStream()
    out.write(data)
    with pq.ParquetFile(out.getvalue()) as pf:
        return pf.read()


def merge_tables(tables: list[pa.Table], sort_keys: tuple[str, ...] = SORT_KEYS) -> pa.Table:
    table = pa.concat_tables(tables, promote_options="default")
    # A column newer files have and older ones lack (filled with nulls for them) keeps its place
    # in the newest layout, whichever file of the group comes first.
    widest = max((t.schema.names for t in tables), key=len, default=[])
    if set(widest) == set(table.schema.names):
        table = table.select(widest)
    keys = [(k, "ascending") for k in sort_keys if k in table.schema.names]
    # Arrow's sort is stable: the levels of one snapshot keep their order.
    return table.sort_by(keys)


def _line_key_decoder(layout: DatasetLayout) -> msgspec.json.Decoder:
    """Decodes the fields of a JSONL line the sort needs (the rest is copied byte for byte)."""
    key = msgspec.defstruct(
        f"_LineKey_{layout.name}",
        [("pair", str), (layout.time_column, int), ("session_id", str, ""), ("sequence_number", int, 0)],
    )
    return msgspec.json.Decoder(key)


class JsonlCodec:
    """Nested JSONL (one snapshot per line, as the writer stores it, uncompressed). Lines are
    moved, never re-encoded: a merged file holds exactly the bytes of its sources' lines."""

    ext = "jsonl"

    def __init__(self, layout: DatasetLayout = BOOKS) -> None:
        self.layout = layout
        self._decoder = _line_key_decoder(layout)
        self._time = layout.time_column

    def merge(self, sources: list[tuple[str, bytes]], row_group_rows: int) -> Merged:
        keyed: list[tuple[tuple[str, int, str, int], bytes]] = []
        decode, time_column = self._decoder.decode, self._time
        for name, data in sources:
            for line in data.split(b"\n"):
                if not line.strip():
                    continue
                try:
                    k = decode(line)
                except msgspec.DecodeError as exc:
                    raise FormatError(f"malformed JSONL line in {name}: {exc}") from None
                keyed.append(((k.pair, getattr(k, time_column), k.session_id, k.sequence_number), line))
        keyed.sort(key=lambda kv: kv[0])  # stable: equal keys keep their file order
        if not keyed:
            raise FormatError("no JSONL lines in the group")
        body = b"\n".join(line for _, line in keyed) + b"\n"
        first = min(k[1] for k, _ in keyed) // self.layout.time_units_per_ms
        return Merged(rows=len(keyed), first_ts=first, write=lambda fh: fh.write(body))


CODECS: dict[str, Codec] = {"parquet": ParquetCodec(), "jsonl": JsonlCodec()}
# (dataset, format) -> codec, every dataset of ``recorder.layout``.
_DATASET_CODECS: dict[tuple[str, str], Codec] = {
    (d.name, fmt): ParquetCodec(d) if fmt == "parquet" else JsonlCodec(d) for d in DATASETS.values() for fmt in FORMATS
}


def codec_for(partition: str) -> Codec:
    """``parquet/exchange=.../date=...`` -> the books' Parquet codec; ``trades/jsonl/...`` -> the
    trades' JSONL codec (the partition's leading directories name dataset and format)."""
    try:
        layout, fmt = partition_layout(partition)
    except ValueError:
        raise FormatError(f"unknown format directory in partition {partition}") from None
    return _DATASET_CODECS[(layout.name, fmt)]
