"""One simulated instrument over time: its order-flow generator stepped tick by tick, publication
windows at fixed tick multiples, and the history of published book states (``/sim/book``)."""

from __future__ import annotations

import random
from bisect import bisect_left
from collections.abc import Callable

import msgspec

from recorder.sim.book import Book, BookGenerator, InstrumentSpec, Level, WindowDiff


class BookHistory:
    """Book states after each published window, addressable by its last update id.

    Storing a full top-K per window would cost ~1 GB for 15 minutes of 12 symbols, so this keeps a full
    checkpoint every ``checkpoint_every`` windows plus the compact net diffs in between, and rebuilds a
    state on request. Each new checkpoint is cross-checked against a rebuild (``self_check_failures``).
    """

    def __init__(self, retention_s: float, checkpoint_every: int = 100) -> None:
        self.retention_s = retention_s
        self.checkpoint_every = checkpoint_every
        self.self_check_failures = 0
        self._base = 0  # global index of _us[0]
        self._us: list[int] = []
        self._ts: list[float] = []
        self._diffs: list[bytes] = []
        # (u, global index of the first diff after it, encoded full book)
        self._cps: list[tuple[int, int, bytes]] = []

    def start(self, update_id: int, book: Book) -> None:
        self._cps.append((update_id, 0, book.encode()))

    def record(self, now: float, diff: WindowDiff, book: Book) -> None:
        self._us.append(diff.last_id)
        self._ts.append(now)
        self._diffs.append(msgspec.json.encode((diff.bids, diff.asks)))
        n = self._base + len(self._us)
        if n - self._cps[-1][1] >= self.checkpoint_every:
            rebuilt = self.state_at(diff.last_id)
            if rebuilt is None or rebuilt != book:
                self.self_check_failures += 1
            self._cps.append((diff.last_id, n, book.encode()))
        self._trim(now)

    def _trim(self, now: float) -> None:
        # Drop whole checkpoint segments only, so every retained diff has a checkpoint before it.
        while len(self._cps) > 1 and self._ts:
            nxt_index = self._cps[1][1]
            last_t = self._ts[nxt_index - 1 - self._base] if nxt_index - 1 >= self._base else None
            if last_t is None or now - last_t <= self.retention_s:
                break
            cut = nxt_index - self._base
            del self._us[:cut], self._ts[:cut], self._diffs[:cut]
            self._base = nxt_index
            del self._cps[0]

    def latest_id(self) -> int:
        return self._us[-1] if self._us else self._cps[-1][0]

    def state_at(self, update_id: int) -> Book | None:
        """Full book right after the window whose last id is update_id (or a checkpoint id); else None."""
        cp_pos = bisect_left(self._cps, update_id, key=lambda c: c[0])
        if cp_pos < len(self._cps) and self._cps[cp_pos][0] == update_id:
            return Book.decode(self._cps[cp_pos][2])
        i = bisect_left(self._us, update_id)
        if i >= len(self._us) or self._us[i] != update_id or cp_pos == 0:
            return None
        cp_u, cp_index, blob = self._cps[cp_pos - 1]
        book = Book.decode(blob)
        for j in range(cp_index - self._base, i + 1):
            bids, asks = msgspec.json.decode(self._diffs[j], type=tuple[list[Level], list[Level]])
            for px, qty in bids:
                book.set_level(True, px, qty)
            for px, qty in asks:
                book.set_level(False, px, qty)
        return book


BoundaryCallback = Callable[["SymbolFeed", int, WindowDiff | None, int], None]


class SymbolFeed:
    """One instrument: generator + publication windows at fixed tick multiples + verification history.

    ``cadences`` are window lengths in ticks; cadence 0 is the primary (recorded in history). At each
    window boundary ``on_boundary(feed, cadence_index, diff_or_None, tick)`` is called while the book is
    exactly in its end-of-window state.
    """

    def __init__(
        self,
        spec: InstrumentSpec,
        seed: str,
        tick_s: float,
        cadences: tuple[int, ...],
        retention_s: float = 900.0,
    ) -> None:
        self.spec = spec
        self.tick_s = tick_s
        self.cadences = cadences
        self.gen = BookGenerator(spec, random.Random(seed), tick_s)
        self.windows = [self.gen.add_window() for _ in cadences]
        self.history = BookHistory(retention_s)
        self.history.start(self.gen.last_id, self.gen.book)
        self.tick = 0

    @property
    def book(self) -> Book:
        return self.gen.book

    @property
    def last_id(self) -> int:
        return self.gen.last_id

    def advance_to(self, tick: int, now: float, on_boundary: BoundaryCallback | None = None) -> None:
        while self.tick < tick:
            self.tick += 1
            self.gen.step()
            for ci, every in enumerate(self.cadences):
                if self.tick % every:
                    continue
                diff = self.windows[ci].take()
                if ci == 0 and diff is not None:
                    self.history.record(now, diff, self.gen.book)
                if on_boundary is not None:
                    on_boundary(self, ci, diff, self.tick)

    def catch_up(
        self, tick: int, now: float, on_boundary: BoundaryCallback | None = None, resume_ticks: int | None = None
    ) -> None:
        """``advance_to``, except that a feed stalled for more than ~30 s (a suspended process)
        jumps to ``resume_ticks`` (default ~1 s) before ``tick`` instead of replaying every window."""
        if tick - self.tick > round(30.0 / self.tick_s):
            self.skip_to(tick - (resume_ticks if resume_ticks is not None else round(1.0 / self.tick_s)))
        self.advance_to(tick, now, on_boundary)

    def skip_to(self, tick: int) -> None:
        """Jump the clock without generating (after a long stall); open windows simply carry on."""
        self.tick = max(self.tick, tick)
