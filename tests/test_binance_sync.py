"""Binance spot sync rules on crafted sequences and on a real recording."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest

from recorder.venues.binance import BookSync, DepthEvent, DepthSnapshot, Envelope, Outcome, parse_frame

DATA = Path(__file__).resolve().parent / "data" / "recordings" / "binance"


def event(**fields: object) -> DepthEvent:
    """A depth event as the wire decoder builds it (level text decoded to floats)."""
    return msgspec.convert({"e": "depthUpdate", **fields}, DepthEvent, strict=False)


def snapshot(**fields: object) -> DepthSnapshot:
    return msgspec.convert(fields, DepthSnapshot, strict=False)


def diff(
    U: int, u: int, bids: list[tuple[str, str]] | None = None, asks: list[tuple[str, str]] | None = None, E: int = 1
) -> DepthEvent:
    return event(E=E, s="BTCUSDT", U=U, u=u, b=bids or [], a=asks or [])


def snap(last: int) -> DepthSnapshot:
    return snapshot(
        lastUpdateId=last, bids=[("100.0", "1.0"), ("99.0", "2.0")], asks=[("101.0", "1.0"), ("102.0", "3.0")]
    )


def test_snapshot_joins_straddling_diff_and_drops_older() -> None:
    s = BookSync("BTC-USDT")
    assert s.on_diff(diff(90, 95, bids=[("100.0", "7.0")]), 0) is Outcome.BUFFERED
    assert s.on_diff(diff(96, 105, bids=[("100.0", "5.0")]), 0) is Outcome.BUFFERED
    assert s.on_diff(diff(106, 110, asks=[("101.0", "0")]), 0) is Outcome.BUFFERED
    assert s.on_diff(diff(112, 113), 0) is Outcome.GAP  # a hole while buffering is reported too
    assert len(s.buffer) == 1  # and starts the buffer over
    s.buffer.clear()
    for ev in (diff(90, 95, bids=[("100.0", "7.0")]), diff(96, 105, bids=[("100.0", "5.0")])):
        s.on_diff(ev, 0)
    s.on_diff(diff(106, 110, asks=[("101.0", "0")]), 0)
    # lastUpdateId 100 lies inside [96, 105]: 90..95 is dropped, 96..105 applied on top.
    assert s.on_snapshot(snap(100)) is Outcome.SYNCED
    assert s.synced and s.book.update_id == 110
    bids, asks = s.book.top(5)
    assert (bids[0].price, bids[0].qty) == (100.0, 5.0)
    assert asks[0].price == 102.0  # 101 deleted by the last diff
    assert s.on_diff(diff(111, 112), 0) is Outcome.APPLIED


def test_stale_snapshot_is_refetched_not_used() -> None:
    s = BookSync("BTC-USDT")
    s.on_diff(diff(200, 210), 0)
    # A snapshot older than the first buffered diff leaves a hole between them.
    assert s.on_snapshot(snap(150)) is Outcome.STALE
    assert not s.synced and s.buffer
    assert s.on_snapshot(snap(205)) is Outcome.SYNCED
    assert s.book.update_id == 210


def test_snapshot_exactly_before_first_diff_joins() -> None:
    s = BookSync("BTC-USDT")
    s.on_diff(diff(101, 104), 0)
    assert s.on_snapshot(snap(100)) is Outcome.SYNCED
    assert s.book.update_id == 104


def test_snapshot_newer_than_buffer_waits_for_straddle() -> None:
    s = BookSync("BTC-USDT")
    s.on_diff(diff(90, 95), 0)
    assert s.on_snapshot(snap(120)) is Outcome.SYNCED
    assert s.book.update_id == 120
    # Old diffs are ignored; the first live one must straddle 121.
    assert s.on_diff(diff(110, 118), 0) is Outcome.IGNORED
    assert s.on_diff(diff(119, 125), 0) is Outcome.APPLIED
    assert s.book.update_id == 125


def test_gap_after_sync_discards_book_and_rebuffers() -> None:
    s = BookSync("BTC-USDT")
    s.on_diff(diff(96, 105), 0)
    s.on_snapshot(snap(100))
    assert s.on_diff(diff(106, 108), 0) is Outcome.APPLIED
    assert s.on_diff(diff(110, 112), 0) is Outcome.GAP  # 109 is missing
    assert not s.synced
    assert len(s.book) == 0
    assert [ev.U for ev, _ in s.buffer] == [110]


def test_first_live_diff_not_straddling_is_a_gap() -> None:
    s = BookSync("BTC-USDT")
    s.on_diff(diff(90, 95), 0)
    s.on_snapshot(snap(120))
    assert s.on_diff(diff(122, 125), 0) is Outcome.GAP


def test_overlapping_diff_after_sync_is_a_gap_not_applied() -> None:
    s = BookSync("BTC-USDT")
    s.on_diff(diff(96, 105), 0)
    s.on_snapshot(snap(100))
    # U must be exactly previous u + 1 once synced.
    assert s.on_diff(diff(104, 107), 0) is Outcome.GAP


def test_hole_inside_buffer_restarts_buffer() -> None:
    s = BookSync("BTC-USDT")
    s.on_diff(diff(90, 95), 0)
    s.on_diff(diff(97, 99), 0)  # 96 missing while still buffering
    assert [ev.U for ev, _ in s.buffer] == [97]
    assert s.on_snapshot(snap(93)) is Outcome.STALE


def test_parse_frame_shapes() -> None:
    wrapped = (
        b'{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":5,"s":"BTCUSDT","U":1,"u":2,'
        b'"b":[["1.0","2.0"]],"a":[]}}'
    )
    key, ev = parse_frame(wrapped)  # type: ignore[misc]
    assert key == "btcusdt@depth@100ms" and ev.u == 2 and ev.b == [(1.0, 2.0)]
    assert isinstance(parse_frame(b'{"result":null,"id":1}'), Envelope)
    assert parse_frame(b'{"stream":"btcusdt@bookTicker","data":{"u":1,"s":"BTCUSDT","b":"1","B":"2"}}') is None
    key, ev = parse_frame(b'{"e":"serverShutdown","E":1700000000000}')  # type: ignore[misc]
    assert ev.e == "serverShutdown"
    with pytest.raises(msgspec.ValidationError):
        parse_frame(b'{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","U":"x"}}')
    with pytest.raises(msgspec.DecodeError):
        parse_frame(b"not json")


def _load_recording() -> tuple[list[tuple[float, str, dict]], dict[str, tuple[float, dict]]]:
    frames = []
    for line in (DATA / "BINANCE.ws.1.0").read_text().splitlines()[1:]:
        if "<-" in line.split(": ", 1)[0] or not line.strip():
            continue
        ts, raw = line.split(": ", 1)
        frames.append((float(ts), raw, json.loads(raw)))
    snapshots = {}
    for line in (DATA / "BINANCE.http.0.0").read_text().splitlines():
        if not line.strip():
            continue
        head, body = line.split(": ", 1)
        url, ts = head.split(" -> ")
        symbol = url.split("symbol=")[1].split("&")[0]
        snapshots[symbol] = (float(ts), json.loads(body))
    return frames, snapshots


def _reference_book(snapshot: dict, diffs: list[dict]) -> tuple[dict[float, float], dict[float, float]]:
    """Independent rebuild: documented rule, plain dicts, no shared code with the connector."""
    bids = {float(p): float(q) for p, q in snapshot["bids"]}
    asks = {float(p): float(q) for p, q in snapshot["asks"]}
    last = snapshot["lastUpdateId"]
    for d in diffs:
        if d["u"] <= last:
            continue
        for side, levels in ((bids, d["b"]), (asks, d["a"])):
            for p, q in levels:
                if float(q) == 0:
                    side.pop(float(p), None)
                else:
                    side[float(p)] = float(q)
    return bids, asks


def test_real_recording_joins_without_gap() -> None:
    frames, snapshots = _load_recording()
    syncs: dict[str, BookSync] = {}
    pending = dict(snapshots)
    gaps = 0
    applied: dict[str, int] = {}
    diffs_by_symbol: dict[str, list[dict]] = {}
    for ts, raw, obj in frames:
        # Deliver each REST snapshot at the local time it was received, as the connector would.
        for symbol, (sts, body) in list(pending.items()):
            if sts <= ts and symbol in syncs:
                assert syncs[symbol].on_snapshot(snapshot(**body)) is Outcome.SYNCED
                del pending[symbol]
        parsed = parse_frame(raw.encode())
        if parsed is None or isinstance(parsed, Envelope):
            continue
        _, ev = parsed
        sync = syncs.setdefault(ev.s, BookSync(ev.s))
        diffs_by_symbol.setdefault(ev.s, []).append(obj["data"])
        outcome = sync.on_diff(ev, ts * 1000)
        gaps += outcome is Outcome.GAP
        applied[ev.s] = applied.get(ev.s, 0) + (outcome is Outcome.APPLIED)
    assert gaps == 0
    synced = [s for s in syncs.values() if s.synced]
    assert {s.pair for s in synced} >= {"NKNUSDT", "BLZETH", "LRCBTC"}
    assert applied["NKNUSDT"] > 100
    for s in synced:
        ref_bids, ref_asks = _reference_book(snapshots[s.pair][1], diffs_by_symbol[s.pair])
        bids, asks = s.book.top(10_000)
        assert [(lv.price, lv.qty) for lv in bids] == sorted(ref_bids.items(), reverse=True)
        assert [(lv.price, lv.qty) for lv in asks] == sorted(ref_asks.items())
        assert not s.book.is_crossed()


def _frame(U: int, u: int, bid: str = "100.0") -> bytes:
    data = {"e": "depthUpdate", "E": 5, "s": "BTCUSDT", "U": U, "u": u, "b": [[bid, "1.0"]], "a": []}
    return json.dumps({"stream": "btcusdt@depth@100ms", "data": data}).encode()


def test_feed_counts_into_stats_and_live_counters() -> None:
    from recorder.venues.base import Counters
    from recorder.venues.binance import BinanceFeed

    counters = Counters(None)
    feed = BinanceFeed(["BTC-USDT", "ETH-USDT"], counters)
    feed.on_frame(b"not json", 1.0)
    feed.on_frame(b'{"result":null,"id":1}', 1.0)
    feed.on_frame(b'{"stream":"btcusdt@trade","data":{"e":"trade"}}', 1.0)
    feed.on_frame(_frame(99, 101), 2.0)
    assert feed.book("BTC-USDT") is None and feed.wants_snapshot() == {"BTC-USDT"}
    feed.on_rest_snapshot("BTC-USDT", b"{broken", 3.0)
    assert feed.book("BTC-USDT") is None
    body = b'{"lastUpdateId":100,"bids":[["99.0","2.0"]],"asks":[["101.0","1.0"]]}'
    feed.on_rest_snapshot("BTC-USDT", body, 3.0)
    book = feed.book("BTC-USDT")
    assert book is not None and book.update_id == 101 and feed.wants_snapshot() == set()
    feed.on_frame(_frame(105, 106), 4.0)  # 102..104 missing
    assert feed.book("BTC-USDT") is None and feed.wants_snapshot() == {"BTC-USDT"}
    st = feed.stats
    assert (st.frames, st.malformed, st.gaps, st.resyncs) == (5, 2, 1, 1)
    assert st.kinds == {"malformed": 2, "reply": 1, "other_stream": 1, "depthUpdate": 2, "rest_snapshot": 1}
    assert st.per_pair["BTC-USDT"] == {"updates": 2, "resyncs": 1, "gaps": 1}
    assert (counters.get("messages"), counters.get("malformed"), counters.get("gaps:BTC-USDT")) == (5, 2, 1)
    assert counters.get("resyncs:BTC-USDT") == 1


def test_frames_reach_the_live_counters_at_flush() -> None:
    """The hot path counts frames in slots; ``flush`` (the connector's watch loop, a socket's close)
    or reading the stats puts them in the counters: every frame and byte, the live chain's too."""
    from recorder.venues.base import Counters
    from recorder.venues.binance import BinanceFeed

    counters = Counters(None)
    feed = BinanceFeed(["BTC-USDT"], counters)
    frames = [_frame(101, 101)]
    feed.on_frame(frames[0], 1.0)
    feed.on_rest_snapshot("BTC-USDT", b'{"lastUpdateId":100,"bids":[["99.0","2.0"]],"asks":[["101.0","1.0"]]}', 2.0)
    frames += [_frame(u, u, bid=f"{90 + u % 7}.5") for u in range(102, 140)]  # the live chain: the hot path
    frames += [b"not json", b'{"result":null,"id":1}']
    for f in frames[1:]:
        feed.on_frame(f, 3.0)
    assert feed.book("BTC-USDT") is not None and feed.book("BTC-USDT").update_id == 139
    feed.stats.flush()
    assert counters.get("messages") == len(frames) and counters.get("bytes") == sum(map(len, frames))
    feed.stats.flush()  # folding again adds nothing
    assert counters.get("messages") == len(frames) and feed.stats.frames == len(frames)
    assert feed.stats.per_pair["BTC-USDT"]["updates"] == 39 and feed.stats.kinds["depthUpdate"] == 39
    more = _frame(140, 140)
    feed.on_frame(more, 4.0)
    assert feed.stats.frames == len(frames) + 1  # reading the stats flushes
    assert counters.get("bytes") == sum(map(len, frames)) + len(more)


