"""Kraken: checksum vectors from the docs, v2/v1 sync rules on crafted frames, every checksum of
the real v1 recording, a corrupted recording, and live captures against the simulator."""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from recorder.config import VenueConfig
from recorder.venues.kraken import (
    KrakenConnector,
    KrakenFeed,
    capture_pairs,
    pair_for,
    subscription_depth,
    symbol_for,
    v1_symbol_for,
)
from recorder.venues.kraken_wire import checksum
from tests.checksum_venue_support import (
    RECORDINGS,
    VenueSim,
    assert_a_corrupted_level_costs_only_its_book,
    read_text_capture,
    sim_fixture,
    venue_config,
)
from tests.conftest import read_jsonl, run_cli, status, wait_for

RECORDING = RECORDINGS / "kraken" / "KRAKEN.ws.50.0"
TS = "2026-11-25T10:00:00.123456Z"

# venue-protocols.md §10, Kraken v2 (book-checksum-v2 guide), expected 3310070434.
V2_ASKS = [
    ("45285.2", "0.00100000"), ("45286.4", "1.54571953"), ("45286.6", "1.54571109"), ("45289.6", "1.54560911"),
    ("45290.2", "0.15890660"), ("45291.8", "1.54553491"), ("45294.7", "0.04454749"), ("45296.1", "0.35380000"),
    ("45297.5", "0.09945542"), ("45299.5", "0.18772827"),
]  # fmt: skip
V2_BIDS = [
    ("45283.5", "0.10000000"), ("45283.4", "1.54582015"), ("45282.1", "0.10000000"), ("45281.0", "0.10000000"),
    ("45280.3", "1.54592586"), ("45279.0", "0.07990000"), ("45277.6", "0.03310103"), ("45277.5", "0.30000000"),
    ("45277.3", "1.54602737"), ("45276.6", "0.15445238"),
]  # fmt: skip
V2_ASKS_TEXT = (
    "45285210000045286415457195345286615457110945289615456091145290215890660452918154553491452947445474945296135380000"
    "452975994554245299518772827"
)
V2_BIDS_TEXT = (
    "452835100000004528341545820154528211000000045281010000000452803154592586452790799000045277633101034527753000000045"
    "277315460273745276615445238"
)
# venue-protocols.md §10, Kraken v1 guide: expected 974947235.
V1_ASKS = ["0.05005", "0.05010", "0.05015", "0.05020", "0.05025", "0.05030", "0.05035", "0.05040", "0.05045", "0.05050"]
V1_BIDS = ["0.05000", "0.04995", "0.04990", "0.04980", "0.04975", "0.04970", "0.04965", "0.04960", "0.04955", "0.04950"]


def v2_frame(
    kind: str,
    symbol: str,
    bids: list[tuple[str, str]],
    asks: list[tuple[str, str]],
    crc: int | None = None,
    ts: str = TS,
) -> bytes:
    """A v2 book message with prices/quantities as JSON numbers printed exactly as given."""

    def levels(side: list[tuple[str, str]]) -> str:
        return ",".join(f'{{"price":{p},"qty":{q}}}' for p, q in side)

    crc_part = f',"checksum":{crc}' if crc is not None else ""
    return (
        f'{{"channel":"book","type":"{kind}","data":[{{"symbol":"{symbol}","bids":[{levels(bids)}],'
        f'"asks":[{levels(asks)}]{crc_part},"timestamp":"{ts}"}}]}}'
    ).encode()


def v1_frame(channel: int, dicts: list[dict], name: str, pair: str) -> bytes:
    return json.dumps([channel, *dicts, name, pair]).encode()


# --- checksum test vectors -------------------------------------------------------------------------


