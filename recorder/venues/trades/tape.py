"""Which trades were emitted, which ids are missing: the dedupe and gap rules every venue shares.

A venue either numbers its trades contiguously per symbol (Coinbase, Kraken, OKX: a missing id is
a lost trade, a *trade gap*) or not (Bybit: linear ids are UUIDs, spot ids skip). Contiguous ids
need no memory of what was seen: the highest id emitted per pair tells a duplicate (a replay after
a subscribe, the second connection of a planned reconnect) from a new trade. Ids skipped are
counted as ``trade_gaps`` (one per missing id) and remembered for a while: when a later snapshot
(Coinbase and Kraken replay recent trades after a subscribe) or a slower connection brings one,
it is emitted after all and un-counted. Venues without contiguous ids are deduped on the id text
over a bounded window of recent ids per pair.

One ``TradeTape`` lives as long as its connector, shared by the Feed of every connection it opens,
so a reconnect neither repeats nor hides trades. Live, the highest id per pair is also kept in the
shared counters (``trade_last_id:<pair>``), which outlive the venue process: after a kill -9 and
restart, a replayed snapshot is not stored twice and the trades lost meanwhile are counted. Replay
makes one per recorded socket.
"""

from __future__ import annotations

import calendar
import time
from collections import deque
from collections.abc import Callable, Iterable
from functools import lru_cache
from typing import TypeVar

from recorder.model import Trade
from recorder.venues.base import Counters, FeedStats

# Ids counted missing and still hoped for, per pair; a longer gap is counted but not remembered.
MAX_MISSING = 4096
# Recent ids kept per pair where ids are not contiguous (a subscribe replays at most 100).
RECENT_IDS = 4096
# An id this far below the highest one is no replay (those reach back 100 trades) but a venue that
# renumbered its trades: the tape starts over from it rather than drop every trade from then on.
RESET_DISTANCE = 1_000_000

TradeCallback = Callable[[Trade], None]
# One wire trade -> the Trade, and the contiguous id range it covers (None, None: the venue's ids
# are not contiguous, dedupe on the id text); ValueError or KeyError: the trade is malformed.
Row = tuple[Trade, int | None, int | None]
W = TypeVar("W")


class TradeTape:
    """Dedupe and gap accounting of one venue's trades, per pair (see module docstring)."""

    def __init__(self, contiguous: bool, counters: Counters | None = None, pairs: Iterable[str] = ()) -> None:
        self.contiguous = contiguous
        self._last: dict[str, int] = {}  # contiguous: pair -> highest id emitted
        self._missing: dict[str, set[int]] = {}
        self._recent: dict[str, tuple[set[str], deque[str]]] = {}
        self._counters = counters if contiguous else None
        if self._counters is not None:
            for pair in pairs:  # left by an earlier run of this venue process (0: none)
                last = int(self._counters.get(f"trade_last_id:{pair}"))
                if last > 0:
                    self._last[pair] = last

    def admit_range(self, stats: FeedStats, pair: str, first: int, last: int) -> bool:
        """A trade covering ids ``first..last`` (OKX aggregates fills; others have first == last):
        True to emit it. Counts the ids skipped before it as trade gaps."""
        prev = self._last.get(pair)
        if prev is not None and last < prev - RESET_DISTANCE:
            stats.pair(pair, "trade_id_resets")
            self._missing.pop(pair, None)
            prev = None
        if prev is None or last > prev:
            self._last[pair] = last
            if self._counters is not None:
                self._counters.set(f"trade_last_id:{pair}", last)
            if prev is not None and first > prev + 1:
                self._gap(stats, pair, prev + 1, first - 1)
            return True
        missing = self._missing.get(pair)
        if missing:
            found = [i for i in range(first, last + 1) if i in missing]
            if found:  # a trade counted lost arrived after all (a replay, a slower connection)
                missing.difference_update(found)
                _count(stats, pair, "trade_gaps", -len(found))
                stats.pair(pair, "trades_late")
                return True
        stats.pair(pair, "trade_duplicates")
        return False

    def admit_id(self, stats: FeedStats, pair: str, trade_id: str) -> bool:
        """A trade of a venue without contiguous ids: True unless its id was seen recently."""
        recent = self._recent.get(pair)
        if recent is None:
            recent = self._recent[pair] = (set(), deque())
        seen, order = recent
        if trade_id in seen:
            stats.pair(pair, "trade_duplicates")
            return False
        seen.add(trade_id)
        order.append(trade_id)
        if len(order) > RECENT_IDS:
            seen.discard(order.popleft())
        return True

    def _gap(self, stats: FeedStats, pair: str, first: int, last: int) -> None:
        n = last - first + 1
        _count(stats, pair, "trade_gaps", n)
        missing = self._missing.setdefault(pair, set())
        if len(missing) + n <= MAX_MISSING:
            missing.update(range(first, last + 1))


