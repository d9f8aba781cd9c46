"""How every Parquet file the recorder writes is encoded: the writer's files and compaction's.

The long schema stays as it is (every engine reads it); what changes is how each column is
stored. Chosen by measuring every candidate per column on the real recordings replayed at
100 ms, depth 20 (``benchmarks/test_bytes.py``, docs/benchmarks.md "Bytes per level"):

* rows stay in the writer's order (pair, then time, each snapshot's levels together): a book
  that did not change repeats the previous snapshot 40 rows back and zstd finds it; ordering
  by pair/side/level/time instead came out 1.3-2x larger (a shifted book no longer matches).
* ``price`` / ``quantity`` (and the trades' and quotes' floats): PLAIN. Dictionary indices are
  bit-packed at an odd width, so a book shifted by one level is no longer a byte-aligned repeat
  for zstd; 8-byte values are. BYTE_STREAM_SPLIT lost on every venue (1.5-2x).
* per-snapshot columns repeated on each level row: ``timestamp_ms`` and ``sequence_number``
  DELTA_BINARY_PACKED (runs of equal values with a small regular step), ``capture_latency_ms``
  a dictionary (its runs become RLE runs), ``exchange_time_ms`` / ``update_id`` PLAIN (irregular
  steps: zstd does best on the raw runs).
* strings: dictionary (a handful of values per file), but ``trade_id`` (unique per row): PLAIN.
* zstd level 5 for the writer's files (pyarrow's default is 1): 13 % smaller than level 1 and
  with the encodings above no slower to write than the old defaults (CPU time). Compaction,
  which runs in the background and writes what is kept for good, uses 7: another 4-8 % smaller
  on the real recordings for ~1.2x the write time (9 gains under 1 % more for ~1.3-1.8x; 12
  and up cost far more time for little).
* min/max statistics only where a reader can skip with them (names, times, sequence numbers):
  statistics of prices or levels never prune a row group and cost footer bytes in every file.
* no ``ARROW:schema`` copy in the footer: the Parquet schema alone gives back the same Arrow
  types (int16 level, UTC timestamps, non-null fields), and the copy cost ~1 KB per file.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Iterable, Sequence
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

WRITER_ZSTD_LEVEL = 5
COMPACTION_ZSTD_LEVEL = 7
# Columns compressed harder than the file's level (the level is at least this): the prices and
# quantities hold most of a file's bytes, and the per-snapshot runs under DELTA_BINARY_PACKED
# shrink 3-4x from level 7 on (see the module docstring) for a CPU cost lost in the noise.
_MIN_ZSTD_LEVEL: dict[str, int] = {"price": 7, "quantity": 7, "timestamp_ms": 9, "sequence_number": 9}
# One data page per column chunk: pages are never skipped (no page index), and each page is its
# own zstd frame and header, so the default (a page per 20,000 rows) only cut the matches.
_PAGE_BYTES = 1 << 30
_PAGE_ROWS = 1 << 30
_HAS_MAX_ROWS_PER_PAGE = "max_rows_per_page" in inspect.signature(pq.ParquetWriter.__init__).parameters

# Column name -> Parquet encoding, where the name decides (the type decides the rest).
_DELTA = "DELTA_BINARY_PACKED"
_BY_NAME: dict[str, str] = {
    "timestamp_ms": _DELTA,
    "sequence_number": _DELTA,
    "local_time": _DELTA,
    "exchange_time": _DELTA,
    "trade_id": "PLAIN",
}
_DICTIONARY_BY_NAME = {"capture_latency_ms"}
# Columns a reader never prunes row groups by (every row group holds every value, or no reader
# selects by them: a sequence number or update id is looked up within a pair's time range).
_NO_STATISTICS = {"level", "side", "trade_id", "sequence_number", "update_id"}


def _encoding(field: pa.Field) -> str | None:
    """The column's encoding, or None for a dictionary (pyarrow's default for the rest)."""
    if field.name in _DICTIONARY_BY_NAME:
        return None
    if field.name in _BY_NAME:
        return _BY_NAME[field.name]
    t = field.type
    if pa.types.is_floating(t) or pa.types.is_integer(t) or pa.types.is_timestamp(t):
        return "PLAIN"
    return None  # strings: dictionary; booleans: pyarrow's own (bit-packed)


def _keeps_statistics(field: pa.Field) -> bool:
    t = field.type
    return field.name not in _NO_STATISTICS and not pa.types.is_floating(t) and not pa.types.is_boolean(t)


def _levels(schema: pa.Schema, zstd_level: int) -> int | dict[str, int]:
    """zstd level per column (names are leaf paths only in a flat schema: else one level)."""
    if any(pa.types.is_nested(f.type) for f in schema):
        return zstd_level
    return {f.name: max(zstd_level, _MIN_ZSTD_LEVEL.get(f.name, 0)) for f in schema}


def parquet_options(schema: pa.Schema, zstd_level: int = WRITER_ZSTD_LEVEL) -> dict[str, Any]:
    """Keyword arguments of ``pq.write_table`` / ``pq.ParquetWriter`` for a table of ``schema``."""
    encodings: dict[str, str] = {}
    dictionary: list[str] = []
    for field in schema:
        if pa.types.is_nested(field.type):
            continue  # pyarrow's defaults (the recorder writes none; a caller's table might)
        enc = _encoding(field)
        if enc is not None:
            encodings[field.name] = enc
        elif not pa.types.is_boolean(field.type):
            dictionary.append(field.name)
    options: dict[str, Any] = {
        "compression": "zstd",
        "compression_level": _levels(schema, zstd_level),
        "use_dictionary": dictionary,
        "column_encoding": encodings or None,
        "write_statistics": [f.name for f in schema if _keeps_statistics(f)],
        "store_schema": False,
        "data_page_size": _PAGE_BYTES,
    }
    if _HAS_MAX_ROWS_PER_PAGE:  # pyarrow >= 21; older ones keep their own page per 20,000 rows
        options["max_rows_per_page"] = _PAGE_ROWS
    return options


def write_parquet(
    table: pa.Table,
    where: str | os.PathLike[str] | BinaryIO,
    row_group_size: int,
    sorting_columns: Sequence[pq.SortingColumn] | None = None,
    zstd_level: int = WRITER_ZSTD_LEVEL,
) -> None:
    """Write ``table`` with the recorder's options (the writer's files and compaction's)."""
    pq.write_table(
        table,
        where,
        row_group_size=row_group_size,
        sorting_columns=sorting_columns or None,
        **parquet_options(table.schema, zstd_level),
    )


