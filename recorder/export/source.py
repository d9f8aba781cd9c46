"""What an export reads: the stored data cut into (exchange, pair, UTC day) units, each read in
bounded chunks.

A unit's books come as :class:`BookChunk` s (one hour of one pair from Parquet, whose filters
push down to row groups; a whole day from JSONL, where every read decodes the files again),
its trades and quotes as Arrow tables of that pair and day, when the dataset has them. No
exporter ever holds more than one pair-day, so a month of data exports in a pair-day of memory.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.fs as pafs

from recorder.dataset import DataFile, Dataset, DatasetError, Selection
from recorder.dataset.frames import snapshot_table, sort_long
from recorder.dataset.records import dataset_base
from recorder.dataset.source import list_files
from recorder.dataset.timeutil import MS_PER_DAY, to_ms
from recorder.export.symbols import ExportError
from recorder.layout import QUOTES, TRADES

HOUR_MS = 3_600_000
_DAY_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


@dataclass(frozen=True)
class Unit:
    """One output unit: a pair of an exchange on one UTC day."""

    exchange: str
    pair: str
    day: str  # YYYY-MM-DD

    @property
    def start_ms(self) -> int:
        return to_ms(self.day)


@dataclass
class BookChunk:
    """Consecutive snapshots of one pair, in time order.

    Per snapshot: ``ts_ms`` (the grid tick: local time), ``exch_ms`` (the venue's time of the last
    message in the book; the tick where the venue gave none), ``sequence``. Levels as grids of
    shape (snapshots, depth), best first, NaN beyond a side's depth.
    """

    ts_ms: np.ndarray
    exch_ms: np.ndarray
    sequence: np.ndarray
    bid_px: np.ndarray
    bid_qty: np.ndarray
    ask_px: np.ndarray
    ask_qty: np.ndarray

    def __len__(self) -> int:
        return len(self.ts_ms)

    @property
    def depth(self) -> int:
        return self.bid_px.shape[1]


def book_chunk(table: pa.Table) -> BookChunk:
    """A long-form table (one pair) -> its snapshots as level grids."""
    table = sort_long(table)
    snaps, runs = snapshot_table(table)
    n = len(runs.starts)
    ts = snaps["timestamp_ms"].to_numpy() if n else np.zeros(0, np.int64)
    exch = snaps["exchange_time_ms"].to_numpy(zero_copy_only=False) if n else np.zeros(0)
    exch = np.where(np.isnan(exch.astype(np.float64)), ts, exch).astype(np.int64) if n else ts
    levels = runs.level
    depth = int(levels.max()) + 1 if len(levels) and levels.max() >= 0 else 1
    grids = []
    for mask in (runs.is_bid, runs.is_ask):
        sel = mask & (levels >= 0)
        px = np.full((n, depth), np.nan)
        qty = np.full((n, depth), np.nan)
        px[runs.snap_of_row[sel], levels[sel]] = runs.price[sel]
        qty[runs.snap_of_row[sel], levels[sel]] = runs.qty[sel]
        grids += [px, qty]
    seq = snaps["sequence_number"].to_numpy() if n else np.zeros(0, np.int64)
    return BookChunk(ts, exch, seq, *grids)


class Source:
    """A dataset and a selection, walked unit by unit."""

    def __init__(self, ds: Dataset, sel: Selection) -> None:
        self.ds, self.sel = ds, sel

    def units(self) -> list[Unit]:
        """Every (exchange, pair, day) with stored books, trades or quotes in the selection, sorted."""
        found: set[Unit] = set()
        for fmt, f in self._data_files():
            day = f.partition.get("date")
            if day is None:
                continue
            if not _DAY_RE.fullmatch(day):  # it names output files: no '../'
                raise ExportError(f"invalid date partition {day!r} in {f.path}: expected date=YYYY-MM-DD")
            for ex, pair in _file_pairs(self.ds.filesystem, fmt, f.path):
                if self.sel.exchanges is not None and ex not in self.sel.exchanges:
                    continue
                if self.sel.pairs is not None and pair not in self.sel.pairs:
                    continue
                found.add(Unit(ex, pair, day))
        return sorted(found, key=lambda u: (u.exchange, u.pair, u.day))

    def _data_files(self) -> Iterator[tuple[str, DataFile]]:
        """(format, file) of the books, then of the trades and quotes datasets (their own trees)."""
        for f in self.ds.files(**self._select()):
            yield self.ds.format, f
        for layout in (TRADES, QUOTES):
            found = dataset_base(self.ds.filesystem, self.ds.root, layout, "auto")
            if found is not None:
                base, fmt = found
                for f in list_files(self.ds.filesystem, base, fmt, self.sel.prune()):
                    yield fmt, f

    def _select(self, unit: Unit | None = None, lo: int | None = None, hi: int | None = None) -> dict[str, Any]:
        start, end = self.sel.start_ms, self.sel.end_ms
        if lo is not None:
            start = lo if start is None else max(start, lo)
        if hi is not None:
            end = hi if end is None else min(end, hi)
        return {
            "exchanges": [unit.exchange] if unit else self.sel.exchanges,
            "pairs": [unit.pair] if unit else self.sel.pairs,
            "sessions": self.sel.sessions,
            "start": start,
            "end": end,
        }

    def window(self, unit: Unit) -> tuple[int, int] | None:
        """The unit's day cut to the selection's time range: [start, end) ms; None if empty."""
        return unit_window(unit, self.sel.start_ms, self.sel.end_ms)

    def windows(self, unit: Unit) -> list[tuple[int, int]]:
        """The unit's window in the pieces it is read in: hours from Parquet (whose filters push
        down to row groups), the whole day from JSONL (where every read decodes the files again)."""
        window = self.window(unit)
        if window is None:
            return []
        step = HOUR_MS if self.ds.format == "parquet" else MS_PER_DAY
        return [(lo, min(window[1], lo + step)) for lo in range(window[0], window[1], step)]

    def books(self, unit: Unit, window: tuple[int, int] | None = None) -> Iterator[BookChunk]:
        """The unit's books (or those of one of its :meth:`windows`), a chunk per window."""
        for lo, hi in [window] if window is not None else self.windows(unit):
            table = self.ds.table(**self._select(unit, lo, hi))
            if table.num_rows:
                yield book_chunk(table)

    def trades(self, unit: Unit, window: tuple[int, int] | None = None) -> pa.Table | None:
        """The pair-day's trades (or a window's), or None where the dataset has no trades (reader or data)."""
        return self._records("trades", unit, window)

    def quotes(self, unit: Unit, window: tuple[int, int] | None = None) -> pa.Table | None:
        return self._records("quotes", unit, window)

    def _records(self, kind: str, unit: Unit, window: tuple[int, int] | None = None) -> pa.Table | None:
        read = getattr(self.ds, kind, None)  # trades()/quotes() arrive with the trades dataset
        window = window or self.window(unit)
        if read is None or window is None:
            return None
        table = read(**self._select(unit, *window))
        return table if table.num_rows else None

    def prices_and_sizes(self, unit: Unit) -> tuple[np.ndarray, np.ndarray]:
        """Every distinct price and size of a pair-day (books, trades, quotes): for precisions."""
        prices: list[np.ndarray] = []
        sizes: list[np.ndarray] = []
        for chunk in self.books(unit):
            prices += [np.unique(chunk.bid_px), np.unique(chunk.ask_px)]
            sizes += [np.unique(chunk.bid_qty), np.unique(chunk.ask_qty)]
        for window in self.windows(unit):  # a window at a time: a busy day's trades need not fit
            trades = self.trades(unit, window)
            if trades is not None:
                prices.append(np.unique(trades["price"].to_numpy()))
                sizes.append(np.unique(trades["quantity"].to_numpy()))
            quotes = self.quotes(unit, window)
            if quotes is not None:
                for col, into in (("bid_price", prices), ("ask_price", prices), ("bid_qty", sizes), ("ask_qty", sizes)):
                    into.append(np.unique(quotes[col].to_numpy(zero_copy_only=False).astype(np.float64)))
        cat = [np.zeros(0)]
        return np.unique(np.concatenate(prices or cat)), np.unique(np.concatenate(sizes or cat))


