"""Event-level data from a session's lossless archive: every book change and trade, per pair, in
receive order (the source of the event exports: hftbacktest depth events, tardis
``incremental_book_L2``, nautilus ``OrderBookDelta``).

API
---
* :data:`EVENT_DTYPE`: one event, a numpy record:

  - ``kind``: :data:`CLEAR` (the pair's book is emptied: both sides), :data:`SNAPSHOT` (a level of
    the snapshot that follows a ``CLEAR``), :data:`UPDATE` (a level's new absolute quantity; 0
    deletes it), :data:`TRADE`;
  - ``side``: levels :data:`BID` (1) / :data:`ASK` (-1); trades the taker's side, ``BUY`` (1) /
    ``SELL`` (-1), 0 unknown; 0 for a ``CLEAR``;
  - ``price``, ``qty`` (float64; 0 for a ``CLEAR``);
  - ``exch_ns``: the venue's time of the change (epoch ns; the venue's time of the book's latest
    update, or the receive time where the venue gave none, e.g. a REST snapshot);
  - ``local_ns``: the local receive time of the archived record that caused it (epoch ns).

  A snapshot load is a ``CLEAR`` then its ``SNAPSHOT`` levels, all with the same times; the
  book after it is exactly those levels. A ``CLEAR`` alone (the book was lost: a gap, a checksum
  failure) leaves the book empty until the next snapshot load restarts it.
* :func:`archive_sessions` (``data_dir, exchanges=None, sessions=None``): the archived sessions
  found under ``<data_dir>/archive``, each an :class:`ArchiveSession` (exchange, session, its
  files in session order, the pairs it recorded, its first record's time).
* :class:`ArchiveEvents` (``session, pairs=None, start_ns=None, end_ns=None``): iterating it
  replays the session's archive and yields :class:`EventBatch` es (``exchange``, ``pair``,
  ``events``): each pair's events in receive order across its batches, batches of different
  pairs interleaved. Memory is bounded: a pair's batch is yielded once it holds ``batch_size``
  events (it may exceed that by the events of one archived record, e.g. a snapshot), and every
  pair's once all hold ``4 * batch_size`` together. Every window opens
  with a snapshot of each synced book (at ``start_ns``, and at every UTC midnight within the
  window: a day's events stand alone, as tardis' files do; that snapshot is stamped with the
  opening time on both clocks), and every pair's events before a midnight are yielded before any
  after it; events at or after ``end_ns`` are not replayed. ``.stats`` counts what the replay saw.

How the changes are found: the archive is run through the Feeds the live connectors used (built,
called and timed as the archive replay does: ``recorder.replay.archive.ArchiveFeeds``), so gaps,
resyncs and checksum failures are handled exactly as live. Per pair one book is followed — the
one the live sampler stored (the connection named by the archive's ticks), else the newest open
connection's synced book — and while followed its class is swapped for a recording subclass
that notes each ``clear`` / ``load`` / ``apply`` (``apply_sided``) / ``truncate`` before doing it. Only this replay
does that; the live hot path never sees it. Whenever the followed book changes (a reconnect, a
rebuilt book), the new one is written whole as a snapshot.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recorder.archive.format import LineStats, iter_records, read_header, venue_archive_dir
from recorder.book import L2Book
from recorder.model import Trade
from recorder.names import PAIR_RE, SESSION_RE
from recorder.replay.archive import ArchiveFeeds, ArchiveReplayError, archive_headers

CLEAR, SNAPSHOT, UPDATE, TRADE = 0, 1, 2, 3
BID, ASK = 1, -1
BUY, SELL = 1, -1
NS_PER_DAY = 86_400_000_000_000

EVENT_DTYPE = np.dtype(
    [("kind", "u1"), ("side", "i1"), ("price", "f8"), ("qty", "f8"), ("exch_ns", "i8"), ("local_ns", "i8")]
)

_TRADE_SIDE = {"buy": BUY, "sell": SELL}


@dataclass
class ArchiveSession:
    exchange: str
    session: str
    files: list[tuple[Path, dict[str, Any]]]  # session order (``archive_headers``)
    pairs: list[str]
    first_ms: int  # the first file's first record (from its name)


@dataclass
class EventBatch:
    exchange: str
    pair: str
    events: np.ndarray  # EVENT_DTYPE, receive order


def archive_sessions(
    data_dir: str | Path, exchanges: Sequence[str] | None = None, sessions: Sequence[str] | None = None
) -> list[ArchiveSession]:
    """The archived sessions under ``data_dir``, by exchange then first record time."""
    root = Path(data_dir) / "archive"
    if not root.is_dir():
        return []
    found: list[ArchiveSession] = []
    for venue_dir in sorted(root.glob("exchange=*")):
        venue = venue_dir.name.partition("=")[2]
        if exchanges is not None and venue not in exchanges:
            continue
        by_session: dict[str, list[Path]] = {}
        for path in sorted(venue_archive_dir(data_dir, venue).glob("date=*/*.jsonl.zst")):
            header = read_header(path)
            if header is None or header.get("venue") != venue:
                continue
            session = str(header.get("session"))
            bad = [p for p in header.get("pairs", []) if not isinstance(p, str) or not PAIR_RE.fullmatch(p)]
            if not SESSION_RE.fullmatch(session) or bad:  # they name files and paths
                raise ArchiveReplayError(f"{path}: invalid session id or pair in its header")
            if sessions is None or session in sessions:
                by_session.setdefault(session, []).append(path)
        for session, paths in by_session.items():
            files = archive_headers(paths) or []
            pairs = list(dict.fromkeys(p for _, h in files for p in h.get("pairs", [])))
            first_ms = min(first_ms_of(p) for p, _ in files)
            found.append(ArchiveSession(venue, session, files, pairs, first_ms))
    return sorted(found, key=lambda s: (s.exchange, s.first_ms, s.session))


def _next_midnight(ns: int) -> int:
    return ns // NS_PER_DAY * NS_PER_DAY + NS_PER_DAY


def first_ms_of(path: Path) -> int:
    """``<session>-<first record ms>-<seq>.jsonl.zst`` -> the ms."""
    parts = path.name.removesuffix(".jsonl.zst").rsplit("-", 2)
    return int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else 0


# -- the recording books -----------------------------------------------------------------------


def _as_list(levels: Any) -> Any:
    return levels if levels is None or isinstance(levels, list | tuple) else list(levels)


class _Tap:
    """The changes of the followed books, as ops per pair until the end of the current record.

    An op is ``[code, bids, asks, exch_ms]``: ``code`` "c" (clear), "s" (levels of a snapshot
    load), "u" (level updates); ``exch_ms`` is the book's ``exchange_time_ms`` once the op is
    done, read when the next op starts or the record ends (Feeds set it after the change)."""

    def __init__(self) -> None:
        self.followed: dict[str, L2Book] = {}  # pair -> the book whose changes are exported
        self.ops: dict[str, list[list[Any]]] = {}
        self.touched: set[str] = set()  # pairs whose books (followed or not) changed in this record
        self.muted = 0
        self._classes: dict[tuple[type, str], type] = {}

    def op(self, book: L2Book, pair: str, code: str, bids: Any = None, asks: Any = None) -> None:
        self.touched.add(pair)
        if self.followed.get(pair) is not book:
            return  # a book built beside the followed one (a rebuild): checked after the record
        ops = self.ops.setdefault(pair, [])
        if ops:
            ops[-1][3] = book.exchange_time_ms
        if code == "u" and ops and ops[-1][0] == "c":
            code = "s"  # the first levels after a clear are the snapshot that restarts the book
        ops.append([code, bids, asks, None])

    def recording_class(self, base: type, pair: str) -> type:
        """``base`` (L2Book or a subclass) noting every change of a ``pair`` book into this tap."""
        key = (base, pair)
        cls = self._classes.get(key)
        if cls is not None:
            return cls
        tap = self

        def clear(book: L2Book) -> None:
            if not tap.muted:
                tap.op(book, pair, "c")
            base.clear(book)

        def load(book: L2Book, bids: Any, asks: Any, *rest: Any) -> None:
            bids, asks = _as_list(bids), _as_list(asks)
            if not tap.muted:
                tap.op(book, pair, "c")
                tap.op(book, pair, "s", bids, asks)
            tap.muted += 1
            try:
                base.load(book, bids, asks, *rest)
            finally:
                tap.muted -= 1

        def apply(book: L2Book, bids: Any, asks: Any, *rest: Any) -> None:
            # (a book may truncate inside apply: its ``truncate`` call is noted after the levels)
            bids, asks = _as_list(bids), _as_list(asks)
            if not tap.muted:
                tap.op(book, pair, "u", bids, asks)
            base.apply(book, bids, asks, *rest)

        def apply_sided(book: L2Book, levels: Any, bid: str, asks: tuple[str, ...]) -> None:
            if not tap.muted:
                b = [(u.price, u.qty) for u in levels if u.side == bid]
                a = [(u.price, u.qty) for u in levels if u.side in asks]
                if len(b) + len(a) == len(levels):  # (else it raises and the Feed drops the book: a clear)
                    tap.op(book, pair, "u", b, a)
            tap.muted += 1  # (its own ``apply`` of a side it loads is this op)
            try:
                base.apply_sided(book, levels, bid, asks)
            finally:
                tap.muted -= 1

        def truncate(book: L2Book, depth: int) -> None:
            if not tap.muted:
                gone_b, gone_a = _beyond(book, depth)
                if gone_b or gone_a:
                    tap.op(book, pair, "u", [(p, 0.0) for p in gone_b], [(p, 0.0) for p in gone_a])
            base.truncate(book, depth)

        cls = type(
            f"Recording{base.__name__}",
            (base,),
            {
                "__slots__": (),
                "clear": clear,
                "load": load,
                "apply": apply,
                "apply_sided": apply_sided,
                "truncate": truncate,
                "_base": base,
            },
        )
        self._classes[key] = cls
        return cls

    def follow(self, pair: str, book: L2Book | None) -> None:
        """Follow ``book`` for ``pair`` from now on (the previous one goes back to its class)."""
        old = self.followed.pop(pair, None)
        if old is not None and old is not book:
            old.__class__ = getattr(type(old), "_base", type(old))
        self.ops.pop(pair, None)
        if book is not None:
            base = getattr(type(book), "_base", type(book))
            book.__class__ = self.recording_class(base, pair)
            self.followed[pair] = book


def _beyond(book: L2Book, depth: int) -> tuple[list[float], list[float]]:
    """The bid and ask prices ``truncate(depth)`` drops (the worst levels past ``depth``)."""
    bk, ak = book._bid_keys, book._ask_keys  # noqa: SLF001 - read only, once per truncate
    return bk[: max(len(bk) - depth, 0)], [-k for k in ak[: max(len(ak) - depth, 0)]]


def book_levels(book: L2Book) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """Every level the book holds, best first: (bids, asks) as (price, qty)."""
    bids = sorted(book._bids.items(), reverse=True)  # noqa: SLF001
    asks = [(-k, q) for k, q in sorted(book._asks.items(), reverse=True)]  # noqa: SLF001
    return bids, asks


# -- the replay --------------------------------------------------------------------------------


@dataclass
class EventStats:
    records: int = 0
    frames: int = 0
    feed_errors: int = 0
    skipped_calls: int = 0
    bad_lines: int = 0
    truncated_inputs: list[str] = field(default_factory=list)
    holes: int = 0  # the archive's ``lost`` records (frames left out live): every book restarts after one
    events: dict[str, int] = field(default_factory=dict)  # pair -> events yielded


class ArchiveEvents:
    """The events of one archived session (see the module docstring)."""

    def __init__(
        self,
        session: ArchiveSession,
        pairs: Sequence[str] | None = None,
        start_ns: int | None = None,
        end_ns: int | None = None,
        batch_size: int = 65536,
        day_snapshots: bool = True,
    ) -> None:
        self.session = session
        self.pairs = [p for p in session.pairs if pairs is None or p in pairs]
        self.start_ns, self.end_ns = start_ns, end_ns
        self.batch_size = batch_size
        self.day_snapshots = day_snapshots
        self.stats = EventStats()
        self._out: dict[str, list[tuple]] = {p: [] for p in self.pairs}
        self._full: set[str] = set()  # pairs whose batch is to be yielded
        self._buffered = 0  # events in all pairs' batches

    def __iter__(self) -> Iterator[EventBatch]:
        head = self.session.files[0][1]
        # Quotes are left out: they are made from the book changes this replay exports.
        channels = [str(c) for c in head.get("channels", ["book"]) if c != "quotes"]
        self._feeds = ArchiveFeeds(False, self, channels)  # ``self`` takes the trades (emitter face)
        self._tap = _Tap()
        self._unresolved = set(self.pairs)  # pairs without a synced book: looked for after each record
        self._ns = 0
        wanted = set(self.pairs)
        next_open = self.start_ns  # the next window opening (None: the next midnight once known)
        try:
            for path, _ in self.session.files:
                if self.end_ns is not None and first_ms_of(path) * 1_000_000 >= self.end_ns:
                    break
                st = LineStats()
                ended = False
                for obj in iter_records(path, st):
                    ns = obj.get("ns")
                    if isinstance(ns, int):
                        if self.end_ns is not None and ns >= self.end_ns:
                            ended = True
                            break
                        if next_open is None and self.day_snapshots:
                            next_open = _next_midnight(ns)
                        if next_open is not None and ns >= next_open:
                            at = max(next_open, ns // NS_PER_DAY * NS_PER_DAY)  # days without records: skipped
                            self._open_window(at)
                            next_open = _next_midnight(at) if self.day_snapshots else None
                        self._ns = ns
                    self._record(obj, wanted)
                    yield from self._full_batches()
                self.stats.records += st.records
                self.stats.bad_lines += st.bad_lines
                if st.truncated:
                    self.stats.truncated_inputs.append(str(path))
                if ended:
                    break
            self.stats.frames = self._feeds.frames
            self.stats.feed_errors = self._feeds.feed_errors
            self.stats.skipped_calls = self._feeds.skipped_calls
            self.stats.holes = len(getattr(self._feeds, "holes", ()))
            for pair in self.pairs:
                if self._out[pair]:
                    yield self._batch(pair)
        finally:
            for pair in list(self._tap.followed):
                self._tap.follow(pair, None)

    # -- per record ----------------------------------------------------------------------------

    def _record(self, obj: dict[str, Any], wanted: set[str]) -> None:
        t = obj["t"]
        feeds, tap = self._feeds, self._tap
        src_before = dict(feeds.src) if t == "tick" else None
        pid_before = feeds.pid
        feeds.on_record(obj)
        if t in ("recv", "call"):
            check = (tap.touched & wanted) | self._unresolved
        elif t in ("close", "lost") or (t == "header" and feeds.pid != pid_before):
            check = wanted
        elif t == "tick":
            check = {p for p in wanted if feeds.src.get(p) != (src_before or {}).get(p)} | self._unresolved
        else:
            tap.touched.clear()
            return
        tap.touched.clear()
        for pair in check:
            self._resolve(pair)

    def _resolve(self, pair: str) -> None:
        """After a record: follow the pair's current book, write what changed."""
        tap = self._tap
        book = self._feeds.book(pair)
        followed = tap.followed.get(pair)
        if book is None:
            self._unresolved.add(pair)
            if followed is not None:
                self._flush(pair, followed)
            return
        if pair not in self._feeds.src:
            self._unresolved.add(pair)  # no tick names its source yet: the newest synced book wins
        else:
            self._unresolved.discard(pair)
        if book is followed:
            self._flush(pair, book)
            return
        tap.follow(pair, book)
        self._snapshot(pair, book, self._ns)

    def _flush(self, pair: str, book: L2Book) -> None:
        ops = self._tap.ops.pop(pair, None)
        if not ops:
            return
        ops[-1][3] = book.exchange_time_ms
        last_clear = max((i for i, op in enumerate(ops) if op[0] == "c"), default=0)
        local = self._ns
        if self.start_ns is not None and local < self.start_ns:
            return
        out = self._out[pair]
        before = len(out)
        for code, bids, asks, exch_ms in ops[last_clear:]:
            exch = local if exch_ms is None else int(exch_ms * 1_000_000)
            if code == "c":
                out.append((CLEAR, 0, 0.0, 0.0, exch, local))
                continue
            kind = SNAPSHOT if code == "s" else UPDATE
            for side, levels in ((BID, bids), (ASK, asks)):
                for lv in levels or ():
                    qty = float(lv[1])
                    if kind == SNAPSHOT and not qty:
                        continue
                    out.append((kind, side, float(lv[0]), qty, exch, local))
        self._grew(pair, len(out) - before)

    def _snapshot(self, pair: str, book: L2Book, local: int) -> None:
        """The whole book as a snapshot load, at ``local`` for both clocks: it is no venue message
        (a window opens, the followed book changed), so it has no venue time of its own."""
        if self.start_ns is not None and local < self.start_ns:
            return
        exch = local
        out = self._out[pair]
        out.append((CLEAR, 0, 0.0, 0.0, exch, local))
        bids, asks = book_levels(book)
        out += [(SNAPSHOT, BID, p, q, exch, local) for p, q in bids]
        out += [(SNAPSHOT, ASK, p, q, exch, local) for p, q in asks]
        self._grew(pair, 1 + len(bids) + len(asks))

    def _open_window(self, at_ns: int) -> None:
        """A window opens (the start, a UTC midnight): every followed book as a snapshot, and every
        pair's events so far yielded (a day's events are all out once the next day's start)."""
        for pair, book in self._tap.followed.items():
            self._flush(pair, book)
            self._snapshot(pair, book, at_ns)
        self._full.update(p for p, out in self._out.items() if out)

    # -- the emitter face ArchiveFeeds wires the Feeds' trades to ------------------------------

    def trade(self, trade: Trade) -> None:
        out = self._out.get(trade.pair)
        if out is None or (self.start_ns is not None and self._ns < self.start_ns):
            return
        exch = self._ns if trade.exchange_time_us is None else trade.exchange_time_us * 1000
        out.append((TRADE, _TRADE_SIDE.get(trade.side, 0), trade.price, trade.quantity, exch, self._ns))
        self._grew(trade.pair, 1)

    def quote(self, quote: object) -> None:
        """Quotes are not events: the book changes they come from are."""

    # -- batches -------------------------------------------------------------------------------

    def _grew(self, pair: str, n: int) -> None:
        """``n`` events were added to ``pair``'s batch: yield it when full, and every pair's when
        all pairs' batches together hold ``4 * batch_size`` (many pairs, each below the size)."""
        self._buffered += n
        if len(self._out[pair]) >= self.batch_size:
            self._full.add(pair)
        elif self._buffered >= 4 * self.batch_size:
            self._full.update(p for p, out in self._out.items() if out)

    def _full_batches(self) -> Iterator[EventBatch]:
        if self._full:
            for pair in sorted(self._full):
                yield self._batch(pair)
            self._full.clear()

    def _batch(self, pair: str) -> EventBatch:
        out = self._out[pair]
        events = np.array(out, dtype=EVENT_DTYPE)
        out.clear()
        self._buffered -= len(events)
        self.stats.events[pair] = self.stats.events.get(pair, 0) + len(events)
        return EventBatch(self.session.exchange, pair, events)


__all__ = [
    "ASK",
    "BID",
    "BUY",
    "CLEAR",
    "EVENT_DTYPE",
    "SELL",
    "SNAPSHOT",
    "TRADE",
    "UPDATE",
    "ArchiveEvents",
    "ArchiveReplayError",
    "ArchiveSession",
    "EventBatch",
    "archive_sessions",
]
