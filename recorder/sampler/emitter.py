"""Trades and quotes of a venue's Feeds -> the venue's ring, beside the sampled books.

The one ring of the venue process carries every record kind (``recorder.model``: a kind byte
before trades and quotes); the sampler and this emitter run on the same event loop thread, so
the ring keeps its single producer. A record that does not fit is dropped and counted
(``trade_drops`` / ``quote_drops``), never blocks the feed.

The silence watch reports a subscribed trade stream that stays quiet for ``silence_s`` while the
pair's book keeps moving (the venue is active): the only symptom of a stream on the wrong route
(Binance USD-M after the 2026 URL split ACKs the subscription and sends nothing). Per pair a
status flag ``trade_silent:<pair>`` (1 while silent), per venue ``trade_silent`` (pairs silent
now) and ``trade_silences`` (episodes), and one log line per episode.
"""

from __future__ import annotations

import asyncio
import logging
import time
from time import monotonic
from typing import Protocol

from recorder.book import L2Book
from recorder.metrics import SharedCounters
from recorder.model import Quote, Trade, quote_record, trade_record

log = logging.getLogger("recorder.emitter")

EMITTER_FIELDS = ["trades", "trade_gaps", "trade_drops", "trade_silent", "trade_silences", "quotes", "quote_drops"]


def emitter_pair_fields(pair: str) -> list[str]:
    # trade_last_id:<pair>: the venue's last trade id taken, for gap counting across a restart.
    return [f"trades:{pair}", f"trade_gaps:{pair}", f"trade_silent:{pair}", f"quotes:{pair}", f"trade_last_id:{pair}"]


class _Ring(Protocol):
    def push(self, payload: bytes) -> bool: ...


class _Books(Protocol):
    def book(self, pair: str) -> L2Book | None: ...


class RecordEmitter:
    def __init__(self, exchange: str, pairs: list[str], ring: _Ring, counters: SharedCounters) -> None:
        self.exchange, self.pairs, self.ring, self.counters = exchange, list(pairs), ring, counters
        # Once per trade and per quote: counter slots looked up here, the ring's push bound once.
        self._values = counters.values
        self._push = ring.push
        self._trades, self._trade_drops, self._quotes, self._quote_drops = (
            counters.slot(f) for f in ("trades", "trade_drops", "quotes", "quote_drops")
        )
        self._pair_slot = {p: counters.slot(f"trades:{p}") for p in pairs}
        self._quote_slot = {p: counters.slot(f"quotes:{p}") for p in pairs}
        self.last_trade_s: dict[str, float] = {}

    def trade(self, trade: Trade) -> None:
        values, pair = self._values, trade.pair
        if self._push(trade_record(trade)):
            values[self._trades] += 1.0
            slot = self._pair_slot.get(pair)
            if slot is not None:
                values[slot] += 1.0
        else:
            values[self._trade_drops] += 1.0
        self.last_trade_s[pair] = monotonic()

    def quote(self, quote: Quote) -> None:
        values = self._values
        if self._push(quote_record(quote)):
            values[self._quotes] += 1.0
            slot = self._quote_slot.get(quote.pair)
            if slot is not None:
                values[slot] += 1.0
        else:
            values[self._quote_drops] += 1.0

    async def watch_silence(self, books: _Books, silence_s: float, stop: asyncio.Event) -> None:
        """Flag pairs whose trade stream is silent while their book moves (see the module doc)."""
        started = time.monotonic()
        # pair -> (time quiet since, book update id then)
        quiet: dict[str, tuple[float, int | None]] = {p: (started, None) for p in self.pairs}
        silent: set[str] = set()
        for pair in self.pairs:  # a flag left by a previous incarnation of this process
            self.counters.set(f"trade_silent:{pair}", 0)
        step = min(1.0, silence_s / 4)
        while not stop.is_set():
            await asyncio.sleep(step)
            now = time.monotonic()
            for pair in self.pairs:
                book = books.book(pair)
                uid = book.update_id if book is not None else None
                since, uid0 = quiet[pair]
                last = self.last_trade_s.get(pair)
                if last is not None and last > since:
                    quiet[pair] = (last, uid)  # a trade came: quiet again from now on
                    if pair in silent:
                        silent.discard(pair)
                        self.counters.set(f"trade_silent:{pair}", 0)
                        log.info("event=trade_stream_resumed venue=%s pair=%s", self.exchange, pair)
                    continue
                if uid0 is None:
                    quiet[pair] = (since, uid)  # the book's position when it was first seen synced
                    continue
                moving = uid is not None and uid != uid0
                if pair not in silent and moving and now - since >= silence_s:
                    silent.add(pair)
                    self.counters.set(f"trade_silent:{pair}", 1)
                    self.counters.incr("trade_silences")
                    log.warning(
                        "event=trade_stream_silent venue=%s pair=%s silent_s=%.0f detail=%s",
                        self.exchange,
                        pair,
                        now - since,
                        "subscribed, no trade while the book moves (wrong route?)",
                    )
            self.counters.set("trade_silent", len(silent))
