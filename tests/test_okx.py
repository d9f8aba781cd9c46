"""OKX: checksum vectors from the docs, seqId chain and channel rules on crafted frames, every
checksum of the real 2022 recording, a corrupted recording, and a live capture against the simulator."""

from __future__ import annotations

import asyncio
import json
import zlib
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from recorder.config import VenueConfig
from recorder.names import normalize_pair
from recorder.sim.server import SimOptions, Simulator
from recorder.venues.okx import OkxConnector, OkxFeed, capture_pairs, checksum, inst_type, pair_for, symbol_for
from tests.checksum_venue_support import (
    RECORDINGS,
    VenueSim,
    assert_a_corrupted_level_costs_only_its_book,
    read_text_capture,
    sim_fixture,
    venue_config,
)
from tests.conftest import popen_cli, read_jsonl, run_cli, status, wait_for

RECORDING = RECORDINGS / "okx" / "OKX.ws.1.0"


def frame(
    action: str | None,
    inst: str,
    bids: list[list[str]],
    asks: list[list[str]],
    crc: int | None = None,
    prev: int | None = None,
    seq: int | None = None,
    channel: str = "books",
    ts: str = "1764064800123",
) -> bytes:
    data: dict = {"asks": [[*lv, "0", "1"] for lv in asks], "bids": [[*lv, "0", "1"] for lv in bids], "ts": ts}
    if crc is not None:
        data["checksum"] = crc
    if prev is not None:
        data["prevSeqId"] = prev
    if seq is not None:
        data["seqId"] = seq
    msg: dict = {"arg": {"channel": channel, "instId": inst}, "data": [data]}
    if action is not None:
        msg["action"] = action
    return json.dumps(msg, separators=(",", ":")).encode()  # compact, as OKX sends it


def _signed(crc: int) -> int:
    return crc - (1 << 32) if crc >= 1 << 31 else crc


# --- checksum test vectors -------------------------------------------------------------------------


def test_checksum_vectors_from_the_docs() -> None:
    # venue-protocols.md §10: the doc's check strings and their signed CRC32.
    assert _signed(zlib.crc32(b"3366.1:7:3366.8:9:3366:6:3368:8")) == -1881014294
    assert _signed(zlib.crc32(b"3366.1:7:3366.8:9:3368:8:3372:8")) == 831078360
    assert checksum([("3366.1", "7"), ("3366", "6")], [("3366.8", "9"), ("3368", "8")]) == -1881014294
    # One side runs out: the other continues alone.
    assert checksum([("3366.1", "7")], [("3366.8", "9"), ("3368", "8"), ("3372", "8")]) == 831078360
    feed = OkxFeed(["BTC-USDT"])
    feed.on_frame(frame("snapshot", "BTC-USDT", [["3366.1", "7"], ["3366", "6"]], [["3366.8", "9"], ["3368", "8"]],
                        -1881014294, -1, 10), 1.0)  # fmt: skip
    assert feed.stats.checksums_ok == 1 and feed.book("BTC-USDT") is not None
    # Deleting bid 3366 and adding ask 3372 gives the second vector.
    feed.on_frame(frame("update", "BTC-USDT", [["3366", "0"]], [["3372", "8"]], 831078360, 10, 15), 2.0)
    assert feed.stats.checksums_ok == 2 and feed.stats.checksums_failed == 0
    book = feed.book("BTC-USDT")
    assert book is not None and book.update_id == 15 and book.exchange_time_ms == 1764064800123
    # Floats would print 3366.0 and break it: the text is kept.
    assert book.top_text(5) == ([("3366.1", "7")], [("3366.8", "9"), ("3368", "8"), ("3372", "8")])


# --- sync rules on crafted frames ------------------------------------------------------------------


def _synced(pairs: list[str] | None = None) -> OkxFeed:
    feed = OkxFeed(pairs or ["BTC-USDT", "ETH-USDT-PERP"])
    bids, asks = [["100", "1"], ["99.5", "2"]], [["101", "1.5"]]
    crc = checksum([(p, q) for p, q in bids], [(p, q) for p, q in asks])
    feed.on_frame(frame("snapshot", "BTC-USDT", bids, asks, crc, -1, 1000), 1.0)
    feed.on_frame(frame("snapshot", "ETH-USDT-SWAP", bids, asks, crc, -1, 7), 1.0)
    assert feed.book("BTC-USDT") is not None and feed.book("ETH-USDT-PERP") is not None
    return feed


