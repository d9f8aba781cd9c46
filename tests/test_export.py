"""Exports run by the real backtesters: hftbacktest's book equals ours at chosen times, a nautilus
BacktestEngine consumes the catalog with our counts and tops, tardis CSV reads back as stored.

Data: a capture on the simulator (through recorder.api) and real recordings replayed
(``python cli.py replay``). References are read with recorder.dataset, never the exporter.
"""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from recorder.dataset import open_dataset
from tests.conftest import ROOT, run_cli, wait_for
from tests.test_dataset import s3_server  # noqa: F401 - the moto S3 server fixture

REC = ROOT / "tests" / "data" / "recordings" / "binance"


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Binance spot and USD-M recordings replayed through the live code path."""
    data = tmp_path_factory.mktemp("replayed") / "data"
    for name, venue in (("BINANCE.ws.1.0", "binance"), ("BINANCE_FUTURES.ws.1.0", "binance-futures")):
        res = run_cli("replay", "--venue", venue, "--input", str(REC / name), "--data-dir", str(data))
        assert res.returncode == 0, res.stderr[-2000:]
    return data


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A short capture of two pairs on the simulator (JSONL and Parquet)."""
    from recorder.api import Capture

    data = tmp_path_factory.mktemp("simulated") / "data"
    pairs = ["BTC-USDT", "ETH-USDT"]
    with Capture(venue="binance", pairs=pairs, interval="200ms", data_dir=data, session_id="sim", simulate=True) as cap:

        def enough() -> bool:
            venues = cap.status().get("venues") or {}
            counts = [p["samples"] for v in venues.values() for p in v["pairs"].values()]
            return len(counts) == 2 and min(counts) >= 15

        wait_for(enough, 120, "15 samples per pair")
    return data


