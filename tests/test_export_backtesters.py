"""Exports run by the real backtesters: hftbacktest's book equals ours at chosen times (across
days too), a nautilus BacktestEngine consumes the catalog with our counts and tops.

Data: tests/export_data.py (a simulator capture, replayed recordings); references read with
recorder.dataset.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from recorder.dataset import open_dataset
from tests.export_data import (  # noqa: F401 - replayed, simulated: fixtures by name
    expected_quotes,
    export_cli,
    hftbacktest_of,
    nautilus_engine,
    ours,
    records,
    replayed,
    simulated,
)


@pytest.mark.parametrize("which", ["replayed", "simulated"])
def test_hftbacktest_book_equals_ours(which: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    hbt = pytest.importorskip("hftbacktest")
    from hftbacktest.data import validate_event_order

    data = request.getfixturevalue(which)
    out = tmp_path / "hbt"
    export_cli(data, "hftbacktest", out, "--from", "snapshots")  # (the simulated capture has an archive too)
    books = ours(data)
    instruments = json.loads((out / "instruments.json").read_text())
    trades = records(data, "trades")
    checked = checked_trades = 0
    for (exchange, pair), snaps in books.items():
        day = snaps[0].timestamp[:10]
        path = out / f"{exchange}_{pair}_{day}.npz"
        events = np.load(path)["data"]
        assert events.dtype == hbt.types.event_dtype
        # hftbacktest's own check: both clocks in order.
        validate_event_order(events)
        snap_ev = events[(events["ev"] & 0xFF) == hbt.DEPTH_SNAPSHOT_EVENT]
        local = snap_ev[(snap_ev["ev"] & hbt.LOCAL_EVENT) != 0]["local_ts"]
        # One arrival time per stored snapshot with levels, a constant shift from our grid tick
        # (zero unless a negative latency was corrected).
        ticks = np.array([s.timestamp_ms for s in snaps if len(s.bids) or len(s.asks)]) * 1_000_000
        shift = int(local.min() - ticks[0])
        assert shift >= 0
        assert np.array_equal(np.unique(local), ticks + shift)
        # The day's trades, in order, taker side as hftbacktest's BUY/SELL flag, times in ns.
        tr = events[((events["ev"] & 0xFF) == hbt.TRADE_EVENT) & ((events["ev"] & hbt.LOCAL_EVENT) != 0)]
        stored = trades.get((exchange, pair))
        want = []
        if stored is not None:
            for us, px, qty, side in zip(
                stored["local_time"].cast("int64").to_pylist(),
                stored["price"].to_pylist(),
                stored["quantity"].to_pylist(),
                stored["side"].to_pylist(),
                strict=True,
            ):
                if us // 86_400_000_000 == ticks[0] // 86_400_000_000_000:  # this file's day
                    want.append((us * 1000 + shift, px, qty, hbt.BUY_EVENT if side == "buy" else hbt.SELL_EVENT))
        got = [
            (int(e["local_ts"]), float(e["px"]), float(e["qty"]), int(e["ev"]) & (hbt.BUY_EVENT | hbt.SELL_EVENT))
            for e in tr
        ]
        assert got == want, (exchange, pair)
        checked_trades += len(got)
        inst = instruments[f"{exchange}:{pair}"]
        tick = inst["tick_size"]
        bt = hftbacktest_of(path, tick, inst["lot_size"])
        bt.elapse(0)
        picks = sorted({1, len(snaps) // 3, len(snaps) // 2, len(snaps) - 2} & set(range(len(snaps) - 1)))
        for k in picks:
            # Between this snapshot and the next: the book must be exactly this one.
            target = (snaps[k].timestamp_ms + snaps[k + 1].timestamp_ms) * 500_000 + shift
            bt.elapse(target - bt.current_timestamp)
            depth = bt.depth(0)
            raw = depth.snapshot()
            book = raw.copy()
            depth.snapshot_free(raw)
            for flag, side in ((hbt.BUY_EVENT, snaps[k].bids), (hbt.SELL_EVENT, snaps[k].asks)):
                got = book[(book["ev"] & flag) != 0]
                got = sorted(
                    zip(np.round(got["px"] / tick).astype(np.int64).tolist(), got["qty"].tolist(), strict=True)
                )
                want = sorted(
                    zip(np.round(side[:, 0] / tick).astype(np.int64).tolist(), side[:, 1].tolist(), strict=True)
                )
                assert got == want, (exchange, pair, k)
            if len(snaps[k].bids):
                assert depth.best_bid == pytest.approx(snaps[k].best_bid)
            if len(snaps[k].asks):
                assert depth.best_ask == pytest.approx(snaps[k].best_ask)
            checked += 1
        bt.close()
    assert checked >= 8
    assert checked_trades == sum(t.num_rows for t in trades.values()) > 0


def test_hftbacktest_negative_latency_is_corrected_as_its_tools_do(tmp_path: Path) -> None:
    """A venue clock ahead of ours (exchange time after the grid tick): hftbacktest's
    correct_local_timestamp shifts the file's local times by the most negative latency."""
    hbt = pytest.importorskip("hftbacktest")
    import pyarrow as pa
    import pyarrow.parquet as pq
    from hftbacktest.data import validate_event_order

    from recorder.model import Level, Snapshot
    from recorder.writer.batches import snapshots_to_batch

    t0 = 1_764_633_600_000  # 2025-12-02T00:00:00Z
    snaps = [
        Snapshot(
            exchange="binance",
            pair="BTC-USDT",
            timestamp_ms=t0 + 1000 * i,
            bids=[Level(100.0 + i, 1.0), Level(99.5, 2.0)],
            asks=[Level(101.0 + i, 1.5)],
            capture_latency_ms=-30.0,
            sequence_number=i,
            exchange_time_ms=t0 + 1000 * i + (30 if i == 1 else 10),  # latency -30 ms at worst
            session_id="s",
        )
        for i in range(3)
    ]
    part = tmp_path / "data" / "parquet" / "exchange=binance" / "date=2025-12-02"
    part.mkdir(parents=True)
    pq.write_table(pa.Table.from_batches([snapshots_to_batch(snaps)]), part / f"s-{t0}-0.parquet")
    export_cli(tmp_path / "data", "hftbacktest", tmp_path / "out")
    events = np.load(tmp_path / "out" / "binance_BTC-USDT_2025-12-02.npz")["data"]
    validate_event_order(events)
    local = events[(events["ev"] & hbt.LOCAL_EVENT) != 0]
    assert sorted(set(local["local_ts"].tolist())) == [(t0 + 1000 * i + 30) * 1_000_000 for i in range(3)]
    assert (local["local_ts"] >= local["exch_ts"]).all()
    # What hftbacktest's correct_event_order makes of these events (flags stripped) is the file.
    from hftbacktest.data import correct_event_order

    bare = np.zeros(len(events), hbt.types.event_dtype)  # aligned, as hftbacktest builds them
    bare[:] = events
    bare["ev"] &= ~np.uint64(hbt.EXCH_EVENT | hbt.LOCAL_EVENT)
    redone = correct_event_order(
        bare, np.argsort(bare["exch_ts"], kind="mergesort"), np.argsort(bare["local_ts"], kind="mergesort")
    )
    assert np.array_equal(redone, events)
    doc = json.loads((tmp_path / "out" / "instruments.json").read_text())
    assert doc["local_ts_shift_ns"] == {"binance_BTC-USDT_2025-12-02.npz": 30_000_000}