def write_parquet_pieces(
    schema: pa.Schema,
    pieces: Iterable[pa.Table],
    where: str | os.PathLike[str] | BinaryIO,
    row_group_size: int,
    zstd_level: int = WRITER_ZSTD_LEVEL,
) -> int:
    """Write the tables ``pieces`` one after the other as one file, as :func:`write_parquet`
    writes their concatenation (same options, row groups of ``row_group_size`` rows, each one
    chunk), holding no more than about two row groups' rows at once; returns the rows written.

    The writer builds a file's rows a piece at a time: the whole table of a file would take
    several times the bytes its ring records hold."""
    held: list[pa.Table] = []
    held_rows = rows = 0
    with pq.ParquetWriter(where, schema, **parquet_options(schema, zstd_level)) as writer:
        for piece in pieces:
            held.append(piece)
            held_rows += piece.num_rows
            rows += piece.num_rows
            while held_rows >= row_group_size:
                joined = pa.concat_tables(held)
                writer.write_table(joined.slice(0, row_group_size).combine_chunks(), row_group_size)
                held, held_rows = [joined.slice(row_group_size)], held_rows - row_group_size
        if held_rows or not rows:
            writer.write_table(pa.concat_tables(held or [schema.empty_table()]).combine_chunks(), row_group_size)
    return rows
