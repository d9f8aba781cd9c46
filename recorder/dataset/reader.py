"""The dataset reader: select by exchange, pair, session and UTC time range; read as Arrow, pandas,
polars, wide top-N rows or book objects in time order; as-of lookups."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs

from recorder.dataset import args, frames, records
from recorder.dataset.decode import Unreadable, one_line, read_jsonl, read_parquet
from recorder.dataset.frames import BookSnapshot
from recorder.dataset.source import (
    DataFile,
    DatasetError,
    ListingChanged,
    Prune,
    format_roots,
    list_files,
    resolve,
)
from recorder.dataset.timeutil import MAX_MS, MIN_MS, MS_PER_DAY, TimeLike, span_ms, to_ms, utc_date
from recorder.layout import QUOTES, TRADES, DatasetLayout
from recorder.model import Snapshot
from recorder.writer.batches import SCHEMA, snapshots_to_batch

_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# A compaction on an object store can replace a partition's files between our listing and our
# read, once per partition it commits; list again, patiently (a loaded machine makes each
# attempt slow and the compaction's steps land in between), but not forever.
_READ_DEADLINE_S = 60.0


@dataclass(frozen=True)
class Selection:
    exchanges: frozenset[str] | None = None
    pairs: frozenset[str] | None = None
    sessions: frozenset[str] | None = None
    start_ms: int | None = None  # inclusive
    end_ms: int | None = None  # exclusive

    def prune(self) -> Prune:
        return Prune(
            exchanges=self.exchanges,
            pairs=self.pairs,
            first_date=utc_date(self.start_ms) if self.start_ms is not None else None,
            last_date=utc_date(self.end_ms - 1) if self.end_ms is not None else None,
        )

    def expression(self, time_field: str = "timestamp_ms", bound: Callable[[int], Any] = int) -> pc.Expression | None:
        """Row filter; Parquet pushes it down to row-group statistics. ``time_field`` is the
        dataset's time column and ``bound`` turns an epoch-ms limit into a value of its type."""
        parts: list[pc.Expression] = []
        if self.exchanges is not None:
            parts.append(pc.field("exchange").isin(sorted(self.exchanges)))
        if self.pairs is not None:
            parts.append(pc.field("pair").isin(sorted(self.pairs)))
        if self.sessions is not None:
            parts.append(pc.field("session_id").isin(sorted(self.sessions)))
        if self.start_ms is not None:
            parts.append(pc.field(time_field) >= bound(self.start_ms))
        if self.end_ms is not None:
            parts.append(pc.field(time_field) < bound(self.end_ms))
        if not parts:
            return None
        expr = parts[0]
        for p in parts[1:]:
            expr = expr & p
        return expr

    def accepts(self, s: Snapshot) -> bool:
        return (
            (self.exchanges is None or s.exchange in self.exchanges)
            and (self.pairs is None or s.pair in self.pairs)
            and (self.sessions is None or s.session_id in self.sessions)
            and (self.start_ms is None or s.timestamp_ms >= self.start_ms)
            and (self.end_ms is None or s.timestamp_ms < self.end_ms)
        )

    def window(self, start_ms: int | None, end_ms: int | None) -> Selection:
        return Selection(self.exchanges, self.pairs, self.sessions, start_ms, end_ms)


