"""Replay a recorded raw capture through the live code path and store what a capture would have.

Records of every input and every socket are fed by local receive time (``timeline.py``: the
merge, the rotation rule, the time rules) to the venue's sans-I/O ``Feed`` (one per recorded
socket, exactly the class the live connector drives: parse, sync, sequence and checksum rules),
and a pair's book is taken from the newest socket that is live and synced (``_Feeds``). Books are
sampled by the live ``Sampler`` on the grid of the *recorded local clock* (a tick is sampled
before the first record received at or after it), pushed over a ``ShmRing`` and stored by the
live ``Writer`` in-process, so the files are the ones a live capture writes.

A book the Feed does not offer (not synced, gap, checksum failure until a fresh snapshot) is not
sampled: nothing between a fault and the next resync is stored.

What a venue module provides for replay: ``Feed(pairs, counters=None)``;
``capture_pairs(frames, url=None)`` (the pairs a recorded socket carries, used when ``--pairs``
is not given; a ValueError is a one-line "cannot replay this" for the user); ``snapshot_pair(url)``
for venues that join REST snapshots, and ``snapshot_limit_of(url)``, the depth a recorded snapshot
request asked for (a side holding fewer levels is complete; without it every side counts as cut).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from recorder.book import L2Book
from recorder.config import WriterConfig
from recorder.metrics import SharedCounters
from recorder.replay.pipeline import replay_pipeline
from recorder.replay.readers import Kind, Record
from recorder.replay.timeline import Segment, Socket, Timeline
from recorder.sampler.emitter import RecordEmitter
from recorder.sampler.grid import next_tick_ms
from recorder.sampler.sampler import Sampler
from recorder.venues import VENUES, venue_module
from recorder.venues.base import Feed, FeedStats
from recorder.writer.journal import journal_path
from recorder.writer.process import Writer

log = logging.getLogger("recorder.replay")

_DISCOVERY_CHUNK = 10_000  # frames per capture_pairs call in the discovery pass (bounds memory)
# A socket silent this long would have been dropped as stalled by the live connector
# (``stall_timeout_s`` default): its books are not served again before its next record.
STALL_MS = 30_000.0


class ReplayError(ValueError):
    """A replay cannot run (bad input, unknown venue, existing session); one line for the user."""


@dataclass
class ReplayOptions:
    venue: str
    inputs: list[Path]
    interval_ms: int = 1000  # 0: as recorded (an archive's; else 1000)
    depth: int = 20  # 0: as recorded (an archive's; else 20)
    formats: list[str] = field(default_factory=lambda: ["jsonl", "parquet"])
    data_dir: str = "data"
    session_id: str = "replay"
    pairs: list[str] | None = None  # None: every pair the capture carries
    writer: WriterConfig = field(default_factory=WriterConfig)


class _Socket:
    """A recorded socket's Feed and what the replay has seen of it so far."""

    __slots__ = ("id", "feed", "first_ms", "final_ms", "last_seen_ms", "closed")

    def __init__(self, sock: Socket, feed: Feed) -> None:
        self.id, self.feed = sock.id, feed
        self.first_ms, self.final_ms = sock.first_ms, sock.last_ms  # its first and last record
        self.last_seen_ms: float | None = None  # its latest record replayed so far
        self.closed = False


