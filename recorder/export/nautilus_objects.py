"""nautilus objects made from our data, at an instrument's precisions (``recorder.export.nautilus``
writes them): instruments, ``OrderBookDepth10``, ``QuoteTick``, ``TradeTick`` and, from the
archive's events, ``OrderBookDelta``."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pyarrow as pa

from recorder.export.source import BookChunk
from recorder.export.symbols import ExportError, Instrument, safe_name

DEPTH = 10


def nt() -> Any:
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
    _, enums, _, _, _, Currency, _ = nt()
    try:
        cur = Currency.from_str(code)
        if cur is not None:
            return cur
    except (ValueError, KeyError):
        pass
    return Currency(code, 8, 0, code, enums.CurrencyType.CRYPTO)


def make_instrument(inst: Instrument, price_prec: int, size_prec: int, ts_ns: int) -> Any:
    _, _, ids, instruments, objects, _, _ = nt()
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


class Objects:
    """Makes nautilus objects for one instrument at its precisions."""

    def __init__(self, iid: str, price_prec: int, size_prec: int) -> None:
        data, enums, ids, _, objects, _, _ = nt()
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

    def deltas(self, events: np.ndarray) -> list[Any]:
        """The book changes of a pair's archive events (``recorder.export.events``) as nautilus'
        adapters emit them: a snapshot load as a ``CLEAR`` and an ``ADD`` per level, all flagged
        ``F_SNAPSHOT``; a level change as an ``UPDATE`` (a quantity) or a ``DELETE`` (0); the last
        delta of each archived frame (the events of one receive time) also ``F_LAST``. Trades are
        left out (they are ``TradeTick`` s from the trades dataset)."""
        from recorder.export.events import BID, CLEAR, SNAPSHOT, TRADE

        data, enums, objects = self.data, self.enums, self.objects
        Price, Qty, Order, Delta = objects.Price, objects.Quantity, data.BookOrder, data.OrderBookDelta
        action = enums.BookAction
        events = events[events["kind"] != TRADE]
        local = events["local_ns"]
        last = np.ones(len(events), bool)  # a batch ends with a whole frame (events.ArchiveEvents)
        last[:-1] = local[1:] != local[:-1]
        f_snapshot, f_last = int(enums.RecordFlag.F_SNAPSHOT), int(enums.RecordFlag.F_LAST)
        buy, sell = enums.OrderSide.BUY, enums.OrderSide.SELL
        pp, sp, iid = self.pp, self.sp, self.iid
        out = []
        for kind, side, px, qty, exch, init, end in zip(
            *(events[c].tolist() for c in ("kind", "side", "price", "qty", "exch_ns", "local_ns")),
            last.tolist(),
            strict=True,
        ):
            tail = f_last if end else 0
            if kind == CLEAR:
                out.append(Delta(iid, action.CLEAR, None, f_snapshot | tail, 0, exch, init))
                continue
            order = Order(buy if side == BID else sell, Price(px, pp), Qty(qty, sp), 0)
            if kind == SNAPSHOT:
                out.append(Delta(iid, action.ADD, order, f_snapshot | tail, 0, exch, init))
            else:
                out.append(Delta(iid, action.UPDATE if qty else action.DELETE, order, tail, 0, exch, init))
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