def test_v2_checksum_vector_from_the_docs() -> None:
    assert "".join(p.replace(".", "").lstrip("0") + q.replace(".", "").lstrip("0") for p, q in V2_ASKS) == V2_ASKS_TEXT
    assert "".join(p.replace(".", "").lstrip("0") + q.replace(".", "").lstrip("0") for p, q in V2_BIDS) == V2_BIDS_TEXT
    assert zlib.crc32((V2_ASKS_TEXT + V2_BIDS_TEXT).encode()) == 3310070434
    assert checksum(V2_BIDS, V2_ASKS) == 3310070434
    # Through the Feed: numbers on the wire keep their text (0.10000000 is not 0.1).
    feed = KrakenFeed(["BTC-USD"], depth=10)
    feed.on_frame(v2_frame("snapshot", "BTC/USD", V2_BIDS, V2_ASKS, 3310070434), 1.0)
    assert feed.stats.checksums_ok == 1 and feed.stats.checksums_failed == 0
    book = feed.book("BTC-USD")
    assert book is not None and book.best_bid() == 45283.5 and book.best_ask() == 45285.2
    # A float re-rendering of the same book would not match: the text is what counts.
    floats = [(str(float(p)), str(float(q))) for p, q in V2_BIDS]
    assert checksum(floats, [(str(float(p)), str(float(q))) for p, q in V2_ASKS]) != 3310070434


def test_v1_checksum_vector_from_the_docs_after_update_and_truncation() -> None:
    vol = "0.00000500"
    text = "".join(p.replace(".", "").lstrip("0") + "500" for p in V1_ASKS + V1_BIDS)
    assert zlib.crc32(text.encode()) == 974947235
    feed = KrakenFeed()
    # Snapshot lacks the 0.05050 ask but holds a worse one; the update adds 0.05050, and depth-10
    # truncation must drop 0.05055 (Kraken never sends a delete for it) before the checksum.
    asks = [[p, vol, "1600000000.000001"] for p in V1_ASKS[:-1]] + [["0.05055", vol, "1600000000.000001"]]
    bids = [[p, vol, "1600000000.000001"] for p in V1_BIDS]
    feed.on_frame(v1_frame(42, [{"as": asks, "bs": bids}], "book-10", "XBT/USD"), 1.0)
    assert feed.book("BTC-USD") is None  # v1 snapshots carry no checksum: not yet verified
    update = v1_frame(42, [{"a": [["0.05050", vol, "1600000001.500000"]], "c": "974947235"}], "book-10", "XBT/USD")
    feed.on_frame(update, 2.0)
    assert feed.stats.checksums_ok == 1 and feed.stats.checksums_failed == 0
    book = feed.book("BTC-USD")
    assert book is not None
    bids_t, asks_t = book.top_text(20)
    assert [p for p, _ in asks_t] == V1_ASKS and [p for p, _ in bids_t] == V1_BIDS
    assert book.update_id == 1600000001500000 and book.exchange_time_ms == 1600000001500


# --- sync rules on crafted frames ------------------------------------------------------------------


def _synced_v2(depth: int = 10) -> KrakenFeed:
    feed = KrakenFeed(["BTC-USD", "ETH-USD"], depth=depth)
    feed.on_frame(v2_frame("snapshot", "BTC/USD", V2_BIDS, V2_ASKS, 3310070434), 1.0)
    return feed


def _expected(feed: KrakenFeed, pair: str) -> int:
    bids, asks = feed._books[pair].book.top_text(10)
    return checksum(bids, asks)


def test_v2_updates_delete_insert_and_truncate_to_depth() -> None:
    feed = _synced_v2(depth=10)
    # A better ask pushes the worst one (45299.5) out of the depth-10 view: no delete is sent.
    asks = [("45284.0", "2.00000000"), *V2_ASKS[:9]]
    crc = checksum(V2_BIDS, asks)
    feed.on_frame(v2_frame("update", "BTC/USD", [], [("45284.0", "2.00000000")], crc, "2026-11-25T10:00:01Z"), 2.0)
    assert feed.stats.checksums_ok == 2, feed.stats.as_dict()
    book = feed.book("BTC-USD")
    assert book is not None and book.best_ask() == 45284.0 and book.depth() == (10, 10)
    assert book.update_id == 1_795_600_801_000_000 and book.exchange_time_ms == 1_795_600_801_000
    # Delete the best bid; Kraken sends the level that re-enters the view in the same message.
    bids = [*V2_BIDS[1:], ("45270.0", "1.00000000")]
    crc = checksum(bids, asks)
    feed.on_frame(v2_frame("update", "BTC/USD", [("45283.5", "0"), ("45270.0", "1.00000000")], [], crc), 3.0)
    assert feed.stats.checksums_failed == 0 and feed.book("BTC-USD") is not None
    assert feed.book("BTC-USD").best_bid() == 45283.4  # type: ignore[union-attr]


