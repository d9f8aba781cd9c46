"""Every input of a replay as one timeline: records of all files and all sockets by local receive
time, each tagged with the recorded socket it belongs to.

* A *segment* is one socket's records in one file: a ``conn`` of a JSON-lines file (a ``connect``
  record for a ``conn`` already seen starts a new segment), the whole of a text or ``<unix ns>``
  file.
* A *socket* is one or more segments: a segment that opens with a ``connect`` record is a new
  socket; one that does not continues (a rotated file: the collector closed one file and went
  on writing the same socket into the next) the open socket of an earlier input whose data ended
  at or before the segment's first record and that has the same ``conn`` or, failing that, shares
  an order book with it (and no other URL). Continuing wrongly is caught by the venue's sequence
  or checksum rules; not continuing would lose every book of the rotated file.
* Time: each segment's clock only moves forward. A record dated before its segment's clock, or
  implausibly (before 2009, or more than a day past this machine's clock), or further ahead than
  ``JUMP_MS`` without most of the records after it agreeing (the last record of a segment: further
  than ``LONE_JUMP_MS``), keeps its place but is dated at the clock,
  and is counted (``timestamps_backwards`` / ``timestamps_ahead``): one bad line never moves time.
* File order is not time order (a JSON-lines file may hold whole sockets one after the other):
  each file is read by as few sequential *lanes* as keep every lane's records in time order (one,
  through a reorder buffer of ``REORDER_MS``, for sockets written as they arrive), and the lanes of
  all files are merged by time. Memory stays bounded: records are streamed, a lane holds at most
  ``CONFIRM`` records per segment and ``MAX_REORDER`` records back.
"""

from __future__ import annotations

import heapq
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

from recorder.replay.readers import CaptureReader, Kind, Record

MIN_PLAUSIBLE_MS = 1_230_768_000_000.0  # 2009-01-01: no capture of these feeds is older
AHEAD_OF_NOW_MS = 86_400_000.0  # a record dated more than a day past this machine's clock is wrong
JUMP_MS = 1_000.0  # a step forward longer than this must be confirmed by the records after it
CONFIRM = 16  # records after a jump that must mostly agree with it
MAX_EARLY = 1_000  # bad records held for the first good time of a segment (more are dropped, counted)
LONE_JUMP_MS = 60_000.0  # a segment's last record, with none after it to agree, may jump this far

# A file whose sockets interleave with records at most this far out of time order is read once
# through a reorder buffer (bounded in records too); one holding whole sockets one after another is
# read by one lane per block.
REORDER_MS = 2_000.0
MAX_REORDER = 200_000

SegmentKey = tuple[int, str, int]  # (input index, conn, n-th connect of that conn in the file)


