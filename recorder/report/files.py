"""The report's read of the stored files, one file at a time: a file that cannot be read (random
bytes, truncated, empty, a torn JSONL line) is named and left out, and everything else is
reported. The dataset reader stops at the first bad file by design; the report must not.

Per snapshot it keeps only what the report needs (the top of book, the per-snapshot columns and
``depth_complete``), plus each (session, exchange, pair)'s share of every file's bytes.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.fs as pafs

from recorder.dataset import Dataset, frames
from recorder.dataset.source import DataFile, DatasetError, ListingChanged, Prune, format_roots, list_files
from recorder.writer.batches import SCHEMA

# ``depth_complete`` is new (a later column); files written before it read as null: unknown.
_DEPTH_FIELD = pa.field("depth_complete", pa.bool_())
if "depth_complete" in SCHEMA.names:
    FILE_SCHEMA = SCHEMA
else:
    FILE_SCHEMA = SCHEMA.insert(SCHEMA.get_field_index("verified") + 1, _DEPTH_FIELD)

# One row per stored snapshot: what the report computes from.
TOP_SCHEMA = pa.schema(
    [
        ("session_id", pa.string()),
        ("exchange", pa.string()),
        ("pair", pa.string()),
        ("timestamp_ms", pa.int64()),
        ("sequence_number", pa.int64()),
        ("capture_latency_ms", pa.float64()),
        ("update_id", pa.int64()),
        ("verified", pa.bool_()),
        ("depth_complete", pa.bool_()),
        ("bid_px_0", pa.float64()),
        ("ask_px_0", pa.float64()),
        ("mid", pa.float64()),
        ("spread", pa.float64()),
    ]
)
_KEYS = ["session_id", "exchange", "pair"]
_READ_ERRORS = (pa.ArrowException, OSError, ValueError)


@dataclass
class Unreadable:
    path: str
    error: str  # one line


@dataclass
class StoredData:
    top: pa.Table  # TOP_SCHEMA, one row per readable snapshot
    shares: dict[tuple[str, str, str], dict[str, tuple[int, float]]]  # key -> format -> (files, bytes)
    unreadable: list[Unreadable] = field(default_factory=list)


def _one_line(exc: BaseException, path: str) -> str:
    """The error in one line, without the file's path (the line names it already)."""
    text = " ".join(str(exc).replace(f"'{path}'", "").replace(path, "").split()).replace(" :", ":")
    text = text or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def read_stored(ds: Dataset, sessions: list[str] | None) -> StoredData:
    """Every readable snapshot of the dataset's format (``sessions``: only these); the shares of
    every format present (a pair's bytes in JSONL and Parquet both show).

    A listed file that is gone when read was replaced by a compaction, not corrupt: list again
    (as the dataset reader does), patiently but not forever."""
    deadline = time.monotonic() + _RELIST_DEADLINE_S
    attempt = 0
    while True:
        try:
            return _read_listed(ds, sessions)
        except ListingChanged as exc:
            if time.monotonic() > deadline:
                raise DatasetError(f"files kept changing while reading {ds.location}: {exc}") from None
            attempt += 1
            time.sleep(min(0.5, 0.05 * attempt))


_RELIST_DEADLINE_S = 60.0


def _gone(fs: pafs.FileSystem, path: str) -> bool:
    try:
        return fs.get_file_info(path).type == pafs.FileType.NotFound
    except OSError:
        return False


def _read_listed(ds: Dataset, sessions: list[str] | None) -> StoredData:
    tops: list[pa.Table] = []  # TOP_SCHEMA (JSONL)
    longs: list[pa.Table] = []  # long form, top level only (Parquet)
    shares: dict[tuple[str, str, str], dict[str, tuple[int, float]]] = defaultdict(dict)
    unreadable: list[Unreadable] = []
    fs = ds.filesystem
    for fmt, base in format_roots(fs, ds.root, "auto").items():
        acc: dict[tuple[str, str, str], list[float]] = defaultdict(lambda: [0, 0.0])
        for f in list_files(fs, base, fmt, Prune()):
            try:
                if fmt == "parquet":
                    top, file_shares = _read_parquet(fs, f, sessions, want_top=fmt == ds.format)
                else:
                    top, file_shares, bad_lines = _read_jsonl(fs, f, sessions, want_top=fmt == ds.format)
                    if bad_lines:
                        where = ", ".join(map(str, bad_lines[:5])) + (" ..." if len(bad_lines) > 5 else "")
                        unreadable.append(
                            Unreadable(f.path, f"{len(bad_lines)} malformed line(s) left out (line {where})")
                        )
            except _READ_ERRORS as exc:
                if _gone(fs, f.path):
                    raise ListingChanged(f"{f.path} went away while read") from None
                unreadable.append(Unreadable(f.path, _one_line(exc, f.path)))
                continue
            if top is not None and top.num_rows:
                (longs if fmt == "parquet" else tops).append(top)
            for key, nbytes in file_shares.items():
                acc[key][0] += 1
                acc[key][1] += nbytes
        for key, (nfiles, nbytes) in acc.items():
            shares[key][fmt] = (int(nfiles), nbytes)
    if longs:  # one conversion for every file: per-file sorts cost more than the reads
        tops.append(_top_of_long(pa.concat_tables(longs)))
    top = pa.concat_tables(tops) if tops else TOP_SCHEMA.empty_table()
    return StoredData(top, dict(shares), unreadable)