def test_update_before_snapshot_is_ignored_and_other_symbols_are_not_ours() -> None:
    feed = KrakenFeed(["BTC-USD"], depth=10)
    feed.on_frame(v2_frame("update", "BTC/USD", [("1.0", "1.0")], [], 123), 1.0)
    assert feed.book("BTC-USD") is None and feed.stats.checksums_failed == 0
    feed.on_frame(v2_frame("snapshot", "SOL/USD", V2_BIDS, V2_ASKS, 3310070434), 1.0)
    assert feed.pairs() == ["BTC-USD"] and feed.stats.checksums_ok == 0


def test_checksum_mismatch_drops_only_that_book_and_asks_for_a_resubscribe() -> None:
    feed = _synced_v2()
    feed.on_frame(v2_frame("snapshot", "ETH/USD", V2_BIDS, V2_ASKS, 3310070434), 1.0)
    wrong = checksum(V2_BIDS, V2_ASKS) ^ 1
    feed.on_frame(v2_frame("update", "BTC/USD", [("45283.5", "0.20000000")], [], wrong), 2.0)
    assert feed.stats.checksums_failed == 1 and feed.stats.per_pair["BTC-USD"]["checksums_failed"] == 1
    assert feed.book("BTC-USD") is None and feed.book("ETH-USD") is not None
    assert feed.wants_snapshot() == {"BTC-USD"}
    # Updates before the new snapshot are ignored (they belong to the broken subscription).
    feed.on_frame(v2_frame("update", "BTC/USD", [("1.0", "1.0")], [], 5), 3.0)
    assert feed.book("BTC-USD") is None and feed.stats.checksums_failed == 1
    feed.on_frame(v2_frame("snapshot", "BTC/USD", V2_BIDS, V2_ASKS, 3310070434), 4.0)
    assert feed.book("BTC-USD") is not None and feed.wants_snapshot() == set()
    # Every sync counts (the first snapshots of both pairs, then BTC-USD's resync).
    assert feed.stats.resyncs == 3 and feed.stats.per_pair["BTC-USD"]["resyncs"] == 2


def test_malformed_frames_are_counted_never_raised() -> None:
    feed = _synced_v2()
    bad = [
        b"not json",
        b"[1, 2]",  # too short for a v1 book frame
        b'{"foo": 1}',  # neither channel, method nor event
        b'{"channel":"book","type":"update","data":[{"bids":[]}]}',  # no symbol
        b'{"channel":"book","type":"weird","data":[{"symbol":"ETH/USD"}]}',
        b'["x",{"a":[]},"book-10","XBT/USD"]',  # channel id not an int
    ]
    for payload in bad:
        feed.on_frame(payload, 1.0)
    assert feed.stats.malformed == len(bad), feed.stats.as_dict()
    assert feed.book("BTC-USD") is not None  # none of them touched a synced book
    # A bad level inside a synced book's update loses that book (it may be half-applied).
    feed.on_frame(v2_frame("update", "BTC/USD", [('"abc"', "1.0")], [], 1), 2.0)
    assert feed.stats.malformed == len(bad) + 1 and feed.book("BTC-USD") is None
    assert feed.wants_snapshot() == {"BTC-USD"}
    feed.on_frame(v2_frame("snapshot", "BTC/USD", V2_BIDS, V2_ASKS, 3310070434), 2.5)
    feed.on_frame(b'[1,{"b":[["45283.5"]],"c":"1"},"book-10","XBT/USD"]', 2.6)
    assert feed.stats.malformed == len(bad) + 2 and feed.book("BTC-USD") is None
    # A checksum that is not a number: the update is not applied unverified.
    feed.on_frame(v2_frame("snapshot", "BTC/USD", V2_BIDS, V2_ASKS, 3310070434), 2.7)
    feed.on_frame(b'[1,{"b":[["45283.5","0.5","1600000000.1"]],"c":"x"},"book-10","XBT/USD"]', 2.8)
    assert feed.stats.malformed == len(bad) + 3 and feed.book("BTC-USD") is None
    feed.on_frame(b'{"channel":"heartbeat"}', 3.0)
    feed.on_frame(b'{"method":"pong","req_id":3}', 3.0)
    feed.on_frame(b'{"method":"subscribe","success":false,"error":"Currency pair not supported"}', 3.0)
    assert feed.stats.kinds["heartbeat"] == 1 and feed.stats.kinds["pong"] == 1