def test_seq_chain_keepalive_reset_and_gap() -> None:
    feed = _synced()
    feed.on_frame(frame("update", "BTC-USDT", [["100", "3"]], [], 0, 1000, 1010), 2.0)  # checksum 0 = absent
    feed.on_frame(frame("update", "BTC-USDT", [], [], 0, 1010, 1010), 3.0)  # keepalive: same id
    feed.on_frame(frame("update", "BTC-USDT", [], [["101", "0"]], 0, 1010, 3), 4.0)  # reset after maintenance
    book = feed.book("BTC-USDT")
    assert book is not None and book.update_id == 3 and book.best_ask() is None
    assert feed.stats.gaps == 0 and feed.stats.checksums_ok == 2  # only the snapshots carried one
    # A lost update: prevSeqId no longer matches. Only that book is dropped.
    feed.on_frame(frame("update", "BTC-USDT", [["99", "1"]], [], 0, 5, 9), 5.0)
    assert feed.stats.gaps == 1 and feed.stats.per_pair["BTC-USDT"]["gaps"] == 1
    assert feed.book("BTC-USDT") is None and feed.book("ETH-USDT-PERP") is not None
    assert feed.wants_snapshot() == {"BTC-USDT"}
    feed.on_frame(frame("update", "BTC-USDT", [["99", "1"]], [], 0, 9, 11), 6.0)  # old subscription: ignored
    assert feed.book("BTC-USDT") is None and feed.stats.gaps == 1
    feed.on_frame(frame("snapshot", "BTC-USDT", [["98", "1"]], [["102", "1"]], 0, -1, 20), 7.0)
    assert feed.book("BTC-USDT") is not None and feed.wants_snapshot() == set()
    assert feed.stats.resyncs == 3 and feed.stats.per_pair["BTC-USDT"]["resyncs"] == 2  # every sync counts


def test_zero_checksum_is_neither_verified_nor_failed_and_the_chain_alone_proves_the_book() -> None:
    """Today's feed (venue-protocols.md §5): ``checksum: 0`` on every frame. Books are served on the
    seqId chain alone; no checksum is counted either way; an update with neither a chain link nor a
    checksum cannot be proven and drops the book like a gap."""
    feed = OkxFeed(["BTC-USDT"])
    feed.on_frame(frame("snapshot", "BTC-USDT", [["100", "1"]], [["101", "1"]], 0, -1, 50), 1.0)
    assert feed.book("BTC-USDT") is not None  # proven by its place in the chain, not a checksum
    feed.on_frame(frame("update", "BTC-USDT", [["100", "2"]], [], 0, 50, 60), 2.0)
    book = feed.book("BTC-USDT")
    assert book is not None and book.update_id == 60 and book.top_text(1)[0] == [("100", "2")]
    assert feed.stats.checksums_ok == 0 and feed.stats.checksums_failed == 0 and feed.stats.gaps == 0
    # The same frames without a link: nothing proves the update, so the book is not served.
    feed.on_frame(frame("update", "BTC-USDT", [["100", "3"]], [], 0, None, 70), 3.0)
    assert feed.book("BTC-USDT") is None and feed.stats.gaps == 1 and feed.wants_snapshot() == {"BTC-USDT"}
    # A snapshot without a seqId, then an update whose prevSeqId has nothing to link to.
    feed.on_frame(frame("snapshot", "BTC-USDT", [["100", "1"]], [["101", "1"]], 0), 4.0)
    assert feed.book("BTC-USDT") is not None
    feed.on_frame(frame("update", "BTC-USDT", [["100", "4"]], [], 0, 80, 90), 5.0)
    assert feed.book("BTC-USDT") is None and feed.stats.gaps == 2
    assert feed.stats.checksums_ok == 0 and feed.stats.checksums_failed == 0


def test_checksum_mismatch_drops_only_that_book() -> None:
    feed = _synced()
    good = checksum([("100", "1"), ("99.5", "2")], [("101", "1.5")])
    feed.on_frame(frame("update", "ETH-USDT-SWAP", [["100", "2"]], [], good, 7, 8), 2.0)  # wrong: 100 is now 2
    assert feed.stats.checksums_failed == 1 and feed.stats.per_pair["ETH-USDT-PERP"]["checksums_failed"] == 1
    assert "checksums_failed" not in feed.stats.per_pair["BTC-USDT"]
    assert feed.book("ETH-USDT-PERP") is None and feed.book("BTC-USDT") is not None
    assert feed.wants_snapshot() == {"ETH-USDT-PERP"}


