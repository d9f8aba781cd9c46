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
import datetime as dt
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from recorder.export.source import BookChunk, Source, Unit, decimals
from recorder.export.symbols import ExportError, Instrument, instrument, safe_name
from recorder.export.tardis import tops_changed

DEPTH = 10
# Objects per catalog file, and so the most held at once per data type: ~20 MB of nautilus
# objects each (a depth with its 20 orders ~2 kB, a tick ~0.2 kB).
FILE_ROWS = {"depth10": 10_000, "quotes": 100_000, "trades": 100_000}


def _nt() -> Any:
    try:
        import nautilus_trader.model.data as data
        import nautilus_trader.model.enums as enums
        import nautilus_trader.model.identifiers as ids
        import nautilus_trader.model.instruments as instruments
        import nautilus_trader.model.objects as objects
        from nautilus_trader.model.currencies import Currency
        from nautilus_trader.persistence.catalog import ParquetDataCatalog
    except ImportError:
        raise ExportError("--to nautilus needs the nautilus_trader package: pip install 'recorder[export]'") from None
    return data, enums, ids, instruments, objects, Currency, ParquetDataCatalog


def instrument_id(exchange: str, pair: str) -> str:
    # nautilus derives account ids "<VENUE>-001" from the venue: no '-' in it.
    return f"{safe_name(pair, 'pair')}.{safe_name(exchange, 'exchange').upper().replace('-', '_')}"


def _currency(code: str) -> Any:
    _, enums, _, _, _, Currency, _ = _nt()
    try:
        cur = Currency.from_str(code)
        if cur is not None:
            return cur
    except (ValueError, KeyError):
        pass
    return Currency(code, 8, 0, code, enums.CurrencyType.CRYPTO)


def make_instrument(inst: Instrument, price_prec: int, size_prec: int, ts_ns: int) -> Any:
    _, _, ids, instruments, objects, _, _ = _nt()
    iid = ids.InstrumentId.from_str(instrument_id(inst.exchange, inst.pair))
    price_inc = objects.Price(10.0**-price_prec, price_prec)
    size_inc = objects.Quantity(10.0**-size_prec, size_prec)
    base, quote = _currency(inst.base), _currency(inst.quote)
    common = {
        "price_precision": price_prec,
        "size_precision": size_prec,
        "price_increment": price_inc,
        "size_increment": size_inc,
        "ts_event": ts_ns,
        "ts_init": ts_ns,
    }
    raw = ids.Symbol(inst.symbol)
    if inst.kind == "spot":
        return instruments.CurrencyPair(iid, raw, base, quote, **common)
    settle = base if inst.inverse else quote
    if inst.kind == "perpetual":
        return instruments.CryptoPerpetual(iid, raw, base, quote, settle, inst.inverse, **common)
    expiry = dt.datetime.strptime(inst.expiry or "", "%y%m%d").replace(hour=8, tzinfo=dt.UTC)
    return instruments.CryptoFuture(
        iid, raw, base, quote, settle, inst.inverse, ts_ns, int(expiry.timestamp()) * 10**9, **common
    )


class _Objects:
    """Makes nautilus objects for one instrument at its precisions."""

    def __init__(self, iid: str, price_prec: int, size_prec: int) -> None:
        data, enums, ids, _, objects, _, _ = _nt()
        self.data, self.enums, self.objects = data, enums, objects
        self.iid = ids.InstrumentId.from_str(iid)
        self.TradeId = ids.TradeId
        self.pp, self.sp = price_prec, size_prec
        self.flags = int(enums.RecordFlag.F_SNAPSHOT) | int(enums.RecordFlag.F_LAST)

    def depths(self, chunk: BookChunk) -> list[Any]:
        data, objects, enums = self.data, self.objects, self.enums
        Price, Qty, Order = objects.Price, objects.Quantity, data.BookOrder
        buy, sell = enums.OrderSide.BUY, enums.OrderSide.SELL
        n, d = len(chunk), min(DEPTH, chunk.depth)
        bpx, bq = chunk.bid_px[:, :d].tolist(), chunk.bid_qty[:, :d].tolist()
        apx, aq = chunk.ask_px[:, :d].tolist(), chunk.ask_qty[:, :d].tolist()
        ev = (chunk.exch_ms * 1_000_000).tolist()
        init = (chunk.ts_ms * 1_000_000).tolist()
        seq = chunk.sequence.tolist()
        out = []
        pp, sp = self.pp, self.sp
        null = Order(enums.OrderSide.NO_ORDER_SIDE, Price(0, pp), Qty(0, sp), 0)  # nautilus' own padding
        for i in range(n):
            bids = [Order(buy, Price(p, pp), Qty(q, sp), 0) for p, q in zip(bpx[i], bq[i], strict=True) if p == p]
            asks = [Order(sell, Price(p, pp), Qty(q, sp), 0) for p, q in zip(apx[i], aq[i], strict=True) if p == p]
            # Both sides the same length (nautilus refuses others): the thinner one padded with nulls.
            width = max(len(bids), len(asks))
            bid_counts = [1] * len(bids) + [0] * (width - len(bids))
            ask_counts = [1] * len(asks) + [0] * (width - len(asks))
            bids += [null] * (width - len(bids))
            asks += [null] * (width - len(asks))
            out.append(
                data.OrderBookDepth10(self.iid, bids, asks, bid_counts, ask_counts, self.flags, seq[i], ev[i], init[i])
            )
        return out

    def quotes_from_books(self, chunk: BookChunk, rows: np.ndarray) -> list[Any]:
        Price, Qty = self.objects.Price, self.objects.Quantity
        out = []
        for i in rows.tolist():
            top = (chunk.bid_px[i, 0], chunk.ask_px[i, 0], chunk.bid_qty[i, 0], chunk.ask_qty[i, 0])
            if any(v != v for v in top):
                continue  # a QuoteTick needs both sides
            out.append(
                self.data.QuoteTick(
                    self.iid,
                    Price(top[0], self.pp),
                    Price(top[1], self.pp),
                    Qty(top[2], self.sp),
                    Qty(top[3], self.sp),
                    int(chunk.exch_ms[i]) * 1_000_000,
                    int(chunk.ts_ms[i]) * 1_000_000,
                )
            )
        return out

    def quotes(self, table: pa.Table) -> list[Any]:
        Price, Qty = self.objects.Price, self.objects.Quantity
        cols = {c: table[c].to_pylist() for c in ("bid_price", "ask_price", "bid_qty", "ask_qty")}
        local = _ns(table["local_time"])
        exch = _ns(table["exchange_time"], local)
        out = []
        for i in range(table.num_rows):
            bp, ap, bq, aq = cols["bid_price"][i], cols["ask_price"][i], cols["bid_qty"][i], cols["ask_qty"][i]
            if None in (bp, ap, bq, aq):
                continue
            q = self.data.QuoteTick(
                self.iid, Price(bp, self.pp), Price(ap, self.pp), Qty(bq, self.sp), Qty(aq, self.sp), exch[i], local[i]
            )
            out.append(q)
        return out

    def trades(self, table: pa.Table) -> list[Any]:
        Price, Qty = self.objects.Price, self.objects.Quantity
        sides = {"buy": self.enums.AggressorSide.BUYER, "sell": self.enums.AggressorSide.SELLER}
        none = self.enums.AggressorSide.NO_AGGRESSOR
        px, qty = table["price"].to_pylist(), table["quantity"].to_pylist()
        side, tid = table["side"].to_pylist(), table["trade_id"].to_pylist()
        local = _ns(table["local_time"])
        exch = _ns(table["exchange_time"], local)
        return [
            self.data.TradeTick(
                self.iid,
                Price(px[i], self.pp),
                Qty(qty[i], self.sp),
                sides.get(side[i], none),
                self.TradeId(str(tid[i])[:36] or "0"),
                exch[i],
                local[i],
            )
            for i in range(table.num_rows)
            if qty[i] > 0  # nautilus refuses an empty trade (a venue's zero-size print)
        ]


