"""The open segment: what the writer has taken from the rings and not yet made durable."""

from __future__ import annotations

from dataclasses import dataclass, field

from recorder.writer.datasets import DatasetSpec


@dataclass
class Partition:
    """One (dataset, exchange, UTC date) part of the open segment -> one file per format.

    Its ring records are kept as they came from the ring (msgpack bytes: denser than their
    Arrow rows, and far denser than decoded structs) until the file is written, when its table
    is read out of them in one go (``datasets.build_table``).
    """

    dataset: DatasetSpec
    exchange: str
    date: str
    first_ts_ms: int
    payloads: list[bytes] = field(default_factory=list)  # Parquet: ring records and their numbers
    seqs: list[int] = field(default_factory=list)
    jsonl: bytearray = field(default_factory=bytearray)
    count: int = 0
    rows: int = 0


# (dataset name, exchange, pair): sequence numbers run per dataset, session and pair.
SeqKey = tuple[str, str, str]


@dataclass
class Segment:
    parts: dict[tuple[str, str, str], Partition] = field(default_factory=dict)
    # (dataset, exchange, pair) -> next sequence number, for pairs seen in this segment
    seq: dict[SeqKey, int] = field(default_factory=dict)
    started_mono: float | None = None
    snapshots: int = 0  # records stored, all datasets
    stored: dict[str, int] = field(default_factory=dict)  # dataset name -> records stored
    records: int = 0  # ring records consumed, including skipped ones
    est_bytes: int = 0  # bytes held for the open files (ring records, JSONL text): rotate_bytes
    full: bool = False  # a partition holds as many records as its file may
