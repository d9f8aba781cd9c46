"""Where each dataset lives under the data directory (the bottom of the import graph).

Three datasets, each with its own tree of Hive partitions, one per format::

    <data>/parquet/exchange=<ex>/date=<YYYY-MM-DD>/*.parquet          books (as ever)
    <data>/jsonl/exchange=<ex>/date=<YYYY-MM-DD>/*.jsonl
    <data>/trades/parquet/exchange=<ex>/date=<YYYY-MM-DD>/*.parquet   trades
    <data>/trades/jsonl/...
    <data>/quotes/parquet/...                                         quotes
    <data>/quotes/jsonl/...

The books keep the layout they always had (readers and tools already point at ``parquet/``);
the other datasets sit in sibling trees, never inside ``parquet/`` or ``jsonl/``, so a reader
of ``<data>/parquet`` (pyarrow.dataset, DuckDB ``read_parquet('.../**/*.parquet')``) never picks
up a trades file with another schema. Writer, spool (S3 upload), compaction and the dataset
reader all take these paths from here.
"""

from __future__ import annotations

from dataclasses import dataclass

FORMATS = ("parquet", "jsonl")


@dataclass(frozen=True)
class DatasetLayout:
    name: str
    root: str  # directory under the data dir holding the format dirs ("" = the data dir itself)
    # The column whose value names files (first value, ms) and dates partitions, and how many of
    # its units make a millisecond (books: ms; trades/quotes: µs).
    time_column: str
    time_units_per_ms: int
    # Row order inside a compacted file.
    sort_keys: tuple[str, ...]

    def format_dir(self, fmt: str) -> str:
        """``parquet`` / ``trades/parquet``: the directory (relative to the data dir) of a format."""
        return f"{self.root}/{fmt}" if self.root else fmt


BOOKS = DatasetLayout("books", "", "timestamp_ms", 1, ("pair", "timestamp_ms", "session_id", "sequence_number"))
TRADES = DatasetLayout("trades", "trades", "local_time", 1000, ("pair", "local_time", "session_id", "sequence_number"))
QUOTES = DatasetLayout("quotes", "quotes", "local_time", 1000, ("pair", "local_time", "session_id", "sequence_number"))
DATASETS: dict[str, DatasetLayout] = {d.name: d for d in (BOOKS, TRADES, QUOTES)}


def format_dirs() -> list[tuple[DatasetLayout, str, str]]:
    """Every (dataset, format, directory relative to the data dir)."""
    return [(d, fmt, d.format_dir(fmt)) for d in DATASETS.values() for fmt in FORMATS]


def partition_layout(partition: str) -> tuple[DatasetLayout, str]:
    """``trades/parquet/exchange=x/date=d`` -> (TRADES, "parquet"); ValueError when unknown."""
    parts = partition.replace("\\", "/").split("/")
    for d in DATASETS.values():
        if d.root:
            if len(parts) > 1 and parts[0] == d.root and parts[1] in FORMATS:
                return d, parts[1]
        elif parts[0] in FORMATS:
            return d, parts[0]
    raise ValueError(f"unknown dataset or format directory in partition {partition}")
