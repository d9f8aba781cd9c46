"""Binance USD-M futures: the pu chain on crafted sequences, the real recording, and a live capture
against the futures simulator."""

from __future__ import annotations

import json
import urllib.request
from collections import defaultdict
from pathlib import Path

import msgspec
import pytest

from recorder.replay.readers import Kind, capture_files, read_capture
from recorder.venues import VENUES, connector_class
from recorder.venues.binance import BookSync, DepthEvent, DepthSnapshot, Outcome
from recorder.venues.binance_futures import (
    BinanceFuturesConnector,
    BinanceFuturesFeed,
    futures_prev_id,
    pair_for,
    snapshot_pair,
    stream_for,
    symbol_for,
)
from tests.conftest import Sim, every_pair_sampled, read_jsonl, running_cli, status, stop_cli, wait_for

RECORDING = Path(__file__).resolve().parent / "data" / "recordings" / "binance" / "BINANCE_FUTURES.ws.1.0"
PAIRS = ["SUSHI-USDT-PERP", "AKRO-USDT-PERP", "KEEP-USDT-PERP", "CTK-USDT-PERP"]


def diff(U: int, u: int, pu: int, bids: list[tuple[str, str]] | None = None) -> DepthEvent:
    fields = {"e": "depthUpdate", "E": 1, "s": "BTCUSDT", "U": U, "u": u, "pu": pu, "b": bids or [], "a": []}
    return msgspec.convert(fields, DepthEvent, strict=False)  # as the wire decoder builds it


def snap(last: int) -> DepthSnapshot:
    return DepthSnapshot(lastUpdateId=last, bids=[(100.0, 1.0)], asks=[(101.0, 1.0)])


def sync() -> BookSync:
    return BookSync("BTC-USDT-PERP", futures_prev_id)


def test_pairs_and_streams() -> None:
    assert symbol_for("BTC-USDT-PERP") == "BTCUSDT"
    assert pair_for("BTCUSDT") == "BTC-USDT-PERP"
    assert stream_for("ETH-USDT-PERP") == "ethusdt@depth@100ms"
    with pytest.raises(ValueError, match="not a perpetual"):
        symbol_for("BTC-USDT")
    assert snapshot_pair("https://fapi.binance.com/fapi/v1/depth?symbol=SUSHIUSDT&limit=1000") == "SUSHI-USDT-PERP"
    assert connector_class("binance-futures") is BinanceFuturesConnector
    assert "binance-futures" in VENUES


def test_pu_chain_with_non_contiguous_ids() -> None:
    s = sync()
    s.on_diff(diff(140, 149, 130), 0)
    # The docs' example: pu=149 but U=157 (ids of other symbols lie in between).
    s.on_diff(diff(157, 160, 149), 0)
    assert s.on_snapshot(snap(150)) is Outcome.SYNCED  # 150 lies between pu and U of the straddling diff
    assert s.book.update_id == 160
    assert s.on_diff(diff(170, 175, 160), 0) is Outcome.APPLIED
    # The spot rule would call this a gap (U != u + 1); pu says it is not.
    assert s.on_diff(diff(190, 191, 175), 0) is Outcome.APPLIED
    assert s.on_diff(diff(200, 210, 195), 0) is Outcome.GAP  # pu 195 != 191
    assert not s.synced and [ev.u for ev, _ in s.buffer] == [210]


def test_first_diff_after_snapshot_may_start_past_it() -> None:
    s = sync()
    s.on_diff(diff(101, 120, 90), 0)
    # Snapshot at exactly the previous event's u: the next diff has U > lastUpdateId, pu == it.
    assert s.on_snapshot(snap(120)) is Outcome.SYNCED
    assert s.on_diff(diff(125, 130, 120), 0) is Outcome.APPLIED
    s = sync()
    s.on_diff(diff(101, 120, 90), 0)
    assert s.on_snapshot(snap(110)) is Outcome.SYNCED  # U <= last <= u: applied on top
    assert s.book.update_id == 120
    s = sync()
    s.on_diff(diff(101, 120, 90), 0)
    assert s.on_snapshot(snap(80)) is Outcome.STALE  # older than the first diff's pu
    s = sync()
    s.on_diff(diff(101, 120, 90), 0)
    s.on_snapshot(snap(130))
    assert s.on_diff(diff(135, 140, 132), 0) is Outcome.GAP  # does not continue from 130