class _Feeds:
    """The venue's Feeds, one per recorded socket, seen by the Sampler as one connector.

    A pair's book is served by the newest socket carrying it that is live at the tick and synced.
    Live: started (a record replayed), not closed (a close record), not silent for longer than
    the live stall timeout, and not past its last record when a newer socket of the capture
    carries the pair (its data stopped: it is known dead). Otherwise the tick is missed with the
    cause of the newest started socket.
    """

    def __init__(self, module: ModuleType, sockets: list[Socket], pairs_of: Callable[[Socket], list[str]]) -> None:
        self.module = module
        self._snapshot_pair: Callable[[str], str | None] | None = getattr(module, "snapshot_pair", None)
        self._snapshot_limit: Callable[[str], int | None] = getattr(module, "snapshot_limit_of", lambda url: None)
        self.sockets = [_Socket(s, module.Feed(pairs_of(s))) for s in sockets]
        self.by_pair: dict[str, list[_Socket]] = {}
        for s in sorted(sockets, key=lambda s: s.first_ms, reverse=True):  # newest first
            for pair in pairs_of(s):
                self.by_pair.setdefault(pair, []).append(self.sockets[s.id])
        self.tick_ms = 0  # the tick being sampled
        self.serving: dict[str, _Socket] = {}
        self.served_now: list[str] = []  # pairs given a book at this tick
        self.stored_once: set[str] = set()  # pairs stored at least once (misses count from then)
        self.missed: dict[str, dict[str, int]] = {}  # pair -> cause -> ticks

    def on_record(self, r: Record, sock: int | None) -> None:
        if sock is not None:
            live = self.sockets[sock]
            live.last_seen_ms = r.recv_ms
            if r.kind is Kind.WS:
                live.feed.on_frame(r.payload, r.recv_ms)
                return
            if r.kind is Kind.CLOSE:
                live.closed = True
                return
        if r.kind is Kind.HTTP and r.url and self._snapshot_pair is not None:
            pair = self._snapshot_pair(r.url)
            if pair is None:
                return  # not a depth snapshot (instrument lists and the like)
            # Every open socket following the pair gets it; a Feed ignores it for a book already
            # synced, and keeps it for a socket whose first frame comes later.
            limit = self._snapshot_limit(r.url)
            for live in self.by_pair.get(pair, ()):
                if not live.closed:
                    live.feed.on_rest_snapshot(pair, r.payload, r.recv_ms, limit)

    # the Connector face the Sampler uses ----------------------------------------------------

    def book(self, pair: str) -> L2Book | None:
        t = self.tick_ms
        cause = None
        for n, live in enumerate(self.by_pair.get(pair, ())):
            seen = live.last_seen_ms
            if seen is None:
                continue  # not started yet
            if live.closed:
                cause = cause or "socket_closed"
            elif n and t > live.final_ms:
                cause = cause or "socket_ended"  # its data stopped; a newer socket carries the pair
            elif t - seen > STALL_MS:
                cause = cause or "socket_silent"
            else:
                book = live.feed.book(pair)
                if book is not None:
                    self.serving[pair] = live
                    self.served_now.append(pair)
                    return book
                cause = cause or "not_synced"
        if pair in self.stored_once:
            per = self.missed.setdefault(pair, {})
            cause = cause or "not_synced"
            per[cause] = per.get(cause, 0) + 1
        return None

    def request_resync(self, pair: str, reason: str) -> None:
        log.warning("event=resync_requested venue=%s pair=%s reason=%s", self.module.VENUE, pair, reason)
        live = self.serving.get(pair)
        resync = getattr(live.feed, "request_resync", None) if live is not None else None
        if resync is not None:
            resync(pair)


