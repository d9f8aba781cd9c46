"""Kraken's one-level v1 updates (the hot path): the book edits its kept top-10 fragments in place
and reuses the checksum while no change reached the top 10 of either side. Every message is
checked against a CRC computed here from a plain-dict rebuild of the book, and a wrong level or
checksum is caught on the very message, whether the CRC was recomputed or reused."""

from __future__ import annotations

import json
import zlib
from datetime import datetime
from types import SimpleNamespace

import pytest

import recorder.venues.kraken_wire as kraken_wire
from recorder.venues.kraken import KrakenFeed
from tests.test_kraken import v2_frame

PAIR, SYMBOL, NAME = "BTC-USD", "XBT/USD", "book-25"
DEPTH = 25


class Reference:
    """Both sides as plain dicts, price -> (price text, qty text), and Kraken's CRC from them."""

    def __init__(self) -> None:
        self.bids: dict[float, tuple[str, str]] = {}
        self.asks: dict[float, tuple[str, str]] = {}

    def set(self, side: str, price: str, qty: str) -> None:
        levels = self.bids if side == "b" else self.asks
        if float(qty):
            levels[float(price)] = (price, qty)
        else:
            levels.pop(float(price), None)
        best = sorted(levels, reverse=side == "b")
        for worst in best[DEPTH:]:  # Kraken sends no delete for a level pushed out of the depth
            del levels[worst]

    def ranked(self, side: str) -> list[tuple[str, str]]:
        levels = self.bids if side == "b" else self.asks
        return [levels[p] for p in sorted(levels, reverse=side == "b")]

    def crc(self) -> int:
        def text(levels: list[tuple[str, str]]) -> str:
            return "".join(p.replace(".", "").lstrip("0") + q.replace(".", "").lstrip("0") for p, q in levels[:10])

        return zlib.crc32((text(self.ranked("a")) + text(self.ranked("b"))).encode())


def _frame(side: str, price: str, qty: str, crc: int, t: str = "1600000001.000001") -> bytes:
    return json.dumps([7, {side: [[price, qty, t]], "c": str(crc)}, NAME, SYMBOL]).encode()


def _snapshot(ref: Reference) -> bytes:
    bids = [[f"{100 - i}.{i % 10}0", f"{i + 1}.00000000", "1600000000.000001"] for i in range(30)]
    asks = [[f"{101 + i}.{i % 10}0", f"0.{i + 1:08d}", "1600000000.000001"] for i in range(30)]
    for p, q, _ in bids:
        ref.set("b", p, q)
    for p, q, _ in asks:
        ref.set("a", p, q)
    return json.dumps([7, {"bs": bids, "as": asks}, NAME, SYMBOL]).encode()


