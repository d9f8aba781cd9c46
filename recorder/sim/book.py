"""Venue-neutral price-level book model and random-walk order-flow generator for the simulators.

Prices and quantities are fixed-point integers in units of 1e-8 (``SCALE``): formatting is exact and no
float ever touches a published level. Each venue module decides how to print them on the wire.

Time is discrete: a ``SymbolFeed`` (``recorder/sim/feed.py``) advances in ticks (default 10 ms);
every tick moves the fair price and emits a random number of book events, each consuming one update
id. Publication windows (e.g. 100 ms) are whole numbers of ticks, so the event stream and its
windowing depend only on the seed, never on how late the event loop wakes up.
"""

from __future__ import annotations

import math
import random
from bisect import bisect_left, insort
from collections.abc import Callable
from dataclasses import dataclass

import msgspec

SCALE = 100_000_000  # 1 unit = 1e-8, the finest precision any supported venue prints
DECIMALS = 8

Level = tuple[int, int]  # (price units, qty units)


def fmt_units(value: int, decimals: int = DECIMALS) -> str:
    """Exact decimal string of a fixed-point value, e.g. 4321001000000 -> '43210.01000000'."""
    whole, frac = divmod(value, SCALE)
    if decimals <= 0:
        return str(whole)
    digits = f"{frac:08d}"
    if decimals <= DECIMALS:
        return f"{whole}.{digits[:decimals]}"
    return f"{whole}.{digits}{'0' * (decimals - DECIMALS)}"


def to_units(text: str) -> int:
    """Parse a non-negative decimal string into fixed-point units (exact; extra digits must be zero)."""
    whole, _, frac = text.partition(".")
    frac = frac.rstrip("0")
    if len(frac) > DECIMALS:
        raise ValueError(f"more than {DECIMALS} decimals: {text!r}")
    return int(whole or "0") * SCALE + int((frac or "0").ljust(DECIMALS, "0"))


@dataclass(frozen=True, slots=True)
class InstrumentSpec:
    """Static parameters of one simulated instrument (all amounts in fixed-point units)."""

    symbol: str
    base: str
    quote: str
    price: int  # initial fair price
    tick: int  # price step
    lot: int  # quantity step
    typical_lots: int  # median resting size, in lots
    events_per_s: float  # mean book events (update ids) per second, excluding sweeps and bursts
    vol_bps: float = 0.5  # fair-price volatility, basis points per sqrt(second)


class Book:
    """Two-sided L2 book: price -> qty dicts plus ascending price lists for ordered access."""

    __slots__ = ("bids", "asks", "_bid_px", "_ask_px")

    def __init__(self) -> None:
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}
        self._bid_px: list[int] = []  # ascending; best bid is last
        self._ask_px: list[int] = []  # ascending; best ask is first

    def set_level(self, is_bid: bool, px: int, qty: int) -> None:
        """Absolute quantity at a price; qty 0 deletes (deleting a missing level is a no-op)."""
        levels = self.bids if is_bid else self.asks
        keys = self._bid_px if is_bid else self._ask_px
        if qty <= 0:
            if px in levels:
                del levels[px]
                del keys[bisect_left(keys, px)]
        else:
            if px not in levels:
                insort(keys, px)
            levels[px] = qty

    def best_bid(self) -> int | None:
        return self._bid_px[-1] if self._bid_px else None

    def best_ask(self) -> int | None:
        return self._ask_px[0] if self._ask_px else None

    def depth(self, is_bid: bool) -> int:
        return len(self._bid_px if is_bid else self._ask_px)

    def price_at(self, is_bid: bool, index: int) -> int:
        """Price of the index-th level from the touch (0 = best)."""
        return self._bid_px[-1 - index] if is_bid else self._ask_px[index]

    def crossed(self) -> bool:
        bb, ba = self.best_bid(), self.best_ask()
        return bb is not None and ba is not None and bb >= ba

    def top(self, n: int) -> tuple[list[Level], list[Level]]:
        """Best-first (bids descending, asks ascending) top n levels per side."""
        bids = [(p, self.bids[p]) for p in reversed(self._bid_px[-n:])] if n > 0 else []
        asks = [(p, self.asks[p]) for p in self._ask_px[:n]]
        return bids, asks

    def copy(self) -> Book:
        other = Book()
        other.bids = dict(self.bids)
        other.asks = dict(self.asks)
        other._bid_px = list(self._bid_px)
        other._ask_px = list(self._ask_px)
        return other

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Book) and self.bids == other.bids and self.asks == other.asks

    def encode(self) -> bytes:
        """Compact serialisation for history checkpoints."""
        bids, asks = self.top(len(self._bid_px) + len(self._ask_px))
        return msgspec.json.encode((bids, asks))

    @classmethod
    def decode(cls, blob: bytes) -> Book:
        bids, asks = msgspec.json.decode(blob, type=tuple[list[Level], list[Level]])
        book = cls()
        for px, qty in bids:
            book.set_level(True, px, qty)
        for px, qty in asks:
            book.set_level(False, px, qty)
        return book


