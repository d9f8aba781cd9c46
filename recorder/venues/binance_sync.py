"""One Binance book's sync rules (``BookSync``), free of I/O so they can be tested on crafted
sequences: diffs buffered until a REST snapshot joins them, then the update-id chain.

Rules (docs corrected 2025-11-12, see venue-protocols.md §1): drop buffered diffs with
``u <= lastUpdateId``, the first kept diff must straddle ``lastUpdateId + 1``, then every diff
must continue the chain (spot ``U == previous u + 1``, futures ``pu == previous u``).
"""

from __future__ import annotations

import enum
from collections.abc import Callable

from recorder.book import L2Book
from recorder.venues.binance_wire import DepthEvent, DepthSnapshot

# Diffs a book without a snapshot keeps (the newest; older ones are dropped from the head,
# which only risks a STALE snapshot, never a wrong book). While its snapshot request waits
# behind the weight limiter, a book needs only the last few seconds: the snapshot will be
# newer than that. A universe resyncing at once (1000 books queued for a minute) would
# otherwise hold every diff of that minute and grow towards the OOM killer.
QUEUED_BUFFERED_DIFFS = 100
# Once its request is on the wire the snapshot may come back late (slow venue): keep more.
MAX_BUFFERED_DIFFS = 10_000


class Outcome(enum.Enum):
    BUFFERED = "buffered"
    APPLIED = "applied"
    IGNORED = "ignored"
    GAP = "gap"
    SYNCED = "synced"
    STALE = "stale"


_APPLIED, _IGNORED = Outcome.APPLIED, Outcome.IGNORED  # per-frame results, without a class lookup


def spot_prev_id(ev: DepthEvent) -> int:
    """The book id an event continues from: spot ids are contiguous, so ``U - 1``."""
    return ev.U - 1


def futures_prev_id(ev: DepthEvent) -> int:
    """The book id a USD-M futures event continues from: its ``pu``."""
    return ev.pu


