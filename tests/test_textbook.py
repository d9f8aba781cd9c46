"""TextL2Book: the float book of L2Book plus each level's original text and checksum fragment."""

from __future__ import annotations

import random

import pytest

from recorder.book import L2Book, TextL2Book


def test_keeps_wire_text_and_matches_the_float_book() -> None:
    text, plain = TextL2Book(lambda p, q: f"{p}|{q}"), L2Book()
    bids = [("100.10", "1.000"), ("99.5", "2"), ("98", "0.10000000")]
    asks = [("101.0", "3"), ("102.50", "0.5")]

    def floats(levels: list[tuple[str, str]]) -> list[tuple[float, float]]:
        return [(float(p), float(q)) for p, q in levels]  # the plain book takes decoded floats

    text.apply(bids, asks)
    text.apply([("99.5", "0.000")], [("101.00", "4.0")])  # delete; same price in other text
    plain.apply(floats(bids), floats(asks))
    plain.apply(floats([("99.5", "0.000")]), floats([("101.00", "4.0")]))
    assert text.top(10) == plain.top(10)
    # The latest text for a price wins (101.0 was re-sent as 101.00).
    assert text.top_text(10) == ([("100.10", "1.000"), ("98", "0.10000000")], [("101.00", "4.0"), ("102.50", "0.5")])
    assert text.top_fragments(1) == (["100.10|1.000"], ["101.00|4.0"])
    # Extra wire fields (Kraken's time and "r", OKX's order count) are ignored.
    text.apply([["97", "1", "1600000000.1", "r"]], [["103", "1", "0", "4"]])
    assert text.depth() == (3, 3)


def test_truncate_keeps_the_best_levels_and_their_text() -> None:
    book = TextL2Book()
    book.apply([(str(100 - i), "1") for i in range(8)], [(str(101 + i), "1") for i in range(8)])
    book.truncate(3)
    assert book.depth() == (3, 3)
    assert book.top_text(10) == ([("100", "1"), ("99", "1"), ("98", "1")], [("101", "1"), ("102", "1"), ("103", "1")])
    assert [lv.price for lv in book.top(10)[0]] == [100.0, 99.0, 98.0]
    book.clear()
    assert len(book) == 0 and book.top_text(5) == ([], []) and book.update_id is None


@pytest.mark.parametrize("joined", [None, ":"], ids=["kraken-fragments", "okx-joined"])
def test_kept_checksum_fragments_follow_every_change(joined: str | None) -> None:
    """The per-side top the book keeps for checksums equals a fresh rebuild after every message:
    changes above and below the top, deletes that let deeper levels rise, truncation, snapshots;
    and so does its text, whether kept beside the fragments or as one joined string."""
    rng = random.Random(19)

    def frag(p: str, q: str) -> str:
        return p.replace(".", "") + "/" + q if joined is None else p + joined + q

    def text(price: int) -> str:  # the same price in two wire texts: the latest one counts
        return f"{price / 10:.1f}" if rng.random() < 0.5 else f"{price / 10:.2f}"

    book = TextL2Book(frag if joined is None else None, top_n=5, joined=joined)
    ref: tuple[dict[float, tuple[str, str]], dict[float, tuple[str, str]]] = ({}, {})  # bids, asks

    def levels(lo: int, hi: int, n: int, zeros: float) -> list[tuple[str, str]]:
        return [
            (text(rng.randrange(lo, hi)), "0" if rng.random() < zeros else str(rng.randrange(1, 9))) for _ in range(n)
        ]

    for step in range(2000):
        if step % 400 == 0:  # a snapshot
            bids, asks = levels(900, 1000, 30, 0.0), levels(1001, 1100, 30, 0.0)
            book.clear()
            for side in ref:
                side.clear()
        else:
            bids, asks = levels(960, 1000, rng.randrange(3), 0.4), levels(1001, 1040, rng.randrange(3), 0.4)
        book.apply(bids, asks, 12)
        for side, new, is_bid in ((ref[0], bids, True), (ref[1], asks, False)):
            for p, q in new:
                if float(q):
                    side[float(p)] = (p, q)
                else:
                    side.pop(float(p), None)
            for price in sorted(side, reverse=is_bid)[12:]:  # truncation to the best 12
                del side[price]
        want = [
            [frag(*side[price]) for price in sorted(side, reverse=is_bid)[:5]]
            for side, is_bid in ((ref[0], True), (ref[1], False))
        ]
        bids, asks = book.checksum_fragments()
        assert (list(bids), list(asks)) == (want[0], want[1]), step
        assert book.top_text(8) == (
            [ref[0][price] for price in sorted(ref[0], reverse=True)[:8]],
            [ref[1][price] for price in sorted(ref[1])[:8]],
        ), step