def test_v1_two_dict_frame_and_republished_level() -> None:
    feed = KrakenFeed(["BTC-USD"])
    ts = "1600000000.000001"
    asks = [[p, "0.00000500", ts] for p in V1_ASKS]
    bids = [[p, "0.00000500", ts] for p in V1_BIDS]
    feed.on_frame(v1_frame(7, [{"as": asks, "bs": bids}], "book-10", "XBT/USD"), 1.0)
    # One frame, an ask dict and a bid dict, the checksum in the last; "r" marks a republished level.
    new_asks = [[p, "0.00000500"] for p in V1_ASKS]
    new_asks[0][1] = "0.00000600"
    new_bids = [[p, "0.00000500"] for p in V1_BIDS[1:]] + [["0.04945", "0.00000100"]]
    crc = checksum([(p, q) for p, q in new_bids], [(p, q) for p, q in new_asks])
    frame = v1_frame(
        7,
        [
            {"a": [["0.05005", "0.00000600", "1600000002.000001"]]},
            {"b": [["0.05000", "0.00000000", "1600000002.000002"], ["0.04945", "0.00000100", ts, "r"]], "c": str(crc)},
        ],
        "book-10",
        "XBT/USD",
    )
    feed.on_frame(frame, 2.0)
    assert feed.stats.checksums_ok == 1 and feed.stats.checksums_failed == 0
    assert feed.book("BTC-USD").update_id == 1600000002000002  # type: ignore[union-attr]


def test_pair_mapping_and_subscription_depth() -> None:
    assert symbol_for("BTC-USD") == "BTC/USD" and v1_symbol_for("BTC-USD") == "XBT/USD"
    assert v1_symbol_for("DOGE-USD") == "XDG/USD" and pair_for("XDG/USD") == "DOGE-USD"
    assert pair_for("XBT/USD") == pair_for("BTC/USD") == "BTC-USD" and pair_for("ETH/XBT") == "ETH-BTC"
    assert [subscription_depth(n) for n in (1, 10, 11, 20, 100, 101, 1000, 5000)] == [
        10,
        10,
        25,
        25,
        100,
        500,
        1000,
        1000,
    ]
    c = KrakenConnector(VenueConfig(pairs=["BTC-USD"], snapshot_limit=20), ["BTC-USD", "ETH-USD"])
    sub = json.loads(c.subscribe_messages(["BTC-USD", "ETH-USD"])[0])
    assert sub["method"] == "subscribe" and sub["params"] == {
        "channel": "book", "symbol": ["BTC/USD", "ETH/USD"], "depth": 25, "snapshot": True,
    }  # fmt: skip
    unsub = json.loads(c.unsubscribe_messages(["ETH-USD"])[0])
    assert unsub["method"] == "unsubscribe" and unsub["params"]["symbol"] == ["ETH/USD"]
    assert json.loads(c.ping_message())["method"] == "ping"


# --- the real recording ----------------------------------------------------------------------------


def test_recording_every_checksum_verified() -> None:
    frames = read_text_capture(RECORDING)
    with_checksum = sum(1 for _, f in frames if b'"c":"' in f)
    assert with_checksum == 4269  # the README's count
    feed = KrakenFeed()
    for ts, payload in frames:
        feed.on_frame(payload, ts)
    s = feed.stats
    assert s.checksums_ok == with_checksum and s.checksums_failed == 0
    assert s.malformed == 0 and s.kinds["snapshot"] == 10 and s.kinds["update"] == 4269
    pairs = {"WAVES-EUR", "XMR-USD", "KSM-BTC", "GRT-ETH", "SC-EUR", "ETH-CHF", "OCEAN-BTC", "OMG-USD", "BTC-CHF"}
    assert pairs | {"ADA-BTC"} == set(feed.pairs()) == set(capture_pairs([f for _, f in frames]))
    for pair in feed.pairs():
        book = feed.book(pair)
        assert book is not None and not book.is_crossed() and max(book.depth()) <= 1000, pair
    # Stored prices are float64 that round-trip the venue's decimal text.
    bids, asks = feed.book("BTC-CHF").top_text(5)  # type: ignore[union-attr]
    top_bids, _ = feed.book("BTC-CHF").top(5)  # type: ignore[union-attr]
    assert [lv.price for lv in top_bids] == [float(p) for p, _ in bids]