class BookSync:
    """One pair's book and its position in Binance's update-id sequence.

    The rules are written once against ``prev_id(event)``, the book id an event must follow:
    spot ``U - 1`` (ids are contiguous), futures ``pu``. Continuity is ``prev_id == book id``;
    the first event after a snapshot must straddle it (``prev_id <= lastUpdateId < u``);
    a snapshot older than the first buffered event's ``prev_id`` is stale.
    """

    def __init__(self, pair: str, prev_id: Callable[[DepthEvent], int] = spot_prev_id) -> None:
        self.pair = pair
        self.book = L2Book()
        self.synced = False
        self.buffer: list[tuple[DepthEvent, float]] = []
        self._straddle_next = False
        self._prev_id = prev_id
        # For a Feed's hot path, which tests the chain inline: the rule ``prev_id`` is (None: another
        # rule, never taken inline) and whether the next diff may skip ``on_diff`` (``live``: synced,
        # not waiting for the straddling diff, no refetch logging the diffs).
        self.chain_pu: bool | None = {spot_prev_id: False, futures_prev_id: True}.get(prev_id)
        self.live = False
        # The depth asked of the REST snapshot (None: unknown, e.g. replay): a side that comes
        # back with that many levels was truncated by the venue.
        self.snapshot_limit: int | None = None
        self.gap_after: int | None = None  # the book id a diff broke the chain after (for the log)
        self.keep = QUEUED_BUFFERED_DIFFS  # raised while a snapshot request is in flight
        # A deeper snapshot fetched while the book stays live and sampled (``begin_refetch``): the
        # diffs applied since its request went out, replayed over it (None: no refetch running).
        self.since_refetch: list[tuple[DepthEvent, float]] | None = None
        self._refetch_from = 0  # the book id when the request went out
        self._refetched: DepthSnapshot | None = None  # newer than the book: waits for its diffs

    def reset(self) -> None:
        self.synced = self.live = False
        self.buffer.clear()
        self.book.clear()
        self._straddle_next = False
        self.end_refetch()

    # -- deepening a live book (its known depth fell below the sampling depth) ------------------

    def begin_refetch(self) -> None:
        """The request of a fresh snapshot for this live book went on the wire."""
        if self.synced and self.book.update_id is not None:
            self.since_refetch = []
            self._refetch_from = self.book.update_id
            self._refetched = None
            self.live = False

    def end_refetch(self) -> None:
        self.since_refetch = self._refetched = None
        self._relive()

    def _relive(self) -> None:
        """``live`` after a change to what it depends on."""
        self.live = self.synced and not self._straddle_next and self.since_refetch is None and self.chain_pu is not None

    def on_refetch(self, snap: DepthSnapshot) -> Outcome:
        """A fresh snapshot of a live book: SYNCED (the book is rebuilt on it, as deep as it goes),
        BUFFERED (newer than the book: rebuilt once the diffs reach it), or STALE/IGNORED."""
        if not self.synced or self.since_refetch is None:
            self.end_refetch()
            return Outcome.IGNORED
        if snap.lastUpdateId < self._refetch_from:
            self.end_refetch()  # older than the book was when we asked: the diffs between are gone
            return Outcome.STALE
        book_id = self.book.update_id
        assert book_id is not None
        if snap.lastUpdateId > book_id:
            self._refetched = snap
            return Outcome.BUFFERED
        return Outcome.SYNCED if self._rebase(snap) else Outcome.STALE

    def _log_applied(self, ev: DepthEvent, recv_ms: float) -> None:
        log_ = self.since_refetch
        assert log_ is not None
        log_.append((ev, recv_ms))
        if len(log_) > MAX_BUFFERED_DIFFS:
            self.end_refetch()  # the snapshot is too late to catch up with: the connector asks again
        elif self._refetched is not None and ev.u >= self._refetched.lastUpdateId:
            self._rebase(self._refetched)

    def _rebase(self, snap: DepthSnapshot) -> bool:
        """Rebuild the book on ``snap`` plus the diffs applied since it was asked for (the live
        book is replaced only once the rebuilt one has reached the same update id)."""
        last = snap.lastUpdateId
        kept = [ev for ev, _ in self.since_refetch or () if ev.u > last]
        self.end_refetch()
        if kept and self._prev_id(kept[0]) > last:
            return False  # the snapshot does not join the chain (never seen; Binance would be wrong)
        book = type(self.book)()
        book.load(snap.bids, snap.asks, last)
        limit = self.snapshot_limit
        book.bound_to_snapshot(limit is None or len(snap.bids) >= limit, limit is None or len(snap.asks) >= limit)
        for ev in kept:  # contiguous: they were applied to the live book under the chain rule
            book.apply(ev.b, ev.a)
        book.update_id = kept[-1].u if kept else last
        if book.update_id != self.book.update_id:
            return False
        book.exchange_time_ms, book.receive_time_ms = self.book.exchange_time_ms, self.book.receive_time_ms
        self.book = book
        return True

    def on_diff(self, ev: DepthEvent, recv_ms: float) -> Outcome:
        if self.synced:  # the hot path first: a live book and the next diff of its chain
            book = self.book
            book_id = book.update_id
            assert book_id is not None
            if ev.u <= book_id:
                return _IGNORED
            prev = self._prev_id(ev)
            if prev == book_id or (self._straddle_next and prev < book_id):
                book.apply(ev.b, ev.a)  # (BinanceFeed.on_frame does the same for a live sync)
                book.update_id = ev.u
                book.exchange_time_ms = ev.E
                book.receive_time_ms = recv_ms
                if self._straddle_next:
                    self._straddle_next = False
                    self._relive()
                if self.since_refetch is not None:
                    self._log_applied(ev, recv_ms)
                return _APPLIED
            self.reset()
            self.gap_after = book_id
            self.buffer.append((ev, recv_ms))
            return Outcome.GAP
        outcome = Outcome.BUFFERED
        if self.buffer:
            prev_ev = self.buffer[-1][0]
            # A hole inside the buffer makes every older diff useless: start over from here.
            # It is still a gap in the feed (reported), even though no book was live.
            if self._prev_id(ev) != prev_ev.u:
                outcome = Outcome.GAP
                self.buffer.clear()
        self.buffer.append((ev, recv_ms))
        if len(self.buffer) > self.keep:
            del self.buffer[: len(self.buffer) - self.keep]
        return outcome

    def on_snapshot(self, snap: DepthSnapshot) -> Outcome:
        """Join a REST snapshot to the buffered diffs."""
        if not self.buffer:
            return Outcome.STALE
        last = snap.lastUpdateId
        if last < self._prev_id(self.buffer[0][0]):
            return Outcome.STALE  # older than the first diff we hold: fetch again
        # A diff with u == lastUpdateId is already in the snapshot (levels are absolute).
        kept = [(ev, t) for ev, t in self.buffer if ev.u > last]
        self.buffer.clear()
        self.book.load(snap.bids, snap.asks, last)
        # A side that filled the requested limit was cut short: levels past it are unknown.
        limit = self.snapshot_limit
        self.book.bound_to_snapshot(limit is None or len(snap.bids) >= limit, limit is None or len(snap.asks) >= limit)
        self.book.exchange_time_ms = None
        self.book.receive_time_ms = None
        self.synced = True
        self._straddle_next = True
        for ev, t in kept:
            if self.on_diff(ev, t) is Outcome.GAP:
                return Outcome.GAP
        return Outcome.SYNCED