class TimeCheck:
    """Dates one segment's records on a clock that never goes back and never jumps on one
    record's word (see the module doc). ``push`` a record, get the records decided so far."""

    __slots__ = ("clock", "held", "early", "counts", "max_ms")

    def __init__(self, counts: dict[str, int], max_ms: float) -> None:
        self.clock: float | None = None
        self.held: deque[Record] = deque()
        self.early: list[Record] = []  # bad records before the segment's first good one
        self.counts = counts
        self.max_ms = max_ms

    def push(self, r: Record) -> list[Record]:
        clock = self.clock
        if not self.held and clock is not None and clock <= r.recv_ms <= clock + JUMP_MS:
            self.clock = r.recv_ms  # the common case: no look-ahead needed
            return [r]
        self.held.append(r)
        return self._decide(final=False)

    def finish(self) -> list[Record]:
        return self._decide(final=True)

    def _plausible(self, t: float) -> bool:
        return MIN_PLAUSIBLE_MS <= t <= self.max_ms

    def _decide(self, final: bool) -> list[Record]:
        out: list[Record] = []
        held = self.held
        while held:
            r = held[0]
            t = r.recv_ms
            clock = self.clock
            if not self._plausible(t):
                self._count("timestamps_ahead" if t > self.max_ms else "timestamps_backwards")
                good = False
            elif clock is not None and t < clock:
                self._count("timestamps_backwards")
                good = False
            elif clock is None or t - clock > JUMP_MS:
                if len(held) <= CONFIRM and not final:
                    break  # wait for the records that confirm or refute the jump
                after = [x.recv_ms for x in islice(held, 1, CONFIRM + 1) if self._plausible(x.recv_ms)]
                behind = sum(1 for x in after if x < t - JUMP_MS)
                # A segment's first record must not lie far behind most of the records after it.
                early = sum(1 for x in after if x > t + LONE_JUMP_MS) if clock is None else 0
                # With nothing after it, a record may start a segment, or end one after a silence
                # of at most a minute (a last line 1 h ahead is not believed).
                good = (behind + early) * 2 < len(after) if after else clock is None or t - clock <= LONE_JUMP_MS
                if not good:
                    self._count("timestamps_backwards" if early * 2 >= len(after) > 0 else "timestamps_ahead")
            else:
                good = True
            held.popleft()
            if good:
                self.clock = t
                if self.early:  # bad records before the first good one: dated by it
                    out += [Record(t, e.conn, e.kind, e.payload, e.url) for e in self.early]
                    self.early.clear()
                out.append(r)
            elif self.clock is not None:
                out.append(Record(self.clock, r.conn, r.kind, r.payload, r.url))
            elif len(self.early) < MAX_EARLY:
                self.early.append(r)
            else:
                self._count("timestamps_undatable")  # dropped: nothing good to date it by
        if final and self.early:
            self.counts["timestamps_undatable"] = self.counts.get("timestamps_undatable", 0) + len(self.early)
            self.early.clear()
        return out

    def _count(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1


@dataclass
class Segment:
    key: SegmentKey
    first_idx: int  # record index in its file (file order)
    last_idx: int = 0
    first_ms: float = 0.0
    last_ms: float = 0.0
    records: int = 0
    ws: int = 0  # WebSocket frames received
    opens_with_connect: bool = False
    closed: bool = False
    url: str | None = None
    pairs: dict[str, None] = field(default_factory=dict)
    socket: int | None = None


@dataclass
class Socket:
    """One recorded WebSocket connection, over one or more files."""

    id: int
    conn: str
    url: str | None
    first_ms: float
    last_ms: float
    segments: list[Segment] = field(default_factory=list)
    pairs: dict[str, None] = field(default_factory=dict)
    closed: bool = False

    def describe(self, inputs: list[Path]) -> dict[str, object]:
        return {
            "conn": self.conn,
            "url": self.url,
            "inputs": list(dict.fromkeys(str(inputs[s.key[0]]) for s in self.segments)),
            "first_ms": round(self.first_ms, 3),
            "last_ms": round(self.last_ms, 3),
            "pairs": list(self.pairs),
            "closed": self.closed,
        }


def _segment_keys(records: Iterator[Record], index: int) -> Iterator[tuple[int, SegmentKey, Record]]:
    """(record index, segment key, record) in file order."""
    epochs: dict[str, int] = {}
    for i, r in enumerate(records):
        n = epochs.get(r.conn)
        if n is None:
            n = epochs[r.conn] = 0
        elif r.kind is Kind.CONNECT:
            n = epochs[r.conn] = n + 1
        yield i, (index, r.conn, n), r


class Timeline:
    """The first pass (``scan``) learns segments, sockets and lanes; iterating replays them."""

    def __init__(self, inputs: list[Path]) -> None:
        self.inputs = inputs
        self.segments: dict[SegmentKey, Segment] = {}
        self.sockets: list[Socket] = []
        self.bad_lines = 0
        self.truncated: list[str] = []
        self.by_kind: dict[str, int] = {}
        self.time_counts: dict[str, int] = {}  # the replay pass's (the scan's are the same)
        self._max_ms = time.time() * 1000.0 + AHEAD_OF_NOW_MS
        # (input, segment keys, last record index, through the reorder buffer)
        self._lanes: list[tuple[int, set[SegmentKey], int, bool]] = []
        self.url_hint: dict[str, str] = {}  # conn -> the URL its latest segment connected to
        self.http_urls: set[str] = set()  # the distinct URLs of recorded REST responses

    def _first_ms(self, index: int) -> float:
        """The first plausible timestamp of an input (its place among rotated files)."""
        for n, r in enumerate(CaptureReader(self.inputs[index])):
            if MIN_PLAUSIBLE_MS <= r.recv_ms <= self._max_ms or n >= CONFIRM:
                return r.recv_ms
        return 0.0

    # -- first pass ----------------------------------------------------------------------

    def scan(self, on_frames: Callable[[Segment, list[bytes]], None], chunk: int = 10_000) -> None:
        """Read every input once: segments (with their pairs: ``on_frames`` gets each segment's
        WebSocket frames in chunks), sockets and lanes. Inputs are scanned oldest first, so a
        rotated segment without a ``connect`` record knows its socket's URL (``url_hint``)."""
        for index in sorted(range(len(self.inputs)), key=self._first_ms):
            path = self.inputs[index]
            reader = CaptureReader(path)
            checks: dict[SegmentKey, TimeCheck] = {}
            frames: dict[SegmentKey, list[bytes]] = {}
            scratch: dict[str, int] = {}
            newest: float | None = None  # the file's latest time, moving at most JUMP_MS a record
            max_lag = 0.0  # how far a record lies behind the records before it in the file
            for i, key, r in _segment_keys(iter(reader), index):
                t = r.recv_ms
                if MIN_PLAUSIBLE_MS <= t <= self._max_ms:
                    if newest is None:
                        newest = t
                    else:
                        max_lag = max(max_lag, newest - t)
                        newest = max(newest, min(t, newest + JUMP_MS))
                seg = self.segments.get(key)
                if seg is None:
                    seg = self.segments[key] = Segment(key, i, opens_with_connect=r.kind is Kind.CONNECT)
                    seg.url = None if seg.opens_with_connect else self.url_hint.get(r.conn)
                    checks[key] = TimeCheck(scratch, self._max_ms)
                seg.last_idx = i
                for d in checks[key].push(r):
                    self._note(seg, d, frames, on_frames, chunk)
            for key, check in checks.items():
                for d in check.finish():
                    self._note(self.segments[key], d, frames, on_frames, chunk)
            for key, rest in frames.items():
                on_frames(self.segments[key], rest)
            for key in checks:
                if self.segments[key].url:
                    self.url_hint[key[1]] = self.segments[key].url  # type: ignore[assignment]
            self.bad_lines += reader.bad_lines
            if reader.truncated:
                self.truncated.append(str(path))
            self._plan_lanes(index, max_lag)
        self._join_sockets()

    def _note(
        self,
        seg: Segment,
        r: Record,
        frames: dict[SegmentKey, list[bytes]],
        on_frames: Callable[[Segment, list[bytes]], None],
        chunk: int,
    ) -> None:
        if seg.records == 0:
            seg.first_ms = r.recv_ms
        seg.records += 1
        seg.last_ms = r.recv_ms
        if r.url and (seg.url is None or r.kind is Kind.CONNECT) and r.kind in (Kind.CONNECT, Kind.SENT):
            seg.url = r.url
        if r.kind is Kind.CLOSE:
            seg.closed = True
        elif r.kind is Kind.HTTP and r.url and len(self.http_urls) < 100_000:
            self.http_urls.add(r.url)
        elif r.kind is Kind.WS:
            seg.ws += 1
            batch = frames.setdefault(seg.key, [])
            batch.append(r.payload)
            if len(batch) >= chunk:
                on_frames(seg, frames.pop(seg.key))

    def _plan_lanes(self, index: int, max_lag: float) -> None:
        """Few sequential readers of one file, each yielding its records in time order: one, when
        its sockets interleave in time order (a reorder buffer mends small displacements); else
        one per run of sockets that follow one another in the file and in time."""
        segs = sorted((s for s in self.segments.values() if s.key[0] == index), key=lambda s: s.first_idx)
        lanes: list[tuple[set[SegmentKey], list[float]]] = []  # (keys, [last index, last ms])
        for seg in segs:
            fits = [
                (tail[1], n) for n, (_, tail) in enumerate(lanes) if tail[0] < seg.first_idx and tail[1] <= seg.first_ms
            ]
            if fits:
                keys, tail = lanes[max(fits)[1]]
            else:
                keys, tail = set(), [0.0, 0.0]
                lanes.append((keys, tail))
            keys.add(seg.key)
            tail[0], tail[1] = seg.last_idx, seg.last_ms
        if len(lanes) > 1 and max_lag <= REORDER_MS:
            last = max(int(tail[0]) for _, tail in lanes)
            self._lanes.append((index, {s.key for s in segs}, last, True))
            return
        self._lanes += [(index, keys, int(tail[0]), False) for keys, tail in lanes]

    def _join_sockets(self) -> None:
        """Segments -> sockets (the rotation rule in the module doc)."""
        order = sorted(self.segments.values(), key=lambda s: (s.first_ms, s.key[0], s.first_idx))
        for seg in order:
            if seg.ws == 0 and not seg.opens_with_connect:
                continue  # REST responses and the like: routed by what they are, not by socket
            target = None if seg.opens_with_connect else self._continued(seg)
            if target is None:
                target = Socket(len(self.sockets), seg.key[1], seg.url, seg.first_ms, seg.last_ms)
                self.sockets.append(target)
            target.segments.append(seg)
            target.pairs.update(seg.pairs)
            target.last_ms = max(target.last_ms, seg.last_ms)
            target.closed = target.closed or seg.closed
            target.url = target.url or seg.url
            seg.socket = target.id

    def _continued(self, seg: Segment) -> Socket | None:
        best: tuple[tuple[bool, int, float], Socket] | None = None
        for sock in self.sockets:
            tail = sock.segments[-1]
            if sock.closed or tail.key[0] == seg.key[0] or sock.last_ms > seg.first_ms:
                continue
            if sock.url and seg.url and sock.url != seg.url:
                continue
            same_conn = sock.conn == seg.key[1]
            shared = len(sock.pairs.keys() & seg.pairs.keys())
            if not same_conn and not shared:
                continue
            rank = (same_conn, shared, sock.last_ms)
            if best is None or rank > best[0]:
                best = (rank, sock)
        return best[1] if best else None

    # -- second pass ---------------------------------------------------------------------

    def __iter__(self) -> Iterator[tuple[Record, int | None]]:
        """(record, socket id or None) for every record of every input, by local receive time."""
        self.time_counts = {}
        self.by_kind = {}
        lanes = [(self._mixed if mixed else self._lane)(index, keys, last) for index, keys, last, mixed in self._lanes]
        by_kind = self.by_kind
        for r, sock in heapq.merge(*lanes, key=lambda item: item[0].recv_ms):
            by_kind[r.kind.value] = by_kind.get(r.kind.value, 0) + 1
            yield r, sock

    def _lane(self, index: int, keys: set[SegmentKey], last_idx: int) -> Iterator[tuple[Record, int | None]]:
        checks = {key: TimeCheck(self.time_counts, self._max_ms) for key in keys}
        socket_of = {key: self.segments[key].socket for key in keys}
        current: SegmentKey | None = None
        for i, key, r in _segment_keys(iter(CaptureReader(self.inputs[index])), index):
            if key not in keys:
                if i >= last_idx:
                    break
                continue
            if key != current and current is not None:
                # Segments of a lane follow one another: the one before is complete.
                for d in checks[current].finish():
                    yield d, socket_of[current]
            current = key
            for d in checks[key].push(r):
                yield d, socket_of[key]
            if i >= last_idx:
                break
        if current is not None:
            for d in checks[current].finish():
                yield d, socket_of[current]

    def _mixed(self, index: int, keys: set[SegmentKey], last_idx: int) -> Iterator[tuple[Record, int | None]]:
        """A file whose sockets interleave: its records by time through a reorder buffer (each
        socket's own order kept: its dated times never go back, ties keep file order)."""
        checks = {key: TimeCheck(self.time_counts, self._max_ms) for key in keys}
        socket_of = {key: self.segments[key].socket for key in keys}
        ends = {self.segments[key].last_idx: key for key in keys}
        heap: list[tuple[float, int, Record, int | None]] = []
        seq = 0
        newest = -1.0
        for i, key, r in _segment_keys(iter(CaptureReader(self.inputs[index])), index):
            decided = checks[key].push(r)
            if ends.get(i) == key:
                decided += checks[key].finish()  # the segment's last record: nothing held back
            for d in decided:
                heapq.heappush(heap, (d.recv_ms, seq, d, socket_of[key]))
                seq += 1
                newest = max(newest, d.recv_ms)
            while heap and (heap[0][0] <= newest - REORDER_MS or len(heap) > MAX_REORDER):
                _, _, d, sock = heapq.heappop(heap)
                yield d, sock
            if i >= last_idx:
                break
        for key, check in checks.items():
            for d in check.finish():
                heapq.heappush(heap, (d.recv_ms, seq, d, socket_of[key]))
                seq += 1
        while heap:
            _, _, d, sock = heapq.heappop(heap)
            yield d, sock
