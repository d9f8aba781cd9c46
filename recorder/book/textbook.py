"""An L2 book that also keeps each level's original price/qty text.

Kraken and OKX checksum the levels *as the venue printed them* (``0.10000000`` is not ``0.1``),
so a float round-trip cannot reproduce their checksums. This subclass keeps the float book of
``L2Book`` (what the sampler reads, unchanged and as fast) and a side table of wire strings keyed
like the sorted dicts, used only for checksums and depth truncation.
"""

from __future__ import annotations

from itertools import islice

from recorder.book.l2book import L2Book, WireLevels

TextLevel = tuple[str, str]  # (price text, qty text) exactly as received


class TextL2Book(L2Book):
    __slots__ = ("_bid_text", "_ask_text")

    def __init__(self) -> None:
        super().__init__()
        self._bid_text: dict[float, TextLevel] = {}  # same keys as _bids (negated price)
        self._ask_text: dict[float, TextLevel] = {}

    def clear(self) -> None:
        super().clear()
        self._bid_text.clear()
        self._ask_text.clear()

    def apply(self, bids: WireLevels, asks: WireLevels) -> None:
        """Absolute quantities per level, in wire order; qty 0 deletes. Levels may carry extra
        fields (Kraken's time and ``"r"``, OKX's order count): only the first two are read."""
        b, bt, a, at = self._bids, self._bid_text, self._asks, self._ask_text
        for level in bids:
            p, q = level[0], level[1]
            key = -float(p)
            qty = float(q)
            if qty == 0.0:
                b.pop(key, None)
                bt.pop(key, None)
            else:
                b[key] = qty
                bt[key] = (p, q)
        for level in asks:
            p, q = level[0], level[1]
            key = float(p)
            qty = float(q)
            if qty == 0.0:
                a.pop(key, None)
                at.pop(key, None)
            else:
                a[key] = qty
                at[key] = (p, q)

    def truncate(self, depth: int) -> None:
        """Keep the best ``depth`` levels per side (venues send no delete for levels that fall
        out of a depth-limited subscription)."""
        for side, text in ((self._bids, self._bid_text), (self._asks, self._ask_text)):
            while len(side) > depth:
                key, _ = side.popitem(-1)
                del text[key]

    def top_text(self, depth: int) -> tuple[list[TextLevel], list[TextLevel]]:
        """Best-first wire strings of the top ``depth`` levels per side."""
        bt, at = self._bid_text, self._ask_text
        bids = [bt[k] for k in islice(self._bids.keys(), depth)]
        asks = [at[k] for k in islice(self._asks.keys(), depth)]
        return bids, asks

    def depth(self) -> tuple[int, int]:
        return len(self._bids), len(self._asks)