def _session_filter(sessions: list[str] | None) -> pc.Expression | None:
    return pc.field("session_id").isin(sessions) if sessions is not None else None


def _read_parquet(
    fs: pafs.FileSystem, f: DataFile, sessions: list[str] | None, want_top: bool
) -> tuple[pa.Table | None, dict[tuple[str, str, str], float]]:
    # One read of the file (bounded by the writer's rotation): every row counts for the shares,
    # the top level for the figures.
    table = pads.dataset([f.path], schema=FILE_SCHEMA, format="parquet", filesystem=fs).to_table()
    counts = table.group_by(_KEYS).aggregate([([], "count_all")]).to_pylist()
    shares = {
        (c["session_id"], c["exchange"], c["pair"]): f.size * c["count_all"] / table.num_rows
        for c in counts
        if sessions is None or c["session_id"] in sessions
    }
    if not want_top:
        return None, shares
    expr = pc.field("level").is_null() | (pc.field("level") < 1)
    if (sel := _session_filter(sessions)) is not None:
        expr = expr & sel
    return table.filter(expr), shares


def _top_of_long(long: pa.Table) -> pa.Table:
    """Long-form top-level rows -> one TOP_SCHEMA row per snapshot."""
    long = frames.sort_long(long)
    if not long.num_rows:
        return TOP_SCHEMA.empty_table()
    wide = frames.wide(long, 1)
    if "depth_complete" not in wide.column_names:
        _, runs = frames.snapshot_table(long)
        wide = wide.append_column("depth_complete", long["depth_complete"].take(pa.array(runs.starts)))
    return wide.select(TOP_SCHEMA.names).cast(TOP_SCHEMA)


class _Level(msgspec.Struct):
    price: float
    qty: float


class _Line(msgspec.Struct):
    """A stored JSONL snapshot, as much of it as the report reads."""

    exchange: str
    pair: str
    timestamp_ms: int
    bids: list[_Level]
    asks: list[_Level]
    capture_latency_ms: float | None = None
    sequence_number: int = 0
    update_id: int | None = None
    verified: bool = True
    session_id: str = ""
    depth_complete: bool | None = None


_line_decoder = msgspec.json.Decoder(_Line)


def _read_jsonl(
    fs: pafs.FileSystem, f: DataFile, sessions: list[str] | None, want_top: bool
) -> tuple[pa.Table | None, dict[tuple[str, str, str], float], list[int]]:
    with fs.open_input_stream(f.path) as fh:
        data = fh.read()
    shares: dict[tuple[str, str, str], float] = defaultdict(float)
    cols: dict[str, list[Any]] = {name: [] for name in TOP_SCHEMA.names if name not in ("mid", "spread")}
    bad: list[int] = []
    for number, line in enumerate(data.split(b"\n"), 1):
        if not line.strip():
            continue
        try:
            s = _line_decoder.decode(line)
        except msgspec.DecodeError:
            bad.append(number)  # a torn or garbled line: the others still count
            continue
        if sessions is not None and s.session_id not in sessions:
            continue
        shares[(s.session_id, s.exchange, s.pair)] += len(line) + 1
        if want_top:
            for name in ("session_id", "exchange", "pair", "timestamp_ms", "sequence_number"):
                cols[name].append(getattr(s, name))
            for name in ("capture_latency_ms", "update_id", "verified", "depth_complete"):
                cols[name].append(getattr(s, name))
            cols["bid_px_0"].append(s.bids[0].price if s.bids else None)
            cols["ask_px_0"].append(s.asks[0].price if s.asks else None)
    if not want_top:
        return None, dict(shares), bad
    table = pa.table({k: pa.array(v, TOP_SCHEMA.field(k).type) for k, v in cols.items()})
    bp = pc.fill_null(table["bid_px_0"], np.nan).to_numpy()
    ap = pc.fill_null(table["ask_px_0"], np.nan).to_numpy()
    nan = np.full(len(bp), np.nan)
    metrics = frames.book_metrics(bp, nan, ap, nan)
    table = table.append_column("mid", metrics["mid"]).append_column("spread", metrics["spread"])
    return table.select(TOP_SCHEMA.names), dict(shares), bad