def _recording() -> list:
    return list(read_capture(capture_files(RECORDING), strict=True))


class Reference:
    """Independent rebuild from the documented futures procedure (plain dicts, no shared code)."""

    def __init__(self) -> None:
        self.books: dict[str, tuple[dict[float, float], dict[float, float]]] = {}
        self.last_u: dict[str, int] = {}
        self.buffered: dict[str, list[dict]] = defaultdict(list)
        self.first: dict[str, bool] = {}
        self.known: dict[str, tuple[float, float]] = {}

    def snapshot(self, symbol: str, body: dict) -> None:
        bids = {float(p): float(q) for p, q in body["bids"]}
        asks = {float(p): float(q) for p, q in body["asks"]}
        self.books[symbol] = (bids, asks)
        # Past the deepest level of a depth-limited snapshot the book is unknown: never shown.
        self.known[symbol] = (min(bids), max(asks))
        self.last_u[symbol] = body["lastUpdateId"]
        self.first[symbol] = True
        for d in self.buffered.pop(symbol, []):
            self.diff(d)

    def diff(self, d: dict) -> None:
        symbol = d["s"]
        if symbol not in self.books:
            self.buffered[symbol].append(d)
            return
        last = self.last_u[symbol]
        if self.first[symbol]:
            if d["u"] < last:
                return  # older than the snapshot
            assert d["U"] <= last <= d["u"] or d["pu"] == last, "first diff does not join the snapshot"
            self.first[symbol] = False
        else:
            assert d["pu"] == last, "recording has a gap"
        self._apply(symbol, d)

    def _apply(self, symbol: str, d: dict) -> None:
        bids, asks = self.books[symbol]
        for side, levels in ((bids, d["b"]), (asks, d["a"])):
            for p, q in levels:
                if float(q) == 0:
                    side.pop(float(p), None)
                else:
                    side[float(p)] = float(q)
        self.last_u[symbol] = d["u"]

    def top(self, symbol: str, depth: int) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
        bids, asks = self.books[symbol]
        low, high = self.known[symbol]
        return (
            sorted(((p, q) for p, q in bids.items() if p >= low), reverse=True)[:depth],
            sorted((p, q) for p, q in asks.items() if p <= high)[:depth],
        )


