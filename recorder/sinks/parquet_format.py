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
  a dictionary (its runs become RLE runs), ``exchange_time_ms`` / ``update_id`` whichever of
  DELTA_BINARY_PACKED and PLAIN is smaller on the file's first rows: delta wins where the steps
  are regular (Bybit: update ids +1, times in 100 ms steps; its file 12 % smaller), plain
  where they are not (Kraken's update id is a µs time, USD-M's jumps by thousands).
* strings: dictionary (a handful of values per file), but ``trade_id`` (unique per row): PLAIN.
* zstd level 5 for the writer's files (pyarrow's default is 1): 13 % smaller than level 1 and
  with the encodings above no slower to write than the old defaults (CPU time). Compaction,
  which runs in the background and writes what is kept for good, uses 7: another 4-8 % smaller
  on the real recordings for ~1.2x the write time (9 gains under 1 % more for ~1.3-1.8x; 12
  and up cost far more time for little). In a book file the DELTA runs take at least 9 and the
  prices 7 (below).
* one data page per column chunk (pyarrow cuts a page at 1 MB or 20,000 rows): every page is a
  zstd frame of its own, so a book that repeats across a page edge is stored twice; nothing
  reads pages alone (no page index). 10-25 % smaller on the files of 40 k rows and more, and
  faster to write (fewer frames).
* min/max statistics only where a reader can skip with them (names, times): statistics of
  prices, levels, sequence numbers or update ids never prune a row group (a reader selects by
  pair and time) and cost footer and page header bytes in every file.
* no ``ARROW:schema`` copy in the footer: the Parquet schema alone gives back the same Arrow
  types (int16 level, UTC timestamps, non-null fields), and the copy cost ~1 KB per file.
"""

from __future__ import annotations

import inspect
import itertools
import os
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

WRITER_ZSTD_LEVEL = 5
COMPACTION_ZSTD_LEVEL = 7
# Rows of a file's start that decide the encoding of the columns in ``_DELTA_OR_PLAIN``.
SAMPLE_ROWS = 65_536

# Column name -> Parquet encoding, where the name decides (the type decides the rest).
_DELTA = "DELTA_BINARY_PACKED"
_BY_NAME: dict[str, str] = {
    "timestamp_ms": _DELTA,
    "sequence_number": _DELTA,
    "local_time": _DELTA,
    "exchange_time": _DELTA,
    "trade_id": "PLAIN",
}
# Steps regular on some venues (Bybit: update ids +1, times in 100 ms), irregular on others
# (Kraken's update id is a µs time): each file takes whichever is smaller on its first rows.
_DELTA_OR_PLAIN = {"exchange_time_ms", "update_id"}
_DICTIONARY_BY_NAME = {"capture_latency_ms"}
# Columns a reader never prunes row groups by (every row group holds every value, or no reader
# selects by them: a sequence number or update id is looked up within a pair's time range).
_NO_STATISTICS = {"level", "side", "trade_id", "sequence_number", "update_id"}
# zstd level at least this, in a book file (one with a ``level`` column): the DELTA runs of its
# per-snapshot columns shrink 3-4x from level 7 on for next to no CPU (the packed runs are
# small), and a book's prices repeat snapshot after snapshot at offsets level 7's lazy matching
# finds (5 % smaller on the real recordings for ~3 % of the write). Not quantities (3 % for 4-20 %
# of the write) nor trades' prices (a trade does not repeat the one before).
_MIN_LEVEL_BOOK = {"price": 7}
_MIN_LEVEL_BOOK_DELTA = 9
# One data page per column chunk: pages are never skipped (no page index written), and each page
# is its own zstd frame and header, so smaller pages (pyarrow: 1 MB or 20,000 rows) only cut the
# matches zstd would find across them.
_PAGE_BYTES = 1 << 30
_PAGE_ROWS = 1 << 30
_HAS_MAX_ROWS_PER_PAGE = "max_rows_per_page" in inspect.signature(pq.ParquetWriter.__init__).parameters


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


def _level(name: str, encoding: str | None, zstd_level: int, book: bool) -> int:
    if not book:
        return zstd_level
    return max(zstd_level, _MIN_LEVEL_BOOK_DELTA if encoding == _DELTA else _MIN_LEVEL_BOOK.get(name, 0))


def _one_page() -> dict[str, int]:
    if _HAS_MAX_ROWS_PER_PAGE:  # newer pyarrow; older ones page by bytes only (or 20,000 rows)
        return {"data_page_size": _PAGE_BYTES, "max_rows_per_page": _PAGE_ROWS}
    return {"data_page_size": _PAGE_BYTES}


def _chunk_bytes(sample: pa.Table, name: str, encoding: str, zstd_level: int, book: bool) -> int:
    """Compressed bytes of the column ``name`` of ``sample`` alone, as one page of ``encoding``."""
    out = pa.BufferOutputStream()
    pq.write_table(
        sample.select([name]),
        out,
        compression="zstd",
        compression_level=_level(name, encoding, zstd_level, book),
        use_dictionary=False,
        column_encoding={name: encoding},
        write_statistics=False,
        store_schema=False,
        **_one_page(),
    )
    return pq.read_metadata(pa.BufferReader(out.getvalue())).row_group(0).column(0).total_compressed_size


def _delta_wins(sample: pa.Table, name: str, zstd_level: int, book: bool) -> bool:
    if sample.column(name).null_count == sample.num_rows:
        return False
    return _chunk_bytes(sample, name, _DELTA, zstd_level, book) < _chunk_bytes(sample, name, "PLAIN", zstd_level, book)


def parquet_options(
    schema: pa.Schema, zstd_level: int = WRITER_ZSTD_LEVEL, sample: pa.Table | None = None
) -> dict[str, Any]:
    """Keyword arguments of ``pq.write_table`` / ``pq.ParquetWriter`` for a table of ``schema``
    whose first rows are ``sample`` (the first ``SAMPLE_ROWS`` are used; None: PLAIN for the
    columns that try both)."""
    if sample is not None:
        sample = sample.slice(0, SAMPLE_ROWS)
    book = "level" in schema.names
    encodings: dict[str, str] = {}
    dictionary: list[str] = []
    for field in schema:
        if pa.types.is_nested(field.type):
            continue  # pyarrow's defaults (the recorder writes none; a caller's table might)
        enc = _encoding(field)
        if field.name in _DELTA_OR_PLAIN and pa.types.is_integer(field.type) and sample is not None:
            enc = _DELTA if _delta_wins(sample, field.name, zstd_level, book) else enc
        if enc is not None:
            encodings[field.name] = enc
        elif not pa.types.is_boolean(field.type):
            dictionary.append(field.name)
    flat = not any(pa.types.is_nested(f.type) for f in schema)  # else names are not leaf paths
    return {
        "compression": "zstd",
        "compression_level": (
            {f.name: _level(f.name, encodings.get(f.name), zstd_level, book) for f in schema} if flat else zstd_level
        ),
        "use_dictionary": dictionary,
        "column_encoding": encodings or None,
        "write_statistics": [f.name for f in schema if _keeps_statistics(f)],
        "store_schema": False,
        **_one_page(),
    }


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
        **parquet_options(table.schema, zstd_level, table),
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
    several times the bytes its ring records hold.

    A string column of ``schema`` may come as a dictionary array of strings (the writer's
    few-valued strings: it takes and writes them faster). The file is the same, byte for byte:
    each row group's dictionary is made the one Parquet builds of the strings (the values it
    holds, in the order they first appear), and without the Arrow schema in the footer the
    column reads back as the strings."""
    pieces = iter(pieces)
    first = list(_first_rows(pieces, SAMPLE_ROWS))  # the options' sample, as write_parquet's
    sample = pa.concat_tables(first) if first else schema.empty_table()
    written = _with_dictionaries(schema, first[0].schema if first else schema)
    held: list[pa.Table] = []
    held_rows = rows = 0
    with pq.ParquetWriter(where, written, **parquet_options(written, zstd_level, sample)) as writer:

        def write(table: pa.Table) -> None:
            writer.write_table(_as_written(table, written), row_group_size)

        for piece in itertools.chain(first, pieces):
            held.append(piece)
            held_rows += piece.num_rows
            rows += piece.num_rows
            while held_rows >= row_group_size:
                joined = pa.concat_tables(held)
                write(joined.slice(0, row_group_size))
                held, held_rows = [joined.slice(row_group_size)], held_rows - row_group_size
        if held_rows or not rows:
            write(pa.concat_tables(held or [written.empty_table()]))
    return rows


