"""An L2 book that also keeps each level's original price/qty text.

Kraken and OKX checksum the levels *as the venue printed them* (``0.10000000`` is not ``0.1``),
so a float round-trip cannot reproduce their checksums. This subclass keeps the float book of
``L2Book`` (what the sampler reads, unchanged and as fast) and a side table of wire strings keyed
like the sorted dicts, used only for checksums and depth truncation.
"""

from __future__ import annotations

from collections.abc import Callable

from recorder.book.l2book import L2Book, WireLevels

TextLevel = tuple[str, str]  # (price text, qty text) exactly as received
# A venue's checksum text of one level, e.g. Kraken "452835" + "10000000", OKX "45283.5:0.1".
Fragment = Callable[[str, str], str]


class TextL2Book(L2Book):
    """``fragment`` (optional) precomputes each level's checksum text when the level changes, so a
    checksum over the top N levels joins N ready strings instead of re-formatting them all."""

    __slots__ = ("_bid_text", "_ask_text", "_fragment")

    def __init__(self, fragment: Fragment | None = None) -> None:
        super().__init__()
        # Same keys as _bids (negated price) / _asks: (price text, qty text[, fragment]).
        self._bid_text: dict[float, tuple[str, ...]] = {}
        self._ask_text: dict[float, tuple[str, ...]] = {}
        self._fragment = fragment

    def clear(self) -> None:
        super().clear()
        self._bid_text.clear()
        self._ask_text.clear()

    def apply(self, bids: WireLevels, asks: WireLevels) -> None:
        """Absolute quantities per level, in wire order; qty 0 deletes. Levels may carry extra
        fields (Kraken's time and ``"r"``, OKX's order count): only the first two are read."""
        b, bt, a, at, frag = self._bids, self._bid_text, self._asks, self._ask_text, self._fragment
        for level in bids:
            p, q = level[0], level[1]
            key = -float(p)
            qty = float(q)
            if qty == 0.0:
                b.pop(key, None)
                bt.pop(key, None)
            else:
                b[key] = qty
                bt[key] = (p, q) if frag is None else (p, q, frag(p, q))
        for level in asks:
            p, q = level[0], level[1]
            key = float(p)
            qty = float(q)
            if qty == 0.0:
                a.pop(key, None)
                at.pop(key, None)
            else:
                a[key] = qty
                at[key] = (p, q) if frag is None else (p, q, frag(p, q))

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
        bids = [(bt[k][0], bt[k][1]) for k in self._bids.islice(0, depth)]
        asks = [(at[k][0], at[k][1]) for k in self._asks.islice(0, depth)]
        return bids, asks

    def top_fragments(self, depth: int) -> tuple[list[str], list[str]]:
        """Best-first checksum fragments of the top ``depth`` levels (needs ``fragment``)."""
        bt, at = self._bid_text, self._ask_text
        return [bt[k][2] for k in self._bids.islice(0, depth)], [at[k][2] for k in self._asks.islice(0, depth)]

    def depth(self) -> tuple[int, int]:
        return len(self._bids), len(self._asks)
