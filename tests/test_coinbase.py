"""Coinbase Advanced Trade level2: sync rules on crafted frames, the real recording, live captures."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from recorder.venues.coinbase import (
    PRODUCTS_PER_CONNECTION,
    CoinbaseConnector,
    CoinbaseFeed,
    CoinbaseSocket,
    parse_time_ms,
)
from tests.venue_live import (
    RECORDINGS,
    VenueSim,
    capture_through_a_gap,
    levels,
    read_jsonl_zst,
    stored_levels,
)

RECORDING = RECORDINGS / "coinbase" / "COINBASE.jsonl.zst"
T0 = "2026-08-09T21:05:48.210883Z"


def l2(seq: int, kind: str, product: str = "BTC-USD", bids: Any = (), asks: Any = (), t: str = T0) -> bytes:
    updates = [{"side": "bid", "event_time": t, "price_level": p, "new_quantity": q} for p, q in bids]
    updates += [{"side": "offer", "event_time": t, "price_level": p, "new_quantity": q} for p, q in asks]
    events = [{"type": kind, "product_id": product, "updates": updates}]
    return json.dumps(
        {"channel": "l2_data", "client_id": "", "timestamp": t, "sequence_num": seq, "events": events}
    ).encode()


def heartbeat(seq: int) -> bytes:
    events = [{"current_time": "2026-08-09 21:05:48.85 +0000 UTC", "heartbeat_counter": seq}]
    return json.dumps({"channel": "heartbeats", "timestamp": T0, "sequence_num": seq, "events": events}).encode()


def top(feed: CoinbaseFeed, pair: str) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    book = feed.book(pair)
    assert book is not None, f"{pair} not synced"
    bids, asks = book.top(100_000)
    return [(lv.price, lv.qty) for lv in bids], [(lv.price, lv.qty) for lv in asks]


def synced_feed(*pairs: str) -> CoinbaseFeed:
    feed = CoinbaseFeed(list(pairs) or ["BTC-USD"])
    for seq, pair in enumerate(pairs or ("BTC-USD",)):
        feed.on_frame(l2(seq, "snapshot", pair, bids=[("100", "1"), ("99", "2")], asks=[("101", "3")]), 0)
    return feed


# --- crafted sequences ------------------------------------------------------------------------


def test_rfc3339_times() -> None:
    assert parse_time_ms("2026-08-09T21:05:48.210883Z") == 1786309548210
    assert parse_time_ms("2026-08-09T21:05:48.228568804Z") == 1786309548228
    assert parse_time_ms("2026-08-09T21:05:48Z") == 1786309548000
    assert parse_time_ms("yesterday") is None


def test_snapshot_then_updates_with_absolute_quantities() -> None:
    feed = CoinbaseFeed(["BTC-USD"])
    feed.on_frame(l2(0, "update", bids=[("1", "1")]), 0)  # nothing to apply it to yet
    assert feed.book("BTC-USD") is None
    feed.on_frame(l2(1, "snapshot", bids=[("100.00", "1.5"), ("99.50", "2")], asks=[("100.50", "3")]), 0)
    feed.on_frame(heartbeat(2), 0)
    feed.on_frame(l2(3, "update", bids=[("100.00", "0"), ("99.75", "4")], asks=[("100.50", "0.25")]), 9.0)
    assert top(feed, "BTC-USD") == ([(99.75, 4.0), (99.5, 2.0)], [(100.5, 0.25)])
    book = feed.book("BTC-USD")
    assert book is not None and book.update_id == 3 and book.exchange_time_ms == 1786309548210
    assert book.receive_time_ms == 9.0
    assert feed.stats.gaps == 0 and feed.stats.kinds["heartbeats"] == 1


def test_sequence_gap_drops_every_book_on_the_connection() -> None:
    feed = synced_feed("BTC-USD", "ETH-USD")
    feed.on_frame(heartbeat(2), 0)
    feed.on_frame(l2(4, "update", "ETH-USD", bids=[("100", "9")]), 0)  # 3 is missing: whose was it?
    assert feed.book("BTC-USD") is None and feed.book("ETH-USD") is None
    assert feed.wants_snapshot() == {"BTC-USD", "ETH-USD"}
    assert feed.stats.gaps == 2  # one per book that lost its continuity
    assert feed.stats.per_pair["BTC-USD"]["gaps"] == feed.stats.per_pair["ETH-USD"]["gaps"] == 1
    # Updates after the gap are not applied; the resubscription's snapshots restore the books.
    feed.on_frame(l2(5, "update", "BTC-USD", bids=[("100", "9")]), 0)
    feed.on_frame(l2(6, "snapshot", "BTC-USD", bids=[("90", "1")], asks=[("91", "1")]), 0)
    assert top(feed, "BTC-USD") == ([(90.0, 1.0)], [(91.0, 1.0)])
    assert feed.wants_snapshot() == {"ETH-USD"}
    assert feed.stats.per_pair["BTC-USD"]["resyncs"] == 2 and feed.stats.gaps == 2


def test_heartbeats_count_in_the_sequence() -> None:
    feed = synced_feed()
    feed.on_frame(heartbeat(1), 0)
    feed.on_frame(heartbeat(3), 0)  # a lost heartbeat is still a lost message on the connection
    assert feed.stats.gaps == 1 and feed.book("BTC-USD") is None


def test_out_of_order_and_duplicate_messages_are_ignored() -> None:
    feed = synced_feed()
    feed.on_frame(l2(1, "update", bids=[("100", "5")]), 0)
    feed.on_frame(l2(1, "update", bids=[("100", "7")]), 0)  # duplicate
    feed.on_frame(l2(0, "update", bids=[("98", "7")]), 0)  # older
    assert top(feed, "BTC-USD")[0] == [(100.0, 5.0), (99.0, 2.0)]
    assert feed.stats.kinds["out_of_order"] == 2 and feed.stats.gaps == 0
    feed.on_frame(l2(2, "update", bids=[("100", "6")]), 0)
    assert top(feed, "BTC-USD")[0][0] == (100.0, 6.0)


def test_mid_stream_snapshot_replaces_the_book() -> None:
    feed = synced_feed()
    feed.on_frame(l2(1, "snapshot", bids=[("50", "1")], asks=[("51", "1")]), 0)
    assert top(feed, "BTC-USD") == ([(50.0, 1.0)], [(51.0, 1.0)])
    assert feed.stats.per_pair["BTC-USD"]["snapshot_resets"] == 1


def test_malformed_frames_are_counted_never_raised() -> None:
    feed = synced_feed("BTC-USD", "ETH-USD")
    bad = [
        b"{not json",
        b'{"channel":"l2_data","events":[{"type":"update","product_id":"BTC-USD","updates":[]}]}',  # no seq
        b'{"channel":"l2_data","sequence_num":2,"events":[{"type":"update"}]}',
        b'{"channel":"l2_data","sequence_num":"x","events":[]}',
    ]
    for payload in bad:
        feed.on_frame(payload, 0)
    assert feed.stats.malformed == len(bad) and feed.stats.gaps == 0
    assert feed.book("BTC-USD") is not None
    # Well-formed JSON with a level that is not a number, or an unknown side: that book is unknown now.
    feed.on_frame(l2(2, "update", bids=[("abc", "1")]), 0)
    assert feed.book("BTC-USD") is None and feed.wants_snapshot() == {"BTC-USD"}
    assert feed.book("ETH-USD") is not None
    wrong_side = json.loads(l2(3, "update", "ETH-USD", bids=[("100", "1")]))
    wrong_side["events"][0]["updates"][0]["side"] = "sideways"
    feed.on_frame(json.dumps(wrong_side).encode(), 0)
    assert feed.book("ETH-USD") is None
    assert feed.stats.malformed == len(bad) + 2
    # Venue errors and other channels are not book frames.
    feed.on_frame(b'{"type":"error","message":"failure to subscribe"}', 0)
    assert feed.stats.kinds["error"] == 1


def test_subscribe_and_resubscribe_frames() -> None:
    from recorder.config import VenueConfig

    proto = CoinbaseSocket(VenueConfig(), [])
    subs = [json.loads(f) for f in proto.subscribe_messages(["BTC-USD"])]
    assert [s["channel"] for s in subs] == ["heartbeats", "level2", "market_trades"]  # one channel a message
    assert all(s["type"] == "subscribe" and s["product_ids"] == ["BTC-USD"] for s in subs)
    # The book and the trades are renewed (a sequence gap may have been a lost trade message: the
    # renewal replays the last 100 trades); heartbeats stay.
    resub = [json.loads(f) for f in proto.resubscribe_messages(["BTC-USD"])]
    assert [(f["type"], f["channel"]) for f in resub] == [("unsubscribe", "level2"), ("subscribe", "level2"),
                                                           ("unsubscribe", "market_trades"),
                                                           ("subscribe", "market_trades")]  # fmt: skip
    conn = CoinbaseConnector(VenueConfig(), ["BTC-USD", "ETH-USD", "SOL-USD"])
    assert len(conn.sockets) == -(-3 // PRODUCTS_PER_CONNECTION)


# --- the real recording -----------------------------------------------------------------------


class RefBook:
    def __init__(self) -> None:
        self.sides: dict[str, dict[str, str]] = {"bid": {}, "offer": {}}

    def apply(self, updates: list[dict[str, str]], reset: bool) -> None:
        if reset:
            self.sides = {"bid": {}, "offer": {}}
        for u in updates:
            side = self.sides[u["side"]]
            if float(u["new_quantity"]) == 0:
                side.pop(u["price_level"], None)
            else:
                side[u["price_level"]] = u["new_quantity"]

    def top(self, n: int) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
        bids = sorted(((float(p), float(q)) for p, q in self.sides["bid"].items()), reverse=True)[:n]
        asks = sorted((float(p), float(q)) for p, q in self.sides["offer"].items())[:n]
        return bids, asks


def _recorded() -> list[dict[str, Any]]:
    if not RECORDING.exists():
        pytest.skip(f"recording not found: {RECORDING}")
    return [r for r in read_jsonl_zst(RECORDING) if r["t"] == "recv"]


def test_recording_zero_gaps_and_sampled_books_equal_reference() -> None:
    feed = CoinbaseFeed()  # every product on the connection
    refs: dict[str, RefBook] = defaultdict(RefBook)
    last_seq = -1
    last_l2_seq: dict[str, int] = {}
    next_sample = 0.0
    samples = updates = 0
    for rec in _recorded():
        ts = rec["ts"]
        if ts >= next_sample:
            for pair, ref in refs.items():
                book = feed.book(pair)
                assert book is not None and book.update_id == last_l2_seq[pair]
                bids, asks = book.top(20)
                assert ([(lv.price, lv.qty) for lv in bids], [(lv.price, lv.qty) for lv in asks]) == ref.top(20)
                samples += 1
            next_sample = int(ts) + 1.0
        feed.on_frame(rec["data"].encode(), ts * 1000.0)
        msg = json.loads(rec["data"])
        assert msg["sequence_num"] == last_seq + 1, "the recording itself has a gap"
        last_seq = msg["sequence_num"]
        if msg["channel"] == "l2_data":
            for ev in msg["events"]:
                last_l2_seq[ev["product_id"]] = last_seq
                refs[ev["product_id"]].apply(ev["updates"], reset=ev["type"] == "snapshot")
                updates += ev["type"] == "update"
    assert updates == 773 and samples >= 40
    assert feed.stats.gaps == 0 and feed.stats.malformed == 0
    assert sorted(refs) == ["BTC-USD", "ETH-USD"]
    for pair, ref in refs.items():
        assert top(feed, pair) == ref.top(100_000)  # whole books, tens of thousands of levels


def test_recording_dropped_message_is_detected_at_the_next_and_resync_restores_the_books() -> None:
    records = _recorded()
    drop_at, resync_at = 400, 700
    feed = CoinbaseFeed()
    refs: dict[str, RefBook] = defaultdict(RefBook)
    shift = 0  # the resubscription's snapshots take sequence numbers on the connection
    for i, rec in enumerate(records):
        msg = json.loads(rec["data"])
        if msg["channel"] == "l2_data":
            for ev in msg["events"]:
                refs[ev["product_id"]].apply(ev["updates"], reset=ev["type"] == "snapshot")
        if i == drop_at:
            continue
        msg["sequence_num"] += shift
        feed.on_frame(json.dumps(msg).encode(), 0)
        if i == drop_at + 1:
            assert feed.stats.gaps == 2, "gap not detected at the first message after the loss (both books)"
        if i == resync_at:
            for product, ref in sorted(refs.items()):
                shift += 1
                updates = [
                    {"side": s, "event_time": T0, "price_level": p, "new_quantity": q}
                    for s in ("bid", "offer")
                    for p, q in ref.sides[s].items()
                ]
                snap = {"channel": "l2_data", "timestamp": T0, "sequence_num": msg["sequence_num"] + shift,
                        "events": [{"type": "snapshot", "product_id": product, "updates": updates}]}  # fmt: skip
                feed.on_frame(json.dumps(snap).encode(), 0)
        if drop_at < i < resync_at:
            assert feed.book("BTC-USD") is None and feed.book("ETH-USD") is None
            assert feed.wants_snapshot() == {"BTC-USD", "ETH-USD"}
        elif i > 30 and i % 10 == 0:  # both snapshots are in by then
            for pair, ref in refs.items():
                bids, asks = top(feed, pair)
                assert (bids[:20], asks[:20]) == ref.top(20), (i, pair)
    assert feed.stats.gaps == 2 and feed.stats.resyncs == 4  # two first syncs, two after the gap
    assert feed.wants_snapshot() == set()
    for pair, ref in refs.items():
        assert top(feed, pair) == ref.top(100_000)


# --- live: real processes against the simulator -------------------------------------------------

PAIRS = ["BTC-USD", "ETH-USD"]


def test_live_capture_matches_simulator_and_a_gap_resyncs_only_that_pair(tmp_path: Path) -> None:
    sim = VenueSim("coinbase", "--seed", "3", "--symbols", "BTC-USD,ETH-USD")

    def malformed_frame() -> None:
        assert sim.fault(kind="malformed", symbol="ETH-USD")["connections"] == 1

    try:
        venue, stored = capture_through_a_gap(tmp_path, sim, "coinbase", PAIRS, ("BTC-USD", "BTC-USD"), malformed_frame)
        assert venue["malformed"] == 1
        # Every stored book equals the simulator's book after the update with the stored event time.
        for snap in stored:
            code, ref = sim.get(f"/sim/book?symbol={snap['pair']}&event_ms={snap['exchange_time_ms']}&limit=20")
            assert code == 200, (snap["pair"], snap["exchange_time_ms"], ref)
            assert stored_levels(snap["bids"]) == levels(ref["bids"])
            assert stored_levels(snap["asks"]) == levels(ref["asks"])
    finally:
        sim.stop()


async def test_connector_reconnects_and_resyncs_only_the_dropped_connection() -> None:
    import asyncio
    import time

    from recorder.config import VenueConfig

    sim = VenueSim("coinbase", "--seed", "4", "--symbols", "BTC-USD,ETH-USD")
    connector = CoinbaseConnector(VenueConfig(ws_url=sim.urls["ws_url"], stall_timeout_s=5.0), PAIRS)
    task = asyncio.create_task(connector.run())
    lost_eth = False

    async def until(cond: Any, what: str) -> None:
        nonlocal lost_eth
        deadline = time.monotonic() + 30
        while not cond():
            lost_eth |= connector.book("ETH-USD") is None
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            await asyncio.sleep(0.05)

    try:
        await until(lambda: connector.book("BTC-USD") and connector.book("ETH-USD"), "both books")
        lost_eth = False
        dropped = await asyncio.to_thread(sim.fault, kind="drop", symbol="BTC-USD")
        assert dropped["connections"] == 1  # BTC-USD's connection alone
        await until(lambda: connector.counters.get("reconnects") >= 1, "reconnect")
        await until(lambda: connector.book("BTC-USD") is not None, "BTC-USD resynced")
        assert not lost_eth, "ETH-USD rides its own connection and must not notice"
        book = connector.book("BTC-USD")
        assert book is not None and book.exchange_time_ms is not None
        bids, asks = book.top(20)
        code, ref = await asyncio.to_thread(sim.get, f"/sim/book?symbol=BTC-USD&event_ms={book.exchange_time_ms}")
        assert code == 200
        assert [(lv.price, lv.qty) for lv in bids] == levels(ref["bids"])
        assert [(lv.price, lv.qty) for lv in asks] == levels(ref["asks"])
    finally:
        await connector.close()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        sim.stop()


@pytest.mark.parametrize("level", [("nan", "1"), ("100", "inf"), ("100", "-1"), ("1e999", "1")])
def test_a_level_that_is_no_price_loses_only_its_book(level: tuple[str, str]) -> None:
    """Floats are parsed in C on the one-pass decode; NaN, infinities and negative numbers are
    malformed levels there and on the fallback path alike, never levels in a book. The frame's
    sequence number still counts: no gap follows."""
    feed = synced_feed("BTC-USD", "ETH-USD")
    feed.on_frame(l2(2, "update", bids=[level]), 0)
    assert feed.stats.malformed == 1 and feed.stats.gaps == 0
    assert feed.book("BTC-USD") is None and feed.wants_snapshot() == {"BTC-USD"}
    feed.on_frame(l2(3, "update", "ETH-USD", bids=[("100", "5")]), 0)
    assert top(feed, "ETH-USD")[0][0] == (100.0, 5.0) and feed.stats.gaps == 0
    feed.on_frame(l2(4, "snapshot", bids=[("50", "1")], asks=[("51", "1")]), 0)
    assert top(feed, "BTC-USD") == ([(50.0, 1.0)], [(51.0, 1.0)]) and feed.wants_snapshot() == set()
