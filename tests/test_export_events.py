"""Event-level data from the lossless archive (``recorder.export.events``) and the exports made from
it: a live capture of five venues on the simulators with the archive on; every book change and
trade the archive replay yields, rebuilt here with plain dicts, gives the snapshots the capture
stored at each tick (the tick's time read from the archive with zstd and json here), and its
trades are the stored trades."""

from __future__ import annotations

import csv
import gzip
import json
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zstandard

from recorder.dataset import open_dataset
from tests.conftest import ROOT
from tests.export_data import export_cli, hftbacktest_of
from tests.test_dataset import s3_server  # noqa: F401 - moto's S3 server, a fixture by name

SESSION = "ev"
VENUES = {
    "binance": ["BTC-USDT", "ETH-USDT"],
    "kraken": ["BTC-USD"],
    "okx": ["BTC-USDT"],
    "bybit": ["BTC-USDT"],
    "coinbase": ["BTC-USD"],
}


# (venue, fault) injected once every pair has samples; each is waited out (the books resync).
FAULTS = [
    ("binance", {"kind": "gap", "symbol": "BTCUSDT"}),  # update ids skip: the book is reset, a REST snapshot resyncs it
    ("kraken", {"kind": "corrupt"}),  # a checksum mismatch: the book is dropped, resubscribed
    ("bybit", {"kind": "corrupt"}),  # a crossed book: the sampler asks for a resync
    ("binance", {"kind": "drop"}),  # the sockets die: new connections, new books
]


MIN_CLEARS = {"binance:BTC-USDT": 3, "binance:ETH-USDT": 2, "kraken:BTC-USD": 2, "bybit:BTC-USDT": 2}


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A capture of five venues on their simulators (real processes) with the archive on, and
    faults injected on the way: gaps, a checksum failure, a crossed book, a reconnect."""
    from recorder.api import Capture
    from tests.conftest import VenueSim, sim_venues, wait_for

    data = tmp_path_factory.mktemp("events") / "data"
    sims = {v: VenueSim(v, "--seed", "7") for v in VENUES}
    try:
        venues = sim_venues(sims, VENUES, ["book", "trades"])
        cfg = {"archive": {"flush_s": 0.2}, "venues": venues}
        with Capture(cfg, interval="200ms", depth=10, data_dir=data, session_id=SESSION) as cap:

            def samples() -> dict[str, int]:
                st = cap.status().get("venues") or {}
                return {f"{v}:{p}": c["samples"] for v, vs in st.items() for p, c in vs["pairs"].items()}

            def every_pair(n: int) -> bool:
                now = samples()
                return len(now) == sum(map(len, VENUES.values())) and min(now.values()) >= n

            wait_for(lambda: every_pair(8), 120, "8 samples of every pair")
            for venue, fault in FAULTS:
                sims[venue].fault(**fault)
                before = samples()
                wait_for(
                    lambda b=before: all(n >= b[k] + 5 for k, n in samples().items()),
                    120,
                    f"{venue} {fault} waited out",
                )
        yield data
    finally:
        for s in sims.values():
            s.stop()


def tick_times(data: Path, venue: str) -> dict[int, int]:
    """Grid tick (ms) -> the local ns of the archive's ``tick`` record, read with zstd + json."""
    out: dict[int, int] = {}
    for path in sorted((data / "archive" / f"exchange={venue}").rglob("*.jsonl.zst")):
        with open(path, "rb") as fh:
            text = zstandard.ZstdDecompressor().stream_reader(fh, read_across_frames=True).read().decode()
        for line in text.splitlines():
            obj = json.loads(line)
            if obj["t"] == "tick":
                out.setdefault(obj["tick"], obj["ns"])
    return out


def stored_books(data: Path) -> dict[tuple[str, str], list]:
    books: dict[tuple[str, str], list] = defaultdict(list)
    for s in open_dataset(data).snapshots():
        books[(s.exchange, s.pair)].append(s)
    return books