def test_one_level_changes_edit_the_kept_fragments_in_place_as_a_rebuild_would() -> None:
    """``set_level`` (Kraken's one-level update) against a plain-dict rebuild after every message:
    changes above, at and below the 5th best, deletes that let a level without its fragment yet
    rise into the top, inserts past the depth, mixed with multi-level ``apply`` and snapshots.
    A side's joined bytes are a new object exactly when its top 5 changed."""
    rng = random.Random(1919)

    def frag(p: str, q: str) -> bytes:
        return f"{p.replace('.', '')}/{q}".encode()

    book = TextL2Book(frag, top_n=5)
    ref: dict[bool, dict[float, tuple[str, str]]] = {True: {}, False: {}}

    def ranked(is_bid: bool) -> list[tuple[str, str]]:
        return [ref[is_bid][p] for p in sorted(ref[is_bid], reverse=is_bid)]

    def ref_apply(is_bid: bool, levels: list[tuple[str, str]]) -> None:
        for p, q in levels:
            if float(q):
                ref[is_bid][float(p)] = (p, q)
            else:
                ref[is_bid].pop(float(p), None)
        for price in sorted(ref[is_bid], reverse=is_bid)[12:]:  # depth 12, after the message
            del ref[is_bid][price]

    def level(is_bid: bool) -> tuple[str, str]:
        price = rng.randrange(960, 1000) if is_bid else rng.randrange(1001, 1040)
        text = f"{price / 10:.1f}" if rng.random() < 0.5 else f"{price / 10:.2f}"
        return text, "0" if rng.random() < 0.35 else str(rng.randrange(1, 9))

    kept = book.checksum_bytes()
    for step in range(3000):
        if step % 500 == 0:  # a snapshot: deep levels come without their fragments
            book.clear()
            ref[True].clear()
            ref[False].clear()
            bids = [(f"{p / 10:.1f}", "1") for p in rng.sample(range(900, 1000), 20)]
            asks = [(f"{p / 10:.1f}", "1") for p in rng.sample(range(1001, 1100), 20)]
            book.apply(bids, asks, 12)
            ref_apply(True, bids)
            ref_apply(False, asks)
        elif step % 37 == 0:  # a multi-level message between the one-level ones
            bids, asks = [level(True) for _ in range(3)], [level(False) for _ in range(2)]
            book.apply(bids, asks, 12)
            ref_apply(True, bids)
            ref_apply(False, asks)
        else:
            is_bid = rng.random() < 0.5
            p, q = level(is_bid)
            top_before = ranked(is_bid)[:5]
            book.set_level(is_bid, p, q, 12)
            ref_apply(is_bid, [(p, q)])
            side = 0 if is_bid else 1
            now = book.checksum_bytes()
            if float(p) not in {float(price) for price, _ in top_before + ranked(is_bid)[:5]}:
                assert now[side] is kept[side], step  # below the top 5: the same bytes
            if ranked(is_bid)[:5] != top_before:
                assert now[side] is not kept[side], step
            assert now[1 - side] is kept[1 - side], step  # the other side is untouched
        kept = book.checksum_bytes()
        want = [[frag(*lv) for lv in ranked(is_bid)[:5]] for is_bid in (True, False)]
        assert kept == (b"".join(want[0]), b"".join(want[1])), step
        bids, asks = book.checksum_fragments()
        assert (list(bids), list(asks)) == (want[0], want[1]), step
        assert book.top_text(12) == (ranked(True), ranked(False)), step
        assert book.top(12) == L2Book.top(book, 12) and book.depth() == (len(ref[True]), len(ref[False])), step