def open_dataset(
    location: str | os.PathLike[str],
    *,
    format: str = "auto",
    filesystem: pafs.FileSystem | None = None,
    endpoint_url: str | None = None,
    region: str | None = None,
    on_error: str = "raise",
) -> Dataset:
    """Open what the recorder wrote: a local data dir (or its ``parquet/`` / ``jsonl/`` dir) or
    ``s3://bucket/prefix``. ``format="auto"`` reads Parquet when present, else JSONL.

    A stored file that cannot be read raises :class:`DatasetError` naming it; with
    ``on_error="skip"`` it is left out, logged once and listed in ``Dataset.skipped``."""
    if not isinstance(format, str) or format not in ("auto", "parquet", "jsonl"):
        raise DatasetError(f"invalid format {format!r}: use auto, parquet or jsonl")
    Unreadable(on_error, str)  # checks on_error before anything is opened
    fs, root = resolve(location, filesystem, endpoint_url, region)
    roots = format_roots(fs, root, format)
    if not roots:
        if any(records.dataset_base(fs, root, d, format) for d in (TRADES, QUOTES)):
            # Trades or quotes only (a capture without books): the books read as empty.
            fmt = "jsonl" if format == "jsonl" else "parquet"
            return Dataset(fs, f"{root.rstrip('/')}/{fmt}", fmt, os.fspath(location), root)
        raise DatasetError(f"no recorder data under {os.fspath(location)!r} (expected parquet/ or jsonl/)")
    fmt = "parquet" if "parquet" in roots else "jsonl"
    return Dataset(fs, roots[fmt], fmt, os.fspath(location), root, on_error=on_error)


