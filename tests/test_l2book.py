"""The L2 book against a plain reference (dict per side, sorted on read) on random operations."""

from __future__ import annotations

import json
import random

from recorder.book import L2Book
from recorder.venues.base import Counters
from recorder.venues.binance import BinanceFeed


def _reference_top(ref: dict[float, float], depth: int, bids: bool) -> list[tuple[float, float]]:
    return sorted(ref.items(), reverse=bids)[:depth]


def test_random_updates_match_a_reference_book() -> None:
    rng = random.Random(7)
    book, ref_b, ref_a = L2Book(), {}, {}
    snap_b = [(100 - 0.5 * i, 1.0) for i in range(50)]
    snap_a = [(101 + 0.5 * i, 2.0) for i in range(50)]
    book.load(snap_b, snap_a, 1)
    ref_b.update({float(p): float(q) for p, q in snap_b})
    ref_a.update({float(p): float(q) for p, q in snap_a})
    for step in range(3000):
        bids, asks = [], []
        for _ in range(rng.randint(0, 6)):
            is_bid = rng.random() < 0.5
            price = round((100 - rng.randint(0, 80) * 0.5) if is_bid else (101 + rng.randint(0, 80) * 0.5), 1)
            qty = 0.0 if rng.random() < 0.3 else round(rng.uniform(0.1, 9), 3)
            (bids if is_bid else asks).append((price, qty))  # floats, as the venues decode them in C
            ref = ref_b if is_bid else ref_a
            if qty:
                ref[price] = qty
            else:
                ref.pop(price, None)
        book.apply(bids, asks)
        if step % 97 == 0:
            depth = rng.randint(0, 120)
            top_b, top_a = book.top(depth)
            assert [(lv.price, lv.qty) for lv in top_b] == _reference_top(ref_b, depth, True)
            assert [(lv.price, lv.qty) for lv in top_a] == _reference_top(ref_a, depth, False)
            bid_px, bid_qty, ask_px, ask_qty = book.top_columns(depth)
            assert list(zip(bid_px, bid_qty, strict=True)) == _reference_top(ref_b, depth, True)
            assert list(zip(ask_px, ask_qty, strict=True)) == _reference_top(ref_a, depth, False)
    assert len(book) == len(ref_b) + len(ref_a)
    assert book.best_bid() == max(ref_b) and book.best_ask() == min(ref_a)


class _Sided:
    """A level naming its side (``SidedLevel``), as Coinbase's decoder builds them."""

    def __init__(self, side: str, price: float, qty: float) -> None:
        self.side, self.price, self.qty = side, price, qty


def test_sided_levels_match_a_reference_book() -> None:
    """``apply_sided`` (both sides in one list) against a plain reference, through sides emptied
    and refilled (the load path) and levels of every kind: new, changed, deleted, unknown deletes."""
    rng = random.Random(11)
    book, refs = L2Book(), {"bid": {}, "ask": {}}
    for step in range(3000):
        levels = []
        for _ in range(rng.randint(0, 8) if step % 500 else 60):
            side = rng.choice(("bid", "offer", "ask"))
            ref = refs["bid" if side == "bid" else "ask"]
            price = round((100 - rng.randint(0, 40) * 0.5) if side == "bid" else (101 + rng.randint(0, 40) * 0.5), 1)
            qty = 0.0 if rng.random() < (0.9 if step % 700 < 20 else 0.35) else round(rng.uniform(0.1, 9), 3)
            levels.append(_Sided(side, price, qty))
            if qty:
                ref[price] = qty
            else:
                ref.pop(price, None)
        book.apply_sided(levels, "bid", ("offer", "ask"))
        if step % 41 == 0:
            bid_px, bid_qty, ask_px, ask_qty = book.top_columns(1000)  # every level: the key lists too
            assert list(zip(bid_px, bid_qty, strict=True)) == _reference_top(refs["bid"], 1000, True)
            assert list(zip(ask_px, ask_qty, strict=True)) == _reference_top(refs["ask"], 1000, False)
    assert len(book) == len(refs["bid"]) + len(refs["ask"])


