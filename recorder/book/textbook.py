"""An L2 book that also keeps each level's original price/qty text.

Kraken and OKX checksum the levels *as the venue printed them* (``0.10000000`` is not ``0.1``),
so a float round-trip cannot reproduce their checksums. This subclass keeps the float book of
``L2Book`` (what the sampler reads, unchanged and as fast) and a side table of wire strings keyed
like its sides (bids by price, asks by negated price), used only for checksums and depth truncation.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Callable, Iterable, Sequence

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
        # Same keys as _bids (price) / _asks (negated price): (price text, qty text[, fragment]).
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
        self._apply_side(bids, self._bids, self._bid_keys, self._bid_text, 1.0)  # type: ignore[arg-type]
        self._apply_side(asks, self._asks, self._ask_keys, self._ask_text, -1.0)  # type: ignore[arg-type]

    def _apply_side(
        self,
        levels: Iterable[Sequence[str]],
        side: dict[float, float],
        keys: list[float],
        text: dict[float, tuple[str, ...]],
        sign: float,
    ) -> None:
        frag = self._fragment
        empty = not side  # a snapshot: fill the dicts, sort the keys once
        for level in levels:
            p, q = level[0], level[1]
            key = sign * float(p)
            qty = float(q)
            if qty:
                if key not in side:
                    if key != key:
                        raise ValueError(f"price {p!r} is not a number")
                    if not empty:
                        insort(keys, key)
                side[key] = qty
                text[key] = (p, q) if frag is None else (p, q, frag(p, q))
            elif side.pop(key, None) is not None:
                del text[key]
                if not empty:
                    del keys[bisect_left(keys, key)]
        if empty:
            keys[:] = sorted(side)

    def truncate(self, depth: int) -> None:
        """Keep the best ``depth`` levels per side (venues send no delete for levels that fall
        out of a depth-limited subscription)."""
        for side, keys, text in (
            (self._bids, self._bid_keys, self._bid_text),
            (self._asks, self._ask_keys, self._ask_text),
        ):
            extra = len(keys) - depth
            if extra > 0:
                for key in keys[:extra]:  # the worst levels sit at the start
                    del side[key]
                    del text[key]
                del keys[:extra]

    def top_text(self, depth: int) -> tuple[list[TextLevel], list[TextLevel]]:
        """Best-first wire strings of the top ``depth`` levels per side."""
        bt, at, stop = self._bid_text, self._ask_text, -depth - 1
        bids = [(bt[k][0], bt[k][1]) for k in self._bid_keys[-1:stop:-1]]
        asks = [(at[k][0], at[k][1]) for k in self._ask_keys[-1:stop:-1]]
        return bids, asks

    def top_levels(self, depth: int) -> tuple[list[TextLevel], list[TextLevel]]:
        """``top_text`` without copying: the stored ``(price, qty)`` tuples (needs no ``fragment``)."""
        bt, at, stop = self._bid_text, self._ask_text, -depth - 1
        return [bt[k] for k in self._bid_keys[-1:stop:-1]], [at[k] for k in self._ask_keys[-1:stop:-1]]  # type: ignore[misc]

    def top_fragments(self, depth: int) -> tuple[list[str], list[str]]:
        """Best-first checksum fragments of the top ``depth`` levels (needs ``fragment``)."""
        bt, at, stop = self._bid_text, self._ask_text, -depth - 1
        return [bt[k][2] for k in self._bid_keys[-1:stop:-1]], [at[k][2] for k in self._ask_keys[-1:stop:-1]]

    def joined_fragments(self, depth: int) -> str:
        """The top ``depth`` fragments of the asks, then of the bids, best first, as one string
        (Kraken's checksum text; needs ``fragment``)."""
        bt, at, stop = self._bid_text, self._ask_text, -depth - 1
        return "".join([at[k][2] for k in self._ask_keys[-1:stop:-1]] + [bt[k][2] for k in self._bid_keys[-1:stop:-1]])

    def depth(self) -> tuple[int, int]:
        return len(self._bids), len(self._asks)
