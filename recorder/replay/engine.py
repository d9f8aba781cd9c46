"""Replay a recorded raw capture through the live code path and store what a capture would have.

Records are fed, in recorded order, to the venue's sans-I/O ``Feed`` (one per recorded socket,
exactly the class the live connector drives: parse, sync, sequence and checksum rules). Books are
sampled by the live ``Sampler`` on the grid of the *recorded local clock* (a tick is sampled
before the first record received at or after it), pushed over a ``ShmRing`` and stored by the
live ``Writer`` in-process, so the files are the ones a live capture writes.

A book the Feed does not offer (not synced, gap, checksum failure until a fresh snapshot) is not
sampled: nothing between a fault and the next resync is stored.

What a venue module provides for replay: ``Feed(pairs, counters=None)``;
``capture_pairs(frames, url=None)`` (the pairs a recorded socket carries, used when ``--pairs``
is not given); ``snapshot_pair(url)`` for venues that join REST snapshots.
"""

from __future__ import annotations

import heapq
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from recorder.book import L2Book
from recorder.config import WriterConfig
from recorder.metrics import SharedCounters
from recorder.replay.readers import CaptureReader, Kind, Record
from recorder.ring.shm_ring import ShmRing
from recorder.sampler.grid import next_tick_ms
from recorder.sampler.sampler import SAMPLER_FIELDS, Sampler, sampler_pair_fields
from recorder.venues import VENUES, venue_module
from recorder.venues.base import Feed, FeedStats
from recorder.writer.journal import journal_path
from recorder.writer.process import WRITER_COUNTER_FIELDS, Writer, WriterSpec

log = logging.getLogger("recorder.replay")

RING_BYTES = 16 * 1024 * 1024
_DISCOVERY_CHUNK = 10_000  # frames per capture_pairs call in the discovery pass (bounds memory)


class ReplayError(ValueError):
    """A replay cannot run (bad input, unknown venue, existing session); one line for the user."""


@dataclass
class ReplayOptions:
    venue: str
    inputs: list[Path]
    interval_ms: int = 1000
    depth: int = 20
    formats: list[str] = field(default_factory=lambda: ["jsonl", "parquet"])
    data_dir: str = "data"
    session_id: str = "replay"
    pairs: list[str] | None = None  # None: every pair the capture carries
    writer: WriterConfig = field(default_factory=WriterConfig)


class _Feeds:
    """The venue's Feeds, one per recorded socket, seen by the Sampler as one connector."""

    def __init__(self, module: ModuleType, pairs_for: Callable[[str], list[str]]) -> None:
        self.module = module
        self.pairs_for = pairs_for
        self.by_conn: dict[str, Feed] = {}
        self._snapshot_pair: Callable[[str], str | None] | None = getattr(module, "snapshot_pair", None)

    def feed(self, conn: str) -> Feed:
        feed = self.by_conn.get(conn)
        if feed is None:
            feed = self.by_conn[conn] = self.module.Feed(self.pairs_for(conn))
        return feed

    def on_record(self, r: Record) -> None:
        if r.kind is Kind.WS:
            self.feed(r.conn).on_frame(r.payload, r.recv_ms)
        elif r.kind is Kind.HTTP and r.url and self._snapshot_pair is not None:
            pair = self._snapshot_pair(r.url)
            if pair is None:
                return  # not a depth snapshot (instrument lists and the like)
            # Every socket following the pair gets it; a Feed ignores it for a book already synced.
            for conn, feed in self.by_conn.items():
                if pair in self.pairs_for(conn):
                    feed.on_rest_snapshot(pair, r.payload, r.recv_ms)

    # the Connector face the Sampler uses ----------------------------------------------------

    def book(self, pair: str) -> L2Book | None:
        for feed in self.by_conn.values():
            book = feed.book(pair)
            if book is not None:
                return book
        return None

    def request_resync(self, pair: str, reason: str) -> None:
        log.warning("event=resync_requested venue=%s pair=%s reason=%s", self.module.VENUE, pair, reason)
        for feed in self.by_conn.values():
            resync = getattr(feed, "request_resync", None)
            if resync is not None:
                resync(pair)