def test_feed_hot_path_leaves_a_refetch_its_diffs() -> None:
    """While a deeper snapshot is asked for, the live book's diffs (the Feed's hot path) are logged:
    the rebuilt book is the snapshot plus the diffs after it, and the next diffs go on as before."""
    from recorder.venues.binance import BinanceFeed, DepthSnapshot, Outcome

    feed = BinanceFeed(["BTC-USDT"])
    feed.on_frame(_frame(101, 101), 1.0)
    feed.on_rest_snapshot("BTC-USDT", b'{"lastUpdateId":100,"bids":[["99.0","2.0"]],"asks":[["101.0","1.0"]]}', 2.0)
    bid = {u: f"{80 + u % 5}.0" for u in range(102, 112)}
    for u in range(102, 106):
        feed.on_frame(_frame(u, u, bid[u]), 3.0)
    feed.begin_refetch("BTC-USDT")
    for u in range(106, 110):
        feed.on_frame(_frame(u, u, bid[u]), 4.0)
    deep = DepthSnapshot(107, [(float(p), 3.0) for p in range(60, 100)], [(float(p), 3.0) for p in range(101, 140)])
    assert feed.on_refetch("BTC-USDT", deep) is Outcome.SYNCED
    ref_bids = {float(p): 3.0 for p in range(60, 100)} | {float(bid[u]): 1.0 for u in (108, 109)}
    book = feed.book("BTC-USDT")
    assert book is not None and book.update_id == 109
    bids, asks = book.top(1000)
    assert [(lv.price, lv.qty) for lv in bids] == sorted(ref_bids.items(), reverse=True)
    assert [(lv.price, lv.qty) for lv in asks] == [(float(p), 3.0) for p in range(101, 140)]
    feed.on_frame(_frame(110, 110, bid[110]), 5.0)  # the hot path again, on the rebuilt book
    assert feed.book("BTC-USDT") is book and book.update_id == 110 and feed.stats.gaps == 0