def test_real_recording_zero_gaps_and_books_equal_reference_on_the_grid() -> None:
    feed = BinanceFuturesFeed(PAIRS)
    ref = Reference()
    next_tick = None
    compared = 0
    for r in _recording():
        if next_tick is None:
            next_tick = (int(r.recv_ms) // 1000 + 1) * 1000
        while r.recv_ms >= next_tick:
            # Sample on the recorded clock's 1 s grid, as replay does, and compare every synced book.
            for pair in PAIRS:
                book = feed.book(pair)
                if book is not None:
                    bids, asks = book.top(20)
                    assert ([(x.price, x.qty) for x in bids], [(x.price, x.qty) for x in asks]) == ref.top(
                        symbol_for(pair), 20
                    )
                    assert book.update_id == ref.last_u[symbol_for(pair)]
                    compared += 1
            next_tick += 1000
        if r.kind is Kind.HTTP:
            pair = snapshot_pair(r.url)
            feed.on_rest_snapshot(pair, r.payload, r.recv_ms)
            ref.snapshot(symbol_for(pair), json.loads(r.payload))
        elif r.kind is Kind.WS:
            feed.on_frame(r.payload, r.recv_ms)
            data = json.loads(r.payload)["data"]
            if data.get("e") == "depthUpdate":
                ref.diff(data)
    st = feed.stats
    assert st.gaps == 0 and st.malformed == 0
    assert st.kinds["depthUpdate"] == 764  # the README's count
    assert all(feed.book(p) is not None for p in PAIRS)
    assert compared >= 4 * 25  # every pair compared on most of the ~30 s of ticks
    for pair in PAIRS:
        bids, asks = feed.book(pair).top(10_000)  # type: ignore[union-attr]
        assert ([(x.price, x.qty) for x in bids], [(x.price, x.qty) for x in asks]) == ref.top(symbol_for(pair), 10**6)


def test_dropped_diff_in_recording_is_a_gap_at_that_message_and_only_that_book_resets() -> None:
    records = _recording()
    sushi = [i for i, r in enumerate(records) if r.kind is Kind.WS and b'"sushiusdt@depth@100ms"' in r.payload]
    drop = sushi[len(sushi) // 2]
    feed = BinanceFuturesFeed(PAIRS)
    gap_at = None
    for i, r in enumerate(records):
        if i == drop:
            continue
        if r.kind is Kind.HTTP:
            feed.on_rest_snapshot(snapshot_pair(r.url) or "", r.payload, r.recv_ms)
        elif r.kind is Kind.WS:
            before = feed.stats.gaps
            feed.on_frame(r.payload, r.recv_ms)
            if feed.stats.gaps > before and gap_at is None:
                gap_at = i
        if gap_at is not None:
            assert feed.book("SUSHI-USDT-PERP") is None  # never offered as valid after the fault
    next_sushi = next(i for i in sushi if i > drop)
    assert gap_at == next_sushi
    assert feed.stats.gaps == 1 and feed.stats.per_pair["SUSHI-USDT-PERP"]["gaps"] == 1
    assert "SUSHI-USDT-PERP" in feed.wants_snapshot()
    assert all(feed.book(p) is not None for p in PAIRS if p != "SUSHI-USDT-PERP")


def _sim_book(sim: Sim, symbol: str, update_id: int) -> dict | None:
    url = f"{sim.urls['sim_url']}/sim/book?symbol={symbol}&update_id={update_id}&limit=20"
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return json.load(resp)
    except urllib.error.HTTPError:
        return None


def test_live_capture_against_futures_simulator(tmp_path: Path) -> None:
    sim = Sim("--venue", "binance-futures", "--seed", "11")
    try:
        data = tmp_path / "data"
        cfg = tmp_path / "f.toml"
        cfg.write_text(
            f'data_dir = "{data}"\n\n[venues.binance-futures]\npairs = ["BTC-USDT-PERP", "ETH-USDT-PERP"]\n'
            f'ws_url = "{sim.urls["ws_url"]}/public"\nrest_url = "{sim.urls["rest_url"]}"\n'
        )
        args = ["--config", str(cfg), "--interval", "0.5", "--format", "jsonl", "--session-id", "fut"]
        with running_cli("start-capture", *args) as proc:
            wait_for(lambda: every_pair_sampled(data, "fut", 4), 90, "samples of both pairs")
            # The frames reach the shared counters while the socket is open (its watch loop flushes them).
            wait_for(lambda: status(data, "fut")["venues"]["binance-futures"]["messages"] > 0, 30, "messages counted")
            stop_cli(proc)
        final = status(data, "fut")
        assert final is not None and final["state"] == "stopped" and final["flushed"] is True
        venue = final["venues"]["binance-futures"]
        assert venue["gaps"] == 0
        assert venue["bytes"] > 100 * venue["messages"] > 0  # every depth frame is well over 100 bytes
        snaps = read_jsonl(data)
        assert {s["pair"] for s in snaps} == {"BTC-USDT-PERP", "ETH-USDT-PERP"}
        assert len(snaps) == venue["samples"] >= 8
        for s in snaps:
            assert s["exchange"] == "binance-futures"
            assert s["update_id"] % 10 == 0  # futures wire ids, not the generator's
            ref = _sim_book(sim, symbol_for(s["pair"]), s["update_id"])
            assert ref is not None, f"simulator has no book at {s['update_id']}"
            assert [(float(p), float(q)) for p, q in ref["bids"]] == [(lv["price"], lv["qty"]) for lv in s["bids"]]
            assert [(float(p), float(q)) for p, q in ref["asks"]] == [(lv["price"], lv["qty"]) for lv in s["asks"]]
    finally:
        sim.stop()
