"""TextL2Book: the float book of L2Book plus each level's original text and checksum fragment."""

from __future__ import annotations

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