def test_pre_seqid_capture_is_proven_by_checksum_alone() -> None:
    feed = OkxFeed()
    feed.on_frame(
        frame("snapshot", "BTC-USDT", [["100", "1"]], [["101", "1"]], checksum([("100", "1")], [("101", "1")])), 1.0
    )
    crc = checksum([("100", "2")], [("101", "1")])
    feed.on_frame(frame("update", "BTC-USDT", [["100", "2"]], [], crc), 2.0)
    assert feed.stats.checksums_ok == 2 and feed.stats.gaps == 0
    assert feed.book("BTC-USDT") is not None and feed.book("BTC-USDT").update_id is None  # type: ignore[union-attr]


def test_books5_pushes_replace_the_book_and_channels_filter() -> None:
    feed = OkxFeed(["BTC-USDT"], channel="books5")
    feed.on_frame(frame(None, "BTC-USDT", [["100", "1"], ["99", "1"]], [["101", "1"]], seq=5, channel="books5"), 1.0)
    feed.on_frame(frame(None, "BTC-USDT", [["98", "1"]], [["102", "1"]], seq=6, channel="books5"), 2.0)
    book = feed.book("BTC-USDT")
    assert book is not None and book.best_bid() == 98.0 and len(book) == 2 and book.update_id == 6
    # A different book channel than the one subscribed is not ours.
    feed.on_frame(frame("snapshot", "BTC-USDT", [["1", "1"]], [["2", "1"]], channel="books"), 3.0)
    assert feed.book("BTC-USDT").best_bid() == 98.0  # type: ignore[union-attr]


def test_malformed_frames_events_and_pong() -> None:
    feed = _synced()
    bad = [
        b"not json",
        b"[1,2,3]",
        b'{"data":[]}',  # neither arg nor event
        b'{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"weird","data":[]}',
        b'{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"update","data":[{"asks":"x"}]}',
    ]
    for payload in bad:
        feed.on_frame(payload, 1.0)
    assert feed.stats.malformed == len(bad)
    assert feed.book("BTC-USDT") is not None
    feed.on_frame(frame("update", "BTC-USDT", [["abc", "1"]], [], 0, 1000, 1001), 2.0)
    assert feed.stats.malformed == len(bad) + 1 and feed.book("BTC-USDT") is None
    feed.on_frame(b"pong", 3.0)
    feed.on_frame(b'{"event":"error","code":"60018","msg":"doesn\'t exist"}', 3.0)
    feed.on_frame(b'{"arg":{"channel":"trades","instId":"BTC-USDT"},"data":[{"px":"1"}]}', 3.0)
    assert feed.stats.kinds["pong"] == 1 and feed.stats.kinds["error"] == 1 and feed.stats.kinds["trades"] == 1
    assert not feed.notice_reconnect
    feed.on_frame(b'{"event":"notice","code":"64008","msg":"service upgrade"}', 4.0)
    assert feed.notice_reconnect


def test_pair_mapping_and_requests() -> None:
    assert symbol_for("BTC-USDT") == "BTC-USDT" and symbol_for("BTC-USDT-PERP") == "BTC-USDT-SWAP"
    assert pair_for("BTC-USDT-SWAP") == "BTC-USDT-PERP" and pair_for("ETH-BTC") == "ETH-BTC"
    assert [inst_type(s) for s in ("BTC-USDT", "BTC-USDT-SWAP", "BTC-USD-220527")] == ["SPOT", "SWAP", "FUTURES"]
    c = OkxConnector(VenueConfig(channel="books-l2-tbt"), ["BTC-USDT", "ETH-USDT-PERP"])
    sub = json.loads(c.subscribe_messages(["BTC-USDT", "ETH-USDT-PERP"])[0])
    assert sub["op"] == "subscribe" and sub["args"] == [
        {"channel": "books-l2-tbt", "instId": "BTC-USDT"}, {"channel": "books-l2-tbt", "instId": "ETH-USDT-SWAP"},
        {"channel": "trades", "instId": "BTC-USDT"}, {"channel": "trades", "instId": "ETH-USDT-SWAP"},
    ]  # fmt: skip
    # Only the book is renewed on a resubscribe: the trade subscription stays.
    assert [json.loads(f)["args"] for f in c.resubscribe_messages(["BTC-USDT"])] == [
        [{"channel": "books-l2-tbt", "instId": "BTC-USDT"}]] * 2  # fmt: skip
    assert json.loads(c.unsubscribe_messages(["BTC-USDT"])[0])["op"] == "unsubscribe"
    assert c.ping_message() == "ping"
    with pytest.raises(ValueError, match="unknown OKX book channel"):
        OkxConnector(VenueConfig(channel="books7"), ["BTC-USDT"])