def _export(data: Path, to: str, out: Path, *extra: str) -> None:
    res = run_cli("export", "--to", to, "--data-dir", str(data), "--out", str(out), *extra, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.startswith("exported "), res.stdout


def _ours(data: Path) -> dict[tuple[str, str], list]:
    books: dict[tuple[str, str], list] = {}
    for s in open_dataset(data).snapshots():
        books.setdefault((s.exchange, s.pair), []).append(s)
    return books


# -- hftbacktest ----------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["replayed", "simulated"])
def test_hftbacktest_book_equals_ours(which: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    hbt = pytest.importorskip("hftbacktest")
    from hftbacktest.data import validate_event_order

    data = request.getfixturevalue(which)
    out = tmp_path / "hbt"
    _export(data, "hftbacktest", out)
    ours = _ours(data)
    instruments = json.loads((out / "instruments.json").read_text())
    checked = 0
    for (exchange, pair), snaps in ours.items():
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
        inst = instruments[f"{exchange}:{pair}"]
        tick = inst["tick_size"]
        asset = (
            hbt.BacktestAsset()
            .data([str(path)])
            .linear_asset(1.0)
            .constant_order_latency(0, 0)
            .risk_adverse_queue_model()
            .no_partial_fill_exchange()
            .trading_value_fee_model(0.0, 0.0)
            .tick_size(tick)
            .lot_size(inst["lot_size"])
            .last_trades_capacity(0)
        )
        bt = hbt.HashMapMarketDepthBacktest([asset])
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
    _export(tmp_path / "data", "hftbacktest", tmp_path / "out")
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


# -- nautilus_trader ------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["replayed", "simulated"])
def test_nautilus_engine_consumes_the_catalog(which: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    pytest.importorskip("nautilus_trader")
    from nautilus_trader.backtest.engine import BacktestEngine, BacktestEngineConfig
    from nautilus_trader.common.actor import Actor
    from nautilus_trader.config import LoggingConfig
    from nautilus_trader.model.currencies import USDT
    from nautilus_trader.model.enums import AccountType, BookType, OmsType
    from nautilus_trader.model.identifiers import Venue
    from nautilus_trader.model.objects import Money
    from nautilus_trader.persistence.catalog import ParquetDataCatalog

    data = request.getfixturevalue(which)
    out = tmp_path / "catalog"
    _export(data, "nautilus", out)
    ours = _ours(data)

    class Watcher(Actor):
        def __init__(self, ids: list) -> None:
            super().__init__()
            self.ids = ids
            self.tops: dict[str, list] = {}
            self.quotes: dict[str, int] = {}

        def on_start(self) -> None:
            for iid in self.ids:
                self.subscribe_order_book_depth(iid, BookType.L2_MBP)
                self.subscribe_quote_ticks(iid)

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
    assert {str(i.id) for i in instruments} == {f"{p}.{e.upper().replace('-', '_')}" for e, p in ours}
    kinds = {str(i.id): type(i).__name__ for i in instruments}
    engine = BacktestEngine(BacktestEngineConfig(logging=LoggingConfig(bypass_logging=True)))
    for venue in {i.id.venue for i in instruments}:
        engine.add_venue(
            venue=Venue(str(venue)),
            oms_type=OmsType.NETTING,
            account_type=AccountType.MARGIN,
            starting_balances=[Money(1_000_000, USDT)],
            book_type=BookType.L2_MBP,
        )
    for inst in instruments:
        engine.add_instrument(inst)
    ids = [i.id for i in instruments]
    engine.add_data(catalog.order_book_depth10(instrument_ids=[str(i) for i in ids]))
    engine.add_data(catalog.quote_ticks(instrument_ids=[str(i) for i in ids]))
    watcher = Watcher(ids)
    engine.add_actor(watcher)
    engine.run()
    for (exchange, pair), snaps in ours.items():
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
        changes = sum(
            1
            for prev, s in zip([None, *snaps], snaps, strict=False)
            if len(s.bids)
            and len(s.asks)
            and (
                prev is None
                or not (np.array_equal(prev.bids[:1], s.bids[:1]) and np.array_equal(prev.asks[:1], s.asks[:1]))
            )
        )
        assert watcher.quotes.get(iid, 0) == changes, iid
    engine.dispose()


# -- tardis ---------------------------------------------------------------------------------------


def test_tardis_csv_reads_back_as_stored(replayed: Path, tmp_path: Path) -> None:
    out = tmp_path / "tardis"
    _export(replayed, "tardis", out, "--depth", "5", "--exchanges", "binance-futures,binance")
    ours = _ours(replayed)
    symbols = {"binance": "binance", "binance-futures": "binance-futures"}
    expected_header = ["exchange", "symbol", "timestamp", "local_timestamp"] + [
        f"{side}[{i}].{field}" for i in range(5) for side in ("asks", "bids") for field in ("price", "amount")
    ]
    for (exchange, pair), snaps in ours.items():
        symbol = pair.removesuffix("-PERP").replace("-", "")
        name = f"{symbols[exchange]}_book_snapshot_5_{snaps[0].timestamp[:10]}_{symbol}.csv.gz"
        with gzip.open(out / name, "rt", newline="") as fh:
            rows = list(csv.reader(fh))
        assert rows[0] == expected_header
        body = rows[1:]
        assert len(body) == len(snaps)
        for row, s in zip(body, snaps, strict=True):
            assert row[:2] == [symbols[exchange], symbol]
            assert int(row[3]) == s.timestamp_ms * 1000  # µs
            exch = s.exchange_time_ms if s.exchange_time_ms is not None else s.timestamp_ms
            assert int(row[2]) == exch * 1000
            for i in range(5):
                for off, levels in ((4, s.asks), (6, s.bids)):
                    px, amount = row[off + 4 * i], row[off + 4 * i + 1]
                    if i < len(levels):
                        assert (float(px), float(amount)) == (levels[i, 0], levels[i, 1])
                    else:
                        assert px == amount == ""
        qname = f"{symbols[exchange]}_quotes_{snaps[0].timestamp[:10]}_{symbol}.csv.gz"
        with gzip.open(out / qname, "rt", newline="") as fh:
            quotes = list(csv.DictReader(fh))
        assert list(quotes[0]) == [
            "exchange",
            "symbol",
            "timestamp",
            "local_timestamp",
            "ask_amount",
            "ask_price",
            "bid_price",
            "bid_amount",
        ]
        tops, last = [], None
        for s in snaps:
            top = (s.best_ask, s.asks[0, 1] if len(s.asks) else None, s.best_bid, s.bids[0, 1] if len(s.bids) else None)
            if top != last:
                tops.append((s.timestamp_ms * 1000, top))
            last = top
        got = [
            (
                int(q["local_timestamp"]),
                tuple(float(q[c]) if q[c] else None for c in ("ask_price", "ask_amount", "bid_price", "bid_amount")),
            )
            for q in quotes
        ]
        assert got == tops


# -- bad arguments --------------------------------------------------------------------------------


def test_bad_arguments_are_one_line_errors(replayed: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    cases = [
        (["--to", "zipline"], "Invalid value for '--to'"),
        (["--to", "tardis", "--pairs", "../etc"], "Error: invalid pair"),
        (["--to", "tardis", "--start", "yesterday"], "Error: invalid time 'yesterday'"),
        (["--to", "tardis", "--start", "2021-10-13", "--end", "2021-10-12"], "Error: empty time range"),
        (["--to", "tardis", "--exchanges", "kraken"], "Error: nothing to export"),
        (["--to", "tardis", "--session-id", "../x"], "Error: invalid session id"),
        (["--to", "tardis", "--depth", "0"], "Error: invalid depth 0"),
    ]
    for args, message in cases:
        res = run_cli("export", "--data-dir", str(replayed), "--out", str(out), *args)
        assert res.returncode == 2, (args, res.stderr)
        assert message in res.stderr and "Traceback" not in res.stderr, (args, res.stderr)
    res = run_cli("export", "--to", "tardis", "--data-dir", str(tmp_path / "missing"), "--out", str(out))
    assert res.returncode == 2 and res.stderr.strip().splitlines()[-1].startswith("Error: no data directory")
    # An export never overwrites an earlier one unless told to.
    _export(replayed, "tardis", out, "--exchanges", "binance")
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    res = run_cli("export", "--to", "tardis", "--data-dir", str(replayed), "--out", str(out))
    assert res.returncode == 2 and "exists: choose another --out or pass --overwrite" in res.stderr
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
    (tmp_path / "file").write_text("x")
    res = run_cli("export", "--to", "tardis", "--data-dir", str(replayed), "--out", str(tmp_path / "file"))
    assert res.returncode == 2 and "is not a directory" in res.stderr


# -- trades, through the dataset's trades() reader ------------------------------------------------


def test_trades_are_exported_when_the_dataset_has_them(
    replayed: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The exporters read trades through ``Dataset.trades(**selection)`` (the trades dataset's
    reader: one row per trade, µs ``exchange_time`` / ``local_time``); stand one in here."""
    import pyarrow as pa

    from recorder.dataset.reader import Dataset
    from recorder.export import export

    snaps = _ours(replayed)[("binance", "NKN-USDT")]
    t0 = snaps[3].timestamp_ms * 1000 + 250  # µs
    us = pa.timestamp("us", tz="UTC")
    stored = pa.table(
        {
            "exchange": ["binance"] * 3,
            "pair": ["NKN-USDT"] * 3,
            "trade_id": ["101", "102", "103"],
            "price": [0.4312, 0.4311, 0.4313],
            "quantity": [12.0, 3.5, 40.0],
            "side": ["buy", "sell", "buy"],
            "exchange_time": pa.array([t0 - 900, t0 + 1_000, None], us),
            "local_time": pa.array([t0, t0 + 2_000, t0 + 300_000], us),
            "session_id": ["s"] * 3,
            "sequence_number": [0, 1, 2],
        }
    )

    def trades(self: Dataset, **select: object) -> pa.Table:
        sel = self.selection(**select)
        local_ms = [v // 1000 for v in stored["local_time"].cast(pa.int64()).to_pylist()]
        keep = [
            (sel.pairs is None or p in sel.pairs)
            and (sel.start_ms is None or t >= sel.start_ms)
            and (sel.end_ms is None or t < sel.end_ms)
            for p, t in zip(stored["pair"].to_pylist(), local_ms, strict=True)
        ]
        return stored.filter(pa.array(keep))

    monkeypatch.setattr(Dataset, "trades", trades, raising=False)
    res = export(replayed, to="tardis", out=tmp_path / "tardis", exchanges="binance", pairs="NKN-USDT", depth=5)
    assert res.counts["trades"] == 3
    with gzip.open(tmp_path / "tardis" / "binance_trades_2021-10-12_NKNUSDT.csv.gz", "rt", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["exchange", "symbol", "timestamp", "local_timestamp", "id", "side", "price", "amount"]
    assert rows[1:] == [
        ["binance", "NKNUSDT", str(t0 - 900), str(t0), "101", "buy", "0.4312", "12"],
        ["binance", "NKNUSDT", str(t0 + 1_000), str(t0 + 2_000), "102", "sell", "0.4311", "3.5"],
        ["binance", "NKNUSDT", str(t0 + 300_000), str(t0 + 300_000), "103", "buy", "0.4313", "40"],  # no venue time
    ]
    hbt = pytest.importorskip("hftbacktest")
    res = export(replayed, to="hftbacktest", out=tmp_path / "hbt", exchanges="binance", pairs="NKN-USDT")
    assert res.counts["trades"] == 3
    events = np.load(tmp_path / "hbt" / "binance_NKN-USDT_2021-10-12.npz")["data"]
    tr = events[((events["ev"] & 0xFF) == hbt.TRADE_EVENT) & ((events["ev"] & hbt.LOCAL_EVENT) != 0)]
    assert tr["local_ts"].tolist() == [t0 * 1000, (t0 + 2_000) * 1000, (t0 + 300_000) * 1000]
    assert tr["px"].tolist() == [0.4312, 0.4311, 0.4313] and tr["qty"].tolist() == [12.0, 3.5, 40.0]
    sides = [(e & hbt.BUY_EVENT) != 0 for e in tr["ev"].tolist()]
    assert sides == [True, False, True]
    pytest.importorskip("nautilus_trader")
    from nautilus_trader.persistence.catalog import ParquetDataCatalog

    res = export(replayed, to="nautilus", out=tmp_path / "catalog", exchanges="binance", pairs="NKN-USDT")
    ticks = ParquetDataCatalog(str(tmp_path / "catalog")).trade_ticks(instrument_ids=["NKN-USDT.BINANCE"])
    got = [(t.ts_init, t.ts_event, str(t.trade_id), t.price.as_double(), t.size.as_double()) for t in ticks]
    assert got == [
        (t0 * 1000, (t0 - 900) * 1000, "101", 0.4312, 12.0),
        ((t0 + 2_000) * 1000, (t0 + 1_000) * 1000, "102", 0.4311, 3.5),
        ((t0 + 300_000) * 1000, (t0 + 300_000) * 1000, "103", 0.4313, 40.0),
    ]
    assert [t.aggressor_side.name for t in ticks] == ["BUYER", "SELLER", "BUYER"]


# -- days, formats ---------------------------------------------------------------------------------


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
    _export(data, "tardis", tmp_path / "from-parquet")
    shutil.rmtree(data / "parquet")
    _export(data, "tardis", tmp_path / "from-jsonl")
    names = sorted(p.name for p in (tmp_path / "from-parquet").iterdir())
    assert len(names) == 2 * 2 * 2  # pairs x days x (book_snapshot_25, quotes)
    assert names == sorted(p.name for p in (tmp_path / "from-jsonl").iterdir())
    for name in names:
        a = gzip.decompress((tmp_path / "from-parquet" / name).read_bytes())
        assert a == gzip.decompress((tmp_path / "from-jsonl" / name).read_bytes()), name
    hbt = pytest.importorskip("hftbacktest")
    _export(data, "hftbacktest", tmp_path / "hbt", "--pairs", "BTC-USDT")
    files = sorted(str(p) for p in (tmp_path / "hbt").glob("*.npz"))
    assert [Path(f).name for f in files] == ["binance_BTC-USDT_2025-12-01.npz", "binance_BTC-USDT_2025-12-02.npz"]
    asset = (
        hbt.BacktestAsset()
        .data(files)
        .linear_asset(1.0)
        .constant_order_latency(0, 0)
        .risk_adverse_queue_model()
        .no_partial_fill_exchange()
        .trading_value_fee_model(0.0, 0.0)
        .tick_size(0.01)
        .lot_size(0.01)
        .last_trades_capacity(0)
    )
    bt = hbt.HashMapMarketDepthBacktest([asset])
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


def test_quotes_dataset_replaces_tops_of_snapshots(
    replayed: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a quotes dataset (``Dataset.quotes(**selection)``), tardis ``quotes`` and nautilus
    ``QuoteTick`` come from it, not from the snapshots' tops; a side missing is an empty cell
    (tardis) or no tick (nautilus needs both sides)."""
    import pyarrow as pa

    from recorder.dataset.reader import Dataset
    from recorder.export import export

    t0 = _ours(replayed)[("binance", "NKN-USDT")][2].timestamp_ms * 1000 + 7
    us = pa.timestamp("us", tz="UTC")
    stored = pa.table(
        {
            "exchange": ["binance"] * 2,
            "pair": ["NKN-USDT"] * 2,
            "bid_price": [0.431, None],
            "bid_qty": [5.0, None],
            "ask_price": [0.4315, 0.4316],
            "ask_qty": [7.5, 1.0],
            "exchange_time": pa.array([t0 - 40, t0 + 60], us),
            "local_time": pa.array([t0, t0 + 90], us),
            "update_id": [1, 2],
            "session_id": ["s"] * 2,
            "sequence_number": [0, 1],
        }
    )

    def quotes(self: Dataset, **select: object) -> pa.Table:
        sel = self.selection(**select)
        return stored if sel.pairs is None or "NKN-USDT" in sel.pairs else stored.slice(0, 0)

    monkeypatch.setattr(Dataset, "quotes", quotes, raising=False)
    export(replayed, to="tardis", out=tmp_path / "tardis", exchanges="binance", pairs="NKN-USDT", depth=5)
    with gzip.open(tmp_path / "tardis" / "binance_quotes_2021-10-12_NKNUSDT.csv.gz", "rt", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[1:] == [
        ["binance", "NKNUSDT", str(t0 - 40), str(t0), "7.5", "0.4315", "0.431", "5"],
        ["binance", "NKNUSDT", str(t0 + 60), str(t0 + 90), "1", "0.4316", "", ""],
    ]
    pytest.importorskip("nautilus_trader")
    from nautilus_trader.persistence.catalog import ParquetDataCatalog

    export(replayed, to="nautilus", out=tmp_path / "catalog", exchanges="binance", pairs="NKN-USDT")
    ticks = ParquetDataCatalog(str(tmp_path / "catalog")).quote_ticks(instrument_ids=["NKN-USDT.BINANCE"])
    assert [(q.ts_init, q.ts_event, q.bid_price.as_double(), q.ask_size.as_double()) for q in ticks] == [
        (t0 * 1000, (t0 - 40) * 1000, 0.431, 7.5)
    ]


def test_progress_bar_on_a_terminal_only(replayed: Path, tmp_path: Path) -> None:
    import os
    import pty
    import subprocess

    from tests.conftest import CLI

    args = ["export", "--to", "tardis", "--data-dir", str(replayed), "--out"]
    res = run_cli(*args, str(tmp_path / "piped"))
    assert res.returncode == 0 and res.stderr == ""  # no bar in a pipe or a log
    master, slave = pty.openpty()
    proc = subprocess.Popen([*CLI, *args, str(tmp_path / "tty")], stdout=subprocess.PIPE, stderr=slave, cwd=ROOT)
    os.close(slave)
    shown = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        shown += chunk
    out, _ = proc.communicate(timeout=120)
    os.close(master)
    assert proc.returncode == 0 and out.startswith(b"exported "), (out, shown[-500:])
    assert b"exporting to tardis" in shown and b"/" in shown, shown[-500:]


def test_exports_from_s3_as_from_the_local_dir(
    replayed: Path, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3

    s3_url: str = request.getfixturevalue("s3_server")  # moto's S3 server (tests/test_dataset.py)

    s3 = boto3.client("s3", endpoint_url=s3_url)
    s3.create_bucket(Bucket="books")
    for path in replayed.rglob("*"):
        rel = path.relative_to(replayed).as_posix()
        if path.is_file() and rel.startswith(("parquet/", "jsonl/")):
            s3.upload_file(str(path), "books", f"capture/{rel}")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_url)
    _export(replayed, "tardis", tmp_path / "local", "--pairs", "NKN-USDT,SUSHI-USDT-PERP")
    res = run_cli(
        "export", "--to", "tardis", "--data-dir", "s3://books/capture", "--out", str(tmp_path / "s3"),
        "--pairs", "NKN-USDT,SUSHI-USDT-PERP",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    names = sorted(p.name for p in (tmp_path / "local").iterdir())
    assert len(names) == 4 and names == sorted(p.name for p in (tmp_path / "s3").iterdir())
    for name in names:
        assert gzip.decompress((tmp_path / "s3" / name).read_bytes()) == gzip.decompress(
            (tmp_path / "local" / name).read_bytes()
        )
