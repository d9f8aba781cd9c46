"""nautilus_trader: a ``ParquetDataCatalog`` written with nautilus' own catalog API.

- instruments: ``CurrencyPair`` (spot), ``CryptoPerpetual`` (``-PERP`` pairs), ``CryptoFuture``
  (dated pairs), id ``<PAIR>.<EXCHANGE>`` (``BTC-USDT.BINANCE``, ``BTC-USDT-PERP.BINANCE_FUTURES``),
  the venue's symbol as ``raw_symbol``, price and size precision inferred from the data (the
  most decimals any stored price / size of the selection has);
- each stored snapshot as an ``OrderBookDepth10`` (its best 10 levels per side; ``ts_event`` the
  venue's time of the last update in the book, ``ts_init`` the grid tick);
- trades as ``TradeTick`` (when the dataset has trades);
- quote changes as ``QuoteTick``: the quotes dataset when there is one, else one per change of
  the snapshots' top of book.

Written per pair and day as it is read (a window of the day at a time), in catalog files of at
most ``FILE_ROWS`` objects per data type: memory stays bounded however long or busy the day.
``OrderBookDelta`` streams (every book change) need the lossless archive: not from sampled snapshots.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.fs as pafs

from recorder.export.nautilus_objects import Objects, instrument_id, make_instrument, nt
from recorder.export.source import BookChunk, Source, Unit, decimals
from recorder.export.symbols import ExportError, instrument
from recorder.export.tardis import tops_changed

# Objects per catalog file, and so the most held at once per data type and pair: ~20 MB of
# nautilus objects each (a depth with its 20 orders ~2 kB, a tick or a delta ~0.2 kB).
FILE_ROWS = {"depth10": 10_000, "quotes": 100_000, "trades": 100_000, "deltas": 100_000}
# Deltas waiting for their files, all pairs together: beyond it the biggest pair's are written
# (a shorter file), so a session of many pairs stays bounded too.
DELTAS_HELD = 400_000
_EVENT_BATCH = 10_000  # the archive replay's batches per pair (recorder.export.events)


def export_units(
    source: Source,
    units: list[Unit],
    out: Path,
    advance: Callable[[], None],
    overwrite: bool = False,
    file_rows: Mapping[str, int] | None = None,
) -> tuple[list[str], dict[str, int]]:
    *_, ParquetDataCatalog = nt()
    rows = file_rows or FILE_ROWS
    catalog = ParquetDataCatalog(str(out))
    totals = {"instruments": 0, "depth10": 0, "quotes": 0, "trades": 0}
    by_pair: dict[tuple[str, str], list[Unit]] = {}
    for u in units:
        by_pair.setdefault((u.exchange, u.pair), []).append(u)
    archive = _Archive(source, by_pair)
    archived = archive.decimals() if archive.pairs else {}  # a first replay: precisions
    written: list[str] = []
    makers: dict[tuple[str, str], Objects] = {}
    for (exchange, pair), days in by_pair.items():
        # Precisions first (one pass over the pair's data): every Price is made at them.
        pp, sp = archived.get((exchange, pair), (0, 0))
        for u in days:
            prices, sizes = source.prices_and_sizes(u)
            pp, sp = max(pp, decimals(prices)), max(sp, decimals(sizes))
        inst = instrument(exchange, pair)
        iid = instrument_id(exchange, pair)
        pp, sp, fresh = _instrument_precisions(catalog, iid, pp, sp, overwrite)
        if fresh:
            _write(catalog, [make_instrument(inst, pp, sp, days[0].start_ms * 1_000_000)])
            totals["instruments"] += 1
        _clear_overlaps(catalog, iid, days, source, overwrite, deltas=(exchange, pair) in archive.pairs)
        written.append(iid)
        make = makers[(exchange, pair)] = Objects(iid, pp, sp)
        for u in days:
            _export_day(source, u, catalog, make, totals, rows)
            advance()
    if archive.pairs:
        totals["deltas"] = archive.write_deltas(catalog, makers, rows["deltas"])
    return written, totals


class _Archive:
    """The selection's archived sessions (a local data dir's ``archive/``; an S3 dataset has
    none here) and the exported pairs they recorded, replayed with ``recorder.export.events``."""

    def __init__(self, source: Source, by_pair: Mapping[tuple[str, str], list[Unit]]) -> None:
        from recorder.export.events import archive_sessions

        sel, ds = source.sel, source.ds
        local = isinstance(ds.filesystem, pafs.LocalFileSystem)
        self.sessions = archive_sessions(ds.root, sel.exchanges, sel.sessions) if local else []
        self.pairs = {(s.exchange, p) for s in self.sessions for p in s.pairs} & set(by_pair)
        # Each pair's deltas within its exported days (cut to the selection), ns.
        self.windows = {
            key: [(w[0] * 1_000_000, w[1] * 1_000_000) for u in by_pair[key] if (w := source.window(u))]
            for key in self.pairs
        }
        # From the selection's start (the replay opens with a snapshot of each book there).
        self.start_ns = sel.start_ms * 1_000_000 if sel.start_ms is not None else None
        self.end_ns = sel.end_ms * 1_000_000 if sel.end_ms is not None else None

    def events(self) -> Iterator[tuple[tuple[str, str], np.ndarray]]:
        """(exchange, pair), book events in receive order, within the pair's exported days."""
        from recorder.export.events import TRADE, ArchiveEvents

        for session in self.sessions:
            pairs = [p for p in session.pairs if (session.exchange, p) in self.pairs]
            if not pairs:
                continue
            replay = ArchiveEvents(session, pairs, self.start_ns, self.end_ns, batch_size=_EVENT_BATCH)
            for batch in replay:
                key, ev = (batch.exchange, batch.pair), batch.events
                local = ev["local_ns"]
                keep = ev["kind"] != TRADE  # trades: TradeTicks from the trades dataset
                inside = np.zeros(len(ev), bool)
                for lo, hi in self.windows[key]:
                    inside |= (local >= lo) & (local < hi)
                ev = ev[keep & inside]
                if len(ev):
                    yield key, ev

    def decimals(self) -> dict[tuple[str, str], tuple[int, int]]:
        """Per pair the decimals its archived prices and sizes need (a book far deeper than
        the stored one may show more)."""
        found: dict[tuple[str, str], tuple[int, int]] = {}
        for key, ev in self.events():
            pp, sp = found.get(key, (0, 0))
            found[key] = (max(pp, decimals(np.unique(ev["price"]))), max(sp, decimals(np.unique(ev["qty"]))))
        return found

    def write_deltas(self, catalog: Any, makers: Mapping[tuple[str, str], Objects], rows: int) -> int:
        files = {key: _Files(catalog, rows, f"the deltas of {makers[key].iid}") for key in self.pairs}
        held = 0
        for key, ev in self.events():
            before = len(files[key].pending)
            files[key].add(makers[key].deltas(ev))
            held += len(files[key].pending) - before
            if held > DELTAS_HELD:
                biggest = max(files.values(), key=lambda f: len(f.pending))
                held -= biggest.flush_ready()
        for f in files.values():
            f.close()
        return sum(f.count for f in files.values())