# --- the real recording ----------------------------------------------------------------------------


def test_recording_every_checksum_verified() -> None:
    frames = read_text_capture(RECORDING)
    with_checksum = sum(1 for _, f in frames if b'"checksum":' in f)
    assert with_checksum == 290  # the README's count
    feed = OkxFeed()
    for ts, payload in frames:
        feed.on_frame(payload, ts)
    s = feed.stats
    assert s.checksums_ok == 290 and s.checksums_failed == 0 and s.gaps == 0 and s.malformed == 0
    assert s.kinds["snapshot"] == 3 and s.kinds["update"] == 287
    assert set(feed.pairs()) == {"BTC-USDT", "UNI-USD-PERP", "BTC-USD-220527"}
    assert capture_pairs([f for _, f in frames]) == ["BTC-USD-220527", "UNI-USD-PERP", "BTC-USDT"]
    assert normalize_pair("btc-usd-220527") == "BTC-USD-220527"  # dated futures are valid pair names
    for pair in feed.pairs():
        book = feed.book(pair)
        assert book is not None and not book.is_crossed(), pair
        assert book.update_id is None  # 2022: no seqId yet


def _resync_snapshot(reference: OkxFeed, pair: str) -> bytes:
    bids, asks = reference.book(pair).top_text(400)  # type: ignore[union-attr]
    crc = checksum(bids, asks)
    return frame("snapshot", pair, [list(b) for b in bids], [list(a) for a in asks], crc, ts="1652459300000")


def test_corrupted_level_detected_at_that_message_only_that_book_resyncs() -> None:
    frames = read_text_capture(RECORDING)
    pair = "BTC-USDT"
    # An update of BTC-USDT in the middle whose first level sits in the checksummed top 25.
    reference = OkxFeed()
    k = None
    for i, (ts, payload) in enumerate(frames):
        reference.on_frame(payload, ts)
        if i > 150 and k is None and b'"instId":"BTC-USDT"},"action":"update"' in payload:
            data = json.loads(payload)["data"][0]
            level = (data["bids"] or data["asks"])[0]
            bids, asks = reference.book(pair).top_text(25)  # type: ignore[union-attr]
            if level[0] in {p for p, _ in bids + asks}:
                k = i
    assert k is not None
    m = k + 60
    reference = OkxFeed()
    for ts, payload in frames[:m]:
        reference.on_frame(payload, ts)
    resync = (frames[m][0], _resync_snapshot(reference, pair))
    msg = json.loads(frames[k][1])
    side = msg["data"][0]["bids"] or msg["data"][0]["asks"]
    side[0][1] = str(float(side[0][1]) + 1.25)
    assert_a_corrupted_level_costs_only_its_book(
        "okx", OkxFeed, frames, pair, k, json.dumps(msg).encode(), m, resync, resync_slack_ms=100
    )


# --- live: real processes against the simulator ------------------------------------------------------


@pytest.fixture
def okx_sim() -> Iterator[VenueSim]:
    """The documented CRC32 (older feeds): the checksum path's tests."""
    yield from sim_fixture("okx", "--okx-checksum", "crc")


@pytest.fixture
def okx_sim_today() -> Iterator[VenueSim]:
    """The default simulator: ``checksum: 0`` on every book frame, as OKX sends today."""
    yield from sim_fixture("okx")