@dataclass(slots=True)
class WindowDiff:
    """Net level changes of the update ids first_id..last_id (qty 0 = delete), best-first per side."""

    first_id: int
    last_id: int
    bids: list[Level]
    asks: list[Level]


class ChangeWindow:
    """Accumulates the net effect of consecutive events until taken (one publication window)."""

    __slots__ = ("first_id", "last_id", "changes")

    def __init__(self) -> None:
        self.first_id: int | None = None
        self.last_id = 0
        self.changes: dict[tuple[bool, int], int] = {}

    def record(self, update_id: int, is_bid: bool, px: int, qty: int) -> None:
        if self.first_id is None:
            self.first_id = update_id
        self.last_id = update_id
        self.changes[(is_bid, px)] = qty  # later events overwrite: the wire carries absolute quantities

    def take(self) -> WindowDiff | None:
        if self.first_id is None:
            return None
        bids = sorted(((px, q) for (b, px), q in self.changes.items() if b), reverse=True)
        asks = sorted((px, q) for (b, px), q in self.changes.items() if not b)
        diff = WindowDiff(self.first_id, self.last_id, bids, asks)
        self.first_id = None
        self.changes = {}
        return diff


MIN_LEVELS = 100
TARGET_LEVELS = 200
MAX_LEVELS = 300


