"""nautilus export: in files of bounded size, the catalog nautilus reads back holds every stored
snapshot, quote change and trade, each exactly once, in files whose intervals nautilus accepts
(the reference: the stored Parquet read with pyarrow); with the lossless archive, a nautilus
BacktestEngine fed the catalog's ``OrderBookDelta`` s holds, at every grid tick, the book the
live capture stored (the reference: the stored snapshots, at the tick's time in the archive)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow.dataset as pads
import pytest

from recorder.dataset import open_dataset, to_ms
from tests.busy_day import write_busy_day
from tests.export_data import export_cli, nautilus_engine
from tests.test_export_events import tick_times

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


def _files(out: Path, kind: str, iid: str = IID) -> list[tuple[int, int, int]]:
    """(first ts_init, last ts_init, rows) of each catalog file of ``kind``, read with pyarrow."""
    found = []
    for path in sorted((out / "data" / kind / iid).glob("*.parquet")):
        ts = pads.dataset(path, format="parquet").to_table(columns=["ts_init"])["ts_init"].to_pylist()
        found.append((ts[0], ts[-1], len(ts)))
    return sorted(found)


def test_chunked_catalog_reads_back_complete(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """40 minutes over midnight (two days), 12 levels, 3 trades per frame, exported in files of a
    few hundred objects: many files per day and type, none overlapping (a file never splits the
    trades of one receive time), and nautilus reads back every stored snapshot (its best 10
    levels), quote change and trade, once, also after a re-export with --overwrite."""
    from nautilus_trader.persistence.catalog import ParquetDataCatalog

    from recorder.export import ExportError, export, nautilus

    data, out = tmp_path / "data", tmp_path / "catalog"
    write_busy_day(data, to_ms("2026-11-20T23:40:00Z"), 40, depth=12, trades_per_step=3)
    rows = {"depth10": 200, "quotes": 300, "trades": 400}
    monkeypatch.setattr(nautilus, "FILE_ROWS", rows)
    books, trades = _stored_books(data), _stored_trades(data)
    assert (len(books), len(trades)) == (2400, 7200)

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
    assert res.counts == {"instruments": 1, "depth10": 2400, "quotes": 2400, "trades": 7200}
    read_back()
    # A trade file ends before a frame's trades, never inside them (3 per frame, 400 per file).
    per_frame = defaultdict(int)
    for t in trades:
        per_frame[t[0]] += 1
    assert all(per_frame[first] == 3 for first, _, _ in _files(out, "trade_tick"))
    with pytest.raises(ExportError, match="already holds OrderBookDepth10"):
        export(data, to="nautilus", out=out)
    res = export(data, to="nautilus", out=out, overwrite=True)
    assert res.counts["depth10"] == 2400
    read_back()


ARCHIVED = {"binance": ["BTC-USDT", "ETH-USDT"], "kraken": ["BTC-USD"]}
# Injected once every pair has samples, each waited out: the books restart mid-stream.
FAULTS = [
    ("binance", {"kind": "gap", "symbol": "BTCUSDT"}),  # update ids skip: reset, a REST snapshot resyncs
    ("kraken", {"kind": "corrupt"}),  # a checksum mismatch: the book is dropped, resubscribed
    ("binance", {"kind": "drop"}),  # the sockets die: new connections, new books
]
RESTARTS = {"BTC-USDT.BINANCE": 3, "ETH-USDT.BINANCE": 2, "BTC-USD.KRAKEN": 2}  # the first sync and the faults'


@pytest.fixture(scope="module")
def archived(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A short capture on the simulators (real processes) with the archive on: Binance (diffs on a
    REST snapshot) and Kraken (a depth-limited book kept by checksum: levels fall off its end),
    with a gap, a checksum failure and a reconnect injected on the way."""
    from recorder.api import Capture
    from tests.conftest import VenueSim, sim_venues, wait_for

    data = tmp_path_factory.mktemp("archived") / "data"
    sims = {v: VenueSim(v, "--seed", "11") for v in ARCHIVED}
    try:
        venues = sim_venues(sims, ARCHIVED, ["book", "trades"])
        cfg = {"archive": {"flush_s": 0.2}, "venues": venues}
        with Capture(cfg, interval="200ms", depth=10, data_dir=data, session_id="nt") as cap:

            def samples() -> dict[str, int]:
                st = cap.status().get("venues") or {}
                return {f"{v}:{p}": c["samples"] for v, vs in st.items() for p, c in vs["pairs"].items()}

            wait_for(lambda: len(samples()) == 3 and min(samples().values()) >= 8, 120, "8 samples of every pair")
            for venue, fault in FAULTS:
                sims[venue].fault(**fault)
                before = samples()
                wait_for(lambda b=before: all(n >= b[k] + 4 for k, n in samples().items()), 120, f"{fault} waited out")
        yield data
    finally:
        for sim in sims.values():
            sim.stop()