@pytest.mark.parametrize("mode", ["zero", "crc"])
def test_simulator_sends_todays_zero_checksum_by_default_and_the_crc_on_request(mode: str) -> None:
    """Every book frame of the default simulator carries ``checksum: 0``; with ``okx_checksum="crc"``
    every one carries the signed CRC32 of the book rebuilt here from the frames (not the Feed)."""

    def crc(book: dict[str, dict[str, str]]) -> int:
        bids = sorted(book["bids"].items(), key=lambda lv: -float(lv[0]))[:25]
        asks = sorted(book["asks"].items(), key=lambda lv: float(lv[0]))[:25]
        parts = [x for i in range(25) for side in (bids, asks) if i < len(side) for x in side[i]]
        return _signed(zlib.crc32(":".join(parts).encode()))

    async def main() -> list[tuple[int, int]]:
        sim = Simulator(SimOptions(venue="okx", seed=5, symbols=["BTC-USDT"], okx_checksum=mode))
        await sim.start()
        seen: list[tuple[int, int]] = []  # (sent checksum, rebuilt book's CRC)
        book: dict[str, dict[str, str]] = {"bids": {}, "asks": {}}
        try:
            async with aiohttp.ClientSession() as http, http.ws_connect(sim.urls["ws_url"]) as ws:
                await ws.send_json({"op": "subscribe", "args": [{"channel": "books", "instId": "BTC-USDT"}]})
                while len(seen) < 20:
                    msg = json.loads((await ws.receive(timeout=10)).data)
                    if "action" not in msg:
                        continue
                    data = msg["data"][0]
                    if msg["action"] == "snapshot":
                        book = {"bids": {}, "asks": {}}
                    for side in ("bids", "asks"):
                        for px, sz, *_ in data[side]:
                            if sz == "0":
                                book[side].pop(px, None)
                            else:
                                book[side][px] = sz
                    seen.append((data["checksum"], crc(book)))
        finally:
            await sim.stop()
        return seen

    seen = asyncio.run(main())
    if mode == "zero":
        assert all(sent == 0 for sent, _ in seen), seen
    else:
        assert all(sent == rebuilt != 0 for sent, rebuilt in seen), seen


def test_live_capture_matches_simulator_and_recovers_from_faults(okx_sim: VenueSim, tmp_path: Path) -> None:
    """Supervisor, venue and writer processes against the simulator process: every stored book
    equals the simulator's book at the stored seqId; a corrupted level (checksum) on the spot pair
    and a lost update (prevSeqId gap) on the perpetual are each caught, and only that pair is
    resubscribed."""
    data = tmp_path / "data"
    pairs = ["BTC-USDT", "ETH-USDT-PERP"]
    cfg = venue_config(tmp_path / "o.toml", "okx", okx_sim.urls, pairs, data)
    proc = popen_cli("start-capture", "--config", str(cfg), "--interval", "0.25", "--session-id", "okx1")

    def pair_status(pair: str) -> dict:
        st = status(data, "okx1")
        return st["venues"]["okx"]["pairs"][pair] if st and st.get("venues") else {}

    try:
        wait_for(lambda: (st := status(data, "okx1")) and st["venues"]["okx"]["samples"] >= 12, 90, "samples")
        okx_sim.fault(kind="corrupt", symbol="BTC-USDT")
        okx_sim.fault(kind="gap", symbol="ETH-USDT-SWAP")
        wait_for(lambda: pair_status("BTC-USDT").get("resyncs", 0) >= 2, 60, "checksum failure and resubscribe")
        wait_for(lambda: pair_status("ETH-USDT-PERP").get("resyncs", 0) >= 2, 60, "gap and resubscribe")
        before = {p: pair_status(p)["samples"] for p in pairs}
        wait_for(lambda: all(pair_status(p)["samples"] >= before[p] + 4 for p in pairs), 60, "samples after resync")
        res = run_cli("stop-capture", "--session-id", "okx1", "--data-dir", str(data))
        assert res.returncode == 0, res.stderr
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    final = status(data, "okx1")
    assert final is not None and final["flushed"] is True
    v = final["venues"]["okx"]
    assert v["checksums_failed"] == 1 and v["gaps"] == 1 and v["resubscribes"] >= 2 and v["checksums_ok"] > 50
    assert v["pairs"]["BTC-USDT"]["checksums_failed"] == 1 and v["pairs"]["BTC-USDT"]["gaps"] == 0
    assert v["pairs"]["ETH-USDT-PERP"]["gaps"] == 1 and v["pairs"]["ETH-USDT-PERP"]["checksums_failed"] == 0
    assert v["malformed"] == 0 and [f["kind"] for f in okx_sim.injected()] == ["corrupt", "gap"]
    stats = okx_sim.get("/sim/stats")[1]
    assert stats["updates_corrupted"] == 1 and stats["updates_withheld"] == 1
    stored = read_jsonl(data)
    assert len(stored) == v["samples"] and {s["pair"] for s in stored} == set(pairs)
    _assert_stored_books_equal_the_simulator(okx_sim, stored)