@pytest.fixture
def crc_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every zlib.crc32 call the Kraken book makes (two per recomputed checksum: asks, then bids)."""
    calls: list[int] = []

    def crc32(data: bytes, value: int = 0) -> int:
        calls.append(1)
        return zlib.crc32(data, value)

    monkeypatch.setattr(kraken_wire, "zlib", SimpleNamespace(crc32=crc32))
    return calls


def test_crc_reused_below_the_top_10_recomputed_at_it_and_every_message_compared(crc_calls: list[int]) -> None:
    ref = Reference()
    feed = KrakenFeed([PAIR])
    feed.on_frame(_snapshot(ref), 1.0)
    ok = 0

    def send(side: str, price: str, qty: str, recomputes: bool) -> None:
        nonlocal ok
        ref.set(side, price, qty)
        before = len(crc_calls)
        feed.on_frame(_frame(side, price, qty, ref.crc()), 2.0)
        ok += 1
        assert feed.stats.checksums_ok == ok and feed.stats.checksums_failed == 0, (side, price, qty)
        assert (len(crc_calls) > before) == recomputes, (side, price, qty)
        book = feed.book(PAIR)
        assert book is not None
        assert book.top_text(DEPTH) == (ref.ranked("b"), ref.ranked("a"))

    send("b", "100.00", "7.00000000", recomputes=True)  # the first verified update computes it
    # Below the top 10 (rank 15 and deeper): a qty change, an insert that pushes the worst level out
    # of the depth, one that is that worst level, two deletes: the CRC of the same bytes is reused.
    send("b", "85.50", "9.00000000", recomputes=False)
    send("a", "116.55", "0.00000003", recomputes=False)
    send("b", "71.05", "0.00000001", recomputes=False)  # the 26th of a full side: dropped at once
    send("b", "81.90", "0.00000000", recomputes=False)
    send("a", "120.90", "0.00000000", recomputes=False)
    # The 10th best ask's qty; a new best bid; the best ask deleted, so the 11th rises into the top
    # 10 with the fragment it never had; the 10th best bid deleted.
    send("a", "110.90", "5.00000000", recomputes=True)
    send("b", "100.05", "0.50000000", recomputes=True)
    send("a", "101.00", "0.00000000", recomputes=True)
    send("b", "92.80", "0.00000000", recomputes=True)
    # An insert just below the 10th best; the level that rose, changed again.
    send("a", "111.95", "1.00000000", recomputes=False)
    send("a", "111.00", "2.00000000", recomputes=True)

    # A wrong checksum on a frame below the top 10 is caught on that message (the reused CRC is
    # compared like a fresh one), and only that book is lost.
    ref.set("b", "84.40", "3.00000000")
    feed.on_frame(_frame("b", "84.40", "3.00000000", ref.crc() ^ 1), 3.0)
    assert feed.stats.checksums_failed == 1 and feed.book(PAIR) is None and PAIR in feed.wants_snapshot()
    feed.on_frame(_frame("b", "84.40", "4.00000000", 0), 3.5)  # ignored until the resync
    assert feed.stats.checksums_failed == 1

    # Resynced; then a level inside the top 10 printed differently from what the venue's checksum
    # covers (the frame was corrupted after Kraken computed "c"): caught on that very message.
    ref = Reference()
    feed.on_frame(_snapshot(ref), 4.0)
    ref.set("a", "103.20", "0.00000003")
    feed.on_frame(_frame("a", "103.20", "0.00000007", ref.crc()), 5.0)
    assert feed.stats.checksums_failed == 2 and feed.book(PAIR) is None


def test_a_level_that_is_not_a_number_loses_the_book_on_the_hot_path() -> None:
    ref = Reference()
    feed = KrakenFeed([PAIR])
    feed.on_frame(_snapshot(ref), 1.0)
    ref.set("b", "99.10", "2.00000000")
    feed.on_frame(_frame("b", "99.10", "2.00000000", ref.crc()), 2.0)
    assert feed.book(PAIR) is not None
    feed.on_frame(_frame("b", "99.10", "two", ref.crc()), 3.0)
    assert feed.book(PAIR) is None and PAIR in feed.wants_snapshot() and feed.stats.malformed == 1
    assert feed.stats.per_pair[PAIR]["checksums_ok"] == 1 and feed.stats.per_pair[PAIR]["updates"] == 2


def test_v2_one_level_updates_take_the_same_path(crc_calls: list[int]) -> None:
    """The live (v2) path: the same in-place top and CRC reuse, the level's text kept exactly as
    printed (a number sent as a string too), the RFC 3339 time to the microsecond."""
    ref = Reference()
    bids = [(f"{100 - i}.{i % 10}0", f"{i + 1}.00000000") for i in range(25)]
    asks = [(f"{101 + i}.{i % 10}0", f"0.{i + 1:08d}") for i in range(25)]
    for p, q in bids:
        ref.set("b", p, q)
    for p, q in asks:
        ref.set("a", p, q)
    feed = KrakenFeed([PAIR], depth=DEPTH)
    feed.on_frame(v2_frame("snapshot", "BTC/USD", bids, asks, ref.crc(), "2026-11-25T10:00:00.000001Z"), 1.0)
    steps = [  # (side, price, qty as printed, recomputes)
        ("b", "85.50", "9.00000000", False),
        ("a", "116.55", '"0.00000003"', False),
        ("b", "100.00", "7.00000000", True),
        ("a", "101.00", "0.00000000", True),
    ]
    for i, (side, price, printed, recomputes) in enumerate(steps):
        ref.set(side, price, printed.strip('"'))
        level = [(price, printed)]
        ts = f"2026-11-25T10:0{i}:59.99999{i}Z"
        before = len(crc_calls)
        new_bids, new_asks = (level, []) if side == "b" else ([], level)
        feed.on_frame(v2_frame("update", "BTC/USD", new_bids, new_asks, ref.crc(), ts), 2.0)
        assert (len(crc_calls) > before) == recomputes, (side, price)
        book = feed.book(PAIR)
        assert book is not None and book.top_text(DEPTH) == (ref.ranked("b"), ref.ranked("a")), (side, price)
        want_us = int(datetime.fromisoformat(ts).timestamp()) * 1_000_000 + int(ts[20:26])
        assert book.update_id == want_us and book.exchange_time_ms == want_us // 1000
    assert feed.stats.checksums_ok == 1 + len(steps) and feed.stats.checksums_failed == 0
    ref.set("b", "99.10", "1.00000000")
    last = v2_frame("update", "BTC/USD", [("99.10", "1.00000001")], [], ref.crc(), "2026-11-25T10:05:00.000000Z")
    feed.on_frame(last, 3.0)
    assert feed.stats.checksums_failed == 1 and feed.book(PAIR) is None and PAIR in feed.wants_snapshot()
