"""A price-level (L2) book with cheap updates and top-N extraction.

Each side is a plain dict (sort key -> qty) plus the list of its keys kept sorted ascending
with the *best level last*: bids are keyed by price, asks by negated price. Updating the qty of
a known level is one dict store; only a new or deleted price touches the list (a C bisect and a
memmove), and since activity clusters at the touch, which sits at the list's end, the memmove
is short. Top-N is a reversed slice of the key list. This is several times cheaper per level
than a ``SortedDict``, whose ``__setitem__``/``pop`` run in Python.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterable, Sequence
from operator import neg
from typing import Protocol

from recorder.model import Level

# Wire levels as (price, qty). ``L2Book`` takes floats (the venues decode them in C, see
# ``recorder.venues.base.FloatLevel``); ``TextL2Book`` takes the wire text, and ignores extra fields
# after the first two (Kraken's time, OKX's order count).
WireLevels = Iterable[tuple[str, str]] | Iterable[list[str]] | Iterable[tuple[float, float]]
FloatLevels = Iterable[tuple[float, float]]


class SidedLevel(Protocol):
    """A level of a venue that sends both sides in one list, each level naming its side (Coinbase)."""

    side: str
    price: float
    qty: float


def load_side(side: dict[float, float], keys: list[float], levels: FloatLevels, sign: float) -> None:
    """Fill an empty side from a snapshot: a dict, sorted once (not insorted level by level)."""
    if sign > 0:
        for p, q in levels:
            if q:
                side[p] = q
            else:
                side.pop(p, None)
    else:
        for p, q in levels:
            if q:
                side[-p] = q
            else:
                side.pop(-p, None)
    keys[:] = sorted(side)


class L2Book:
    __slots__ = (
        "_bids", "_asks", "_bid_keys", "_ask_keys", "_bid_floor", "_ask_floor", "feed_depth",
        "update_id", "exchange_time_ms", "receive_time_ms",
    )  # fmt: skip

    def __init__(self) -> None:
        self._bids: dict[float, float] = {}  # price -> qty
        self._asks: dict[float, float] = {}  # -price -> qty
        self._bid_keys: list[float] = []  # ascending, best (highest price) last
        self._ask_keys: list[float] = []  # ascending -price, best (lowest price) last
        # Deepest key a truncated snapshot covered per side (None: the whole side is known).
        # Beyond it a level may exist that no message ever told us about.
        self._bid_floor: float | None = None
        self._ask_floor: float | None = None
        # Levels per side a depth-limited feed keeps (Kraken, OKX, Bybit: the subscribed depth);
        # None: the feed covers the whole book (or a REST snapshot's floor bounds it instead).
        self.feed_depth: int | None = None
        self.update_id: int | None = None
        self.exchange_time_ms: int | None = None
        self.receive_time_ms: float | None = None

    def clear(self) -> None:
        self._bids.clear()
        self._asks.clear()
        self._bid_keys.clear()
        self._ask_keys.clear()
        self._bid_floor = self._ask_floor = None
        self.update_id = None

    def load(self, bids: FloatLevels, asks: FloatLevels, update_id: int | None) -> None:
        self.clear()
        self.apply(bids, asks)
        self.update_id = update_id

    def bound_to_snapshot(self, bids_truncated: bool, asks_truncated: bool) -> None:
        """Mark the sides a depth-limited snapshot cut short: ``top`` then never reaches past
        the deepest level the snapshot held, since deeper levels are unknown until a diff
        touches them (and the ones it doesn't touch stay unknown)."""
        self._bid_floor = self._bid_keys[0] if bids_truncated and self._bid_keys else None
        self._ask_floor = self._ask_keys[0] if asks_truncated and self._ask_keys else None

    def depth_complete(self, depth: int, bids_shown: int, asks_shown: int) -> bool:
        """Whether a sample showing ``bids_shown`` / ``asks_shown`` levels (``top_columns(depth)``)
        is complete to ``depth``: a side that shows fewer is short only when deeper levels are
        unknown (a snapshot floor cuts it, or a depth-limited feed is full); a genuinely thin book
        is complete. The sampler calls this only for a side that shows fewer than ``depth``."""
        fd = self.feed_depth
        if bids_shown < depth and (self._bid_floor is not None or (fd is not None and len(self._bid_keys) >= fd)):
            return False
        return not (
            asks_shown < depth and (self._ask_floor is not None or (fd is not None and len(self._ask_keys) >= fd))
        )

    def apply(self, bids: FloatLevels, asks: FloatLevels) -> None:
        """Absolute quantities per level; quantity 0 deletes (deleting an unknown level is normal).

        Levels are (price, qty) floats, already validated (finite, not negative) by the venue's
        decoder. The two loops are the hottest code of the recorder: written out per side, without
        a helper call per level or per side.
        """
        if bids:
            side, keys = self._bids, self._bid_keys
            if not side:
                load_side(side, keys, bids, 1.0)
            else:
                for k, qty in bids:
                    if qty:
                        if k not in side:
                            insort(keys, k)
                        side[k] = qty
                    elif side.pop(k, None) is not None:
                        del keys[bisect_left(keys, k)]
        if asks:
            side, keys = self._asks, self._ask_keys
            if not side:
                load_side(side, keys, asks, -1.0)
            else:
                for p, qty in asks:
                    k = -p
                    if qty:
                        if k not in side:
                            insort(keys, k)
                        side[k] = qty
                    elif side.pop(k, None) is not None:
                        del keys[bisect_left(keys, k)]

    def apply_sided(self, levels: Sequence[SidedLevel], bid: str, asks: tuple[str, ...]) -> None:
        """``apply`` for levels of both sides in one list, each with its side: ``bid`` or one of
        ``asks``. A level of another side raises ValueError, the book part-applied: it is unknown
        then, and the caller drops it.

        One pass over the venue's own level objects, with no (price, qty) lists built per side (a
        second copy of ``apply``'s loops, for the same reason they are written out)."""
        b, bk, a, ak = self._bids, self._bid_keys, self._asks, self._ask_keys
        if not b or not a:  # a snapshot into an empty side: loaded and sorted once
            self.apply(
                [(u.price, u.qty) for u in levels if u.side == bid],
                [(u.price, u.qty) for u in levels if u.side in asks],
            )
            levels = [u for u in levels if u.side != bid and u.side not in asks]
        for u in levels:
            side = u.side
            qty = u.qty
            if side == bid:
                k = u.price
                if qty:
                    if k not in b:
                        insort(bk, k)
                    b[k] = qty
                elif b.pop(k, None) is not None:
                    del bk[bisect_left(bk, k)]
            elif side in asks:
                k = -u.price
                if qty:
                    if k not in a:
                        insort(ak, k)
                    a[k] = qty
                elif a.pop(k, None) is not None:
                    del ak[bisect_left(ak, k)]
            else:
                raise ValueError(f"a level of side {side!r}")

    def _top_keys(self, depth: int) -> tuple[list[float], list[float]]:
        """Best-first keys of the top ``depth`` known levels per side."""
        bk, ak, stop = self._bid_keys, self._ask_keys, -depth - 1
        bids, asks = bk[-1:stop:-1], ak[-1:stop:-1]
        if self._bid_floor is not None and bids and bids[-1] < self._bid_floor:
            bids = bk[bisect_left(bk, self._bid_floor) :][::-1][:depth]
        if self._ask_floor is not None and asks and asks[-1] < self._ask_floor:
            asks = ak[bisect_left(ak, self._ask_floor) :][::-1][:depth]
        return bids, asks

    def top(self, depth: int) -> tuple[list[Level], list[Level]]:
        """``top_columns`` as Level structs (tools and tests; the sampler ships the columns)."""
        bid_px, bid_qty, ask_px, ask_qty = self.top_columns(depth)
        return list(map(Level, bid_px, bid_qty)), list(map(Level, ask_px, ask_qty))

    def top_columns(self, depth: int) -> tuple[list[float], list[float], list[float], list[float]]:
        """Best-first bid prices, bid qtys, ask prices, ask qtys of the top ``depth`` known levels:
        what the sampler ships, gathered by C-level ``map`` rather than a loop per level."""
        bid_keys, ask_keys = self._top_keys(depth)
        return (
            bid_keys,
            list(map(self._bids.__getitem__, bid_keys)),
            list(map(neg, ask_keys)),
            list(map(self._asks.__getitem__, ask_keys)),
        )

    def best_bid(self) -> float | None:
        return self._bid_keys[-1] if self._bid_keys else None

    def best_ask(self) -> float | None:
        return -self._ask_keys[-1] if self._ask_keys else None

    def best(self) -> tuple[float | None, float | None, float | None, float | None]:
        """``top_columns(1)`` as one tuple: best bid price, its qty, best ask price, its qty (None
        for a side with no known level). A quote compares it after every update: no lists built."""
        bk, ak = self._bid_keys, self._ask_keys
        floor = self._bid_floor
        if bk and (floor is None or bk[-1] >= floor):
            bid = bk[-1]
            bid_px, bid_qty = bid, self._bids[bid]
        else:
            bid_px = bid_qty = None
        floor = self._ask_floor
        if ak and (floor is None or ak[-1] >= floor):
            ask = ak[-1]
            ask_px, ask_qty = -ask, self._asks[ask]
        else:
            ask_px = ask_qty = None
        return bid_px, bid_qty, ask_px, ask_qty

    def is_crossed(self) -> bool:
        bk, ak = self._bid_keys, self._ask_keys
        return bool(bk) and bool(ak) and bk[-1] >= -ak[-1]

    def truncate(self, depth: int) -> None:
        """Keep the best ``depth`` levels per side (depth-limited feeds send no delete for a level
        that falls out of the subscribed depth)."""
        for side, keys in ((self._bids, self._bid_keys), (self._asks, self._ask_keys)):
            extra = len(keys) - depth
            if extra > 0:
                for k in keys[:extra]:
                    del side[k]
                del keys[:extra]

    def __len__(self) -> int:
        return len(self._bids) + len(self._asks)