class _Keys(msgspec.Struct):
    exchange: str
    pair: str


_keys_decoder = msgspec.json.Decoder(_Keys)


def _file_pairs(fs: pafs.FileSystem, fmt: str, path: str) -> set[tuple[str, str]]:
    """(exchange, pair) of every row of one data file, reading only those two columns."""
    if fmt == "parquet":
        try:
            t = pads.dataset(path, format="parquet", filesystem=fs).to_table(columns=["exchange", "pair"])
        except (OSError, pa.ArrowInvalid) as exc:
            raise DatasetError(f"cannot read {path}: {exc}") from None
        t = t.group_by(["exchange", "pair"]).aggregate([])
        return set(zip(t["exchange"].to_pylist(), t["pair"].to_pylist(), strict=True))
    out: set[tuple[str, str]] = set()
    try:
        with fs.open_input_stream(path) as fh:
            data = fh.read()
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from None
    for line in data.split(b"\n"):
        if line.strip():
            try:
                k = _keys_decoder.decode(line)
            except msgspec.DecodeError:
                raise DatasetError(f"malformed JSONL file {path}") from None
            out.add((k.exchange, k.pair))
    return out


def decimals(values: np.ndarray, most: int = 12) -> int:
    """The fewest decimal places that write every value exactly (prices, sizes as stored)."""
    v = np.abs(values[np.isfinite(values)])
    if not len(v):
        return 0
    for d in range(most + 1):
        scaled = v * 10.0**d
        if np.all(np.abs(scaled - np.round(scaled)) <= 1e-9 * np.maximum(1.0, scaled)):
            return d
    return most


def unit_window(unit: Unit, start_ms: int | None, end_ms: int | None) -> tuple[int, int] | None:
    """The unit's day cut to a time range: [start, end) ms; None if empty."""
    lo = max(unit.start_ms, start_ms or unit.start_ms)
    hi = min(unit.start_ms + MS_PER_DAY, end_ms or unit.start_ms + MS_PER_DAY)
    return (lo, hi) if hi > lo else None


def day_of(ms: int) -> str:
    return (dt.date(1970, 1, 1) + dt.timedelta(days=ms // MS_PER_DAY)).isoformat()