class _Capture:
    """The input files as one timeline, read as a stream (captures can be far larger than memory).

    Files are merged by local receive time; within a file the recorded order is kept.
    """

    def __init__(self, inputs: list[Path]) -> None:
        self.inputs = inputs
        self.by_kind: dict[str, int] = {}
        self.bad_lines = 0

    def __iter__(self) -> Iterator[Record]:
        readers = [CaptureReader(p) for p in self.inputs]
        by_kind: dict[str, int] = {}
        for r in heapq.merge(*readers, key=lambda r: r.recv_ms):
            by_kind[r.kind.value] = by_kind.get(r.kind.value, 0) + 1
            yield r
        self.by_kind = by_kind
        self.bad_lines = sum(reader.bad_lines for reader in readers)


def _discover_pairs(module: ModuleType, capture: _Capture, wanted: list[str] | None) -> dict[str, list[str]]:
    """conn -> the pairs its Feed follows (a first pass over the capture)."""
    finder = getattr(module, "capture_pairs", None)
    found: dict[str, dict[str, None]] = {}
    chunks: dict[str, list[bytes]] = {}
    urls: dict[str, str] = {}

    def flush(conn: str) -> None:
        if finder is not None:
            for pair in finder(chunks.pop(conn, []), url=urls.get(conn)):
                found[conn][pair] = None

    for r in capture:
        if r.kind is Kind.CONNECT and r.url:
            urls.setdefault(r.conn, r.url)
        elif r.kind is Kind.WS:
            found.setdefault(r.conn, {})
            chunk = chunks.setdefault(r.conn, [])
            chunk.append(r.payload)
            if len(chunk) >= _DISCOVERY_CHUNK:
                flush(r.conn)
    for conn in list(chunks):
        flush(conn)
    if not found:
        raise ReplayError(f"no WebSocket frames in {', '.join(str(p) for p in capture.inputs)}")
    if finder is None:
        if wanted is None:
            raise ReplayError(f"venue {module.VENUE!r} cannot list a capture's pairs: give --pairs")
        return {conn: list(wanted) for conn in found}
    return {conn: [p for p in pairs if wanted is None or p in wanted] for conn, pairs in found.items()}


def replay(opts: ReplayOptions) -> dict[str, Any]:
    """Run the replay to completion; returns the summary (also what the CLI prints)."""
    started = time.monotonic()
    if opts.venue not in VENUES:
        raise ReplayError(f"unknown venue {opts.venue!r}: known venues are {', '.join(sorted(VENUES))}")
    module = venue_module(opts.venue)
    if not hasattr(module, "Feed"):
        raise ReplayError(f"venue {opts.venue!r} has no Feed for replay yet")
    for path in opts.inputs:
        if not path.is_file():
            raise ReplayError(f"input {path} is not a readable file")
    if journal_path(opts.data_dir, opts.session_id).exists():
        raise ReplayError(f"session {opts.session_id!r} already has data in {opts.data_dir}: use another --session-id")
    capture = _Capture(opts.inputs)
    pairs_by_conn = _discover_pairs(module, capture, opts.pairs)
    pairs = list(dict.fromkeys(p for ps in pairs_by_conn.values() for p in ps))
    if opts.pairs:
        missing = [p for p in opts.pairs if p not in pairs]
        if missing:
            raise ReplayError(f"pairs not in the capture: {', '.join(missing)}")
    if not pairs:
        raise ReplayError(f"the capture has no {opts.venue} order-book frames")
    feeds = _Feeds(module, lambda conn: pairs_by_conn.get(conn, []))
    for conn in pairs_by_conn:
        feeds.feed(conn)  # up front: a recorded snapshot may precede its socket's first frame

    sampler_fields = list(SAMPLER_FIELDS) + [f for p in pairs for f in sampler_pair_fields(p)]
    sampler_counters = SharedCounters.create(sampler_fields)
    writer_counters = SharedCounters.create(WRITER_COUNTER_FIELDS)
    ring = ShmRing.create(RING_BYTES)
    try:
        w = opts.writer
        spec = WriterSpec(
            session_id=opts.session_id,
            data_dir=opts.data_dir,
            formats=opts.formats,
            rotate_snapshots=w.rotate_snapshots,
            rotate_seconds=w.rotate_seconds,
            rotate_bytes=int(w.rotate_mb * 1024 * 1024),
            rings={opts.venue: ring.name},
            counters_name=writer_counters.name,
            poll_interval_s=0.001,
        )
        writer = Writer(spec, {opts.venue: ring}, writer_counters)
        writer.recover()
        sampler = Sampler(opts.venue, pairs, opts.depth, opts.interval_ms, feeds, ring, sampler_counters)
        ticks = _run(capture, feeds, sampler, writer, opts.interval_ms)
        if writer.drain("replay") != 0:
            raise ReplayError("could not store every snapshot (see the log)")
        summary = _summary(opts, capture, feeds, pairs, sampler_counters, writer, ticks)
        summary["elapsed_s"] = round(time.monotonic() - started, 3)
        return summary
    finally:
        ring.close()
        sampler_counters.close()
        writer_counters.close()