class BookGenerator:
    """Random-walk fair price plus order flow (amends, inserts, cancels near and far, trades, sweeps).

    Invariants after every event: never crossed, every side non-empty. Every event changes at least one
    level and consumes exactly one update id; all windows attached with ``add_window`` see it.
    """

    def __init__(self, spec: InstrumentSpec, rng: random.Random, tick_s: float) -> None:
        self.spec = spec
        self.rng = rng
        self.book = Book()
        self.last_id = rng.randrange(1_000_000_000, 9_000_000_000)  # venues start ids at large numbers
        self._windows: list[ChangeWindow] = []
        t = spec.tick
        self.mid = spec.price / t  # fair price in ticks (float)
        # Mean spacing between resting levels: ~0.02 bp of price, at least one tick.
        self.gap = max(1, round(spec.price * 0.000002 / t))
        self.spread = max(1, self.gap // 10)
        # The fair price jumps on ~10% of ticks (same variance as a continuous walk) so the touch is not
        # swept on every tick for symbols whose volatility is many ticks per second.
        self.jump_p = 0.1
        self.sigma = spec.vol_bps * 1e-4 * self.mid * math.sqrt(tick_s / self.jump_p)  # ticks per jump
        self.rate = spec.events_per_s * tick_s  # events per tick
        self.burst_p = 0.1 * tick_s  # one burst every ~10 s
        # Called for every fill of a trade event, before the event's book change: (the resting
        # side is the bid, price units, quantity units). A simulator that serves trades sets it,
        # so its trades are exactly what left the book (a trade prints at the touch and consumes it).
        self.on_fill: Callable[[bool, int, int], None] | None = None
        self._seed_book()

    # -- plumbing -----------------------------------------------------------------------------------

    def add_window(self) -> ChangeWindow:
        w = ChangeWindow()
        self._windows.append(w)
        return w

    def _emit(self, changes: list[tuple[bool, int, int]]) -> None:
        """One venue event: apply all level changes under a single new update id."""
        if not changes:
            return
        self.last_id += 1
        uid = self.last_id
        book = self.book
        for is_bid, k, lots in changes:
            px, qty = k * self.spec.tick, lots * self.spec.lot
            book.set_level(is_bid, px, qty)
            for w in self._windows:
                w.record(uid, is_bid, px, qty)

    def _fills(self, is_bid: bool, fills: list[tuple[int, int]]) -> None:
        """Report a trade's fills (price in ticks, lots taken), best level first."""
        on_fill = self.on_fill
        if on_fill is None:
            return
        tick, lot = self.spec.tick, self.spec.lot
        for k, lots in fills:
            if lots > 0:
                on_fill(is_bid, k * tick, lots * lot)

    def _lots(self) -> int:
        return max(1, int(self.spec.typical_lots * self.rng.lognormvariate(0.0, 1.0)))

    def _k(self, is_bid: bool, index: int) -> int:
        return self.book.price_at(is_bid, index) // self.spec.tick

    def _qty_lots(self, is_bid: bool, k: int) -> int:
        levels = self.book.bids if is_bid else self.book.asks
        return levels.get(k * self.spec.tick, 0) // self.spec.lot

    def _best(self, is_bid: bool) -> int | None:
        px = self.book.best_bid() if is_bid else self.book.best_ask()
        return None if px is None else px // self.spec.tick

    def _geo_index(self, mean: float, depth: int) -> int:
        """Level index biased to the touch (most activity is near the top of the book)."""
        return min(depth - 1, int(self.rng.expovariate(1.0 / mean)))

    def _poisson(self, lam: float) -> int:
        # Knuth's method: lam is small (a few events per tick).
        limit, k, p = math.exp(-lam), 0, self.rng.random()
        while p > limit:
            k += 1
            p *= self.rng.random()
        return k

    def _seed_book(self) -> None:
        r = self.rng
        bid = math.floor(self.mid - self.spread / 2)
        ask = bid + self.spread
        for is_bid, start in ((True, bid), (False, ask)):
            k = start
            for _ in range(r.randint(150, 250)):
                if k <= 0:
                    break
                self.book.set_level(is_bid, k * self.spec.tick, self._lots() * self.spec.lot)
                step = 1 + int(r.expovariate(1.0 / self.gap)) if self.gap > 1 else 1 + int(r.random() < 0.2)
                k = k - step if is_bid else k + step

    # -- dynamics -----------------------------------------------------------------------------------

    def step(self) -> None:
        """Advance one tick: move the fair price, then emit this tick's events."""
        r = self.rng
        if r.random() < self.jump_p:
            self.mid = max(self.mid + r.gauss(0.0, self.sigma), 10.0 * self.gap)
        self._follow_mid()
        n = self._poisson(self.rate)
        if r.random() < self.burst_p:
            n += r.randint(30, 250)  # burst: many changes inside one publication window
        for _ in range(n):
            self._random_event()
        self._maintain_depth()

    def _targets(self) -> tuple[int, int]:
        """Where the touch should be for the current fair price (ticks)."""
        bid_t = math.floor(self.mid - self.spread / 2)
        return bid_t, bid_t + self.spread

    def _follow_mid(self) -> None:
        """Sweep levels the fair price moved through (a market order) and re-quote the touch."""
        bid_t, ask_t = self._targets()
        best_ask, best_bid = self._best(False), self._best(True)
        if best_ask is not None and best_ask <= bid_t:
            ks = self._ks_until(False, bid_t)
            # A taker lifts the best ask; the makers behind it pull their quotes (not trades).
            self._fills(False, [(k, self._qty_lots(False, k)) for k in ks[:1]])
            self._emit([(False, k, 0) for k in ks])
            best_bid = self._best(True)
            if best_bid is None or best_bid < bid_t:
                self._insert(True, bid_t)
            if self._best(False) != ask_t:  # market makers re-quote behind the sweep
                self._insert(False, ask_t)
        elif best_bid is not None and best_bid >= ask_t:
            ks = self._ks_until(True, ask_t)
            self._fills(True, [(k, self._qty_lots(True, k)) for k in ks[:1]])
            self._emit([(True, k, 0) for k in ks])
            best_ask = self._best(False)
            if best_ask is None or best_ask > ask_t:
                self._insert(False, ask_t)
            if self._best(True) != bid_t:
                self._insert(True, bid_t)
        # Keep the touch near the fair price when the spread has opened up.
        for is_bid, target in ((True, bid_t), (False, ask_t)):
            best = self._best(is_bid)
            far = best is None or (target - best if is_bid else best - target) > 2 * self.gap
            if far and self.rng.random() < 0.3:
                self._insert(is_bid, target)

    def _ks_until(self, is_bid: bool, bound: int) -> list[int]:
        """Prices (ticks) on a side that are at or through `bound`, best first, keeping >= 1 level."""
        out: list[int] = []
        depth = self.book.depth(is_bid)
        for i in range(depth - 1):
            k = self._k(is_bid, i)
            if (is_bid and k < bound) or (not is_bid and k > bound):
                break
            out.append(k)
        return out

    def _insert(self, is_bid: bool, k: int) -> None:
        """New level at k if it keeps the book uncrossed (otherwise the event is simply not generated)."""
        if k <= 0:
            return
        opp = self._best(not is_bid)
        if opp is not None and ((is_bid and k >= opp) or (not is_bid and k <= opp)):
            return
        self._emit([(is_bid, k, self._lots())])

    def _random_event(self) -> None:
        r = self.rng
        is_bid = r.random() < 0.5
        depth = self.book.depth(is_bid)
        u = r.random()
        if depth == 0:  # defensive: sweeps and cancels never empty a side
            bid_t, ask_t = self._targets()
            self._insert(is_bid, bid_t if is_bid else ask_t)
            return
        if u < 0.45:  # amend quantity, mostly near the touch
            k = self._k(is_bid, self._geo_index(12.0, depth))
            lots = max(1, int(self._qty_lots(is_bid, k) * r.lognormvariate(0.0, 0.6)))
            self._emit([(is_bid, k, lots)])
        elif u < 0.73:  # new level: mostly close to the touch, some deep in the book
            best = self._best(is_bid)
            assert best is not None
            v = r.random()
            if v < 0.1:  # price improvement inside the spread
                k = best + 1 if is_bid else best - 1
            else:
                d = 1 + int(r.expovariate(1.0 / (self.gap * (3 if v < 0.75 else 120))))
                k = best - d if is_bid else best + d
            if self._qty_lots(is_bid, k):
                self._emit([(is_bid, k, self._lots())])
            else:
                self._insert(is_bid, k)
        elif u < 0.88:  # cancel: half near the touch, half anywhere (deletes far from the top)
            if depth <= MIN_LEVELS:
                return
            idx = self._geo_index(8.0, depth) if r.random() < 0.6 else r.randrange(depth)
            self._emit([(is_bid, self._k(is_bid, idx), 0)])
        elif u < 0.96:  # trade at the touch: partial fill, or take out 1-3 levels in one match
            if r.random() < 0.6 or depth < 5:
                k = self._k(is_bid, 0)
                lots = self._qty_lots(is_bid, k)
                left = int(lots * r.random())
                if left == 0 and depth == 1:
                    left = 1
                self._fills(is_bid, [(k, lots - left)])
                self._emit([(is_bid, k, left)])
            else:
                n = r.randint(1, 3)
                ks = [self._k(is_bid, i) for i in range(n)]
                self._fills(is_bid, [(k, self._qty_lots(is_bid, k)) for k in ks])
                self._emit([(is_bid, k, 0) for k in ks])
        else:  # cancel/replace: one event moves an order to another price
            idx = self._geo_index(10.0, depth)
            k_old = self._k(is_bid, idx)
            shift = r.choice((-1, 1)) * (1 + int(r.expovariate(1.0 / self.gap)))
            k_new = k_old + shift
            opp = self._best(not is_bid)
            ok = k_new > 0 and (opp is None or (k_new < opp if is_bid else k_new > opp))
            if ok and k_new != k_old and depth > 1:
                self._emit([(is_bid, k_old, 0), (is_bid, k_new, self._lots())])

    def _maintain_depth(self) -> None:
        """Keep each side within [MIN_LEVELS, MAX_LEVELS]: add deep levels or drop the farthest one."""
        for is_bid in (True, False):
            depth = self.book.depth(is_bid)
            if depth > MAX_LEVELS:
                self._emit([(is_bid, self._k(is_bid, depth - 1), 0)])
            elif depth < MIN_LEVELS or (depth < TARGET_LEVELS and self.rng.random() < 0.05):
                worst = self._k(is_bid, depth - 1) if depth else self.mid
                step = 1 + int(self.rng.expovariate(1.0 / self.gap))
                self._insert(is_bid, int(worst - step if is_bid else worst + step))
