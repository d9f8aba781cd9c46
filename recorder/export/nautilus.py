"""nautilus_trader: a ``ParquetDataCatalog`` written with nautilus' own catalog API.

- instruments: ``CurrencyPair`` (spot), ``CryptoPerpetual`` (``-PERP`` pairs), ``CryptoFuture``
  (dated pairs), id ``<PAIR>.<EXCHANGE>`` (``BTC-USDT.BINANCE``, ``BTC-USDT-PERP.BINANCE_FUTURES``),
  the venue's symbol as ``raw_symbol``, price and size precision inferred from the data (the
  most decimals any stored price / size of the selection has);
- each stored snapshot as an ``OrderBookDepth10`` (its best 10 levels per side; ``ts_event`` the
  venue's time of the last update in the book, ``ts_init`` the grid tick);
- trades as ``TradeTick`` (when the dataset has trades);
- quote changes as ``QuoteTick``: the quotes dataset when there is one, else one per change of
  the snapshots' top of book;
- where a session archived the pair (``recorder.export.event_units``), every book change as
  ``OrderBookDelta`` s (``nautilus_objects.Objects.deltas``), a pair-day at a time.

Written per pair and day as it is read (a window of the day at a time), in catalog files of at
most ``FILE_ROWS`` objects per data type: memory stays bounded however long or busy the day.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from recorder.export.nautilus_objects import Objects, instrument_id, make_instrument, nt
from recorder.export.source import BookChunk, Source, Unit, decimals, unit_window
from recorder.export.symbols import ExportError, instrument
from recorder.export.tardis import tops_changed

if TYPE_CHECKING:
    from recorder.export.event_units import ArchiveUnits

# Objects per catalog file, and so the most held at once per data type: ~20 MB of nautilus
# objects each (a depth with its 20 orders ~2 kB, a tick or a delta ~0.2 kB).
FILE_ROWS = {"depth10": 10_000, "quotes": 100_000, "trades": 100_000, "deltas": 100_000}

Pair = tuple[str, str]  # (exchange, pair)


def export_units(
    stored: Source | None,
    units: list[Unit],
    archive: ArchiveUnits | None,
    event_units: list[Unit],
    out: Path,
    spool: Path,
    step: Callable[[Unit], None],
    overwrite: bool = False,
    file_rows: Mapping[str, int] | None = None,
) -> tuple[list[str], dict[str, int]]:
    """The stored ``units`` (snapshots, trades, quotes) and, from the ``archive``, the book
    changes of its ``event_units`` as ``OrderBookDelta`` s, into the catalog at ``out``."""
    *_, ParquetDataCatalog = nt()
    rows = file_rows or FILE_ROWS
    catalog = ParquetDataCatalog(str(out))
    totals = {"instruments": 0, "depth10": 0, "quotes": 0, "trades": 0}
    days = _by_pair(units)
    event_days = _by_pair(event_units)
    # A first replay of the archive for the precisions its prices and sizes need: a book far
    # deeper than the stored one may show more decimals (the deltas are written in a second).
    archived = _archive_decimals(archive, spool) if archive is not None else {}
    written: list[str] = []
    makers: dict[Pair, Objects] = {}
    for exchange, pair in sorted(set(days) | set(event_days)):
        key = (exchange, pair)
        # Precisions first (one pass over the pair's data): every Price is made at them.
        pp, sp = archived.get(key, (0, 0))
        for u in days.get(key, []):
            assert stored is not None  # stored units come from it
            prices, sizes = stored.prices_and_sizes(u)
            pp, sp = max(pp, decimals(prices)), max(sp, decimals(sizes))
        iid = instrument_id(exchange, pair)
        pp, sp, fresh = _instrument_precisions(catalog, iid, pp, sp, overwrite)
        if fresh:
            first = min(u.start_ms for u in days.get(key, []) + event_days.get(key, []))
            _write(catalog, [make_instrument(instrument(exchange, pair), pp, sp, first * 1_000_000)])
            totals["instruments"] += 1
        data, *_ = nt()
        if stored is not None:
            for cls in (data.OrderBookDepth10, data.QuoteTick, data.TradeTick):
                _clear_overlaps(catalog, cls, iid, days.get(key, []), stored.sel.start_ms, stored.sel.end_ms, overwrite)
        if archive is not None:
            _clear_overlaps(
                catalog, data.OrderBookDelta, iid, event_days.get(key, []), archive.start_ms, archive.end_ms, overwrite
            )
        written.append(iid)
        make = makers[key] = Objects(iid, pp, sp)
        for u in days.get(key, []):
            assert stored is not None
            _export_day(stored, u, catalog, make, totals, rows)
            step(u)
    if archive is not None:
        totals["deltas"] = 0
        for unit in archive.spooled(spool):
            key = (unit.unit.exchange, unit.unit.pair)
            files = _Files(catalog, rows["deltas"], f"the deltas of {makers[key].iid}")
            for frames in _whole_frames(unit.chunks(rows["deltas"])):
                files.add(makers[key].deltas(frames))
            files.close()
            unit.release()
            totals["deltas"] += files.count
            step(unit.unit)
    return written, totals


def _by_pair(units: list[Unit]) -> dict[Pair, list[Unit]]:
    out: dict[Pair, list[Unit]] = {}
    for u in sorted(units, key=lambda u: (u.exchange, u.pair, u.day)):
        out.setdefault((u.exchange, u.pair), []).append(u)
    return out


def _archive_decimals(archive: ArchiveUnits, spool: Path) -> dict[Pair, tuple[int, int]]:
    """Per pair the decimals its archived prices and sizes need."""
    found: dict[Pair, tuple[int, int]] = {}
    for unit in archive.spooled(spool):
        key = (unit.unit.exchange, unit.unit.pair)
        for ev in unit.chunks():
            pp, sp = found.get(key, (0, 0))
            found[key] = (max(pp, decimals(np.unique(ev["price"]))), max(sp, decimals(np.unique(ev["qty"]))))
        unit.release()
    return found


def _whole_frames(chunks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    """The chunks re-cut so none splits a frame (the events of one receive time): the deltas of
    a frame are converted together, its last one flagged ``F_LAST``."""
    held = None
    for chunk in chunks:
        if held is not None:
            chunk = np.concatenate([held, chunk])
        local = chunk["local_ns"]
        cut = int(np.searchsorted(local, local[-1], side="left")) if len(chunk) else 0
        if cut:
            yield chunk[:cut]
        held = chunk[cut:]
    if held is not None and len(held):
        yield held


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
    catalog: Any, cls: type, iid: str, days: list[Unit], start_ms: int | None, end_ms: int | None, overwrite: bool
) -> None:
    """Data of these days (cut to the selection) already in the catalog: an error, or deleted
    first with ``overwrite`` (the catalog would otherwise hold both, or refuse overlapping files)."""
    try:
        intervals = catalog.get_intervals(cls, iid)
    except Exception:  # noqa: BLE001 - nothing of that type yet
        intervals = []
    for unit in days:
        window = unit_window(unit, start_ms, end_ms)
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