def test_engine_book_from_archive_deltas_is_the_stored_book(
    archived: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deltas as nautilus' adapters emit them (CLEAR + ADDs flagged F_SNAPSHOT at a snapshot load,
    UPDATE / DELETE per level change, F_LAST closing each archived frame), as many as the archive
    replay yields, in files of a few hundred (a frame never split); a BacktestEngine fed them (and
    nothing else) holds at each stored snapshot's tick the stored levels, best first, both sides."""
    from nautilus_trader.common.actor import Actor
    from nautilus_trader.model.enums import BookAction, BookType, RecordFlag
    from nautilus_trader.model.identifiers import InstrumentId
    from nautilus_trader.persistence.catalog import ParquetDataCatalog

    from recorder.export.events import TRADE, ArchiveEvents, archive_sessions

    out = tmp_path / "catalog"
    from recorder.export import ExportError, export, nautilus

    rows = {**nautilus.FILE_ROWS, "deltas": 60}
    monkeypatch.setattr(nautilus, "FILE_ROWS", rows)
    export(archived, to="nautilus", out=out)
    monkeypatch.undo()
    # What the archive replay yields per pair (the count the catalog must hold).
    want_counts = {}
    for sess in archive_sessions(archived):
        for batch in ArchiveEvents(sess):
            key = f"{batch.pair}.{batch.exchange.upper()}"
            want_counts[key] = want_counts.get(key, 0) + int(np.count_nonzero(batch.events["kind"] != TRADE))
    stored: dict[str, list] = {}
    ticks: dict[str, dict[int, int]] = {v: tick_times(archived, v) for v in ARCHIVED}
    for snap in open_dataset(archived).snapshots():
        stored.setdefault(f"{snap.pair}.{snap.exchange.upper()}", []).append(snap)
    assert set(stored) == set(want_counts) == {f"{p}.{v.upper()}" for v, ps in ARCHIVED.items() for p in ps}

    catalog = ParquetDataCatalog(str(out))
    instruments = catalog.instruments()
    deltas = {str(i.id): catalog.order_book_deltas(instrument_ids=[str(i.id)]) for i in instruments}
    f_snapshot, f_last = int(RecordFlag.F_SNAPSHOT), int(RecordFlag.F_LAST)
    for iid, got in deltas.items():
        assert len(got) == want_counts[iid] > 200, iid
        files = _files(out, "order_book_delta", iid)
        # (a frame longer than a file, e.g. a deep snapshot, is a file of its own)
        assert len(files) > 2 and all(n <= rows["deltas"] or lo == hi for lo, hi, n in files), iid
        assert all(a[1] < b[0] for a, b in zip(files, files[1:], strict=False)), iid  # disjoint
        frames: dict[int, list] = {}
        for d in got:
            frames.setdefault(d.ts_init, []).append(d)
        for frame in frames.values():
            assert [bool(d.flags & f_last) for d in frame] == [False] * (len(frame) - 1) + [True], iid
            for d in frame:
                snapshot = d.action in (BookAction.CLEAR, BookAction.ADD)
                assert bool(d.flags & f_snapshot) == snapshot, (iid, d)
                if d.action == BookAction.DELETE:
                    assert d.order.size.as_double() == 0, (iid, d)
        assert got[0].action == BookAction.CLEAR and got[1].action == BookAction.ADD  # the first sync
        assert sum(d.action == BookAction.CLEAR for d in got) >= RESTARTS[iid], iid

    class Watcher(Actor):
        """At each stored snapshot's tick (its record's time in the archive) notes nautilus' book."""

        def __init__(self) -> None:
            super().__init__()
            self.books: dict[str, list] = {}
            self.deltas: dict[str, int] = {}

        def on_start(self) -> None:
            for inst in instruments:
                iid = str(inst.id)
                self.subscribe_order_book_deltas(inst.id, BookType.L2_MBP)
                venue = iid.rsplit(".", 1)[1].lower()
                for k, snap in enumerate(stored[iid]):
                    at = ticks[venue][snap.timestamp_ms]
                    if at >= deltas[iid][0].ts_init:
                        self.clock.set_time_alert_ns(f"{iid}-{k}", at, lambda _e, iid=iid, k=k: self.note(iid, k))

        def note(self, iid: str, k: int) -> None:
            book = self.cache.order_book(InstrumentId.from_str(iid))
            levels = [
                [(round(lv.price.as_double(), 9), lv.size()) for lv in side] for side in (book.bids(), book.asks())
            ]
            self.books.setdefault(iid, []).append((k, levels))

        def on_order_book_deltas(self, batch) -> None:  # type: ignore[no-untyped-def]
            key = str(batch.instrument_id)
            self.deltas[key] = self.deltas.get(key, 0) + len(batch.deltas)

    engine = nautilus_engine(instruments)
    for got in deltas.values():
        engine.add_data(got)
    watcher = Watcher()
    engine.add_actor(watcher)
    engine.run()
    try:
        for iid, snaps in stored.items():
            assert watcher.deltas[iid] == want_counts[iid], iid
            seen = watcher.books[iid]
            assert len(seen) >= 10, iid
            for k, (bids, asks) in seen:
                snap = snaps[k]
                want_bids = [(round(p, 9), q) for p, q in snap.bids.tolist()]
                want_asks = [(round(p, 9), q) for p, q in snap.asks.tolist()]
                assert bids[: len(want_bids)] == want_bids, (iid, snap.timestamp_ms)
                assert asks[: len(want_asks)] == want_asks, (iid, snap.timestamp_ms)
    finally:
        engine.dispose()
    # Exported again: refused, or with overwrite replaced (never doubled).
    with pytest.raises(ExportError, match="already holds"):
        export(archived, to="nautilus", out=out)
    export_cli(archived, "nautilus", out, "--overwrite")
    again = ParquetDataCatalog(str(out))
    assert {iid: len(again.order_book_deltas(instrument_ids=[iid])) for iid in deltas} == want_counts
    # From a start inside the session: the deltas open with the whole book at that time.
    snaps = stored["BTC-USDT.BINANCE"]
    start = snaps[len(snaps) // 2].timestamp
    export(archived, to="nautilus", out=tmp_path / "later", start=start, exchanges="binance")
    later = ParquetDataCatalog(str(tmp_path / "later")).order_book_deltas(instrument_ids=["BTC-USDT.BINANCE"])
    first = [d for d in later if d.ts_init == later[0].ts_init]
    assert later[0].ts_init == to_ms(start) * 1_000_000 and first[0].action == BookAction.CLEAR
    assert {d.action for d in first[1:]} == {BookAction.ADD} and len(first) > 10
    # From the snapshots alone: no deltas, the rest as ever.
    res = export(archived, to="nautilus", out=tmp_path / "snapshots", source="snapshots", exchanges="kraken")
    assert "deltas" not in res.counts and res.counts["depth10"] == len(stored["BTC-USD.KRAKEN"])
    assert not (tmp_path / "snapshots" / "data" / "order_book_delta").exists()
