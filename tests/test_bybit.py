"""Bybit v5 orderbook: sync rules on crafted frames, the real recording, live captures on the simulator."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import msgspec
import pytest

from recorder.venues.bybit import (
    MAX_ARGS_PER_REQUEST,
    BybitFeed,
    BybitSocket,
    category_for_url,
    feed_for_url,
    pair_for,
    symbol_for,
)
from tests.conftest import every_pair_sampled, read_jsonl, running_cli, status, stop_cli, until, wait_for
from tests.venue_live import (
    RECORDINGS,
    VenueSim,
    capture_through_a_gap,
    levels,
    read_jsonl_zst,
    stored_levels,
)

RECORDING = RECORDINGS / "bybit" / "BYBIT.jsonl.zst"


def frame(kind: str, u: int, b: Any = (), a: Any = (), symbol: str = "BTCUSDT", depth: int = 200, ts: int = 1) -> bytes:
    data = {"s": symbol, "b": [list(x) for x in b], "a": [list(x) for x in a], "u": u, "seq": u * 10}
    return json.dumps(
        {"topic": f"orderbook.{depth}.{symbol}", "type": kind, "ts": ts, "data": data, "cts": ts}
    ).encode()


SNAP = frame("snapshot", 100, b=[("100.0", "1"), ("99.5", "2")], a=[("100.5", "3"), ("101", "4")])


def top(feed: BybitFeed, pair: str) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    book = feed.book(pair)
    assert book is not None, f"{pair} not synced"
    bids, asks = book.top(1000)
    return [(lv.price, lv.qty) for lv in bids], [(lv.price, lv.qty) for lv in asks]


# --- names ------------------------------------------------------------------------------------


def test_pair_mapping_routes_spot_and_perps_to_their_sockets() -> None:
    assert symbol_for("BTC-USDT") == ("spot", "BTCUSDT")
    assert symbol_for("BTC-USDT-PERP") == ("linear", "BTCUSDT")
    assert symbol_for("BTC-USDC-PERP") == ("linear", "BTCPERP")
    assert symbol_for("BTC-USD-PERP") == ("inverse", "BTCUSD")
    for pair in ("BTC-USDT", "BTC-USDT-PERP", "ETH-USDC-PERP", "BTC-USD-PERP", "SOL-USDC"):
        assert pair_for(*symbol_for(pair)) == pair
    assert category_for_url("wss://stream.bybit.com/v5/public/linear") == "linear"
    with pytest.raises(ValueError):
        category_for_url("wss://stream.bybit.com/v5/private")
    with pytest.raises(ValueError):
        BybitFeed("spot", ["BTC-USDT-PERP"])


def test_subscribe_frames_respect_the_args_limit() -> None:
    from recorder.config import VenueConfig
    from recorder.venues.base import Counters

    proto = BybitSocket(VenueConfig(), "spot", [], Counters(None))
    pairs = [f"C{i}-USDT" for i in range(23)]
    frames = [json.loads(f) for f in proto.subscribe_messages(pairs)]
    # 23 books and 23 trade streams (the default channels): 46 topics, 10 a request on spot.
    assert [len(f["args"]) for f in frames] == [MAX_ARGS_PER_REQUEST] * 4 + [6]
    assert all(f["op"] == "subscribe" for f in frames)
    assert frames[0]["args"][0] == "orderbook.200.C0USDT" and frames[-1]["args"][-1] == "publicTrade.C22USDT"
    resub = [json.loads(f) for f in proto.resubscribe_messages(["BTC-USDT"])]
    assert [(f["op"], f["args"]) for f in resub] == [
        ("unsubscribe", ["orderbook.200.BTCUSDT"]),
        ("subscribe", ["orderbook.200.BTCUSDT"]),
    ]
    assert json.loads(proto.ping_message())["op"] == "ping"


# --- sync rules on crafted sequences ------------------------------------------------------------


def test_snapshot_then_contiguous_deltas() -> None:
    feed = BybitFeed("spot", ["BTC-USDT"])
    assert feed.book("BTC-USDT") is None
    feed.on_frame(frame("delta", 99, b=[("1", "1")]), 0)  # before any snapshot: ignored
    assert feed.book("BTC-USDT") is None
    feed.on_frame(SNAP, 0)
    feed.on_frame(frame("delta", 101, b=[("100.0", "0"), ("99.8", "5")], a=[("100.5", "2.5")], ts=7), 5.0)
    feed.on_frame(frame("delta", 102, a=[("100.2", "1")]), 6.0)
    bids, asks = top(feed, "BTC-USDT")
    assert bids == [(99.8, 5.0), (99.5, 2.0)]
    assert asks == [(100.2, 1.0), (100.5, 2.5), (101.0, 4.0)]
    book = feed.book("BTC-USDT")
    assert book is not None and book.update_id == 102 and book.receive_time_ms == 6.0
    assert feed.stats.gaps == 0 and feed.stats.kinds == {"delta": 3, "snapshot": 1}


def test_gap_drops_only_that_book_and_asks_for_a_resubscribe() -> None:
    feed = BybitFeed("linear", ["BTC-USDT-PERP", "ETH-USDT-PERP"])
    feed.on_frame(SNAP, 0)
    feed.on_frame(frame("snapshot", 500, b=[("10", "1")], a=[("11", "1")], symbol="ETHUSDT"), 0)
    feed.on_frame(frame("delta", 101, b=[("99", "1")]), 0)
    feed.on_frame(frame("delta", 103, b=[("98", "1")]), 0)  # 102 is missing
    assert feed.book("BTC-USDT-PERP") is None
    assert feed.wants_snapshot() == {"BTC-USDT-PERP"}
    assert feed.stats.gaps == 1 and feed.stats.per_pair["BTC-USDT-PERP"]["gaps"] == 1
    # The other book on the socket is untouched and keeps updating.
    feed.on_frame(frame("delta", 501, b=[("10", "2")], symbol="ETHUSDT"), 0)
    assert top(feed, "ETH-USDT-PERP") == ([(10.0, 2.0)], [(11.0, 1.0)])
    # Deltas after the gap are not applied to a dropped book.
    feed.on_frame(frame("delta", 104, b=[("97", "1")]), 0)
    assert feed.book("BTC-USDT-PERP") is None
    # The resubscription's snapshot restores it.
    feed.on_frame(frame("snapshot", 200, b=[("90", "1")], a=[("91", "1")]), 0)
    assert top(feed, "BTC-USDT-PERP") == ([(90.0, 1.0)], [(91.0, 1.0)])
    assert feed.wants_snapshot() == set()
    # Every sync counts (the first of each book too): BTC twice, ETH once.
    assert feed.stats.resyncs == 3 and feed.stats.per_pair["BTC-USDT-PERP"]["resyncs"] == 2
    feed.on_frame(frame("delta", 201, b=[("90", "3")]), 0)
    assert top(feed, "BTC-USDT-PERP")[0] == [(90.0, 3.0)]


def test_mid_stream_snapshot_replaces_the_book() -> None:
    feed = BybitFeed("spot", ["BTC-USDT"])
    feed.on_frame(SNAP, 0)
    feed.on_frame(frame("delta", 101, b=[("99", "1")]), 0)
    feed.on_frame(frame("snapshot", 5000, b=[("50", "1")], a=[("51", "1")]), 0)
    assert top(feed, "BTC-USDT") == ([(50.0, 1.0)], [(51.0, 1.0)])  # nothing of the old book survives
    assert feed.book("BTC-USDT").update_id == 5000  # type: ignore[union-attr]
    feed.on_frame(frame("delta", 5001, a=[("52", "1")]), 0)
    assert top(feed, "BTC-USDT")[1] == [(51.0, 1.0), (52.0, 1.0)]
    assert feed.stats.gaps == 0 and feed.stats.per_pair["BTC-USDT"]["snapshot_resets"] == 1


def test_u_equal_1_is_a_service_restart_that_overwrites_the_book() -> None:
    feed = BybitFeed("spot", ["BTC-USDT"])
    feed.on_frame(SNAP, 0)
    feed.on_frame(frame("delta", 1, b=[("70", "1")], a=[("71", "1")]), 0)
    assert top(feed, "BTC-USDT") == ([(70.0, 1.0)], [(71.0, 1.0)])
    feed.on_frame(frame("delta", 2, b=[("70", "0"), ("69", "2")]), 0)
    assert top(feed, "BTC-USDT")[0] == [(69.0, 2.0)]
    assert feed.stats.gaps == 0


def test_out_of_order_and_duplicate_deltas_are_ignored() -> None:
    feed = BybitFeed("spot", ["BTC-USDT"])
    feed.on_frame(SNAP, 0)
    feed.on_frame(frame("delta", 101, b=[("99", "1")]), 0)
    feed.on_frame(frame("delta", 101, b=[("99", "7")]), 0)  # duplicate
    feed.on_frame(frame("delta", 100, b=[("98", "7")]), 0)  # older than the book
    bids, _ = top(feed, "BTC-USDT")
    assert bids == [(100.0, 1.0), (99.5, 2.0), (99.0, 1.0)]
    assert feed.stats.per_pair["BTC-USDT"]["stale"] == 2 and feed.stats.gaps == 0


def test_malformed_frames_are_counted_never_raised() -> None:
    feed = BybitFeed("spot", ["BTC-USDT", "ETH-USDT"])
    feed.on_frame(SNAP, 0)
    feed.on_frame(frame("snapshot", 7, b=[("10", "1")], a=[("11", "1")], symbol="ETHUSDT"), 0)
    bad = [
        b"not json",
        b"[1,2]",
        b'{"topic":"orderbook.200.BTCUSDT","type":"delta","data":{"s":"BTCUSDT","b":[],"a":[]}}',  # no u
        b'{"topic":"orderbook.200.BTCUSDT","type":"delta","data":{"s":"BTCUSDT","b":[["1"]],"a":[],"u":101}}',
        b'{"topic":"orderbook.200.BTCUSDT","type":"weird","data":{"s":"BTCUSDT","b":[],"a":[],"u":101}}',
        b'{"topic":"orderbook.200.BTCUSDT","type":"delta","data":{"s":"ETHUSDT","b":[],"a":[],"u":101}}',
        b'{"topic":"orderbook.200","type":"delta","data":{}}',
    ]
    for payload in bad:
        feed.on_frame(payload, 0)
    assert feed.stats.malformed == len(bad)
    assert top(feed, "BTC-USDT")[0] == [(100.0, 1.0), (99.5, 2.0)]  # untouched
    # A level that is not a number (valid JSON otherwise): that book is unknown now, the other is fine.
    feed.on_frame(frame("delta", 101, b=[("abc", "1")]), 0)
    assert feed.stats.malformed == len(bad) + 1
    assert feed.book("BTC-USDT") is None and feed.wants_snapshot() == {"BTC-USDT"}
    assert feed.book("ETH-USDT") is not None
    # Op replies and other topics are not book frames.
    feed.on_frame(b'{"success":true,"ret_msg":"pong","conn_id":"x","req_id":"p1","op":"ping"}', 0)
    feed.on_frame(b'{"topic":"tickers.BTCUSDT","type":"snapshot","data":{"symbol":"BTCUSDT"}}', 0)
    feed.on_frame(frame("delta", 8, b=[("10", "3")], symbol="ETHUSDT", depth=50), 0)  # another depth: not ours
    assert feed.stats.malformed == len(bad) + 1
    assert top(feed, "ETH-USDT")[0] == [(10.0, 1.0)]


def test_same_symbol_on_spot_and_linear_sockets_stays_apart() -> None:
    spot, linear = BybitFeed("spot", ["BTC-USDT"]), BybitFeed("linear", ["BTC-USDT-PERP"])
    spot.on_frame(SNAP, 0)
    linear.on_frame(frame("snapshot", 9, b=[("200", "1")], a=[("201", "1")]), 0)
    assert top(spot, "BTC-USDT")[0][0] == (100.0, 1.0)
    assert top(linear, "BTC-USDT-PERP")[0][0] == (200.0, 1.0)
    assert spot.book("BTC-USDT-PERP") is None and linear.book("BTC-USDT") is None


# --- the real recording -----------------------------------------------------------------------


class RefBook:
    """Reference rebuild straight from the rules, with plain dicts (independent of L2Book)."""

    def __init__(self) -> None:
        self.bids: dict[str, str] = {}
        self.asks: dict[str, str] = {}
        self.u = 0

    def load(self, data: dict[str, Any]) -> None:
        self.bids = {p: q for p, q in data["b"]}
        self.asks = {p: q for p, q in data["a"]}
        self.u = data["u"]

    def apply(self, data: dict[str, Any]) -> None:
        for side, levels_ in ((self.bids, data["b"]), (self.asks, data["a"])):
            for p, q in levels_:
                if float(q) == 0:
                    side.pop(p, None)
                else:
                    side[p] = q
        self.u = data["u"]

    def top(self, n: int) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
        bids = sorted(((float(p), float(q)) for p, q in self.bids.items()), reverse=True)[:n]
        asks = sorted((float(p), float(q)) for p, q in self.asks.items())[:n]
        return bids, asks


def _recorded() -> list[dict[str, Any]]:
    if not RECORDING.exists():
        pytest.skip(f"recording not found: {RECORDING}")
    return list(read_jsonl_zst(RECORDING))


def test_recording_zero_gaps_and_sampled_books_equal_reference() -> None:
    feeds: dict[str, BybitFeed] = {}
    refs: dict[tuple[str, str], RefBook] = defaultdict(RefBook)
    next_sample = 0.0
    samples = 0
    deltas = 0
    for rec in _recorded():
        if rec["t"] == "connect":
            feeds[rec["conn"]] = feed_for_url(rec["addr"])
            continue
        if rec["t"] != "recv":
            continue
        conn, ts = rec["conn"], rec["ts"]
        if ts >= next_sample:  # sample every book on a 1 s grid of the recorded local clock
            for (c, pair), ref in refs.items():
                book = feeds[c].book(pair)
                assert book is not None and book.update_id == ref.u
                assert len(book) <= 2 * 200  # orderbook.200 deletes levels leaving the depth explicitly
                bids, asks = book.top(20)
                assert ([(lv.price, lv.qty) for lv in bids], [(lv.price, lv.qty) for lv in asks]) == ref.top(20)
                samples += 1
            next_sample = int(ts) + 1.0
        feeds[conn].on_frame(rec["data"].encode(), ts * 1000.0)
        msg = json.loads(rec["data"])
        if not msg.get("topic", "").startswith("orderbook."):
            continue
        ref = refs[(conn, pair_for(feeds[conn].category, msg["data"]["s"]))]
        if msg["type"] == "snapshot":
            ref.load(msg["data"])
        else:
            assert msg["data"]["u"] == ref.u + 1, "the recording itself has a gap"
            ref.apply(msg["data"])
            deltas += 1
    assert deltas == 2142
    assert samples >= 100
    # Two sockets, six books; BTCUSDT on both markets, kept apart.
    assert sorted(feeds["BYBIT.ws.2"].pairs()) == ["BTC-USDT-PERP", "DOGE-USDT-PERP", "ETH-USDT-PERP", "SOL-USDT-PERP"]
    assert sorted(feeds["BYBIT.ws.3"].pairs()) == ["BTC-USDT", "ETH-USDT"]
    for conn, feed in feeds.items():
        assert feed.stats.gaps == 0 and feed.stats.malformed == 0
        for pair in feed.pairs():
            book = feed.book(pair)
            assert book is not None
            full_bids, full_asks = book.top(10_000)
            ref = refs[(conn, pair)]
            assert ([(lv.price, lv.qty) for lv in full_bids], [(lv.price, lv.qty) for lv in full_asks]) == ref.top(
                10_000
            )
    spot_btc, perp_btc = feeds["BYBIT.ws.3"].book("BTC-USDT"), feeds["BYBIT.ws.2"].book("BTC-USDT-PERP")
    assert spot_btc is not None and perp_btc is not None and spot_btc.update_id != perp_btc.update_id


def test_recording_dropped_delta_is_detected_at_the_next_one_and_resync_restores_the_book() -> None:
    records = [r for r in _recorded() if r["t"] in ("connect", "recv")]
    target = ("BYBIT.ws.2", "BTC-USDT-PERP")
    book_frames = [
        i
        for i, r in enumerate(records)
        if r["t"] == "recv" and r["conn"] == target[0] and '"orderbook.200.BTCUSDT"' in r["data"]
    ]
    drop_at = book_frames[150]
    detect_at = book_frames[151]
    resync_at = book_frames[300]
    feeds: dict[str, BybitFeed] = {}
    refs: dict[tuple[str, str], RefBook] = defaultdict(RefBook)
    for i, rec in enumerate(records):
        if rec["t"] == "connect":
            feeds[rec["conn"]] = feed_for_url(rec["addr"])
            continue
        conn = rec["conn"]
        msg = json.loads(rec["data"])
        if msg.get("topic", "").startswith("orderbook."):
            ref = refs[(conn, pair_for(feeds[conn].category, msg["data"]["s"]))]
            ref.load(msg["data"]) if msg["type"] == "snapshot" else ref.apply(msg["data"])
        if i == drop_at:
            continue  # lost on the wire
        if i == resync_at:
            # What the resubscription brings: a snapshot of the current book.
            ref = refs[target]
            snap = {"s": "BTCUSDT", "b": list(ref.bids.items()), "a": list(ref.asks.items()), "u": ref.u}
            payload = {"topic": "orderbook.200.BTCUSDT", "type": "snapshot", "ts": 1, "data": snap}
            feeds[conn].on_frame(msgspec.json.encode(payload), 0)
            continue
        gaps_before = feeds[conn].stats.gaps
        feeds[conn].on_frame(rec["data"].encode(), rec["ts"] * 1000)
        if i == detect_at:
            assert feeds[conn].stats.gaps == gaps_before + 1, "gap not detected at the first delta after the loss"
        if detect_at <= i < resync_at:
            assert feeds[target[0]].book(target[1]) is None, "a book with a hole was offered for sampling"
        if book_frames[0] <= i < drop_at or i >= resync_at:
            assert feeds[target[0]].book(target[1]) is not None
        # Every other book stays valid and equal to the reference throughout.
        if i % 25 == 0 and i > book_frames[0]:
            for (c, pair), ref in refs.items():
                if (c, pair) == target and drop_at <= i < resync_at:
                    continue
                book = feeds[c].book(pair)
                assert book is not None, f"{pair} on {c} lost at record {i}"
                bids, asks = book.top(20)
                assert ([(lv.price, lv.qty) for lv in bids], [(lv.price, lv.qty) for lv in asks]) == ref.top(20)
    assert feeds[target[0]].stats.gaps == 1 and feeds[target[0]].stats.per_pair[target[1]]["resyncs"] == 2
    assert feeds["BYBIT.ws.3"].stats.gaps == 0
    book = feeds[target[0]].book(target[1])
    assert book is not None
    bids, asks = book.top(10_000)
    assert ([(lv.price, lv.qty) for lv in bids], [(lv.price, lv.qty) for lv in asks]) == refs[target].top(10_000)


# --- live: real processes against the simulator -------------------------------------------------


PAIRS = ["BTC-USDT", "BTC-USDT-PERP", "ETH-USDT-PERP"]


def test_live_capture_matches_simulator_and_a_gap_resyncs_only_that_pair(tmp_path: Path) -> None:
    sim = VenueSim("bybit", "--seed", "5", "--symbols", "BTCUSDT,ETHUSDT")
    try:
        venue, stored = capture_through_a_gap(tmp_path, sim, "bybit", PAIRS, ("linear:BTCUSDT", "BTC-USDT-PERP"))
        assert venue["malformed"] == 0
        # Every stored book equals the simulator's book of that market at the stored u.
        for snap in stored:
            category, symbol = symbol_for(snap["pair"])
            code, ref = sim.get(f"/sim/book?category={category}&symbol={symbol}&update_id={snap['update_id']}&limit=20")
            assert code == 200, (snap["pair"], snap["update_id"], ref)
            assert stored_levels(snap["bids"]) == levels(ref["bids"])
            assert stored_levels(snap["asks"]) == levels(ref["asks"])
        spot = [s for s in stored if s["pair"] == "BTC-USDT"]
        perp = [s for s in stored if s["pair"] == "BTC-USDT-PERP"]
        assert spot[-1]["bids"] != perp[-1]["bids"]  # two markets, two books
    finally:
        sim.stop()


async def test_connector_survives_disconnect_and_stall_and_keeps_the_other_socket() -> None:
    import asyncio

    from recorder.config import VenueConfig
    from recorder.venues.bybit import BybitConnector

    sim = VenueSim("bybit", "--seed", "9", "--symbols", "BTCUSDT")
    connector = BybitConnector(
        VenueConfig(ws_url=sim.urls["ws_url"], stall_timeout_s=2.0), ["BTC-USDT", "BTC-USDT-PERP"]
    )
    for sock in connector.sockets:
        sock.ping_interval_s = 0.3  # pongs keep coming during the stall: they must not hide it
        sock.resubscribe_timeout_s = 1.0
    # the first subscription is refused: the connector must ask again
    await asyncio.to_thread(sim.fault, kind="refuse_subscribe", symbol="spot:BTCUSDT")
    task = asyncio.create_task(connector.run())
    lost_perp = False

    def watch_perp() -> bool:
        nonlocal lost_perp
        lost_perp |= connector.book("BTC-USDT-PERP") is None
        return True

    try:
        await until(lambda: connector.book("BTC-USDT") and connector.book("BTC-USDT-PERP"), 30, "both books")
        code, stats = await asyncio.to_thread(sim.get, "/sim/stats")
        assert stats["topics"]["spot:orderbook.200.BTCUSDT"]["subscribers"] == 1
        assert connector.counters.get("connected") == 1  # both sockets
        dropped = await asyncio.to_thread(sim.fault, kind="drop", symbol="spot:BTCUSDT")
        assert dropped["connections"] == 1  # the spot socket alone
        await until(lambda: watch_perp() and connector.counters.get("reconnects") >= 1, 30, "reconnect")
        await until(lambda: watch_perp() and connector.book("BTC-USDT") is not None, 30, "spot resynced")
        assert not lost_perp, "the linear socket must not notice the spot socket's disconnect"
        # Deltas stop on the linear market while pings are still answered (quiet stall).
        await asyncio.to_thread(sim.fault, kind="stall", quiet=True, symbol="linear:BTCUSDT", duration_s=3.0)
        await until(lambda: connector.counters.get("stalls") >= 1, 30, "stall detected")
        await until(lambda: connector.book("BTC-USDT-PERP") is not None, 30, "linear resynced after the stall")
        assert connector.counters.get("reconnects") == 2
        for pair in ("BTC-USDT", "BTC-USDT-PERP"):
            book = connector.book(pair)
            assert book is not None
            bids, asks = book.top(20)
            u = book.update_id
            category, symbol = symbol_for(pair)
            code, ref = await asyncio.to_thread(
                sim.get, f"/sim/book?category={category}&symbol={symbol}&update_id={u}&limit=20"
            )
            assert code == 200
            assert [(lv.price, lv.qty) for lv in bids] == levels(ref["bids"])
            assert [(lv.price, lv.qty) for lv in asks] == levels(ref["asks"])
    finally:
        await connector.close()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        sim.stop()


def test_simulated_capture_of_bybit_and_coinbase_at_once(tmp_path: Path) -> None:
    """``--simulate`` starts one simulator per venue; each venue runs in its own process."""
    data = tmp_path / "data"
    cfg = tmp_path / "both.toml"
    cfg.write_text(
        f'data_dir = "{data}"\nsimulate = true\ninterval = "500ms"\n'
        '[venues.bybit]\npairs = ["BTC-USDT", "BTC-USDT-PERP"]\n'
        '[venues.coinbase]\npairs = ["BTC-USD"]\n'
    )
    # Until every pair has stored a few snapshots, not for a fixed time a slow start-up could eat.
    with running_cli("start-capture", "--config", str(cfg), "--session-id", "both") as proc:
        wait_for(lambda: every_pair_sampled(data, "both", 6), 90, "snapshots of every pair of both venues")
        # The frames reach the shared counters while the sockets are open (their watch loops flush them).
        wait_for(lambda: all(v["messages"] > 0 for v in status(data, "both")["venues"].values()), 30, "messages")
        stop_cli(proc)
    final = status(data, "both")
    assert final is not None and final["flushed"] is True
    stored = read_jsonl(data)
    by_venue: dict[str, set[str]] = defaultdict(set)
    for snap in stored:
        by_venue[snap["exchange"]].add(snap["pair"])
        assert snap["bids"][0]["price"] < snap["asks"][0]["price"]
    assert by_venue == {"bybit": {"BTC-USDT", "BTC-USDT-PERP"}, "coinbase": {"BTC-USD"}}
    for venue in ("bybit", "coinbase"):
        v = final["venues"][venue]
        assert v["samples"] >= 6 and v["gaps"] == 0 and v["malformed"] == 0
        assert v["bytes"] > 50 * v["messages"] > 0  # book frames are well over 50 bytes
    assert final["venues"]["bybit"]["pid"] != final["venues"]["coinbase"]["pid"]


@pytest.mark.parametrize("level", [("nan", "1"), ("100", "inf"), ("100", "-1"), ("1e999", "1")])
def test_a_level_that_is_no_price_loses_only_its_book(level: tuple[str, str]) -> None:
    """Floats are parsed in C on the one-pass decode; NaN, infinities and negative numbers are
    malformed levels there and on the fallback path alike, never levels in a book."""
    feed = BybitFeed("spot", ["BTC-USDT", "ETH-USDT"])
    feed.on_frame(SNAP, 0)
    feed.on_frame(frame("snapshot", 7, b=[("10", "1")], a=[("11", "1")], symbol="ETHUSDT"), 0)
    feed.on_frame(frame("delta", 101, b=[level]), 0)
    assert feed.stats.malformed == 1 and feed.stats.per_pair["BTC-USDT"]["malformed"] == 1
    assert feed.book("BTC-USDT") is None and feed.wants_snapshot() == {"BTC-USDT"}
    assert top(feed, "ETH-USDT") == ([(10.0, 1.0)], [(11.0, 1.0)])
    feed.on_frame(frame("snapshot", 200, b=[("50", "1")], a=[("51", "1")]), 0)  # the resubscribe's snapshot
    assert top(feed, "BTC-USDT") == ([(50.0, 1.0)], [(51.0, 1.0)]) and feed.wants_snapshot() == set()
