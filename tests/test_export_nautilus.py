"""nautilus export in files of bounded size: the catalog nautilus reads back holds every stored
snapshot, quote change and trade, each exactly once, in files whose intervals nautilus accepts.

The reference is the stored Parquet read with pyarrow (no recorder reader, no exporter code)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pyarrow.dataset as pads
import pytest

from recorder.dataset import to_ms
from tests.busy_day import write_busy_day

nautilus_trader = pytest.importorskip("nautilus_trader")

IID = "BTC-USDT.BINANCE"


def _stored_books(data: Path) -> list[tuple[int, int, list, list]]:
    """(ts ns, venue ns, bids, asks) per stored snapshot from the long-form Parquet rows."""
    t = pads.dataset(data / "parquet", format="parquet", partitioning="hive").to_table()
    books: dict[int, tuple[int, dict, dict]] = {}
    for ts, ex, side, level, px, qty in zip(
        *(t[c].to_pylist() for c in ("timestamp_ms", "exchange_time_ms", "side", "level", "price", "quantity")),
        strict=True,
    ):
        _, bids, asks = books.setdefault(ts, (ex, {}, {}))
        (bids if side == "bid" else asks)[level] = (px, qty)
    return [
        (ts * 1_000_000, ex * 1_000_000, [b[k] for k in sorted(b)][:10], [a[k] for k in sorted(a)][:10])
        for ts, (ex, b, a) in sorted(books.items())
    ]


def _stored_trades(data: Path) -> list[tuple]:
    t = pads.dataset(data / "trades" / "parquet", format="parquet", partitioning="hive").to_table()
    t = t.sort_by([("local_time", "ascending"), ("sequence_number", "ascending")])
    local = t["local_time"].cast("int64").to_pylist()
    venue = t["exchange_time"].cast("int64").to_pylist()
    rows = zip(local, venue, *(t[c].to_pylist() for c in ("trade_id", "price", "quantity", "side")), strict=True)
    return [
        (lt * 1000, vt * 1000, tid, px, qty, "BUYER" if s == "buy" else "SELLER") for lt, vt, tid, px, qty, s in rows
    ]


def _f(value: object) -> float:
    """A nautilus Price / Quantity as the stored float (its double is off in the last bits)."""
    return round(value.as_double(), 9)  # type: ignore[attr-defined]


def _files(out: Path, kind: str) -> list[tuple[int, int, int]]:
    """(first ts_init, last ts_init, rows) of each catalog file of ``kind``, read with pyarrow."""
    found = []
    for path in sorted((out / "data" / kind / IID).glob("*.parquet")):
        ts = pads.dataset(path, format="parquet").to_table(columns=["ts_init"])["ts_init"].to_pylist()
        found.append((ts[0], ts[-1], len(ts)))
    return sorted(found)


def test_chunked_catalog_reads_back_complete(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """90 minutes over midnight (two days), 12 levels, 3 trades per frame, exported in files of a
    few hundred objects: many files per day and type, none overlapping (a file never splits the
    trades of one receive time), and nautilus reads back every stored snapshot (its best 10
    levels), quote change and trade, once, also after a re-export with --overwrite."""
    from nautilus_trader.persistence.catalog import ParquetDataCatalog

    from recorder.export import ExportError, export, nautilus

    data, out = tmp_path / "data", tmp_path / "catalog"
    write_busy_day(data, to_ms("2026-11-20T23:00:00Z"), 90, depth=12, trades_per_step=3)
    rows = {"depth10": 500, "quotes": 700, "trades": 1000}
    monkeypatch.setattr(nautilus, "FILE_ROWS", rows)
    books, trades = _stored_books(data), _stored_trades(data)
    assert (len(books), len(trades)) == (5400, 16200)

    def read_back() -> None:
        catalog = ParquetDataCatalog(str(out))
        assert [str(i.id) for i in catalog.instruments()] == [IID]  # written once
        depths = catalog.order_book_depth10(instrument_ids=[IID])
        got = [
            (
                d.ts_init,
                d.ts_event,
                [(_f(o.price), _f(o.size)) for o in d.bids],
                [(_f(o.price), _f(o.size)) for o in d.asks],
            )
            for d in depths
        ]
        assert got == books
        quotes = catalog.quote_ticks(instrument_ids=[IID])
        # Every tick moves the mid: each snapshot's top is a quote change.
        want_quotes = [(ts, b[0][0], b[0][1], a[0][0], a[0][1]) for ts, _, b, a in books]
        got_quotes = [
            (
                q.ts_init,
                _f(q.bid_price),
                _f(q.bid_size),
                _f(q.ask_price),
                _f(q.ask_size),
            )
            for q in quotes
        ]
        assert got_quotes == want_quotes
        ticks = catalog.trade_ticks(instrument_ids=[IID])
        got_trades = [
            (t.ts_init, t.ts_event, str(t.trade_id), _f(t.price), _f(t.size), t.aggressor_side.name) for t in ticks
        ]
        assert got_trades == trades
        for kind, n, limit in (
            ("order_book_depth10", len(books), rows["depth10"]),
            ("quote_tick", len(books), rows["quotes"]),
            ("trade_tick", len(trades), rows["trades"]),
        ):
            files = _files(out, kind)
            assert sum(f[2] for f in files) == n, kind
            assert len(files) >= n // limit, kind  # bounded files, several per day
            assert all(f[2] <= limit for f in files), kind
            assert all(a[1] < b[0] for a, b in zip(files, files[1:], strict=False)), kind  # disjoint

    res = export(data, to="nautilus", out=out)
    assert res.counts == {"instruments": 1, "depth10": 5400, "quotes": 5400, "trades": 16200}
    read_back()
    # A trade file ends before a frame's trades, never inside them (3 per frame, 1000 per file).
    per_frame = defaultdict(int)
    for t in trades:
        per_frame[t[0]] += 1
    assert all(per_frame[first] == 3 for first, _, _ in _files(out, "trade_tick"))
    with pytest.raises(ExportError, match="already holds OrderBookDepth10"):
        export(data, to="nautilus", out=out)
    res = export(data, to="nautilus", out=out, overwrite=True)
    assert res.counts["depth10"] == 5400
    read_back()