class Dataset:
    """A recorder dataset. Every read method takes the same selection keywords:

    ``exchanges`` / ``pairs`` / ``sessions`` (a name or a list), ``start`` (inclusive) and ``end``
    (exclusive) as epoch ms, ISO-8601 text or datetimes (naive = UTC).
    """

    def __init__(
        self, fs: pafs.FileSystem, base: str, fmt: str, location: str, root: str | None = None, on_error: str = "raise"
    ) -> None:
        self.filesystem, self.base, self.format, self.location = fs, base, fmt, location
        self.root = root or base  # what was opened; ``base`` is the chosen format's directory
        self._unreadable = Unreadable(on_error, self._display)

    @property
    def on_error(self) -> str:
        return self._unreadable.on_error

    @property
    def skipped(self) -> dict[str, str]:
        """Files left out so far with ``on_error="skip"`` (whole, or some lines of a JSONL
        file) -> why, one line each."""
        return dict(self._unreadable.skipped)

    def _display(self, path: str) -> str:
        return f"s3://{path}" if self.filesystem.type_name == "s3" else path

    def __repr__(self) -> str:
        return f"Dataset({self.location!r}, format={self.format!r})"

    # -- selection ---------------------------------------------------------------------------

    def selection(
        self,
        exchanges: str | Iterable[str] | None = None,
        pairs: str | Iterable[str] | None = None,
        start: TimeLike | None = None,
        end: TimeLike | None = None,
        sessions: str | Iterable[str] | None = None,
    ) -> Selection:
        sel = Selection(
            exchanges=args.exchanges(exchanges),
            pairs=args.pairs(pairs),
            sessions=args.sessions(sessions),
            start_ms=to_ms(start) if start is not None else None,
            end_ms=to_ms(end) if end is not None else None,
        )
        if sel.start_ms is not None and sel.end_ms is not None and sel.end_ms <= sel.start_ms:
            raise DatasetError("empty time range: end must be after start")
        return sel

    def files(self, **select: Any) -> list[DataFile]:
        """The data files a selection reads, after partition pruning."""
        return list_files(self.filesystem, self.base, self.format, self._select(select).prune())

    # -- tables ------------------------------------------------------------------------------

    def table(self, *, columns: Sequence[str] | None = None, **select: Any) -> pa.Table:
        """Long form as stored (one row per level, schema of ``recorder.writer.batches.SCHEMA``),
        sorted by timestamp, exchange, pair, session, sequence, side (bids first), level."""
        names = args.columns(columns, SCHEMA.names)
        return self._read(self._select(select), columns=names)

    def to_pandas(self, *, depth: int | None = None, **select: Any) -> Any:
        """pandas DataFrame (``pip install pandas``): long form, or wide with ``depth``."""
        t = self.wide(depth=depth, **select) if depth is not None else self.table(**select)
        return t.to_pandas()

    def to_polars(self, *, depth: int | None = None, **select: Any) -> Any:
        """polars DataFrame (``pip install polars``): long form, or wide with ``depth``."""
        import polars as pl

        t = self.wide(depth=depth, **select) if depth is not None else self.table(**select)
        return pl.from_arrow(t)

    def to_dask(self, *, columns: Sequence[str] | None = None, depth: int | None = None, **select: Any) -> Any:
        """Dask DataFrame (``pip install -e '.[fleet]'``): the same selection and pruning, one
        partition per file, each sorted as ``table()`` (long) or wide with ``depth``; read lazily
        by whatever scheduler runs it (threads, processes, a ``dask.distributed`` cluster)."""
        from recorder.dataset.distributed import to_dask

        names = args.columns(columns, SCHEMA.names)
        return to_dask(self, self._select(select), names, args.depth(depth) if depth is not None else None)

    def wide(self, *, depth: int = 5, **select: Any) -> pa.Table:
        """One row per snapshot with ``bid_px_0, bid_qty_0, ask_px_0, ask_qty_0, ...`` up to
        ``depth`` levels (1 to ``MAX_DEPTH``, the deepest book a capture stores), plus ``mid``,
        ``spread`` and ``microprice``."""
        depth = args.depth(depth)
        return frames.wide(self._read(self._select(select), max_level=depth), depth)

    # -- snapshots ---------------------------------------------------------------------------

    def snapshots(self, *, chunk: str | int = "1h", only_valid: bool = False, **select: Any) -> Iterator[BookSnapshot]:
        """Book objects in time order, merged across pairs and venues (ties: exchange, pair,
        session). Reads one ``chunk`` of time at a time, so memory stays bounded."""
        sel = self._select(select)
        step = span_ms(chunk, "chunk")
        if step <= 0:
            raise DatasetError(f"invalid chunk {chunk!r}: must be positive")
        args.flag("only_valid", only_valid)
        return self._snapshots(sel, step, only_valid)  # the checks above run before iteration

    def _snapshots(self, sel: Selection, step: int, only_valid: bool) -> Iterator[BookSnapshot]:
        cache = _JsonlCache() if self.format == "jsonl" else None
        for lo, hi in self._windows(sel, step):
            if cache is not None:
                cache.evict_before(lo)
            for snap in frames.iter_snapshots(self._read(sel.window(lo, hi), sort=False, cache=cache)):
                if not only_valid or snap.is_valid:
                    yield snap

    def asof(
        self, t: TimeLike, *, exchange: str, pair: str, lookback: str | int = "7d", session: str | None = None
    ) -> BookSnapshot | None:
        """The last valid snapshot (verified, both sides, not crossed) at or before ``t``,
        searched back at most ``lookback``; None if there is none."""
        t_ms, limit = to_ms(t), span_ms(lookback, "lookback")
        if limit < 0:
            raise DatasetError(f"invalid lookback {lookback!r}: must not be negative")
        base = self.selection(
            exchanges=args.one_name("exchange", exchange, args.exchanges),
            pairs=args.one_name("pair", pair, args.pairs),
            sessions=None if session is None else args.one_name("session id", session, args.sessions),
        )
        floor = max(t_ms - limit, MIN_MS)
        hi = min(t_ms + 1, MAX_MS)
        reach = 60_000
        while True:
            lo = max(t_ms - reach, floor)
            sel = base.window(lo, hi)
            found = None
            for snap in frames.iter_snapshots(self._read(sel, sort=False)):
                if snap.is_valid:
                    found = snap  # time order: the last valid one wins
            if found is not None:
                return found
            if lo <= floor:
                return None
            # 1 min, 1 h, 1 day, then twice as far each round: near data is found cheaply, and a
            # lookback of years takes a few dozen rounds, not one a day.
            hi = lo
            reach = 3_600_000 if reach < 3_600_000 else MS_PER_DAY if reach < MS_PER_DAY else reach * 2

    # -- trades and quotes -------------------------------------------------------------------

    def trades(self, *, format: str = "auto", **select: Any) -> pa.Table:
        """The stored trades (``exchange, pair, trade_id, price, quantity, side, exchange_time,
        local_time, session_id, sequence_number``), selected like the books with the time range
        on ``local_time``; sorted by local time, exchange, pair, session, sequence."""
        return self._records(TRADES, format, self._select(select))

    def quotes(self, *, format: str = "auto", **select: Any) -> pa.Table:
        """The stored best bid/ask changes (``quotes``), selected and sorted like :meth:`trades`."""
        return self._records(QUOTES, format, self._select(select))

    def trades_with_book(self, *, depth: int = 1, lookback: str | int = "1h", **select: Any) -> pa.Table:
        """:meth:`trades` as-of joined to the book snapshot in force at each trade: the last stored
        snapshot of its exchange and pair at or before the trade's ``local_time`` (searched back at
        most ``lookback``), as ``book_timestamp_ms``, ``book_sequence_number``, ...,
        ``bid_px_0`` .. ``ask_qty_<depth-1>``, ``mid``, ``spread``, ``microprice``."""
        if depth < 1:
            raise DatasetError(f"invalid depth {depth}: must be at least 1")
        sel = self._select(select)
        trades = self._records(TRADES, "auto", sel)
        if not trades.num_rows:
            return records.asof_join(trades, frames.wide(SCHEMA.empty_table(), depth))
        first = pc.min(trades["local_time"]).cast(pa.int64()).as_py() // 1000
        last = pc.max(trades["local_time"]).cast(pa.int64()).as_py() // 1000
        book_sel = Selection(
            frozenset(trades["exchange"].unique().to_pylist()),
            frozenset(trades["pair"].unique().to_pylist()),
            None,
            first - span_ms(lookback),
            last + 1,
        )
        books = frames.wide(self._read(book_sel, max_level=depth), depth)
        return records.asof_join(trades, books, max_age_ms=span_ms(lookback))

    def _records(self, layout: DatasetLayout, fmt: str, sel: Selection) -> pa.Table:
        from recorder.writer.datasets import SPECS

        found = records.dataset_base(self.filesystem, self.root, layout, fmt)
        if found is None:
            return SPECS[layout.name].schema.empty_table()
        return records.read_records(self.filesystem, found[0], found[1], layout, sel)

    # -- internals ---------------------------------------------------------------------------

    def _select(self, select: dict[str, Any]) -> Selection:
        return self.selection(**args.select_keys(select))

    def _windows(self, sel: Selection, step: int) -> Iterator[tuple[int, int]]:
        """Time windows covering the selection; unbounded ends are taken from the partitions."""
        lo, hi = sel.start_ms, sel.end_ms
        if lo is None or hi is None:
            files = list_files(self.filesystem, self.base, self.format, sel.prune())
            # a directory named date=<not a date> (put there by hand) is not a time bound
            dates = sorted({d for f in files if _DATE_RE.match(d := f.partition.get("date", ""))})
            if not dates:
                if files:  # not date-partitioned: one window
                    yield (lo if lo is not None else 0, hi if hi is not None else 2**62)
                return
            lo = lo if lo is not None else to_ms(dates[0])
            hi = hi if hi is not None else to_ms(dates[-1]) + MS_PER_DAY
        t = lo
        while t < hi:
            yield t, min(hi, t + step)
            t += step

    def _read(
        self,
        sel: Selection,
        columns: Sequence[str] | None = None,
        max_level: int | None = None,
        sort: bool = True,
        cache: _JsonlCache | None = None,
    ) -> pa.Table:
        deadline = time.monotonic() + _READ_DEADLINE_S
        attempt = 0
        while True:
            try:
                table = self._read_listed(sel, max_level, cache)
                break
            except ListingChanged as exc:
                # A compaction replaced files between our listing and our read: list again.
                if time.monotonic() > deadline:
                    raise DatasetError(f"files kept changing while reading {self.location}: {exc}") from None
                attempt += 1
                time.sleep(min(0.5, 0.05 * attempt))
        if sort or columns is not None:
            table = frames.sort_long(table)
        if columns is not None:
            table = table.select(list(columns))
        return table

    def _read_listed(self, sel: Selection, max_level: int | None, cache: _JsonlCache | None) -> pa.Table:
        files = list_files(self.filesystem, self.base, self.format, sel.prune())
        try:
            if self.format == "parquet":
                return self._read_parquet(files, sel, max_level)
            return self._read_jsonl(files, sel, max_level, cache)
        except OSError as exc:  # not one file's fault (those are handled in decode.py)
            # S3 reports an object deleted after its HEAD as a plain OSError ("AWS Error
            # RESOURCE_NOT_FOUND during GetObject"), not FileNotFoundError: ask the store
            # whether a listed file is gone rather than trusting the error's type or text.
            gone = self._gone(files)
            if gone is not None or isinstance(exc, FileNotFoundError):
                raise ListingChanged(f"{gone or 'a listed file'} went away while read ({exc})") from None
            raise DatasetError(f"cannot read {self.location}: {one_line(exc)}") from None

    def _is_gone(self, path: str) -> bool:
        return self._gone([DataFile(path, self.format, 0, {})]) is not None

    def _gone(self, files: list[DataFile]) -> str | None:
        """The first listed file that no longer exists, if any."""
        try:
            infos = self.filesystem.get_file_info([f.path for f in files])
        except OSError:
            return None
        return next((i.path for i in infos if i.type == pafs.FileType.NotFound), None)

    def _read_parquet(self, files: list[DataFile], sel: Selection, max_level: int | None) -> pa.Table:
        if sel.end_ms is not None:
            # The writer names a file after its first (earliest) tick: later files can't match.
            files = [f for f in files if (_name_first_ts(f.path) or 0) < sel.end_ms]
        expr = sel.expression()
        if max_level is not None:
            lv = pc.field("level").is_null() | (pc.field("level") < max_level)
            expr = lv if expr is None else expr & lv
        return read_parquet(self.filesystem, files, expr, self._unreadable, self._is_gone)

    def _read_jsonl(
        self, files: list[DataFile], sel: Selection, max_level: int | None, cache: _JsonlCache | None = None
    ) -> pa.Table:
        tables = []
        for f in self._unreadable.readable(files):
            hint = _name_first_ts(f.path)
            if sel.end_ms is not None and hint is not None and hint >= sel.end_ms:
                continue  # the writer names a file after its first (earliest) tick
            if cache is not None and f.path in cache.done:
                continue  # every tick of it lies before the current window
            if cache is not None and f.path in cache.tables:
                tables.append(cache.tables[f.path][0])
                continue
            table = self._decode_jsonl(f, sel if cache is None else sel.window(None, None), max_level)
            if cache is not None:
                if table.num_rows:
                    cache.tables[f.path] = (table, pc.max(table["timestamp_ms"]).as_py())
                else:
                    cache.done.add(f.path)
            tables.append(table)
        if not tables:
            return SCHEMA.empty_table()
        table = pa.concat_tables(tables)
        if cache is not None:
            expr = sel.expression()
            table = table.filter(expr) if expr is not None else table
        return table

    def _decode_jsonl(self, f: DataFile, sel: Selection, max_level: int | None) -> pa.Table:
        snaps: list[Snapshot] = []
        for s in read_jsonl(self.filesystem, f, self._unreadable, self._is_gone):
            if sel.accepts(s):
                if max_level is not None:
                    s.bids, s.asks = s.bids[:max_level], s.asks[:max_level]
                snaps.append(s)
        if not snaps:
            return SCHEMA.empty_table()
        return pa.Table.from_batches([snapshots_to_batch(snaps)], schema=SCHEMA)


@dataclass
class _JsonlCache:
    """Decoded JSONL files kept while ``snapshots()`` walks time windows: each file is parsed
    once, and dropped as soon as the windows have passed its last tick."""

    tables: dict[str, tuple[pa.Table, int]] = field(default_factory=dict)
    done: set[str] = field(default_factory=set)

    def evict_before(self, ms: int) -> None:
        for path in [p for p, (_, last) in self.tables.items() if last < ms]:
            del self.tables[path]
            self.done.add(path)


_NAME_RE = re.compile(r"-(\d{10,16})-\d+\.(?:jsonl|parquet)$")


def _name_first_ts(path: str) -> int | None:
    m = _NAME_RE.search(path)
    return int(m.group(1)) if m else None
