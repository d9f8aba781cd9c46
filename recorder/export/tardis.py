"""tardis.dev CSV: ``book_snapshot_{N}``, ``trades`` and ``quotes``, gzip, one file per exchange, data
type, day and symbol, named as tardis' clients name downloads:
``<exchange>_<data type>_<YYYY-MM-DD>_<SYMBOL>.csv.gz``.

Columns and units as tardis documents them (timestamps in µs since the epoch, UTC):

- ``book_snapshot_N``: ``exchange,symbol,timestamp,local_timestamp,asks[0].price,asks[0].amount,
  bids[0].price,bids[0].amount,...`` up to level N-1, empty beyond the book's stored depth;
  ``timestamp`` is the venue's time of the last update in the book, ``local_timestamp`` the grid
  tick the recorder sampled it at.
- ``trades``: ``exchange,symbol,timestamp,local_timestamp,id,side,price,amount`` (side: the taker's).
- ``quotes``: ``exchange,symbol,timestamp,local_timestamp,ask_amount,ask_price,bid_price,bid_amount``,
  from the quotes dataset, else one row per change of the stored snapshots' top of book.

- ``incremental_book_L2`` (from the lossless archive, ``export_incremental``):
  ``exchange,symbol,timestamp,local_timestamp,is_snapshot,side,price,amount``, every book change
  (side ``bid``/``ask``, amount 0 deletes), each snapshot load as a run of ``is_snapshot`` rows.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from recorder.export.event_units import SpooledUnit
from recorder.export.events import BID, CLEAR, SNAPSHOT, TRADE, UPDATE
from recorder.export.source import BookChunk, Source, Unit
from recorder.export.symbols import file_symbol, instrument, safe_name

# The header unquoted, as tardis writes it (Arrow quotes header names): written by hand.
_WRITE = pacsv.WriteOptions(include_header=False, quoting_style="none")
_HEAD = ["exchange", "symbol", "timestamp", "local_timestamp"]
TRADE_COLUMNS = [*_HEAD, "id", "side", "price", "amount"]
QUOTE_COLUMNS = [*_HEAD, "ask_amount", "ask_price", "bid_price", "bid_amount"]


def snapshot_columns(depth: int) -> list[str]:
    cols = list(_HEAD)
    for i in range(depth):
        cols += [f"asks[{i}].price", f"asks[{i}].amount", f"bids[{i}].price", f"bids[{i}].amount"]
    return cols


def file_name(tardis_exchange: str, data_type: str, day: str, symbol: str) -> str:
    return f"{safe_name(tardis_exchange, 'exchange')}_{data_type}_{day}_{file_symbol(symbol)}.csv.gz"


class _GzCsv:
    """One gzip CSV written through a temp name, renamed into place when complete."""

    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self.path, self.tmp = path, path.with_name(f".{path.name}.tmp")
        self._gz = gzip.open(self.tmp, "wb", compresslevel=6)
        self._gz.write((",".join(schema.names) + "\n").encode())
        self._writer = pacsv.CSVWriter(self._gz, schema, write_options=_WRITE)
        self.rows = 0

    def write(self, table: pa.Table) -> None:
        self._writer.write_table(table)
        self.rows += table.num_rows

    def close(self) -> None:
        """Into place; a file that got no row is not written (a day with trades but no books)."""
        self._writer.close()
        self._gz.close()
        if self.rows:
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)

    def abort(self) -> None:
        try:
            self._writer.close()
            self._gz.close()
        finally:
            self.tmp.unlink(missing_ok=True)


def _head(inst_ex: str, symbol: str, n: int, exch_us: np.ndarray, local_us: np.ndarray) -> dict[str, pa.Array]:
    return {
        "exchange": pa.array(np.full(n, inst_ex, dtype=object), pa.string()),
        "symbol": pa.array(np.full(n, symbol, dtype=object), pa.string()),
        "timestamp": pa.array(exch_us, pa.int64()),
        "local_timestamp": pa.array(local_us, pa.int64()),
    }


def _f(values: np.ndarray) -> pa.Array:
    return pa.array(values, pa.float64(), from_pandas=True)  # NaN -> null -> empty cell


def snapshot_table(ex: str, symbol: str, chunk: BookChunk, depth: int) -> pa.Table:
    n = len(chunk)
    cols = _head(ex, symbol, n, chunk.exch_ms * 1000, chunk.ts_ms * 1000)
    empty = np.full(n, np.nan)
    for i in range(depth):
        have = i < chunk.depth
        cols[f"asks[{i}].price"] = _f(chunk.ask_px[:, i] if have else empty)
        cols[f"asks[{i}].amount"] = _f(chunk.ask_qty[:, i] if have else empty)
        cols[f"bids[{i}].price"] = _f(chunk.bid_px[:, i] if have else empty)
        cols[f"bids[{i}].amount"] = _f(chunk.bid_qty[:, i] if have else empty)
    return pa.table(cols)


def tops_changed(chunk: BookChunk, last: tuple[float, ...] | None) -> tuple[np.ndarray, tuple[float, ...] | None]:
    """Indices of the snapshots whose top of book (price or size, either side) differs from the
    one before (``last``: the previous chunk's final top); and this chunk's final top."""
    top = np.column_stack([chunk.bid_px[:, 0], chunk.bid_qty[:, 0], chunk.ask_px[:, 0], chunk.ask_qty[:, 0]])
    if not len(top):
        return np.zeros(0, np.int64), last
    prev = np.vstack([np.array(last if last is not None else [np.inf] * 4)[None, :], top[:-1]])
    same = (top == prev) | (np.isnan(top) & np.isnan(prev))
    return np.flatnonzero(~same.all(axis=1)), tuple(top[-1].tolist())


def quote_table_from_books(ex: str, symbol: str, chunk: BookChunk, rows: np.ndarray) -> pa.Table:
    cols = _head(ex, symbol, len(rows), chunk.exch_ms[rows] * 1000, chunk.ts_ms[rows] * 1000)
    cols["ask_amount"] = _f(chunk.ask_qty[rows, 0])
    cols["ask_price"] = _f(chunk.ask_px[rows, 0])
    cols["bid_price"] = _f(chunk.bid_px[rows, 0])
    cols["bid_amount"] = _f(chunk.bid_qty[rows, 0])
    return pa.table(cols)


def _us(col: pa.ChunkedArray, fallback: pa.ChunkedArray | None = None) -> np.ndarray:
    v = col.cast(pa.int64()).to_numpy(zero_copy_only=False).astype(np.float64)
    if fallback is not None:
        fb = fallback.cast(pa.int64()).to_numpy(zero_copy_only=False).astype(np.float64)
        v = np.where(np.isnan(v), fb, v)
    return v.astype(np.int64)


def trade_table(ex: str, symbol: str, trades: pa.Table) -> pa.Table:
    local = _us(trades["local_time"])
    cols = _head(ex, symbol, trades.num_rows, _us(trades["exchange_time"], trades["local_time"]), local)
    cols["id"] = trades["trade_id"].cast(pa.string())
    cols["side"] = trades["side"].cast(pa.string())
    cols["price"] = trades["price"].cast(pa.float64())
    cols["amount"] = trades["quantity"].cast(pa.float64())
    return pa.table(cols)


def quote_table(ex: str, symbol: str, quotes: pa.Table) -> pa.Table:
    local = _us(quotes["local_time"])
    cols = _head(ex, symbol, quotes.num_rows, _us(quotes["exchange_time"], quotes["local_time"]), local)
    cols["ask_amount"] = quotes["ask_qty"].cast(pa.float64())
    cols["ask_price"] = quotes["ask_price"].cast(pa.float64())
    cols["bid_price"] = quotes["bid_price"].cast(pa.float64())
    cols["bid_amount"] = quotes["bid_qty"].cast(pa.float64())
    return pa.table(cols)


def export_unit(source: Source, unit: Unit, out: Path, depth: int) -> dict[str, int]:
    """Write one pair-day's files; rows written per data type."""
    inst = instrument(unit.exchange, unit.pair)
    ex, sym = inst.tardis_exchange, inst.symbol
    quotes = source.quotes(unit)
    book_type = f"book_snapshot_{depth}"
    names = {t: out / file_name(ex, t, unit.day, sym) for t in (book_type, "quotes", "trades")}
    books = _GzCsv(names[book_type], pa.schema([(c, _type(c)) for c in snapshot_columns(depth)]))
    derived = _GzCsv(names["quotes"], pa.schema([(c, _type(c)) for c in QUOTE_COLUMNS])) if quotes is None else None
    counts: dict[str, int] = {}
    try:
        last = None
        for chunk in source.books(unit):
            books.write(snapshot_table(ex, sym, chunk, depth))
            if derived is not None:
                rows, last = tops_changed(chunk, last)
                derived.write(quote_table_from_books(ex, sym, chunk, rows))
    except BaseException:
        books.abort()
        if derived is not None:
            derived.abort()
        raise
    books.close()
    counts[book_type] = books.rows
    if derived is not None:
        derived.close()
        counts["quotes"] = derived.rows
    else:
        assert quotes is not None
        counts["quotes"] = _write_whole(names["quotes"], quote_table(ex, sym, quotes))
    trades = source.trades(unit)
    if trades is not None:
        counts["trades"] = _write_whole(names["trades"], trade_table(ex, sym, trades))
    return counts


def _write_whole(path: Path, table: pa.Table) -> int:
    f = _GzCsv(path, table.schema)
    try:
        f.write(table)
    except BaseException:
        f.abort()
        raise
    f.close()
    return f.rows


def _type(column: str) -> pa.DataType:
    if column in ("exchange", "symbol", "id", "side"):
        return pa.string()
    if column in ("timestamp", "local_timestamp"):
        return pa.int64()
    return pa.float64()


def planned_files(unit: Unit, depth: int) -> list[str]:
    inst = instrument(unit.exchange, unit.pair)
    types = (f"book_snapshot_{depth}", "quotes", "trades")
    return [file_name(inst.tardis_exchange, t, unit.day, inst.symbol) for t in types]


# -- incremental_book_L2, from the archive -----------------------------------------------------

L2_COLUMNS = [*_HEAD, "is_snapshot", "side", "price", "amount"]
_L2_SCHEMA = pa.schema([(c, pa.bool_() if c == "is_snapshot" else _type(c)) for c in L2_COLUMNS])


def incremental_file(unit: Unit) -> str:
    inst = instrument(unit.exchange, unit.pair)
    return file_name(inst.tardis_exchange, "incremental_book_L2", unit.day, inst.symbol)


def export_incremental(
    spooled: Iterable[SpooledUnit], out: Path, advance: Callable[[Unit], None]
) -> Iterator[tuple[str, int]]:
    """Write each archived unit's ``incremental_book_L2`` as its events come off the archive
    replay; yields (file name, rows) per file written."""
    for su in spooled:
        try:
            rows = _write_incremental(su, out / incremental_file(su.unit))
        finally:
            su.release()
        advance(su.unit)
        if rows:
            yield incremental_file(su.unit), rows


class _L2Rows:
    """Book events -> tardis rows, by tardis' documented reading: a run of ``is_snapshot`` rows
    after other rows resets the book, amount 0 deletes a level.

    A snapshot load is its levels as ``is_snapshot`` rows. Two things the format cannot say are
    said otherwise: a snapshot right after another one with no update between (its rows would
    join the first run) is written as the updates that turn the first into it; a lost book (a
    clear with no snapshot, after a gap) writes nothing — the next snapshot resets the book."""

    def __init__(self) -> None:
        self.last_run: np.ndarray | None = None  # the last rows written, while they are a snapshot run

    def rows(self, ev: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(events to write as rows, their ``is_snapshot``) for a chunk that never ends inside a
        snapshot load (``split_chunks``)."""
        parts: list[np.ndarray] = []
        flags: list[np.ndarray] = []
        clears = np.flatnonzero(ev["kind"] == CLEAR)
        bounds = [0, *clears.tolist(), len(ev)]
        for lo, hi in zip(bounds, bounds[1:], strict=False):
            seg = ev[lo:hi]
            if not len(seg):
                continue
            if seg["kind"][0] == CLEAR:
                n_snap = (
                    int(np.argmax(seg["kind"][1:] != SNAPSHOT)) if np.any(seg["kind"][1:] != SNAPSHOT) else len(seg) - 1
                )
                snap, seg = seg[1 : 1 + n_snap], seg[1 + n_snap :]
                if len(snap):
                    if self.last_run is None:
                        parts.append(snap)
                        flags.append(np.ones(len(snap), bool))
                        self.last_run = snap
                    else:
                        diff = _turn_into(self.last_run, snap)
                        if len(diff):
                            parts.append(diff)
                            flags.append(np.zeros(len(diff), bool))
                            self.last_run = None
            if len(seg):
                parts.append(seg)
                flags.append(np.zeros(len(seg), bool))
                self.last_run = None
        if not parts:
            return ev[:0], np.zeros(0, bool)
        return np.concatenate(parts), np.concatenate(flags)


def _turn_into(run: np.ndarray, snap: np.ndarray) -> np.ndarray:
    """The level updates that turn the book ``run`` (snapshot levels) into ``snap``, stamped with
    ``snap``'s times: deletes of the levels it lacks, then its levels that differ."""
    old = {(int(s), float(p)): float(q) for s, p, q in zip(run["side"], run["price"], run["qty"], strict=True)}
    new = {(int(s), float(p)): float(q) for s, p, q in zip(snap["side"], snap["price"], snap["qty"], strict=True)}
    exch, local = int(snap["exch_ns"][0]), int(snap["local_ns"][0])
    out = [(UPDATE, s, p, 0.0, exch, local) for (s, p) in old if (s, p) not in new]
    out += [(UPDATE, s, p, q, exch, local) for (s, p), q in new.items() if old.get((s, p)) != q]
    return np.array(out, dtype=snap.dtype)


def split_chunks(chunks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    """Book events (trades left out) in chunks that never end inside a snapshot load: a chunk whose
    last clear has only snapshot levels after it keeps them for the next one."""
    carry = None
    for ev in chunks:
        ev = ev[ev["kind"] != TRADE]
        if carry is not None:
            ev = np.concatenate([carry, ev])
            carry = None
        clears = np.flatnonzero(ev["kind"] == CLEAR)
        if len(clears) and np.all(ev["kind"][clears[-1] + 1 :] == SNAPSHOT):
            carry, ev = ev[clears[-1] :], ev[: clears[-1]]
        yield ev
    if carry is not None:
        yield carry


def _write_incremental(su: SpooledUnit, path: Path) -> int:
    inst = instrument(su.unit.exchange, su.unit.pair)
    f = _GzCsv(path, _L2_SCHEMA)
    state = _L2Rows()
    try:
        for ev in split_chunks(su.chunks()):
            rows, snapshot = state.rows(ev)
            if not len(rows):
                continue
            cols = _head(
                inst.tardis_exchange, inst.symbol, len(rows), rows["exch_ns"] // 1000, rows["local_ns"] // 1000
            )
            cols["is_snapshot"] = pa.array(snapshot, pa.bool_())
            cols["side"] = pc.if_else(pa.array(rows["side"] == BID), "bid", "ask")
            cols["price"] = pa.array(rows["price"], pa.float64())
            cols["amount"] = pa.array(rows["qty"], pa.float64())
            f.write(pa.table(cols, schema=_L2_SCHEMA))
    except BaseException:
        f.abort()
        raise
    f.close()
    return f.rows
