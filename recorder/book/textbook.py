"""An L2 book that also keeps each level's original price/qty text.

Kraken and OKX checksum the levels *as the venue printed them* (``0.10000000`` is not ``0.1``),
so a float round-trip cannot reproduce their checksums. This subclass keeps the float book of
``L2Book`` (what the sampler reads, unchanged and as fast) and a side table of wire strings keyed
like its sides (bids by price, asks by negated price), used only for checksums and depth truncation.

With a ``fragment`` (each level's checksum text; or ``joined``, see the class) it also keeps, per
side, the fragments of its best ``top_n`` levels, rebuilt only when a change reached them: a
one-level Kraken update rebuilds one side at most, and one below the top ``top_n`` none. A
one-level change through ``set_level`` edits that side's kept list in place instead (one list
store, insert or delete at the level's rank, plus the level that rises in after a delete).
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Callable, Iterable, Sequence
from operator import itemgetter

from recorder.book.l2book import L2Book, WireLevels

TextLevel = tuple[str, str]  # (price text, qty text) exactly as received
# A venue's checksum text of one level, e.g. Kraken "452835" + "10000000", OKX "45283.5:0.1".
Fragment = Callable[[str, str], str]
_INF = float("inf")


class TextL2Book(L2Book):
    """``fragment`` (optional) gives each level's checksum text, kept beside its wire text. It
    is made when a level changes within the best ``top_n`` of its side, else only when the level
    rises into them: a snapshot's deep levels mostly never do (Kraken).

    ``joined`` instead keeps each level's text as one string, price + ``joined`` + qty, which is
    also its fragment (OKX: ``"45283.5:0.1"``): one string per level and no separate fragment,
    for a venue whose deeper levels rise into the top on most updates."""

    __slots__ = (
        "_bid_text", "_ask_text", "_fragment", "_top_n", "_joined", "_bid_top", "_ask_top", "_bid_join", "_ask_join",
    )  # fmt: skip

    def __init__(self, fragment: Fragment | None = None, top_n: int = 0, joined: str | None = None) -> None:
        super().__init__()
        # Same keys as _bids (price) / _asks (negated price): (price text, qty text[, fragment]),
        # or with ``joined`` the one string.
        self._bid_text: dict[float, tuple[str, ...] | str] = {}
        self._ask_text: dict[float, tuple[str, ...] | str] = {}
        self._fragment = fragment
        self._top_n = top_n if fragment is not None or joined is not None else 0
        self._joined = joined
        # The fragments of each side's best ``top_n`` levels, best first; None: stale.
        self._bid_top: Sequence[str] | None = None
        self._ask_top: Sequence[str] | None = None
        # Each side's kept fragments joined (bytes fragments, see ``checksum_bytes``); None: stale,
        # always when that side's list is.
        self._bid_join: bytes | None = None
        self._ask_join: bytes | None = None

    def clear(self) -> None:
        super().clear()
        self._bid_text.clear()
        self._ask_text.clear()
        self._bid_top = self._ask_top = self._bid_join = self._ask_join = None

    def apply(self, bids: WireLevels, asks: WireLevels, depth: int | None = None) -> None:
        """Absolute quantities per level, in wire order; qty 0 deletes. Levels may carry extra
        fields (Kraken's time and ``"r"``, OKX's order count): only the first two are read.
        ``depth``: then keep the best ``depth`` levels per side (see ``truncate``)."""
        joined = self._joined
        if joined is not None:  # no top kept: see ``checksum_fragments``
            if bids:
                _apply_joined(bids, self._bids, self._bid_keys, self._bid_text, 1.0, joined)  # type: ignore[arg-type]
            if asks:
                _apply_joined(asks, self._asks, self._ask_keys, self._ask_text, -1.0, joined)  # type: ignore[arg-type]
        else:
            if bids and self._apply_side(bids, self._bids, self._bid_keys, self._bid_text, 1.0):  # type: ignore[arg-type]
                self._bid_top = self._bid_join = None
            if asks and self._apply_side(asks, self._asks, self._ask_keys, self._ask_text, -1.0):  # type: ignore[arg-type]
                self._ask_top = self._ask_join = None
        if depth is not None and (len(self._bid_keys) > depth or len(self._ask_keys) > depth):
            self.truncate(depth)

    def _apply_side(
        self,
        levels: Iterable[Sequence[str]],
        side: dict[float, float],
        keys: list[float],
        text: dict[float, tuple[str, ...]],
        sign: float,
    ) -> bool:
        """Apply one side's levels (text kept as tuples); whether any change reached its best
        ``top_n`` levels."""
        n = self._top_n
        empty = not side  # a snapshot: fill the dicts, sort the keys once
        # A change at a key below the ``top_n``-th best before this message cannot alter the
        # best ``top_n`` (inserts above it and deletes within it are changes above it). An empty
        # side changes entirely.
        floor = _INF if not n or empty else keys[-n] if len(keys) >= n else -_INF
        frag = self._fragment
        top = empty
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
                if key >= floor:
                    top = True
                    text[key] = (p, q, frag(p, q))  # type: ignore[misc]
                else:
                    text[key] = (p, q)  # its fragment is made if it rises into the top
            elif side.pop(key, None) is not None:
                del text[key]
                if not empty:
                    del keys[bisect_left(keys, key)]
                if key >= floor:
                    top = True
        if empty:
            keys[:] = sorted(side)
        return top

    def truncate(self, depth: int) -> None:
        """Keep the best ``depth`` levels per side (venues send no delete for levels that fall
        out of a depth-limited subscription)."""
        if depth < self._top_n:
            self._bid_top = self._ask_top = self._bid_join = self._ask_join = None
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

    def set_level(self, is_bid: bool, price: str, qty: str, depth: int) -> None:
        """``apply`` of one level (Kraken's usual update), for a book made with ``fragment``: the
        kept fragments of the level's side are edited in place at the level's rank, not rebuilt.
        ``depth`` as in ``apply``, for the level's side (the other one did not change)."""
        frag = self._fragment
        n = self._top_n
        if frag is None or not n or depth < n:  # no kept top to edit
            self.apply([(price, qty)] if is_bid else (), () if is_bid else [(price, qty)], depth)
            return
        if is_bid:
            side, keys, text, top = self._bids, self._bid_keys, self._bid_text, self._bid_top
            key = float(price)
        else:
            side, keys, text, top = self._asks, self._ask_keys, self._ask_text, self._ask_top
            key = -float(price)
        amount = float(qty)
        size = len(keys)
        # A level's rank is its place from the best (0 = best): size - 1 - its index in ``keys``,
        # before the change. A change ranked n or deeper leaves the kept top n as they are.
        if amount:
            if key in side:
                side[key] = amount
                if size > n and key < keys[-n]:
                    text[key] = (price, qty)  # its fragment is made if it rises into the top
                    return
                f = frag(price, qty)
                text[key] = (price, qty, f)
                if top is not None:
                    top[size - 1 - bisect_left(keys, key)] = f  # type: ignore[index]
            else:
                if key != key:
                    raise ValueError(f"price {price!r} is not a number")
                i = bisect_left(keys, key)
                keys.insert(i, key)
                side[key] = amount
                below = size - i >= n  # its rank once inserted
                if below:
                    text[key] = (price, qty)
                else:
                    f = frag(price, qty)
                    text[key] = (price, qty, f)
                    if top is not None:
                        top.insert(size - i, f)  # type: ignore[attr-defined]
                        if len(top) > n:
                            del top[n]  # type: ignore[attr-defined]
                if size >= depth:  # over depth: the worst levels go (as ``truncate``), never the top n
                    extra = size + 1 - depth
                    for worst in keys[:extra]:
                        del side[worst], text[worst]
                    del keys[:extra]
                if below:
                    return
        elif side.pop(key, None) is not None:
            i = bisect_left(keys, key)
            del keys[i], text[key]
            if size - 1 - i >= n:
                return
            if top is not None:
                del top[size - 1 - i]  # type: ignore[attr-defined]
                if size > n:  # the level ranked n rises into the top n
                    deeper = keys[-n]
                    t = text[deeper]
                    if len(t) == 2:
                        t = text[deeper] = (t[0], t[1], frag(t[0], t[1]))
                    top.append(t[2])  # type: ignore[attr-defined]
        else:
            return  # a delete of an unknown level changes nothing
        if is_bid:
            self._bid_join = None
        else:
            self._ask_join = None

    def checksum_bytes(self) -> tuple[bytes, bytes]:
        """The kept fragments of each side joined, best first (for a ``fragment`` returning
        bytes). A side's bytes object stays the same one until a change reaches its top: a
        checksum of the two may be reused while both are the very objects it was computed from."""
        bids, asks = self._bid_join, self._ask_join
        if bids is None:
            if self._bid_top is None:
                self._bid_top = self._top(self._bid_keys, self._bid_text, self._top_n)
            bids = self._bid_join = b"".join(self._bid_top)  # type: ignore[arg-type]
        if asks is None:
            if self._ask_top is None:
                self._ask_top = self._top(self._ask_keys, self._ask_text, self._top_n)
            asks = self._ask_join = b"".join(self._ask_top)  # type: ignore[arg-type]
        return bids, asks

    def top_text(self, depth: int) -> tuple[list[TextLevel], list[TextLevel]]:
        """Best-first wire strings ``(price, qty)`` of the top ``depth`` levels per side."""
        stop = -depth - 1  # a C map over the keys: no Python loop per level
        bids = map(self._bid_text.__getitem__, self._bid_keys[-1:stop:-1])
        asks = map(self._ask_text.__getitem__, self._ask_keys[-1:stop:-1])
        if self._joined is not None:
            sep = self._joined
            return [tuple(t.split(sep, 1)) for t in bids], [tuple(t.split(sep, 1)) for t in asks]  # type: ignore[misc,union-attr]
        return [(t[0], t[1]) for t in bids], [(t[0], t[1]) for t in asks]

    def top_fragments(self, depth: int) -> tuple[Sequence[str], Sequence[str]]:
        """Best-first checksum fragments of the top ``depth`` levels (needs ``fragment`` or ``joined``)."""
        return self._top(self._bid_keys, self._bid_text, depth), self._top(self._ask_keys, self._ask_text, depth)

    def checksum_fragments(self) -> tuple[Sequence[str], Sequence[str]]:
        """``top_fragments(top_n)``, kept per side until a change reaches that side's best
        ``top_n`` levels (the book's own lists or tuples, which ``set_level`` edits in place: read
        them before the next change, never modify them). With ``joined`` nothing is kept: nearly
        every message changes such a book's top (OKX), so both are gathered afresh, in C."""
        if self._joined is not None:
            stop = -self._top_n - 1
            bid_keys, ask_keys = self._bid_keys[-1:stop:-1], self._ask_keys[-1:stop:-1]
            bid_text, ask_text = self._bid_text, self._ask_text
            return (  # itemgetter of one key returns the item, not a tuple
                itemgetter(*bid_keys)(bid_text) if len(bid_keys) > 1 else [bid_text[k] for k in bid_keys],
                itemgetter(*ask_keys)(ask_text) if len(ask_keys) > 1 else [ask_text[k] for k in ask_keys],
            )  # type: ignore[return-value]
        bids, asks = self._bid_top, self._ask_top
        if bids is None:
            bids = self._bid_top = self._top(self._bid_keys, self._bid_text, self._top_n)
        if asks is None:
            asks = self._ask_top = self._top(self._ask_keys, self._ask_text, self._top_n)
        return bids, asks

    def _top(self, keys: list[float], text: dict[float, tuple[str, ...] | str], depth: int) -> Sequence[str]:
        top = keys[-1 : -depth - 1 : -1]
        if self._joined is not None:
            # One C call for all the lookups (a float key's hash is computed per lookup).
            return itemgetter(*top)(text) if len(top) > 1 else [text[k] for k in top]  # type: ignore[return-value]
        try:
            return [text[k][2] for k in top]
        except IndexError:  # a level that rose into the top without its fragment yet
            frag = self._fragment
            if frag is None:
                raise TypeError("this book was made without a fragment function") from None
            for k in top:
                t = text[k]
                if len(t) == 2:
                    text[k] = (t[0], t[1], frag(t[0], t[1]))
            return [text[k][2] for k in top]

    def depth(self) -> tuple[int, int]:
        return len(self._bids), len(self._asks)


def _apply_joined(
    levels: Iterable[Sequence[str]], side: dict[float, float], keys: list[float], text: dict[float, str], sign: float,
    joined: str,
) -> None:  # fmt: skip
    """``TextL2Book._apply_side`` for a book with ``joined`` text: no top bookkeeping per level."""
    if not side:  # a snapshot: fill the dicts, sort the keys once
        for level in levels:
            p, q = level[0], level[1]
            key = sign * float(p)
            qty = float(q)
            if qty:
                if key != key:
                    raise ValueError(f"price {p!r} is not a number")
                side[key] = qty
                text[key] = f"{p}{joined}{q}"
            elif side.pop(key, None) is not None:
                del text[key]
        keys[:] = sorted(side)
        return
    for level in levels:
        p, q = level[0], level[1]
        key = sign * float(p)
        qty = float(q)
        if qty:
            if key not in side:
                if key != key:
                    raise ValueError(f"price {p!r} is not a number")
                insort(keys, key)
            side[key] = qty
            text[key] = f"{p}{joined}{q}"  # one string built, not two
        elif side.pop(key, None) is not None:
            del text[key]
            del keys[bisect_left(keys, key)]