def _scan(module: ModuleType, timeline: Timeline, wanted: list[str] | None) -> list[str]:
    """The first pass: sockets, their pairs; the pairs to sample (one-line errors for captures
    that cannot give any book)."""
    finder = getattr(module, "capture_pairs", None)

    def on_frames(seg: Segment, frames: list[bytes]) -> None:
        if finder is None:
            return
        try:
            seg.pairs.update((p, None) for p in finder(frames, url=seg.url))
        except ValueError as exc:  # e.g. a market this venue id does not replay
            raise ReplayError(str(exc)) from None

    timeline.scan(on_frames, _DISCOVERY_CHUNK)
    names = ", ".join(str(p) for p in timeline.inputs)
    if not timeline.sockets:
        raise ReplayError(f"no WebSocket frames in {names}")
    if finder is None:
        if wanted is None:
            raise ReplayError(f"venue {module.VENUE!r} cannot list a capture's pairs: give --pairs")
        for sock in timeline.sockets:
            sock.pairs.update((p, None) for p in wanted)
    pairs = list(dict.fromkeys(p for s in timeline.sockets for p in s.pairs if wanted is None or p in wanted))
    if wanted:
        missing = [p for p in wanted if p not in pairs]
        if missing:
            raise ReplayError(f"pairs not in the capture: {', '.join(missing)}")
    if not pairs:
        raise ReplayError(f"the capture has no {module.VENUE} order-book frames")
    snapshot_pair = getattr(module, "snapshot_pair", None)
    if snapshot_pair is not None and not any(snapshot_pair(u) in pairs for u in timeline.http_urls):
        raise ReplayError(
            f"the capture has no REST depth snapshot for {', '.join(pairs[:5])}{' ...' if len(pairs) > 5 else ''}: "
            f"{module.VENUE} books start from one (give the NAME.http.* files recorded with NAME.ws.* as --input too)"
        )
    return pairs


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
    from recorder.replay.archive import ArchiveReplayError, archive_headers, replay_archive

    try:  # a session's archive (recorder/archive): replayed exactly, by replay/archive.py
        archive = archive_headers(opts.inputs)
        if archive is not None:
            return replay_archive(opts, archive)
    except ArchiveReplayError as exc:
        raise ReplayError(str(exc)) from None
    opts.interval_ms = opts.interval_ms or 1000  # 0: "as recorded", which only an archive knows
    opts.depth = opts.depth or 20
    timeline = Timeline(opts.inputs)
    pairs = _scan(module, timeline, opts.pairs)
    wanted = set(pairs)
    try:
        feeds = _Feeds(module, timeline.sockets, lambda s: [p for p in s.pairs if p in wanted])
    except ValueError as exc:  # a socket whose pairs no one Feed can follow
        raise ReplayError(f"cannot replay the capture: {exc}") from None

    with replay_pipeline(opts.venue, pairs, opts.session_id, opts.data_dir, opts.formats, opts.writer) as pipe:
        sampler_counters, ring, writer = pipe.sampler_counters, pipe.ring, pipe.writer
        sampler = Sampler(opts.venue, pairs, opts.depth, opts.interval_ms, feeds, ring, sampler_counters)
        emitter = RecordEmitter(opts.venue, pairs, ring, sampler_counters)
        for live in feeds.sockets:  # Feeds that know trades / quotes emit them (the live wiring)
            if hasattr(live.feed, "on_trade"):
                live.feed.on_trade = emitter.trade
            if hasattr(live.feed, "on_quote"):
                live.feed.on_quote = emitter.quote
        coverage = _Coverage(pairs, sampler_counters)
        ticks = _run(timeline, feeds, sampler, writer, opts.interval_ms, coverage)
        if writer.drain("replay") != 0:
            raise ReplayError("could not store every snapshot (see the log)")
        summary = _summary(opts, timeline, feeds, pairs, sampler_counters, writer, ticks, coverage)
        if summary["snapshots_written"] == 0:
            raise ReplayError(f"nothing stored: {_why_nothing(summary)}")
        summary["elapsed_s"] = round(time.monotonic() - started, 3)
        return summary


class _Coverage:
    """Per pair: the first and last tick stored (read from the sampler's per-pair counters)."""

    def __init__(self, pairs: list[str], sc: SharedCounters) -> None:
        self.values = sc.values
        self.slot = {p: sc.slot(f"samples:{p}") for p in pairs}
        self.count = {p: 0.0 for p in pairs}
        self.first: dict[str, int] = {}
        self.last: dict[str, int] = {}

    def after_tick(self, tick: int, feeds: _Feeds) -> None:
        values, count = self.values, self.count
        for pair in feeds.served_now:
            n = values[self.slot[pair]]
            if n > count[pair]:
                count[pair] = n
                self.first.setdefault(pair, tick)
                self.last[pair] = tick
                feeds.stored_once.add(pair)
        feeds.served_now.clear()


def _run(
    timeline: Iterable[tuple[Record, int | None]],
    feeds: _Feeds,
    sampler: Sampler,
    writer: Writer,
    interval_ms: int,
    coverage: _Coverage,
) -> list[int]:
    """Feed every record; sample each grid tick before the first record at or after it."""
    first_tick: int | None = None
    tick = 0
    for r, sock in timeline:
        if first_tick is None:
            first_tick = tick = next_tick_ms(r.recv_ms, interval_ms)
        while r.recv_ms >= tick:
            feeds.tick_ms = tick
            sampler.sample(tick, float(tick))
            coverage.after_tick(tick, feeds)
            while writer.step():  # keep the ring drained: replay runs far faster than real time
                pass
            tick += interval_ms
        feeds.on_record(r, sock)
    if first_tick is None:
        return []
    return [first_tick, tick - interval_ms] if tick > first_tick else []


