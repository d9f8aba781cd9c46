"""A ring read added to the open segment all at once: numbered, partitioned and held in bulk.

What the writer did record by record (a sequence number per dataset, exchange and pair;
the partition of its dataset, exchange and UTC date; the bytes held; the file-full and memory
bounds that leave a record in the ring), done with one pass of numpy over the read and one
Python step per partition, not per record nor per group (a group's records carry its id for the
segment's life, ``Segment.group_ids``): the result is the same, record for record.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

import numpy as np
import pyarrow as pa

from recorder.writer.batches import utc_date
from recorder.writer.codes import distinct, rank_within
from recorder.writer.intake import Intake
from recorder.writer.lines import line_lengths, lines_bytes
from recorder.writer.segment import Partition, Segment, SeqKey

_MS_PER_DAY = 86_400_000


@dataclass
class Added:
    """What :func:`add_read` took: the read's first ``consumed`` records (the rest stay in the
    ring: a file is full or the segment holds ``rotate_bytes``), each stored one's sequence
    number (``seqs[i]``, -1 for a skipped record), and the newest time stored (ms)."""

    consumed: int
    seqs: np.ndarray
    newest_ts_ms: int | None


def add_read(
    seg: Segment,
    took: Intake,
    committed_seq: dict[SeqKey, int],
    *,
    parquet: bool,
    jsonl: Callable[[np.ndarray, np.ndarray], pa.Array | list[bytes]] | None,
    rotate_bytes: int,
    file_limit: Callable[[str], int | None],
    now_mono: float,
) -> Added:
    """Add the read's usable records to ``seg`` in order, as adding them one by one would, up to
    the first that would be refused. ``jsonl(at, seqs)``: the JSONL lines of records ``at``
    numbered ``seqs`` (``lines.read_lines``; None: no JSONL); ``file_limit(dataset name)``:
    records a file of it may hold (None: no count)."""
    n = len(took.specs)
    usable = np.flatnonzero(took.group >= 0)
    group = _segment_ids(seg, took)[usable]
    numbers = seg.next_numbers(committed_seq)
    seq = numbers[group] + rank_within(group, len(numbers))[0]
    # Partitions: (dataset, exchange, UTC day); the same (dataset, exchange) for a group's records.
    of_group = seg.group_ids.stems()
    day = took.time_ms[usable] // _MS_PER_DAY
    first_day, days = (int(day.min()), int(day.max() - day.min()) + 1) if len(day) else (0, 1)
    part_keys, of_record = distinct(of_group[group] * days + day - first_day)
    part_rank, order, per_part = rank_within(of_record, len(part_keys))  # each partition's records, in order
    at_first = order[np.cumsum(per_part) - per_part]  # each partition's first record
    parts: list[tuple[Any, str, str, int]] = []
    for k in at_first.tolist():
        spec, exchange, _ = seg.group_ids.groups[group[k]]
        ts = int(took.time_ms[usable[k]])
        parts.append((spec, exchange, utc_date(ts), ts))
    # Bytes held per record, and the first record refused (file full, or the segment's bound).
    held = np.where(took.row[usable] < 0, 1, 2) * took.lens[usable] if parquet else np.zeros(len(usable), np.int64)
    lines = None
    if jsonl is not None:
        lines = jsonl(usable, seq)
        held = held + line_lengths(lines)
    refused = seg.est_bytes + np.cumsum(held) - held >= rotate_bytes
    limits = [file_limit(spec.name) for spec, *_ in parts]
    if any(limit is not None for limit in limits):
        count_before = np.array([part.count if (part := _part(seg, p)) else 0 for p in parts], np.int64)[of_record]
        count_before += part_rank
        record_limit = np.array([-1 if v is None else v for v in limits], np.int64)[of_record]
        refused |= (record_limit >= 0) & (count_before >= record_limit)
    cut = int(np.argmax(refused)) if refused.any() else len(usable)
    consumed = int(usable[cut]) if cut < len(usable) else n
    seqs = np.full(n, -1, np.int64)
    seqs[usable[:cut]] = seq[:cut]
    _note(seg, consumed, now_mono)
    if not cut:
        return Added(consumed, seqs, None)
    # Stored: each group's next number, each partition's records (in order).
    seg.numbered(group[:cut])
    if cut < len(usable):
        _, order, per_part = rank_within(of_record[:cut], len(part_keys))
    rows = took.rows[usable[:cut]]
    start = 0
    for p, count in enumerate(per_part.tolist()):
        if not count:
            continue
        at = order[start : start + count]
        start += count
        spec, exchange, date, ts = parts[p]
        part = _part(seg, parts[p])
        if part is None:
            part = seg.parts[(spec.name, exchange, date)] = Partition(spec, exchange, date, ts)
        records = usable[at]
        if parquet:
            part.payloads.extend(_items(took.stored, records))
            _extend(part.seqs, seq[at])
            _extend(part.read_rows, took.row[records])
        if lines is not None:
            part.jsonl += lines_bytes(lines, at)
        part.count += count
        part.rows += int(rows[at].sum())
        seg.stored[spec.name] = seg.stored.get(spec.name, 0) + count
        limit = limits[p]
        seg.full = seg.full or (limit is not None and part.count >= limit)
    seg.snapshots += cut
    seg.est_bytes += int(held[:cut].sum())
    return Added(consumed, seqs, int(took.time_ms[usable[:cut]].max()))


def _segment_ids(seg: Segment, took: Intake) -> np.ndarray:
    """Each record's group id among the segment's (``took.group`` when the read took them,
    as the writer's reads do)."""
    if took.ids is seg.group_ids:
        return took.group
    ids = [seg.group_ids.code(group) for group in took.groups]
    return np.array([*ids, -1], np.int64)[took.group]


def _extend(values: array[int] | list[int], more: np.ndarray) -> None:
    if isinstance(values, array):
        values.frombytes(more.astype(np.int64).tobytes())
    else:
        values.extend(more.tolist())


def _part(seg: Segment, p: tuple[Any, str, str, int]) -> Partition | None:
    spec, exchange, date, _ = p
    return seg.parts.get((spec.name, exchange, date))


def _items(values: list[Any], at: np.ndarray) -> list[Any]:
    """``[values[i] for i in at]``, in C."""
    if len(at) == 1:
        return [values[int(at[0])]]
    return list(itemgetter(*at.tolist())(values))


def _note(seg: Segment, records: int, now_mono: float) -> None:
    """``records`` more consumed (stored or skipped): the segment's clock starts with its first
    (``now_mono``: the writer's monotonic clock, which its rotation by time reads too)."""
    if records:
        seg.records += records
        if seg.started_mono is None:
            seg.started_mono = now_mono