class Rebuilt:
    """A book rebuilt from level events by their documented meaning: a clear empties both sides,
    a level's quantity is absolute, 0 deletes it."""

    def __init__(self) -> None:
        self.bids: dict[float, float] = {}
        self.asks: dict[float, float] = {}

    def clear(self) -> None:
        self.bids.clear()
        self.asks.clear()

    def level(self, bid: bool, price: float, qty: float) -> None:
        side = self.bids if bid else self.asks
        if qty:
            side[price] = qty
        else:
            side.pop(price, None)

    def top(self, nb: int, na: int) -> tuple[list, list]:
        return sorted(self.bids.items(), reverse=True)[:nb], sorted(self.asks.items())[:na]


def check_against_stored(
    snaps: list, ticks: dict[int, int], times: np.ndarray, apply: Any, what: str, time_scale: int = 1
) -> int:
    """Walk the stored snapshots: before each, ``apply(i)`` every event up to its tick record's
    time (``times`` in ns / ``time_scale``); the rebuilt book's best levels must be the stored ones."""
    book = Rebuilt()
    i = checked = 0
    for s in snaps:
        limit = ticks[s.timestamp_ms] // time_scale
        while i < len(times) and times[i] <= limit:
            apply(book, i)
            i += 1
        bids, asks = book.top(len(s.bids), len(s.asks))
        assert bids == [tuple(x) for x in s.bids.tolist()], (what, s.timestamp_ms)
        assert asks == [tuple(x) for x in s.asks.tolist()], (what, s.timestamp_ms)
        checked += 1
    return checked


def test_archive_events_rebuild_the_stored_books_and_trades(capture: Path) -> None:
    from recorder.export.events import ASK, BID, CLEAR, SNAPSHOT, TRADE, UPDATE, ArchiveEvents, archive_sessions

    sessions = archive_sessions(capture)
    assert sorted(s.exchange for s in sessions) == sorted(VENUES)
    books = stored_books(capture)
    trades = open_dataset(capture).trades()
    checked = 0
    for sess in sessions:
        assert sess.session == SESSION and sess.pairs == VENUES[sess.exchange]
        per_pair: dict[str, list[np.ndarray]] = defaultdict(list)
        source = ArchiveEvents(sess, batch_size=500)  # small batches: several per pair
        for batch in source:
            assert batch.exchange == sess.exchange and len(batch.events) < 500 + 1000  # (+ one record's)
            per_pair[batch.pair].append(batch.events)
        assert all(len(parts) > 1 for parts in per_pair.values())
        assert source.stats.feed_errors == 0 and source.stats.skipped_calls == 0
        ticks = tick_times(capture, sess.exchange)
        for pair in sess.pairs:
            ev = np.concatenate(per_pair[pair])
            assert np.all(np.diff(ev["local_ns"]) >= 0), (sess.exchange, pair)  # receive order
            kinds = ev["kind"][ev["kind"] != TRADE]
            assert kinds[0] == CLEAR and kinds[1] == SNAPSHOT  # the first sync
            assert set(np.unique(ev["side"][ev["kind"] != CLEAR]).tolist()) <= {BID, ASK}
            assert np.count_nonzero(ev["kind"] == UPDATE) > 10 * np.count_nonzero(ev["kind"] == CLEAR)
            # Each fault restarted the book: a clear and the next snapshot (the first sync is one).
            assert np.count_nonzero(ev["kind"] == CLEAR) >= MIN_CLEARS.get(f"{sess.exchange}:{pair}", 1)

            def apply(book: Rebuilt, i: int, ev: np.ndarray = ev) -> None:
                kind = ev["kind"][i]
                if kind == CLEAR:
                    book.clear()
                elif kind != TRADE:
                    book.level(ev["side"][i] == BID, float(ev["price"][i]), float(ev["qty"][i]))

            checked += check_against_stored(books[(sess.exchange, pair)], ticks, ev["local_ns"], apply, pair)
            # The trades are the stored ones (the same Feeds emitted both), times to the µs.
            tr = ev[ev["kind"] == TRADE]
            mask = [
                e == sess.exchange and p == pair
                for e, p in zip(*(trades[c].to_pylist() for c in ("exchange", "pair")), strict=True)
            ]
            want = trades.filter(mask)
            assert len(tr) == want.num_rows > 0, (sess.exchange, pair)
            got = list(
                zip(
                    tr["price"].tolist(),
                    tr["qty"].tolist(),
                    tr["side"].tolist(),
                    strict=True,
                )
            )
            exp = list(
                zip(
                    want["price"].to_pylist(),
                    want["quantity"].to_pylist(),
                    [1 if s == "buy" else -1 for s in want["side"].to_pylist()],
                    strict=True,
                )
            )
            assert got == exp, (sess.exchange, pair)
            # (stored in µs from the float ms the Feed was given: within a µs of the record's ns)
            stored_us = np.array(want["local_time"].cast("int64").to_pylist())
            assert np.abs(tr["local_ns"] / 1000 - stored_us).max() <= 1.0
    assert checked >= 6 * 15