def test_a_level_of_an_unknown_side_raises() -> None:
    book = L2Book()
    book.load([(10.0, 1.0)], [(11.0, 1.0)], 1)
    for levels in ([_Sided("sideways", 9.0, 1.0)], [_Sided("bid", 9.0, 1.0), _Sided("", 12.0, 1.0)]):
        try:
            book.apply_sided(levels, "bid", ("offer",))
        except ValueError as exc:
            assert "side" in str(exc)
        else:
            raise AssertionError("a level of an unknown side was taken")
    empty = L2Book()  # the load path (an empty side) refuses it too
    try:
        empty.apply_sided([_Sided("bid", 9.0, 1.0), _Sided("up", 12.0, 1.0)], "bid", ("offer",))
    except ValueError:
        pass
    else:
        raise AssertionError("a level of an unknown side was taken by the load path")


def test_load_sorts_once_and_applies_zero_and_duplicate_levels_in_order() -> None:
    book = L2Book()
    book.load([(10.0, 1.0), (12.0, 1.0), (11.0, 1.0), (12.0, 0.0), (10.0, 3.0)], [(13.0, 1.0), (13.0, 2.0)], 5)
    assert book.update_id == 5
    assert book.top_columns(10) == ([11.0, 10.0], [1.0, 3.0], [13.0], [2.0])
    book.apply([(99.0, 0.0)], [(50.0, 0.0)])  # deleting an unknown level is normal
    assert len(book) == 3 and not book.is_crossed()
    book.apply([(13.0, 1.0)], [])
    assert book.is_crossed()
    book.clear()
    assert book.top(5) == ([], []) and book.best_bid() is None and book.best_ask() is None


def test_truncate_keeps_the_best_levels() -> None:
    book = L2Book()
    book.load([(float(p), 1.0) for p in range(1, 11)], [(float(p), 1.0) for p in range(11, 21)], 1)
    book.truncate(3)
    assert book.top_columns(10) == ([10.0, 9.0, 8.0], [1.0] * 3, [11.0, 12.0, 13.0], [1.0] * 3)
    book.apply([(7.0, 2.0)], [(10.5, 1.0)])  # the book keeps working after a truncation
    assert book.top_columns(1) == ([10.0], [1.0], [10.5], [1.0])


def test_non_finite_or_negative_wire_numbers_are_malformed_frames_not_levels() -> None:
    feed = BinanceFeed(["BTC-USDT"], Counters(None))
    feed.on_frame(b'{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","U":1,"u":1,"b":[["1","1"]]}}', 1.0)
    feed.on_rest_snapshot("BTC-USDT", b'{"lastUpdateId":0,"bids":[["1.0","1.0"]],"asks":[["2.0","1.0"]]}', 1.0)
    assert feed.book("BTC-USDT") is not None
    for bad in ("nan", "inf", "-1.0", "1e999", "abc"):
        data = {"e": "depthUpdate", "U": 2, "u": 2, "b": [[bad, "1.0"]], "a": []}
        feed.on_frame(json.dumps({"stream": "btcusdt@depth@100ms", "data": data}).encode(), 2.0)
    assert feed.stats.malformed == 5
    book = feed.book("BTC-USDT")
    assert book is not None and book.top_columns(5) == ([1.0], [1.0], [2.0], [1.0]) and book.update_id == 1


def test_latency_bucket_is_the_first_bound_not_below_the_value() -> None:
    from recorder.metrics import LATENCY_BOUNDS_MS, _bucket

    rng = random.Random(5)
    values = [0.0, *LATENCY_BOUNDS_MS, *(b * (1 + 1e-12) for b in LATENCY_BOUNDS_MS), 1e12]
    values += [10 ** rng.uniform(-3, 6) for _ in range(5000)]
    for v in values:
        expected = next((i for i, bound in enumerate(LATENCY_BOUNDS_MS) if bound >= v), len(LATENCY_BOUNDS_MS))
        assert _bucket(v) == expected, v