def _assert_stored_books_equal_the_simulator(sim: VenueSim, stored: list[dict]) -> None:
    for s in stored:
        code, ref = sim.get(f"/sim/book?symbol={symbol_for(s['pair'])}&update_id={s['update_id']}&limit=20")
        assert code == 200 and "error" not in ref, (s["pair"], s["update_id"], ref)
        assert [(float(p), float(q)) for p, q in ref["bids"]] == [(lv["price"], lv["qty"]) for lv in s["bids"]]
        assert [(float(p), float(q)) for p, q in ref["asks"]] == [(lv["price"], lv["qty"]) for lv in s["asks"]]


def test_live_capture_on_todays_zero_checksums_is_proven_by_the_seqid_chain(
    okx_sim_today: VenueSim, tmp_path: Path
) -> None:
    """Against the default simulator (``checksum: 0`` everywhere, as OKX today): a lost update on
    the perpetual is caught by ``prevSeqId`` and only that pair resyncs; no checksum is counted,
    verified or failed; every stored book equals the simulator's at the stored seqId."""
    sim = okx_sim_today
    data = tmp_path / "data"
    pairs = ["BTC-USDT", "ETH-USDT-PERP"]
    cfg = venue_config(tmp_path / "o.toml", "okx", sim.urls, pairs, data)
    proc = popen_cli("start-capture", "--config", str(cfg), "--interval", "0.25", "--session-id", "okx0")

    def pair_status(pair: str) -> dict:
        st = status(data, "okx0")
        return st["venues"]["okx"]["pairs"][pair] if st and st.get("venues") else {}

    try:
        wait_for(lambda: all(pair_status(p).get("samples", 0) >= 6 for p in pairs), 90, "samples")
        sim.fault(kind="gap", symbol="ETH-USDT-SWAP")
        wait_for(lambda: pair_status("ETH-USDT-PERP").get("resyncs", 0) >= 2, 60, "gap and resubscribe")
        before = {p: pair_status(p)["samples"] for p in pairs}
        wait_for(lambda: all(pair_status(p)["samples"] >= before[p] + 4 for p in pairs), 60, "samples after resync")
        res = run_cli("stop-capture", "--session-id", "okx0", "--data-dir", str(data))
        assert res.returncode == 0, res.stderr
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    final = status(data, "okx0")
    assert final is not None and final["flushed"] is True
    v = final["venues"]["okx"]
    assert v["checksums_ok"] == 0 and v["checksums_failed"] == 0, v
    assert v["gaps"] == 1 and v["pairs"]["ETH-USDT-PERP"]["gaps"] == 1 and v["pairs"]["BTC-USDT"]["gaps"] == 0
    assert v["pairs"]["ETH-USDT-PERP"]["resyncs"] >= 2 and v["pairs"]["BTC-USDT"]["resyncs"] == 1
    assert v["malformed"] == 0 and sim.get("/sim/stats")[1]["updates_withheld"] == 1
    stored = read_jsonl(data)
    assert len(stored) == v["samples"] and {s["pair"] for s in stored} == set(pairs)
    assert all(s["verified"] for s in stored)
    _assert_stored_books_equal_the_simulator(sim, stored)


def test_check_pairs_against_simulator(okx_sim: VenueSim) -> None:
    from recorder.venues.okx import check_pairs

    assert check_pairs(okx_sim.urls["rest_url"], ["BTC-USDT", "BTC-USDT-PERP", "FOO-USDT-PERP"]) == ["FOO-USDT-PERP"]


def test_bad_okx_channel_fails_before_the_capture_starts(tmp_path: Path) -> None:
    cfg = venue_config(tmp_path / "o.toml", "okx", {"ws_url": "ws://x", "rest_url": "http://x"}, ["BTC-USDT"],
                       tmp_path / "data", channel="books7")  # fmt: skip
    res = run_cli("start-capture", "--config", str(cfg))
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1
    assert res.stderr.startswith("Error: venue 'okx': unknown OKX book channel 'books7'")