def test_feed_keeps_a_recorded_snapshot_until_its_first_diff() -> None:
    from recorder.venues.binance import BinanceFeed

    feed = BinanceFeed(["BTC-USDT"])
    body = b'{"lastUpdateId":100,"bids":[["99.0","2.0"]],"asks":[["101.0","1.0"]]}'
    feed.on_rest_snapshot("BTC-USDT", body, 1.0)  # recorded before any diff (replay only)
    assert feed.book("BTC-USDT") is None
    feed.on_frame(_frame(100, 102, "99.5"), 2.0)
    book = feed.book("BTC-USDT")
    assert book is not None and book.update_id == 102 and book.best_bid() == 99.5
    feed.request_resync("BTC-USDT")
    assert feed.book("BTC-USDT") is None


def test_levels_past_a_truncated_snapshot_are_never_sampled() -> None:
    """A 3-level snapshot says nothing about prices below its deepest bid: when the touch moves
    away, the book shows fewer levels rather than ones no message described completely."""
    sync = BookSync("BTC-USDT")
    sync.snapshot_limit = 3
    sync.on_diff(event(U=11, u=11, b=[("97", "1")]), 0.0)
    snap = snapshot(
        lastUpdateId=10,
        bids=[("99", "1"), ("98", "1"), ("97", "1")],  # full: the venue cut it at the limit
        asks=[("101", "1"), ("102", "1")],  # short of the limit: the whole side
    )
    assert sync.on_snapshot(snap) is Outcome.SYNCED
    # 95 is known exactly, but 96 may exist unseen: the bid side stops at the snapshot's 97.
    sync.on_diff(event(U=12, u=12, b=[("99", "0"), ("95", "2")], a=[("105", "1")]), 0.0)
    bids, asks = sync.book.top(10)
    assert [lv.price for lv in bids] == [98.0, 97.0]
    assert [lv.price for lv in asks] == [101.0, 102.0, 105.0]  # a complete side shows new levels
    sync.snapshot_limit = None  # unknown limit (a replayed request without limit=): assume truncated
    sync.reset()
    sync.on_diff(event(U=11, u=11), 0.0)
    sync.on_snapshot(snap)
    sync.on_diff(event(U=12, u=12, a=[("105", "1")]), 0.0)
    assert [lv.price for lv in sync.book.top(10)[1]] == [101.0, 102.0]