def _count(stats: FeedStats, pair: str, what: str, n: int) -> None:
    stats.pair(pair, what, n)
    stats.counters.incr(what, n)
    stats.counters.incr(f"{what}:{pair}", n)


class TradeEmitter:
    """A Feed's trade output: admits each trade through the tape, counts it, calls ``on_trade``.

    ``on_trade`` None (the default): the Feed does not parse trades at all.
    """

    __slots__ = ("stats", "tape", "on_trade")

    def __init__(self, stats: FeedStats, tape: TradeTape) -> None:
        self.stats = stats
        self.tape = tape
        self.on_trade: TradeCallback | None = None

    def emit(self, trade: Trade, first: int | None = None, last: int | None = None) -> None:
        """``first``/``last``: the contiguous id range the trade covers (None: dedupe on its id text)."""
        stats, pair = self.stats, trade.pair
        if last is not None:
            ok = self.tape.admit_range(stats, pair, last if first is None else first, last)
        else:
            ok = self.tape.admit_id(stats, pair, trade.trade_id)
        if not ok:
            return
        stats.pair(pair, "trades")  # (the shared trades:<pair> counts what reaches the ring)
        if self.on_trade is not None:
            self.on_trade(trade)


def emit_trades(
    trades: Iterable[W],
    recv_ms: float,
    out: TradeEmitter,
    pair_of: Callable[[str], str | None],
    venue: str,
    symbol: Callable[[W], str],
    row: Callable[[W, str, str, int], Row],
) -> int:
    """Emit the trades of one message in order (``symbol`` names a trade's instrument on the wire,
    ``row`` turns it into a Trade of ``venue`` and ``pair`` received at µs); trades of instruments
    not ours are skipped. Returns how many were malformed."""
    local_us = int(recv_ms * 1000)
    bad = 0
    emit = out.emit
    for t in trades:
        pair = pair_of(symbol(t))
        if pair is None:
            continue
        try:
            trade, first, last = row(t, venue, pair, local_us)
        except (ValueError, KeyError):
            bad += 1
            continue
        emit(trade, first, last)
    return bad


@lru_cache(maxsize=4096)
def _epoch_s(prefix: str) -> int:
    return calendar.timegm(time.strptime(prefix, "%Y-%m-%dT%H:%M:%S"))


def rfc3339_us(text: str) -> int:
    """``2026-08-09T21:05:48.167634Z`` (UTC, 0-9 fraction digits) -> epoch µs; ValueError if not that."""
    seconds = _epoch_s(text[:19])
    rest = text[19:]
    if not rest.endswith("Z"):
        raise ValueError(f"not a UTC RFC 3339 time: {text[:40]!r}")
    frac = rest[:-1]
    micros = 0
    if frac:
        digits = frac[1:7]
        if frac[0] != "." or not frac[1:].isdigit():
            raise ValueError(f"bad fraction in {text[:40]!r}")
        micros = int(digits.ljust(6, "0"))
    return seconds * 1_000_000 + micros


def decimal_text(text: str) -> float:
    """The venue's decimal text as the nearest float (``float`` rounds correctly); never NaN,
    infinite or negative (ValueError: the trade is malformed)."""
    value = float(text)
    if not 0.0 <= value < 1e300:
        raise ValueError(f"not a price or quantity: {text[:40]!r}")
    return value