def _corruptible_update(frames: list[tuple[float, bytes]], symbol: str, after: int) -> int:
    """Index of an update of ``symbol`` (past ``after``) whose level lies in the checksummed top 10."""
    feed = KrakenFeed()
    for i, (ts, payload) in enumerate(frames):
        feed.on_frame(payload, ts)
        if i > after and payload.endswith(f'"{symbol}"]'.encode()) and b'"c":"' in payload:
            level = json.loads(payload)[1]
            price = (level.get("a") or level.get("b"))[0][0]
            bids, asks = feed.book(pair_for(symbol)).top_text(10)  # type: ignore[union-attr]
            if price in {p for p, _ in bids + asks}:
                return i
    raise AssertionError("no corruptible update found")


def _resync_snapshot(reference: KrakenFeed, pair: str, symbol: str) -> bytes:
    bids, asks = reference.book(pair).top_text(1000)  # type: ignore[union-attr]
    ts = "1618678200.000000"
    return v1_frame(
        992, [{"as": [[p, q, ts] for p, q in asks], "bs": [[p, q, ts] for p, q in bids]}], "book-1000", symbol
    )


def test_corrupted_level_detected_at_that_message_only_that_book_resyncs() -> None:
    frames = read_text_capture(RECORDING)
    symbol, pair = "XMR/USD", "XMR-USD"
    k = _corruptible_update(frames, symbol, after=1000)
    m = k + 400  # the resubscribe's fresh snapshot arrives later
    # The fresh snapshot is the venue's true book at m: taken from an undamaged replay.
    reference = KrakenFeed()
    for ts, payload in frames[:m]:
        reference.on_frame(payload, ts)
    resync = (frames[m][0], _resync_snapshot(reference, pair, symbol))
    # Damage one level's quantity of message k; its checksum (of the true book) stays.
    msg = json.loads(frames[k][1])
    side = msg[1].get("a") or msg[1].get("b")
    side[0][1] = f"{float(side[0][1]) + 1.5:.8f}"
    assert_a_corrupted_level_costs_only_its_book(
        "kraken", KrakenFeed, frames, pair, k, json.dumps(msg).encode(), m, resync, resync_slack_ms=60_000
    )


# --- live: real processes against the simulator ------------------------------------------------------


@pytest.fixture
def kraken_sim() -> Iterator[VenueSim]:
    yield from sim_fixture("kraken")