def _with_dictionaries(schema: pa.Schema, given: pa.Schema) -> pa.Schema:
    """``schema``, its string fields that are dictionaries of strings in ``given`` such."""
    fields = []
    for field in schema:
        typ = given.field(field.name).type if field.name in given.names else field.type
        dictionary = pa.types.is_dictionary(typ) and typ.value_type == field.type
        fields.append(field.with_type(typ) if dictionary else field)
    return pa.schema(fields, metadata=schema.metadata)


def _as_written(table: pa.Table, written: pa.Schema) -> pa.Table:
    """A row group's table of ``written``'s types, each dictionary one chunk and the one Parquet
    makes of the column's strings: the values the row group holds, in the order of their first
    row (any other order or unused value would change the file's bytes). Other columns stay in
    their chunks: Parquet writes a column chunk of several the same."""
    columns = []
    for field in written:
        column = table.column(field.name)
        if pa.types.is_dictionary(field.type):
            column = column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
            column = _first_seen_dictionary(column, field.type)
        elif column.type != field.type:
            column = column.cast(field.type)
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=written)


def _first_seen_dictionary(column: pa.Array, typ: pa.DictionaryType) -> pa.DictionaryArray:
    if not pa.types.is_dictionary(column.type) or column.null_count:
        plain = column.cast(typ.value_type) if pa.types.is_dictionary(column.type) else column
        return plain.dictionary_encode().cast(typ)
    if len(column.dictionary) == 1:  # one value (a file's session, its exchange): in order
        return column
    indices = column.indices
    seen = pc.unique(indices)  # in the order of their first row
    if len(seen) == len(column.dictionary) and (seen.to_numpy() == np.arange(len(seen))).all():
        return column
    new_index = np.zeros(len(column.dictionary), indices.type.to_pandas_dtype())
    new_index[seen.to_numpy()] = np.arange(len(seen))
    remapped = pa.array(new_index[indices.to_numpy()], indices.type)
    return pa.DictionaryArray.from_arrays(remapped, column.dictionary.take(seen))


def _first_rows(pieces: Iterator[pa.Table], rows: int) -> Iterator[pa.Table]:
    """Pieces taken from ``pieces`` until they hold ``rows`` rows (or it ends)."""
    taken = 0
    while taken < rows:
        piece = next(pieces, None)
        if piece is None:
            return
        taken += piece.num_rows
        yield piece