def _run(records: Iterable[Record], feeds: _Feeds, sampler: Sampler, writer: Writer, interval_ms: int) -> list[int]:
    """Feed every record; sample each grid tick before the first record at or after it."""
    first_tick: int | None = None
    tick = 0
    for r in records:
        if first_tick is None:
            first_tick = tick = next_tick_ms(r.recv_ms, interval_ms)
        while r.recv_ms >= tick:
            sampler.sample(tick, float(tick))
            while writer.step():  # keep the ring drained: replay runs far faster than real time
                pass
            tick += interval_ms
        feeds.on_record(r)
    if first_tick is None:
        return []
    return [first_tick, tick - interval_ms] if tick > first_tick else []


def _merged_stats(feeds: _Feeds) -> FeedStats:
    total = FeedStats()
    for feed in feeds.by_conn.values():
        s = feed.stats
        total.frames += s.frames
        total.malformed += s.malformed
        total.checksums_ok += s.checksums_ok
        total.checksums_failed += s.checksums_failed
        total.gaps += s.gaps
        total.resyncs += s.resyncs
        for kind, n in s.kinds.items():
            total.kinds[kind] = total.kinds.get(kind, 0) + n
        for pair, per in s.per_pair.items():
            for what, n in per.items():
                total.pair(pair, what, n)
    return total


def _summary(
    opts: ReplayOptions,
    capture: _Capture,
    feeds: _Feeds,
    pairs: list[str],
    sc: SharedCounters,
    writer: Writer,
    ticks: list[int],
) -> dict[str, Any]:
    stats = _merged_stats(feeds)
    written = {pair: n for (ex, pair), n in writer.committed_seq.items() if ex == opts.venue}
    per_pair: dict[str, dict[str, int]] = {}
    for pair in pairs:
        per = stats.per_pair.get(pair, {})
        per_pair[pair] = {
            "updates": per.get("updates", 0),
            "checksums_verified": per.get("checksums_ok", 0),
            "checksums_failed": per.get("checksums_failed", 0),
            "gaps": per.get("gaps", 0),
            "resyncs": per.get("resyncs", 0),
            "snapshots_written": written.get(pair, 0),
            "missed_ticks": int(sc.get(f"missed:{pair}")),
            "depth_short": int(sc.get(f"depth_short:{pair}")),
        }
    return {
        "venue": opts.venue,
        "session_id": opts.session_id,
        "inputs": [str(p) for p in opts.inputs],
        "data_dir": str(Path(opts.data_dir)),
        "interval_ms": opts.interval_ms,
        "records": sum(capture.by_kind.values()),
        "records_by_kind": capture.by_kind,
        "bad_lines": capture.bad_lines,
        "frames_read": stats.frames,
        "frames_by_kind": dict(sorted(stats.kinds.items())),
        "malformed": stats.malformed,
        "checksums_verified": stats.checksums_ok,
        "checksums_failed": stats.checksums_failed,
        "gaps": stats.gaps,
        "resyncs": stats.resyncs,
        "ticks": int(sc.get("ticks")),
        "first_tick_ms": ticks[0] if ticks else None,
        "last_tick_ms": ticks[-1] if ticks else None,
        "snapshots_written": int(writer.counters.get("snapshots_written")),
        "depth_short": int(sc.get("depth_short")),
        "files_written": int(writer.counters.get("files_written")),
        "pairs": per_pair,
    }