def test_live_capture_matches_simulator_and_recovers_from_a_corrupted_level(
    kraken_sim: VenueSim, tmp_path: Path
) -> None:
    """A capture (supervisor, venue and writer processes) against the simulator process: every stored
    book equals the simulator's book at the stored update id; a corrupted level injected on the wire
    is caught by the checksum, that symbol alone is resubscribed, and the counters show it."""
    from tests.conftest import popen_cli

    data = tmp_path / "data"
    pairs = ["BTC-USD", "ETH-USD"]
    cfg = venue_config(tmp_path / "k.toml", "kraken", kraken_sim.urls, pairs, data, snapshot_limit=100)
    proc = popen_cli("start-capture", "--config", str(cfg), "--interval", "0.25", "--session-id", "krk")
    try:
        wait_for(lambda: (st := status(data, "krk")) and st["venues"]["kraken"]["samples"] >= 12, 90, "samples")
        kraken_sim.fault(kind="corrupt", symbol="BTC/USD")

        def recovered() -> bool:
            st = status(data, "krk")
            v = st["venues"]["kraken"] if st else None
            return bool(v and v["pairs"]["BTC-USD"]["resyncs"] >= 2 and v["pairs"]["BTC-USD"]["synced"])

        wait_for(recovered, 60, "checksum failure and resubscribe")
        before = status(data, "krk")["venues"]["kraken"]["pairs"]["BTC-USD"]["samples"]  # type: ignore[index]
        wait_for(
            lambda: status(data, "krk")["venues"]["kraken"]["pairs"]["BTC-USD"]["samples"] >= before + 4,  # type: ignore[index]
            60,
            "samples after the resync",
        )
        res = run_cli("stop-capture", "--session-id", "krk", "--data-dir", str(data))
        assert res.returncode == 0, res.stderr
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    final = status(data, "krk")
    assert final is not None and final["flushed"] is True
    v = final["venues"]["kraken"]
    assert v["checksums_failed"] == 1 and v["resubscribes"] >= 1 and v["checksums_ok"] > 50
    assert v["pairs"]["BTC-USD"]["checksums_failed"] == 1 and v["pairs"]["ETH-USD"]["checksums_failed"] == 0
    assert v["pairs"]["ETH-USD"]["resyncs"] == 1 and v["pairs"]["ETH-USD"]["missed_ticks"] == 0
    assert v["malformed"] == 0
    assert [f["kind"] for f in kraken_sim.injected()] == ["corrupt"]
    assert kraken_sim.get("/sim/stats")[1]["updates_corrupted"] == 1
    stored = read_jsonl(data)
    assert len(stored) == v["samples"] and {s["pair"] for s in stored} == set(pairs)
    for s in stored:
        code, ref = kraken_sim.get(f"/sim/book?symbol={s['pair']}&update_id={s['update_id']}&limit=20")
        assert code == 200 and "error" not in ref, (s["pair"], s["update_id"], ref)
        assert [(float(p), float(q)) for p, q in ref["bids"]] == [(lv["price"], lv["qty"]) for lv in s["bids"]]
        assert [(float(p), float(q)) for p, q in ref["asks"]] == [(lv["price"], lv["qty"]) for lv in s["asks"]]
        assert s["exchange_time_ms"] == s["update_id"] // 1000


def test_check_pairs_against_simulator(kraken_sim: VenueSim) -> None:
    from recorder.venues.kraken import check_pairs

    assert check_pairs(kraken_sim.urls["rest_url"], ["BTC-USD", "DOGE-USD", "FOO-USD"]) == ["FOO-USD"]


def test_checksums_need_the_original_text_not_the_pair_decimals() -> None:
    """KRAKEN.0 (REST AssetPairs of the same session) gives XBT/CHF 1 price decimal, yet the feed
    prints 5 (``56218.30000``): a book re-rendered from AssetPairs decimals fails the checksum."""
    from recorder.replay.readers import CaptureReader, Kind

    (http,) = [r for r in CaptureReader(RECORDINGS / "kraken" / "KRAKEN.0") if r.kind is Kind.HTTP]
    info = json.loads(http.payload)["result"]["XBTCHF"]
    assert (info["wsname"], info["pair_decimals"], info["lot_decimals"]) == ("XBT/CHF", 1, 8)
    frames = read_text_capture(RECORDING)
    feed = KrakenFeed(["BTC-CHF"])
    last_c = None
    for ts, payload in frames:
        feed.on_frame(payload, ts)
        if payload.endswith(b'"XBT/CHF"]') and b'"c":"' in payload:
            last_c = int(json.loads(payload)[-3]["c"])
    book = feed.book("BTC-CHF")
    assert book is not None and last_c is not None
    bids, asks = book.top_text(10)
    assert checksum(bids, asks) == last_c
    assert any(len(p.partition(".")[2]) != info["pair_decimals"] for p, _ in bids + asks)

    def rendered(side: list[tuple[str, str]]) -> list[tuple[str, str]]:
        return [(f"{float(p):.{info['pair_decimals']}f}", f"{float(q):.{info['lot_decimals']}f}") for p, q in side]

    assert checksum(rendered(bids), rendered(asks)) != last_c


def test_bad_kraken_settings_fail_before_the_capture_starts(tmp_path: Path) -> None:
    cfg = venue_config(tmp_path / "k.toml", "kraken", {"ws_url": "ws://x", "rest_url": "http://x"}, ["BTC-USD"],
                       tmp_path / "data", channel="books")  # fmt: skip
    res = run_cli("start-capture", "--config", str(cfg))
    assert res.returncode == 2
    assert res.stderr.strip() == "Error: venue 'kraken': Kraken has one book channel ('book'), not 'books'"
