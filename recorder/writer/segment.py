"""The open segment: what the writer has taken from the rings and not yet made durable."""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from recorder.writer.datasets import DatasetSpec
from recorder.writer.groups import GroupIds


@dataclass
class Partition:
    """One (dataset, exchange, UTC date) part of the open segment -> one file per format.

    Its ring records are kept as they came from the ring (msgpack bytes: denser than their
    Arrow rows, and far denser than decoded structs) until the file is written, when its table
    is read out of them a row group at a time (``datasets.build_pieces``). Trades and quotes
    the intake read in bulk keep, besides, their rows in the Arrow columns of their ring read
    (``Intake.columns``, kept by the segment): the file takes its columns from those rather
    than read every record again.
    """

    dataset: DatasetSpec
    exchange: str
    date: str
    first_ts_ms: int
    payloads: list[bytes] = field(default_factory=list)  # Parquet: ring records and their numbers
    # Numbers (and read rows below) as machine ints: a file's column is a view of them, not a
    # conversion of a Python int per record.
    seqs: array[int] | list[int] = field(default_factory=lambda: array("q"))
    jsonl: bytearray = field(default_factory=bytearray)
    count: int = 0
    rows: int = 0
    # Per record of ``payloads``: its row in the segment's read columns of its dataset
    # (``Segment.read_columns``), -1 if it has none (read from the record then).
    read_rows: array[int] | list[int] = field(default_factory=lambda: array("q"))


# (dataset name, exchange, pair): sequence numbers run per dataset, session and pair.
SeqKey = tuple[str, str, str]


@dataclass
class Segment:
    parts: dict[tuple[str, str, str], Partition] = field(default_factory=dict)
    # The groups (dataset, exchange, pair) met, by id; per id, its next sequence number (from
    # the committed one when first met) and whether the segment stored a record of it.
    group_ids: GroupIds = field(default_factory=GroupIds)
    _next: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    _stored: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    started_mono: float | None = None
    snapshots: int = 0  # records stored, all datasets
    stored: dict[str, int] = field(default_factory=dict)  # dataset name -> records stored
    records: int = 0  # ring records consumed, including skipped ones
    est_bytes: int = 0  # bytes held for the open files (ring records, read columns, JSONL text): rotate_bytes
    full: bool = False  # a partition holds as many records as its file may
    # Dataset name -> the Arrow columns of its records of each ring read (``Intake.columns``),
    # one after another: ``Partition.read_rows`` index their rows.
    read_columns: dict[str, list[pa.Table]] = field(default_factory=dict)
    read_column_rows: dict[str, int] = field(default_factory=dict)  # rows in them, per dataset

    @property
    def seq(self) -> dict[SeqKey, int]:
        """(dataset, exchange, pair) -> next sequence number, for the groups this segment stored
        records of (what the commit adds to the committed numbers)."""
        groups = self.group_ids.groups
        return {
            (groups[i][0].name, groups[i][1], groups[i][2]): int(self._next[i])
            for i in np.flatnonzero(self._stored).tolist()
        }

    def next_numbers(self, committed: dict[SeqKey, int]) -> np.ndarray:
        """Each group id's next sequence number (by id): a group first met since the last call
        starts from its ``committed`` number (0: none)."""
        known, count = len(self._next), len(self.group_ids.groups)
        if count > known:
            self._next = np.concatenate([self._next, np.zeros(count - known, np.int64)])
            self._stored = np.concatenate([self._stored, np.zeros(count - known, bool)])
            for i, (spec, exchange, pair) in enumerate(self.group_ids.groups[known:], known):
                self._next[i] = committed.get((spec.name, exchange, pair), 0)
        return self._next

    def numbered(self, ids: np.ndarray) -> None:
        """Records of group ids ``ids`` stored: their groups' next numbers move past them."""
        self._next += np.bincount(ids, minlength=len(self._next))
        self._stored[ids] = True

    def keep_read_columns(self, columns: dict[str, pa.Table]) -> dict[str, int]:
        """Keep a ring read's columns (``Intake.columns``); returns, per dataset, the index of
        their first row among the segment's."""
        base = {}
        for name, table in columns.items():
            base[name] = self.read_column_rows.get(name, 0)
            self.read_columns.setdefault(name, []).append(table)
            self.read_column_rows[name] = base[name] + table.num_rows
        return base

    def columns_of(self, part: Partition) -> pa.Table | None:
        """The columns of ``part``'s records, in order, taken from the reads' columns; None if a
        record has none."""
        rows = np.asarray(part.read_rows, np.int64)
        tables = self.read_columns.get(part.dataset.name)
        if not tables or len(rows) != len(part.payloads) or not len(rows) or rows.min() < 0:
            return None
        table = pa.concat_tables(tables)
        if len(rows) == table.num_rows and rows[0] == 0 and (np.diff(rows) == 1).all():
            return table  # every row of the reads, in order (one exchange's records): no take
        return table.take(pa.array(rows)).combine_chunks()
