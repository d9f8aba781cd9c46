"""Trades of the Binance simulators (spot and USD-M ``<symbol>@trade``), taken from their books.

Every fill the book generator makes (a trade at the touch, a sweep through levels) becomes one
trade with the next id of its symbol (contiguous, like the venue's ``t``), at the level's price,
for the quantity that left the book; the resting side tells the taker's: a filled bid means the
buyer was the maker (``m`` true, the taker sold). Trades wait for the end of the publication
window that holds their book change, so a client sees a trade with (not before) the diff that
removed its liquidity.

The tape also keeps what it did with each trade made while a client listened: sent, withheld
(``trade_gap`` fault: the id is used, never sent) or silenced (``trade_silence`` fault), served at
``GET /sim/trades?symbol=`` in the shape every simulator serves (``recorder/sim/trades.py``), the
reference a test compares a capture with.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field

from recorder.sim.trades import RECORD_LIMIT

Trade = tuple[int, int, int, bool, int]  # id, price, qty, m (the buyer made), T (ms)


@dataclass
class _Symbol:
    next_id: int
    pending: list[Trade] = field(default_factory=list)
    # What became of each: the trade, whether it was sent, why not ("gap", "silence"; "": nobody listened).
    record: deque[tuple[Trade, bool, str]] = field(default_factory=lambda: deque(maxlen=RECORD_LIMIT))


class TradeTape:
    def __init__(self, seed: object) -> None:
        self._seed = seed
        self.symbols: dict[str, _Symbol] = {}
        self.counters = {"trades_published": 0, "trades_withheld": 0, "trades_silenced": 0}

    def _sym(self, symbol: str) -> _Symbol:
        s = self.symbols.get(symbol)
        if s is None:
            start = random.Random(f"{self._seed}:{symbol}:trades").randrange(100_000_000, 5_000_000_000)
            s = self.symbols[symbol] = _Symbol(start)
        return s

    def fill(self, symbol: str, bid_filled: bool, px: int, qty: int, t_ms: int, wanted: bool) -> None:
        """A fill of the book: the next trade id. Kept for the window's end when someone listens
        (``wanted``); otherwise the id is simply used, as on the real venue."""
        s = self._sym(symbol)
        tid = s.next_id
        s.next_id += 1
        if wanted:
            s.pending.append((tid, px, qty, bid_filled, t_ms))

    def take_pending(self, symbol: str) -> list[Trade]:
        s = self.symbols.get(symbol)
        if s is None or not s.pending:
            return []
        out, s.pending = s.pending, []
        return out

    def sent(self, symbol: str, trade: Trade) -> None:
        self._sym(symbol).record.append((trade, True, ""))
        self.counters["trades_published"] += 1

    def unheard(self, symbol: str, trade: Trade) -> None:
        """Its subscribers left before the window's end."""
        self._sym(symbol).record.append((trade, False, ""))

    def withheld(self, symbol: str, trade: Trade) -> None:
        self._sym(symbol).record.append((trade, False, "gap"))
        self.counters["trades_withheld"] += 1

    def silenced(self, symbol: str, trade: Trade) -> None:
        self._sym(symbol).record.append((trade, False, "silence"))
        self.counters["trades_silenced"] += 1