@pytest.mark.parametrize("which", ["replayed", "simulated"])
def test_nautilus_engine_consumes_the_catalog(which: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    pytest.importorskip("nautilus_trader")
    from nautilus_trader.common.actor import Actor
    from nautilus_trader.model.enums import BookType
    from nautilus_trader.persistence.catalog import ParquetDataCatalog

    data = request.getfixturevalue(which)
    out = tmp_path / "catalog"
    export_cli(data, "nautilus", out)
    books = ours(data)

    class Watcher(Actor):
        def __init__(self, ids: list) -> None:
            super().__init__()
            self.ids = ids
            self.tops: dict[str, list] = {}
            self.quotes: dict[str, int] = {}
            self.trades: dict[str, list] = {}

        def on_start(self) -> None:
            for iid in self.ids:
                self.subscribe_order_book_depth(iid, BookType.L2_MBP)
                self.subscribe_quote_ticks(iid)
                self.subscribe_trade_ticks(iid)

        def on_trade_tick(self, tick) -> None:  # type: ignore[no-untyped-def]
            self.trades.setdefault(str(tick.instrument_id), []).append(
                (tick.ts_init, str(tick.trade_id), round(tick.price.as_double(), 9), tick.size.as_double())
            )

        def on_order_book_depth(self, depth) -> None:  # type: ignore[no-untyped-def]
            book = self.cache.order_book(depth.instrument_id)  # nautilus' own book, fed by the depths
            bid, ask = book.best_bid_price(), book.best_ask_price()
            self.tops.setdefault(str(depth.instrument_id), []).append(
                (depth.ts_init, round(bid.as_double(), 9) if bid else None, round(ask.as_double(), 9) if ask else None)
            )

        def on_quote_tick(self, tick) -> None:  # type: ignore[no-untyped-def]
            key = str(tick.instrument_id)
            self.quotes[key] = self.quotes.get(key, 0) + 1

    catalog = ParquetDataCatalog(str(out))
    instruments = catalog.instruments()
    assert {str(i.id) for i in instruments} == {f"{p}.{e.upper().replace('-', '_')}" for e, p in books}
    kinds = {str(i.id): type(i).__name__ for i in instruments}
    engine = nautilus_engine(instruments)
    ids = [i.id for i in instruments]
    trades = records(data, "trades")
    for iid in map(str, ids):  # per instrument: the engine looks at each list's first item
        for query in (catalog.order_book_depth10, catalog.quote_ticks, catalog.trade_ticks):
            found = query(instrument_ids=[iid])
            if found:
                engine.add_data(found)
    watcher = Watcher(ids)
    engine.add_actor(watcher)
    engine.run()
    for (exchange, pair), snaps in books.items():
        iid = f"{pair}.{exchange.upper().replace('-', '_')}"
        assert kinds[iid] == ("CryptoPerpetual" if pair.endswith("-PERP") else "CurrencyPair")
        tops = watcher.tops[iid]
        assert len(tops) == len(snaps), iid  # every stored snapshot reached the strategy
        want = [
            (
                s.timestamp_ms * 1_000_000,
                round(s.best_bid, 9) if s.best_bid is not None else None,
                round(s.best_ask, 9) if s.best_ask is not None else None,
            )
            for s in snaps  # our top of book, in our order
        ]
        assert tops == want, iid
        # The quotes written (the dataset's, or our tops' changes, per day) with both sides.
        want_quotes = sum(None not in q[2:] for q in expected_quotes(data, exchange, pair))
        assert watcher.quotes.get(iid, 0) == want_quotes, iid
        t = trades.get((exchange, pair))
        want_trades = (
            []
            if t is None
            else [
                (us * 1000, tid, round(px, 9), qty)
                for us, tid, px, qty in zip(
                    t["local_time"].cast("int64").to_pylist(),
                    t["trade_id"].to_pylist(),
                    t["price"].to_pylist(),
                    t["quantity"].to_pylist(),
                    strict=True,
                )
            ]
        )
        assert watcher.trades.get(iid, []) == want_trades, iid
    engine.dispose()


def _hbt_book(bt, tick: float, flag: int) -> list[tuple[int, float]]:  # type: ignore[no-untyped-def]
    depth = bt.depth(0)
    raw = depth.snapshot()
    book = raw.copy()
    depth.snapshot_free(raw)
    got = book[(book["ev"] & flag) != 0]
    return sorted(zip(np.round(got["px"] / tick).astype(np.int64).tolist(), got["qty"].tolist(), strict=True))


def test_days_follow_each_other_and_jsonl_exports_as_parquet(tmp_path: Path) -> None:
    """Two days in two files, loaded one after the other: the book stays exactly ours across
    midnight (the clear state carries over), also after the price jumps far (every 100 steps).
    The same data read from JSONL exports byte for byte as from Parquet."""
    import shutil

    from recorder.dataset import to_ms
    from tests.month_data import write_month

    data = tmp_path / "data"
    write_month(data, to_ms("2025-12-01"), days=2, step_ms=600_000)
    snaps = list(open_dataset(data).snapshots(pairs="BTC-USDT"))
    export_cli(data, "tardis", tmp_path / "from-parquet")
    # A time range cuts the days' files to it (start inclusive, end exclusive).
    export_cli(
        data,
        "tardis",
        tmp_path / "window",
        "--pairs",
        "BTC-USDT",
        "--start",
        "2025-12-01T23:00:00Z",
        "--end",
        "2025-12-02T01:00Z",
    )
    for day, first in (("2025-12-01", "2025-12-01T23:00"), ("2025-12-02", "2025-12-02T00:00")):
        with gzip.open(tmp_path / "window" / f"binance_book_snapshot_25_{day}_BTCUSDT.csv.gz", "rt") as fh:
            local = [int(line.split(",")[3]) for line in fh.read().splitlines()[1:]]
        assert local == [to_ms(first) * 1000 + i * 600_000_000 for i in range(6)]
    shutil.rmtree(data / "parquet")
    export_cli(data, "tardis", tmp_path / "from-jsonl")
    names = sorted(p.name for p in (tmp_path / "from-parquet").iterdir())
    assert len(names) == 2 * 2 * 2  # pairs x days x (book_snapshot_25, quotes)
    assert names == sorted(p.name for p in (tmp_path / "from-jsonl").iterdir())
    for name in names:
        a = gzip.decompress((tmp_path / "from-parquet" / name).read_bytes())
        assert a == gzip.decompress((tmp_path / "from-jsonl" / name).read_bytes()), name
    hbt = pytest.importorskip("hftbacktest")
    export_cli(data, "hftbacktest", tmp_path / "hbt", "--pairs", "BTC-USDT")
    files = sorted(str(p) for p in (tmp_path / "hbt").glob("*.npz"))
    assert [Path(f).name for f in files] == ["binance_BTC-USDT_2025-12-01.npz", "binance_BTC-USDT_2025-12-02.npz"]
    bt = hftbacktest_of(files, 0.01, 0.01)
    bt.elapse(0)
    midnight = next(i for i, s in enumerate(snaps) if s.timestamp.startswith("2025-12-02"))
    jump = next(i for i in range(1, len(snaps)) if snaps[i].best_bid < snaps[i - 1].best_bid - 50)
    for k in sorted({jump - 1, jump, midnight - 1, midnight, midnight + 1, len(snaps) - 2}):
        target = (snaps[k].timestamp_ms + snaps[k + 1].timestamp_ms) * 500_000
        bt.elapse(target - bt.current_timestamp)
        for flag, side in ((hbt.BUY_EVENT, snaps[k].bids), (hbt.SELL_EVENT, snaps[k].asks)):
            want = sorted(zip(np.round(side[:, 0] / 0.01).astype(np.int64).tolist(), side[:, 1].tolist(), strict=True))
            assert _hbt_book(bt, 0.01, flag) == want, k
    bt.close()


def test_thin_and_empty_books(tmp_path: Path) -> None:
    """Sides of different depth, one side empty, a book with no levels at all: every format
    carries them as stored (nautilus pads a side with its null orders, tardis leaves cells empty,
    hftbacktest's book holds exactly the levels stored)."""
    import csv

    import pyarrow as pa
    import pyarrow.parquet as pq

    from recorder.model import Level, Snapshot
    from recorder.writer.batches import snapshots_to_batch

    t0 = 1_764_633_600_000
    sides = [
        ([Level(100.0, 1.0), Level(99.0, 2.0)], [Level(101.0, 0.5)]),
        ([], [Level(102.0, 1.0), Level(103.0, 1.5), Level(104.0, 2.0)]),
        ([], []),
        ([Level(100.5, 3.0)], [Level(100.75, 0.25)]),
    ]
    snaps = [
        Snapshot(
            exchange="okx",
            pair="BTC-USDT-PERP",
            timestamp_ms=t0 + 1000 * i,
            bids=b,
            asks=a,
            capture_latency_ms=1.0,
            sequence_number=i,
            exchange_time_ms=t0 + 1000 * i - 5,
            session_id="s",
        )
        for i, (b, a) in enumerate(sides)
    ]
    part = tmp_path / "data" / "parquet" / "exchange=okx" / "date=2025-12-02"
    part.mkdir(parents=True)
    pq.write_table(pa.Table.from_batches([snapshots_to_batch(snaps)]), part / f"s-{t0}-0.parquet")
    data = tmp_path / "data"
    export_cli(data, "tardis", tmp_path / "tardis", "--depth", "3")
    with gzip.open(tmp_path / "tardis" / "okex-swap_book_snapshot_3_2025-12-02_BTC-USDT-SWAP.csv.gz", "rt") as fh:
        rows = list(csv.reader(fh))[1:]
    assert [r[4:] for r in rows] == [
        ["101", "0.5", "100", "1", "", "", "99", "2", "", "", "", ""],
        ["102", "1", "", "", "103", "1.5", "", "", "104", "2", "", ""],
        [""] * 12,
        ["100.75", "0.25", "100.5", "3", *[""] * 8],
    ]
    pytest.importorskip("nautilus_trader")
    from nautilus_trader.persistence.catalog import ParquetDataCatalog

    export_cli(data, "nautilus", tmp_path / "catalog")
    catalog = ParquetDataCatalog(str(tmp_path / "catalog"))
    (inst,) = catalog.instruments()
    assert (str(inst.id), type(inst).__name__, inst.price_precision, inst.size_precision) == (
        "BTC-USDT-PERP.OKX",
        "CryptoPerpetual",
        2,
        2,
    )
    depths = catalog.order_book_depth10(instrument_ids=["BTC-USDT-PERP.OKX"])
    got = [
        (
            [(o.price.as_double(), o.size.as_double()) for o in d.bids if o.size.as_double() > 0],
            [(o.price.as_double(), o.size.as_double()) for o in d.asks if o.size.as_double() > 0],
        )
        for d in depths
    ]
    assert got == [([(lv.price, lv.qty) for lv in b], [(lv.price, lv.qty) for lv in a]) for b, a in sides]
    hbt = pytest.importorskip("hftbacktest")
    export_cli(data, "hftbacktest", tmp_path / "hbt")
    bt = hftbacktest_of(tmp_path / "hbt" / "okx_BTC-USDT-PERP_2025-12-02.npz", 0.01, 0.01)
    bt.elapse(0)
    for i, (b, a) in enumerate(sides):
        bt.elapse((t0 + 1000 * i + 500) * 1_000_000 - bt.current_timestamp)
        for flag, levels in ((hbt.BUY_EVENT, b), (hbt.SELL_EVENT, a)):
            assert _hbt_book(bt, 0.01, flag) == sorted((round(lv.price / 0.01), lv.qty) for lv in levels), i
    bt.close()


def test_nautilus_catalog_grows_by_export_and_never_doubles(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """Exports into one catalog: disjoint time ranges add up; an overlap is refused (one line)
    unless --overwrite, which replaces that range instead of doubling it."""
    pytest.importorskip("nautilus_trader")
    from nautilus_trader.persistence.catalog import ParquetDataCatalog

    from tests.conftest import run_cli

    data: Path = request.getfixturevalue("replayed")
    snaps = ours(data)[("binance", "NKN-USDT")]
    middle = snaps[len(snaps) // 2].timestamp
    out = tmp_path / "catalog"
    pick = ("--pairs", "NKN-USDT")
    export_cli(data, "nautilus", out, *pick, "--end", middle)
    res = run_cli("export", "--to", "nautilus", "--data-dir", str(data), "--out", str(out), *pick)
    assert res.returncode == 2
    assert res.stderr.strip() == (
        "Error: the catalog already holds OrderBookDepth10 of NKN-USDT.BINANCE on 2021-10-12:"
        " choose another --out or pass --overwrite"
    )
    export_cli(data, "nautilus", out, *pick, "--start", middle)

    def stored() -> list[int]:
        catalog = ParquetDataCatalog(str(out))
        assert len(catalog.instruments()) == 1
        return [d.ts_init for d in catalog.order_book_depth10(instrument_ids=["NKN-USDT.BINANCE"])]

    assert stored() == [s.timestamp_ms * 1_000_000 for s in snaps]
    export_cli(data, "nautilus", out, *pick, "--overwrite")
    assert stored() == [s.timestamp_ms * 1_000_000 for s in snaps]