def test_a_book_waiting_for_its_snapshot_holds_a_bounded_tail_of_diffs() -> None:
    """1000 books queued behind the weight limiter must not hold every diff of the wait: a
    queued book keeps only the newest QUEUED_BUFFERED_DIFFS, which still joins a snapshot newer
    than what was dropped, and a snapshot older than the kept tail is STALE, never a wrong book."""
    from recorder.venues.binance import MAX_BUFFERED_DIFFS, QUEUED_BUFFERED_DIFFS

    s = BookSync("BTC-USDT")
    n = QUEUED_BUFFERED_DIFFS * 5
    for i in range(n):  # ids 1..n, one per diff, each moving the 100.0 bid
        s.on_diff(diff(i + 1, i + 1, bids=[("100.0", f"{i + 1}.0")]), 0)
    assert len(s.buffer) == QUEUED_BUFFERED_DIFFS
    assert s.buffer[0][0].U == n - QUEUED_BUFFERED_DIFFS + 1  # the newest are kept, in order
    assert s.on_snapshot(snap(n - QUEUED_BUFFERED_DIFFS - 10)) is Outcome.STALE  # joins no kept diff
    assert not s.synced
    assert s.on_snapshot(snap(n - 3)) is Outcome.SYNCED
    assert s.book.update_id == n
    bids, _ = s.book.top(1)
    assert bids[0].qty == float(n)

    # Once the request is on the wire the book may hold far more (a late snapshot must still join).
    s = BookSync("BTC-USDT")
    s.keep = MAX_BUFFERED_DIFFS
    for i in range(n):
        s.on_diff(diff(i + 1, i + 1), 0)
    assert len(s.buffer) == n
    assert s.on_snapshot(snap(5)) is Outcome.SYNCED and s.book.update_id == n