def _ns(col: pa.ChunkedArray, fallback: list[int] | None = None) -> list[int]:
    us = col.cast(pa.int64()).to_pylist()
    if fallback is None:
        return [u * 1000 for u in us]
    return [u * 1000 if u is not None else f for u, f in zip(us, fallback, strict=True)]


def export_units(
    source: Source,
    units: list[Unit],
    out: Path,
    advance: Callable[[], None],
    overwrite: bool = False,
    file_rows: Mapping[str, int] | None = None,
) -> tuple[list[str], dict[str, int]]:
    *_, ParquetDataCatalog = _nt()
    catalog = ParquetDataCatalog(str(out))
    totals = {"instruments": 0, "depth10": 0, "quotes": 0, "trades": 0}
    by_pair: dict[tuple[str, str], list[Unit]] = {}
    for u in units:
        by_pair.setdefault((u.exchange, u.pair), []).append(u)
    written: list[str] = []
    for (exchange, pair), days in by_pair.items():
        # Precisions first (one pass over the pair's data): every Price is made at them.
        pp = sp = 0
        for u in days:
            prices, sizes = source.prices_and_sizes(u)
            pp, sp = max(pp, decimals(prices)), max(sp, decimals(sizes))
        inst = instrument(exchange, pair)
        iid = instrument_id(exchange, pair)
        pp, sp, fresh = _instrument_precisions(catalog, iid, pp, sp, overwrite)
        if fresh:
            _write(catalog, [make_instrument(inst, pp, sp, days[0].start_ms * 1_000_000)])
            totals["instruments"] += 1
        _clear_overlaps(catalog, iid, days, source, overwrite)
        written.append(iid)
        make = _Objects(iid, pp, sp)
        for u in days:
            _export_day(source, u, catalog, make, totals, file_rows or FILE_ROWS)
            advance()
    return written, totals


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


def _clear_overlaps(catalog: Any, iid: str, days: list[Unit], source: Source, overwrite: bool) -> None:
    """Data of these days already in the catalog: an error, or deleted first with ``overwrite``
    (the catalog would otherwise hold both, or refuse to read overlapping files)."""
    data, *_ = _nt()
    for cls in (data.OrderBookDepth10, data.QuoteTick, data.TradeTick):
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
    source: Source, unit: Unit, catalog: Any, make: _Objects, totals: dict[str, int], file_rows: Mapping[str, int]
) -> None:
    """One pair-day, a window (an hour from Parquet) at a time, converted in slices and written
    as it goes: memory holds a file's worth (``file_rows``) of nautilus objects per data type,
    however long or busy the day."""
    windows = source.windows(unit)
    # The quotes dataset's quotes when it has any that day, else the tops' changes (per day, as ever).
    stored_quotes = any(source.quotes(unit, w) is not None for w in windows)
    files = {key: _Files(catalog, file_rows[key]) for key in ("depth10", "quotes", "trades")}
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

    def __init__(self, catalog: Any, rows: int) -> None:
        self.catalog, self.rows = catalog, rows
        self.pending: list[Any] = []
        self.count = 0

    def add(self, objs: list[Any]) -> None:
        if objs and self.pending and objs[0].ts_init < self.pending[-1].ts_init:
            raise ExportError("nautilus export: data out of time order")  # never: windows follow each other
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