def _instrument_precisions(catalog: Any, iid: str, pp: int, sp: int, overwrite: bool) -> tuple[int, int, bool]:
    """An instrument the catalog already holds (an earlier export into it) is kept when its
    precisions can write this data; (price, size precision, whether to write the instrument)."""
    try:
        existing = catalog.instruments(instrument_ids=[iid])
    except Exception:  # noqa: BLE001 - an empty or foreign catalog: write ours
        existing = []
    if not existing:
        return pp, sp, True
    old = existing[0]
    if old.price_precision >= pp and old.size_precision >= sp:
        return old.price_precision, old.size_precision, False
    if not overwrite:
        raise ExportError(
            f"{iid} in the catalog has price/size precision {old.price_precision}/{old.size_precision}, the data"
            f" needs {pp}/{sp}: choose another --out or pass --overwrite"
        )
    catalog.delete_data_range(type(old), iid)
    return pp, sp, True


def _clear_overlaps(
    catalog: Any, iid: str, days: list[Unit], source: Source, overwrite: bool, deltas: bool = False
) -> None:
    """Data of these days already in the catalog: an error, or deleted first with ``overwrite``
    (the catalog would otherwise hold both, or refuse to read overlapping files)."""
    data, *_ = nt()
    for cls in (data.OrderBookDepth10, data.QuoteTick, data.TradeTick, *([data.OrderBookDelta] if deltas else [])):
        try:
            intervals = catalog.get_intervals(cls, iid)
        except Exception:  # noqa: BLE001 - nothing of that type yet
            intervals = []
        for unit in days:
            window = source.window(unit)
            if window is None:
                continue
            lo, hi = window[0] * 1_000_000, window[1] * 1_000_000
            if not any(a < hi and b >= lo for a, b in intervals):
                continue
            if not overwrite:
                raise ExportError(
                    f"the catalog already holds {cls.__name__} of {iid} on {unit.day}:"
                    " choose another --out or pass --overwrite"
                )
            catalog.delete_data_range(cls, iid, lo, hi - 1)