def _merged_stats(feeds: _Feeds) -> FeedStats:
    total = FeedStats()
    for live in feeds.sockets:
        s = live.feed.stats
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
    timeline: Timeline,
    feeds: _Feeds,
    pairs: list[str],
    sc: SharedCounters,
    writer: Writer,
    ticks: list[int],
    coverage: _Coverage,
) -> dict[str, Any]:
    stats = _merged_stats(feeds)
    written = {pair: n for (ds, ex, pair), n in writer.committed_seq.items() if ds == "books" and ex == opts.venue}
    trades = {pair: n for (ds, ex, pair), n in writer.committed_seq.items() if ds == "trades" and ex == opts.venue}
    per_pair: dict[str, dict[str, Any]] = {}
    missed_total: dict[str, int] = {}
    for pair in pairs:
        per = stats.per_pair.get(pair, {})
        missed = int(sc.get(f"missed:{pair}"))
        causes = dict(feeds.missed.get(pair, {}))
        crossed = missed - sum(causes.values())  # the sampler's own misses (a crossed book)
        if crossed > 0:
            causes["crossed"] = crossed
        for cause, n in causes.items():
            missed_total[cause] = missed_total.get(cause, 0) + n
        per_pair[pair] = {
            "updates": per.get("updates", 0),
            "checksums_verified": per.get("checksums_ok", 0),
            "checksums_failed": per.get("checksums_failed", 0),
            "gaps": per.get("gaps", 0),
            "resyncs": per.get("resyncs", 0),
            "snapshots_written": written.get(pair, 0),
            "trades_written": trades.get(pair, 0),
            "trade_gaps": per.get("trade_gaps", 0),
            "missed_ticks": sum(causes.values()),
            "missed_by_cause": dict(sorted(causes.items())),
            "first_stored_tick_ms": coverage.first.get(pair),
            "last_stored_tick_ms": coverage.last.get(pair),
            "depth_short": int(sc.get(f"depth_short:{pair}")),
        }
    return {
        "venue": opts.venue,
        "session_id": opts.session_id,
        "inputs": [str(p) for p in opts.inputs],
        "data_dir": str(Path(opts.data_dir)),
        "interval_ms": opts.interval_ms,
        "records": sum(timeline.by_kind.values()),
        "records_by_kind": timeline.by_kind,
        "bad_lines": timeline.bad_lines,
        "truncated_inputs": timeline.truncated,
        "timestamps_backwards": timeline.time_counts.get("timestamps_backwards", 0),
        "timestamps_ahead": timeline.time_counts.get("timestamps_ahead", 0),
        "timestamps_undatable": timeline.time_counts.get("timestamps_undatable", 0),
        "sockets": [s.describe(opts.inputs) for s in timeline.sockets],
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
        # Trades (Binance @trade, or @aggTrade where a capture has only those) and quotes (every
        # change of a verified book's best bid/ask), through the live Feed and writer.
        "trades_written": int(writer.counters.get("trades_written")),
        "quotes_written": int(writer.counters.get("quotes_written")),
        "trade_gaps": sum(p.get("trade_gaps", 0) for p in stats.per_pair.values()),
        "files_written": int(writer.counters.get("files_written")),
        "missed_ticks": sum(missed_total.values()),
        "missed_by_cause": dict(sorted(missed_total.items())),
        "pairs": per_pair,
    }


def _why_nothing(summary: dict[str, Any]) -> str:
    """One line on why a replay stored no book."""
    if summary["gaps"] or summary["checksums_failed"]:
        return (
            f"no book of {', '.join(summary['pairs'])} stayed synced "
            f"({summary['gaps']} sequence gaps, {summary['checksums_failed']} failed checksums)"
        )
    return f"no book of {', '.join(summary['pairs'])} was ever synced by the capture's frames"