def test_a_window_opens_with_a_snapshot_of_each_book(capture: Path) -> None:
    """Events from a start in the middle of the session: each pair's first events are a clear and
    the whole book at the start time, and rebuilding from there alone gives the stored books."""
    from recorder.export.events import BID, CLEAR, SNAPSHOT, TRADE, ArchiveEvents, archive_sessions

    sess = next(s for s in archive_sessions(capture, exchanges=["kraken"]))
    books = stored_books(capture)[("kraken", "BTC-USD")]
    ticks = tick_times(capture, "kraken")
    mid = ticks[books[len(books) // 2].timestamp_ms] - 1
    end = ticks[books[-3].timestamp_ms] + 1
    ev = np.concatenate([b.events for b in ArchiveEvents(sess, start_ns=mid, end_ns=end)])
    assert ev["local_ns"].min() == mid and ev["local_ns"].max() < end
    first = ev[ev["local_ns"] == mid]
    assert first["kind"][0] == CLEAR and set(first["kind"][1:].tolist()) == {SNAPSHOT}
    later = [s for s in books if mid < ticks[s.timestamp_ms] < end]

    def apply(book: Rebuilt, i: int) -> None:
        if ev["kind"][i] == CLEAR:
            book.clear()
        elif ev["kind"][i] != TRADE:
            book.level(ev["side"][i] == BID, float(ev["price"][i]), float(ev["qty"][i]))

    assert check_against_stored(later, ticks, ev["local_ns"], apply, "window") == len(later) >= 4


# -- the exports made from the archive ----------------------------------------------------------

SPOT = ROOT / "tests" / "data" / "recordings" / "binance" / "BINANCE.ws.1.0"
SPOT_PAIRS = ["NKN-USDT", "BLZ-ETH", "LRC-BTC", "RUNE-EUR"]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real Binance spot recording served by the simulator (``--replay``) and captured live with
    the archive on (the default)."""
    from tests.conftest import Sim, capture_whole_replay, write_config

    tmp = tmp_path_factory.mktemp("recorded")
    sim = Sim("--replay", str(SPOT), "--speed", "4")
    try:
        data = tmp / "data"
        cfg = write_config(tmp / "c.toml", sim.urls, SPOT_PAIRS, data)
        capture_whole_replay(sim, cfg, data, SESSION, "0.5")  # ~31 s recorded, played at 4x
    finally:
        sim.stop()
    return data


_EXPORTS: dict[tuple[str, str], Path] = {}


def exported(data: Path, to: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``python cli.py export --to <to>`` of ``data`` (once per module: the tests share it)."""
    key = (str(data), to)
    if key not in _EXPORTS:
        out = tmp_path_factory.mktemp(to)
        export_cli(data, to, out, "--overwrite")
        _EXPORTS[key] = out
    return _EXPORTS[key]


def archive_records(data: Path, venue: str) -> list[tuple[str, int, int | None]]:
    """(type, ns, tick) of every record of the venue's archive in order, read with zstd + json."""
    out = []
    for path in sorted((data / "archive" / f"exchange={venue}").rglob("*.jsonl.zst")):
        with open(path, "rb") as fh:
            text = zstandard.ZstdDecompressor().stream_reader(fh, read_across_frames=True).read().decode()
        for line in text.splitlines():
            obj = json.loads(line)
            if "ns" in obj and obj["t"] != "header":
                out.append((obj["t"], obj["ns"], obj.get("tick")))
    return out


def quiet_points(data: Path, venue: str) -> dict[int, tuple[int, int]]:
    """Grid tick -> (its tick record's ns, a time between it and the venue's next record) for the
    ticks with at least 4 µs before that next record: there every clock reads one state."""
    recs = archive_records(data, venue)
    out: dict[int, tuple[int, int]] = {}
    for (t, ns, tick), nxt in zip(recs, recs[1:], strict=False):
        if t == "tick" and tick not in out and nxt[1] - ns >= 4000:
            out[tick] = (ns, (ns + nxt[1]) // 2)
    return out


def tardis_book(path: Path) -> tuple[list[str], list[tuple[int, dict[float, float], dict[float, float]]]]:
    """A tardis ``incremental_book_L2`` file read as tardis documents it: rows of one message share
    ``local_timestamp``; a run of ``is_snapshot`` rows after other rows resets the book; amount 0
    removes the level. (header, [(local µs, bids, asks) after each message])."""
    with gzip.open(path, "rt") as fh:
        rows = list(csv.reader(fh))
    header, body = rows[0], rows[1:]
    bids: dict[float, float] = {}
    asks: dict[float, float] = {}
    states: list[tuple[int, dict[float, float], dict[float, float]]] = []
    prev_snapshot = False
    for i, (_, _, _, local, is_snapshot, side, price, amount) in enumerate(body):
        snap = is_snapshot == "true"
        if snap and not prev_snapshot:
            bids.clear()
            asks.clear()
        prev_snapshot = snap
        book = bids if side == "bid" else asks
        if float(amount) == 0:
            book.pop(float(price), None)
        else:
            book[float(price)] = float(amount)
        if i + 1 == len(body) or body[i + 1][3] != local:
            states.append((int(local), dict(bids), dict(asks)))
    return header, states


def state_at(states: list, us: int) -> tuple[dict, dict]:
    """The book after every message received at or before ``us``."""
    found: tuple[dict, dict] = ({}, {})
    for local, b, a in states:
        if local > us:
            break
        found = (b, a)
    return found


@pytest.mark.parametrize("which", ["capture", "recorded"])
def test_tardis_incremental_rebuilds_the_stored_books(
    which: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """incremental_book_L2 from the archive, read back with the column layout and rules tardis
    documents, gives every stored snapshot at its tick (its best levels, as deep as stored)."""
    from recorder.export.symbols import instrument

    data = request.getfixturevalue(which)
    out = exported(data, "tardis", tmp_path_factory)
    checked = 0
    for (exchange, pair), snaps in stored_books(data).items():
        inst = instrument(exchange, pair)
        day = snaps[0].timestamp[:10]
        path = out / f"{inst.tardis_exchange}_incremental_book_L2_{day}_{inst.symbol.replace('/', '-')}.csv.gz"
        header, states = tardis_book(path)
        assert header == [
            "exchange",
            "symbol",
            "timestamp",
            "local_timestamp",
            "is_snapshot",
            "side",
            "price",
            "amount",
        ]
        assert (out / path.name.replace("incremental_book_L2", "book_snapshot_25")).exists()  # beside the others
        assert states[0][0] > 1_500_000_000_000_000  # µs since the epoch
        points = quiet_points(data, exchange)
        for s in snaps:
            if s.timestamp_ms not in points:
                continue
            bids, asks = state_at(states, points[s.timestamp_ms][0] // 1000)
            assert sorted(bids.items(), reverse=True)[: len(s.bids)] == [tuple(x) for x in s.bids.tolist()], (
                pair,
                s.timestamp_ms,
            )
            assert sorted(asks.items())[: len(s.asks)] == [tuple(x) for x in s.asks.tolist()], (pair, s.timestamp_ms)
            checked += 1
    assert checked >= (40 if which == "capture" else 20)


@pytest.mark.parametrize("which", ["capture", "recorded"])
def test_hftbacktest_from_the_archive_holds_every_level(
    which: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """hftbacktest's own backtest on the archive's depth events: at chosen times its whole book
    (every level, both sides) is the one the tardis rows rebuild, and its best bid and ask are the
    stored snapshot's; its trades are the stored ones; the file passes its event-order check."""
    hbt = pytest.importorskip("hftbacktest")
    from hftbacktest.data import validate_event_order

    from recorder.export.symbols import instrument

    data = request.getfixturevalue(which)
    hbt_out, tardis_out = exported(data, "hftbacktest", tmp_path_factory), exported(data, "tardis", tmp_path_factory)
    instruments = json.loads((hbt_out / "instruments.json").read_text())
    shifts = instruments.get("local_ts_shift_ns", {})
    trades = open_dataset(data).trades() if which == "capture" else None
    checked = 0
    for (exchange, pair), snaps in stored_books(data).items():
        day = snaps[0].timestamp[:10]
        name = f"{exchange}_{pair}_{day}.npz"
        events = np.load(hbt_out / name)["data"]
        assert events.dtype == hbt.types.event_dtype
        validate_event_order(events)
        kinds = events["ev"] & 0xFF
        assert (
            np.count_nonzero(kinds == hbt.DEPTH_EVENT) > 0 and np.count_nonzero(kinds == hbt.DEPTH_SNAPSHOT_EVENT) > 0
        )
        # A snapshot load clears the whole book: a clear without a side, as hftbacktest reads it.
        clears = events[kinds == hbt.DEPTH_CLEAR_EVENT]
        assert len(clears) and not np.any(clears["ev"] & (hbt.BUY_EVENT | hbt.SELL_EVENT))
        if trades is not None:
            local_trades = events[(kinds == hbt.TRADE_EVENT) & ((events["ev"] & hbt.LOCAL_EVENT) != 0)]
            mask = [
                e == exchange and p == pair
                for e, p in zip(trades["exchange"].to_pylist(), trades["pair"].to_pylist(), strict=True)
            ]
            want = trades.filter(mask)
            assert local_trades["px"].tolist() == want["price"].to_pylist()
            assert local_trades["qty"].tolist() == want["quantity"].to_pylist()
        inst = instrument(exchange, pair)
        _, states = tardis_book(
            tardis_out / f"{inst.tardis_exchange}_incremental_book_L2_{day}_{inst.symbol.replace('/', '-')}.csv.gz"
        )
        tick = instruments[f"{exchange}:{pair}"]["tick_size"]
        bt = hftbacktest_of(hbt_out / name, tick, instruments[f"{exchange}:{pair}"]["lot_size"])
        bt.elapse(0)
        points = quiet_points(data, exchange)
        picks = [s for s in snaps if s.timestamp_ms in points]
        picks = picks[1 :: max(1, len(picks) // 6)]
        for s in picks:
            _, at = points[s.timestamp_ms]
            bt.elapse(at + shifts.get(name, 0) - bt.current_timestamp)
            depth = bt.depth(0)
            raw = depth.snapshot()
            book = raw.copy()
            depth.snapshot_free(raw)
            bids, asks = state_at(states, at // 1000)
            for flag, want_side in ((hbt.BUY_EVENT, bids), (hbt.SELL_EVENT, asks)):
                got = book[(book["ev"] & flag) != 0]
                got_levels = sorted(
                    zip(np.round(got["px"] / tick).astype(np.int64).tolist(), got["qty"].tolist(), strict=True)
                )
                want_levels = sorted((round(p / tick), q) for p, q in want_side.items())
                assert got_levels == want_levels, (exchange, pair, s.timestamp_ms)
            assert depth.best_bid == pytest.approx(s.best_bid) and depth.best_ask == pytest.approx(s.best_ask)
            checked += 1
        bt.close()
    assert checked >= (30 if which == "capture" else 12)


def test_tardis_rows_say_what_the_format_cannot(tmp_path: Path) -> None:
    """Two snapshot loads with no update between (their rows would join one snapshot run) and a
    lost book (a clear alone): read back by tardis' rules, the rows give the books the events
    gave at every message, except that a lost book reads as its last state until the next
    snapshot (tardis has no row for "no book"). Read in chunks of 3 events: a snapshot load
    across chunks stays whole."""
    from recorder.export.event_units import SpooledUnit
    from recorder.export.events import ASK, BID, CLEAR, EVENT_DTYPE, SNAPSHOT, UPDATE
    from recorder.export.source import Unit
    from recorder.export.tardis import _write_incremental

    t0 = 1_796_000_000_000_000_000
    msgs = [  # (µs offset, events of one message)
        (1, [(CLEAR, 0, 0, 0), (SNAPSHOT, BID, 100.0, 1.0), (SNAPSHOT, BID, 99.0, 2.0), (SNAPSHOT, ASK, 101.0, 1.0)]),
        (2, [(CLEAR, 0, 0, 0), (SNAPSHOT, BID, 100.0, 3.0), (SNAPSHOT, ASK, 102.0, 1.0)]),  # right after the first
        (3, [(UPDATE, BID, 98.0, 1.0), (UPDATE, ASK, 102.0, 0.0), (UPDATE, ASK, 103.0, 4.0)]),
        (4, [(CLEAR, 0, 0, 0)]),  # the book is lost (a gap)
        (5, [(CLEAR, 0, 0, 0), (SNAPSHOT, BID, 97.0, 1.0), (SNAPSHOT, ASK, 99.0, 2.0)]),
        (6, [(CLEAR, 0, 0, 0), (SNAPSHOT, BID, 97.0, 1.0), (SNAPSHOT, ASK, 99.0, 5.0)]),
    ]
    rows = [(k, s, p, q, t0 + us * 1000, t0 + us * 1000) for us, evs in msgs for k, s, p, q in evs]
    path = tmp_path / "unit.events"
    np.array(rows, EVENT_DTYPE).tofile(path)
    su = SpooledUnit(Unit("bybit", "BTC-USDT", "2026-11-30"), path, len(rows))
    original_chunks = su.chunks
    su.chunks = lambda size=3: original_chunks(size)  # type: ignore[method-assign]
    out = tmp_path / "l2.csv.gz"
    assert _write_incremental(su, out) > 0
    _, states = tardis_book(out)
    want = Rebuilt()
    expected: dict[int, tuple[dict, dict]] = {}
    for us, evs in msgs:
        if len(evs) == 1:  # the lost book: not a row
            continue
        for k, s, p, q in evs:
            if k == CLEAR:
                want.clear()
            else:
                want.level(s == BID, p, q)
        expected[t0 // 1000 + us] = (dict(want.bids), dict(want.asks))
    assert {local: (b, a) for local, b, a in states} == expected


def test_from_archive_without_one_is_one_line(tmp_path: Path) -> None:
    """``--from archive`` where no session kept an archive: one ``Error:`` line, nothing written;
    ``--from snapshots`` exports the same data."""
    from recorder.dataset import to_ms
    from tests.conftest import run_cli
    from tests.month_data import snapshot, write_segment

    data = tmp_path / "data"
    start = to_ms("2026-11-20")
    write_segment(data, [snapshot("BTC-USDT", start + i * 1000, i, 60000.0) for i in range(5)], 0, formats=("parquet",))
    out = tmp_path / "out"
    res = run_cli("export", "--to", "tardis", "--data-dir", str(data), "--out", str(out), "--from", "archive")
    assert res.returncode != 0 and "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines() == [
        "Error: no archive matches the selection (kept when [archive] is enabled): use --from snapshots"
    ]
    assert not list(out.glob("*.csv.gz"))
    export_cli(data, "hftbacktest", out, "--from", "snapshots")
    assert [p.name for p in out.glob("*.npz")] == ["binance_BTC-USDT_2026-11-20.npz"]


def test_a_hole_in_the_archive_clears_the_books(capture: Path, tmp_path: Path) -> None:
    """A ``lost`` record (frames the live process could not archive): the replay cannot prove the
    books after it, so each followed book is cleared there and, with no snapshot after it in this
    archive, stays empty; before it every stored book is rebuilt as without the hole."""
    from recorder.export.events import CLEAR, TRADE, ArchiveEvents, archive_sessions

    src = sorted((capture / "archive" / "exchange=okx").rglob("*.jsonl.zst"))
    assert len(src) == 1
    with open(src[0], "rb") as fh:
        lines = zstandard.ZstdDecompressor().stream_reader(fh, read_across_frames=True).read().decode().splitlines()
    recv = [i for i, line in enumerate(lines) if json.loads(line)["t"] == "recv"]
    at = recv[len(recv) // 2]
    hole_ns = json.loads(lines[at])["ns"]
    lost = {"t": "lost", "conn": "", "ns": hole_ns, "why": "buffer_full", "records": 3, "frames": 3, "from_ns": hole_ns}
    dest = tmp_path / "data" / src[0].relative_to(capture)
    dest.parent.mkdir(parents=True)
    text = "\n".join([*lines[:at], json.dumps(lost), *lines[at:]]) + "\n"
    dest.write_bytes(zstandard.ZstdCompressor().compress(text.encode()))
    sess = archive_sessions(tmp_path / "data")[0]
    source = ArchiveEvents(sess)
    ev = np.concatenate([b.events for b in source])
    assert source.stats.holes == 1
    book = ev[ev["kind"] != TRADE]
    after = book[book["local_ns"] >= hole_ns]
    assert len(after) == 1 and after["kind"][0] == CLEAR and after["local_ns"][0] == hole_ns
    snaps = [
        s for s in stored_books(capture)[("okx", "BTC-USDT")] if tick_times(capture, "okx")[s.timestamp_ms] < hole_ns
    ]
    before = ev[ev["local_ns"] < hole_ns]

    def apply(b: Rebuilt, i: int) -> None:
        if before["kind"][i] == CLEAR:
            b.clear()
        elif before["kind"][i] != TRADE:
            b.level(before["side"][i] == 1, float(before["price"][i]), float(before["qty"][i]))

    assert check_against_stored(snaps, tick_times(capture, "okx"), before["local_ns"], apply, "hole") == len(snaps) >= 5


def test_auto_takes_each_pair_day_from_where_it_is(capture: Path, tmp_path: Path) -> None:
    """``--from auto``: a day the archive holds comes from it (every change: a clear without a side
    at each snapshot load), an earlier day of the same pair that only stored snapshots comes from
    those (a clear per side at each snapshot), one file each."""
    import shutil

    from recorder.dataset import to_ms
    from tests.month_data import snapshot, write_segment

    hbt = pytest.importorskip("hftbacktest")
    data = tmp_path / "data"
    shutil.copytree(capture, data)
    start = to_ms("2026-11-20")
    write_segment(data, [snapshot("BTC-USDT", start + i * 1000, i, 60000.0) for i in range(5)], 0, formats=("parquet",))
    out = tmp_path / "hbt"
    export_cli(data, "hftbacktest", out, "--pairs", "BTC-USDT", "--exchanges", "binance")
    today = stored_books(capture)[("binance", "BTC-USDT")][0].timestamp[:10]
    assert sorted(p.name for p in out.glob("*.npz")) == sorted(
        [f"binance_BTC-USDT_{today}.npz", "binance_BTC-USDT_2026-11-20.npz"]
    )
    for day, archived in ((today, True), ("2026-11-20", False)):
        ev = np.load(out / f"binance_BTC-USDT_{day}.npz")["data"]
        clears = ev[(ev["ev"] & 0xFF) == hbt.DEPTH_CLEAR_EVENT]
        sided = (clears["ev"] & (hbt.BUY_EVENT | hbt.SELL_EVENT)) != 0
        assert len(clears) and (not sided.any() if archived else sided.all()), day
        assert ((ev["ev"] & 0xFF) == hbt.DEPTH_EVENT).any() == archived, day


def test_archive_on_s3_exports_as_the_local_one(
    capture: Path, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A data dir uploaded to S3 (moto's server), archive included: the event exports read its
    archive (downloaded for the run, then removed) and equal the local dir's."""
    import boto3

    from tests.conftest import run_cli

    s3_url: str = request.getfixturevalue("s3_server")  # moto's S3 server (tests/test_dataset.py)
    s3 = boto3.client("s3", endpoint_url=s3_url)
    s3.create_bucket(Bucket="books")
    for path in capture.rglob("*"):
        rel = path.relative_to(capture).as_posix()
        if path.is_file() and rel.startswith(("parquet/", "trades/", "archive/")):
            s3.upload_file(str(path), "books", f"capture/{rel}")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_url)
    pick = ("--exchanges", "kraken,okx")
    export_cli(capture, "tardis", tmp_path / "local", *pick)
    res = run_cli(
        "export", "--to", "tardis", "--data-dir", "s3://books/capture", "--out", str(tmp_path / "s3"),
        "--from", "archive", *pick,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    names = sorted(p.name for p in (tmp_path / "local").iterdir())
    assert sum("incremental_book_L2" in n for n in names) == 2
    assert names == sorted(p.name for p in (tmp_path / "s3").iterdir())  # (the download is gone)
    for name in names:
        assert gzip.decompress((tmp_path / "s3" / name).read_bytes()) == gzip.decompress(
            (tmp_path / "local" / name).read_bytes()
        )