def _export_day(
    source: Source, unit: Unit, catalog: Any, make: Objects, totals: dict[str, int], file_rows: Mapping[str, int]
) -> None:
    """One pair-day, a window (an hour from Parquet) at a time, converted in slices and written
    as it goes: memory holds a file's worth (``file_rows``) of nautilus objects per data type,
    however long or busy the day."""
    windows = source.windows(unit)
    # The quotes dataset's quotes when it has any that day, else the tops' changes (per day, as ever).
    stored_quotes = any(source.quotes(unit, w) is not None for w in windows)
    files = {
        key: _Files(catalog, file_rows[key], f"the {key} of {make.iid}") for key in ("depth10", "quotes", "trades")
    }
    last = None
    for window in windows:
        for chunk in source.books(unit, window):
            step = file_rows["depth10"]
            for lo in range(0, len(chunk), step):
                part = _rows(chunk, lo, lo + step)
                files["depth10"].add(make.depths(part))
                if not stored_quotes:
                    changed, last = tops_changed(part, last)
                    files["quotes"].add(make.quotes_from_books(part, changed))
        for key, table, convert in (
            ("quotes", source.quotes(unit, window) if stored_quotes else None, make.quotes),
            ("trades", source.trades(unit, window), make.trades),
        ):
            step = file_rows[key]
            for lo in range(0, table.num_rows if table is not None else 0, step):
                files[key].add(convert(table.slice(lo, step)))
    for key, written in files.items():
        written.close()
        totals[key] += written.count


def _rows(chunk: BookChunk, lo: int, hi: int) -> BookChunk:
    return BookChunk(*(getattr(chunk, f.name)[lo:hi] for f in dataclasses.fields(chunk)))


class _Files:
    """One data type of one instrument into the catalog, in files of at most ``rows`` objects.

    The catalog names a file by its first and last ``ts_init`` and refuses files whose closed
    intervals overlap, so a file ends only where ``ts_init`` moves on: objects sharing a time
    stay in one file (the rare run longer than a file makes a longer one)."""

    def __init__(self, catalog: Any, rows: int, what: str) -> None:
        self.catalog, self.rows, self.what = catalog, rows, what
        self.pending: list[Any] = []
        self.count = 0

    def add(self, objs: list[Any]) -> None:
        if objs and self.pending and objs[0].ts_init < self.pending[-1].ts_init:
            # Windows and sessions follow each other; two sessions of a pair at once do not.
            raise ExportError(f"{self.what} goes back in time: two sessions at once? pick one with --session-id")
        self.pending += objs
        while len(self.pending) > self.rows:  # past a full file: where its time ends is known
            ts = [o.ts_init for o in self.pending]
            cut = self.rows
            while cut and ts[cut - 1] == ts[cut]:
                cut -= 1
            if not cut:
                cut = self.rows
                while cut < len(ts) and ts[cut - 1] == ts[cut]:
                    cut += 1
                if cut == len(ts):
                    return  # the run may go on: wait for more
            self._flush(cut)

    def flush_ready(self) -> int:
        """Write what is held but the objects of the last time (more may follow): how many."""
        if not self.pending:
            return 0
        last = self.pending[-1].ts_init
        cut = len(self.pending)
        while cut and self.pending[cut - 1].ts_init == last:
            cut -= 1
        if cut:
            self._flush(cut)
        return cut

    def close(self) -> None:
        if self.pending:
            self._flush(len(self.pending))

    def _flush(self, n: int) -> None:
        head, self.pending = self.pending[:n], self.pending[n:]
        _write(self.catalog, head)
        self.count += n


def _write(catalog: Any, objs: list[Any]) -> None:
    try:
        catalog.write_data(objs)
    except (ValueError, OSError, RuntimeError, AssertionError) as exc:  # Assertion: overlapping files
        raise ExportError(f"nautilus catalog write failed: {str(exc).splitlines()[0]}") from None
