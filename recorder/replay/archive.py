"""Replay of a session's archive (``recorder/archive``): the live session recreated exactly.

The archive holds, in the order the venue process saw them, every frame of every connection, the
Feed calls the connector made besides frames (REST snapshots joined, resyncs, refetches) and the
sampler's ticks with the connection each stored book came from. Replaying builds each
connection's Feed as the live process built it, makes the same calls with the same receive
times, and:

* at the recorded interval (the default), samples at each recorded tick the book of the recorded
  connection: the live rows, every one equal (ticks, levels, flags, update ids, sequence numbers);
  the trades and quotes the Feeds emit (for the channels the capture stored) are the live ones too;
* at another ``--interval``, samples the same Feeds on that grid (a tick before the first record
  received at or after it, as ``engine.py`` does), each pair from the connection the live
  sampler last used, or the newest open one whose book is synced; ``--depth`` may differ in both.
"""

from __future__ import annotations

import importlib
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

from recorder.archive.format import LineStats, iter_records, payload_of, read_header
from recorder.archive.tap import RECORDED
from recorder.book import L2Book
from recorder.replay.pipeline import replay_pipeline
from recorder.sampler.emitter import RecordEmitter
from recorder.sampler.grid import next_tick_ms
from recorder.sampler.sampler import Sampler
from recorder.venues.binance_trades import TradeIds

_HOLES_LISTED = 50  # the summary lists the first ones and counts them all
_HTTP_KEPT = 256  # REST bodies kept for the Feed calls that refer to them (they follow closely)


class ArchiveReplayError(ValueError):
    """The archive cannot be replayed; one line for the user."""


def archive_headers(inputs: list[Path]) -> list[tuple[Path, dict[str, Any]]] | None:
    """The inputs in session order with their headers, when all are archive files; None when none
    is; an error for a mix."""
    found = [(p, read_header(p)) for p in inputs]
    archives = [(p, h) for p, h in found if h is not None]
    if not archives:
        return None
    if len(archives) != len(found):
        other = next(p for p, h in found if h is None)
        raise ArchiveReplayError(f"{other} is not an archive file: replay archive files apart from other captures")
    sessions = {h.get("session") for _, h in archives}
    if len(sessions) > 1:
        names = ", ".join(sorted(map(str, sessions)))
        raise ArchiveReplayError(f"the archive files belong to several sessions ({names}): give one session's files")
    return sorted(archives, key=lambda ph: (int(ph[1].get("file_seq", 0)), int(ph[1].get("ns", 0))))


def _feed_class(spec: str) -> type:
    module_name, _, name = spec.partition(":")
    if not module_name.startswith("recorder.venues.") or not name.isidentifier():
        raise ArchiveReplayError(f"the archive names an unknown Feed {spec!r}")
    try:
        cls = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError):
        raise ArchiveReplayError(f"the archive names an unknown Feed {spec!r}") from None
    return cls  # type: ignore[no-any-return]


class ArchiveFeeds:
    """The recorded connections' Feeds, seen by the Sampler as the venue's connector. A Feed that
    emits trades or quotes is wired to ``emitter`` for the channels the capture stored, as live."""

    def __init__(self, follow: bool, emitter: RecordEmitter | None = None, channels: list[str] | None = None) -> None:
        self.follow = follow  # True: the recorded ticks' sources; False: re-sampling
        self.emitter = emitter
        self.channels = channels or ["book"]
        self.trade_ids = TradeIds()  # shared by the venue's Feeds, as the live connector's
        self.tape: Any = None  # the same for the venues whose Feeds keep a trade tape
        self.feeds: dict[str, Any] = {}
        self.closed: set[str] = set()
        self.src: dict[str, str | None] = {}
        self.http: OrderedDict[int, bytes] = OrderedDict()
        self.frames = 0
        self.feed_errors = 0
        self.skipped_calls = 0
        self.holes: list[dict[str, Any]] = []  # the archive's ``lost`` records
        self.pid: object = None

    def on_record(self, obj: dict[str, Any]) -> None:
        t = obj["t"]
        if t == "recv":
            feed = self.feeds.get(obj.get("conn", ""))
            if feed is None:
                raise ArchiveReplayError(
                    f"frames of connection {obj.get('conn')!r} before its start: give every archive file "
                    "of the session from the first one"
                )
            self.frames += 1
            try:
                feed.on_frame(payload_of(obj), obj["ns"] / 1e6)
            except Exception:  # as live: a Feed bug is counted, the connection carries on
                self.feed_errors += 1
        elif t == "feed":
            cls = _feed_class(str(obj.get("cls")))
            kw = dict(obj.get("kw", {}))
            if "trade_ids" in kw:
                kw["trade_ids"] = self.trade_ids
            try:
                feed = self.feeds[obj["conn"]] = cls(*obj.get("args", []), counters=None, **kw)
            except (TypeError, ValueError) as exc:
                raise ArchiveReplayError(f"cannot build the Feed {obj.get('cls')}: {exc}") from None
            trades = getattr(feed, "trades", None)
            if trades is not None and hasattr(trades, "tape"):  # one trade tape per venue, as live
                if self.tape is None:
                    self.tape = type(trades.tape)(trades.tape.contiguous)
                trades.tape = self.tape
            if self.emitter is not None:
                if "trades" in self.channels and hasattr(feed, "on_trade"):
                    feed.on_trade = self.emitter.trade
                if "quotes" in self.channels and hasattr(feed, "on_quote"):
                    feed.on_quote = self.emitter.quote
        elif t == "close":
            self.closed.add(obj.get("conn", ""))
        elif t == "http":
            self.http[int(obj.get("seq", 0))] = payload_of(obj)
            while len(self.http) > _HTTP_KEPT:
                self.http.popitem(last=False)
        elif t == "call":
            self._call(obj)
        elif t == "tick":
            self.src.update(obj.get("src") or {})
        elif t == "lost":
            self._lost(obj)
        elif t == "header" and obj.get("pid") != self.pid:
            # A new process of the venue (the last one died): its predecessor's sockets are gone.
            self.pid = obj.get("pid")
            self.closed.update(self.feeds)
            self.src.clear()

    def _lost(self, obj: dict[str, Any]) -> None:
        """Records are missing here: what the Feeds would have seen is unknown, so every book
        waits for its next snapshot (a replay never serves a book the live one had but the
        archive cannot prove)."""
        hole = {k: obj.get(k) for k in ("why", "records", "frames", "from_ns")}
        hole["to_ns"] = obj.get("ns")
        self.holes.append(hole)
        for conn, feed in self.feeds.items():
            if conn not in self.closed:
                try:
                    feed.reset()
                except Exception:
                    self.feed_errors += 1

    def _call(self, obj: dict[str, Any]) -> None:
        feed = self.feeds.get(obj.get("conn", ""))
        name = obj.get("m")
        if feed is None or name not in RECORDED or not hasattr(feed, str(name)):
            self.skipped_calls += 1
            return
        args = []
        for a in obj.get("a", []):
            if isinstance(a, dict):
                body = self.http.get(int(a.get("ref", -1)))
                decode = getattr(feed, "decode_snapshot", None)
                if body is None or decode is None:
                    self.skipped_calls += 1
                    return
                a = decode(body)
            args.append(a)
        if not hasattr(feed, "now_ms"):
            getattr(feed, str(name))(*args)
            return
        at_ms = obj["ns"] / 1e6
        feed.now_ms = lambda: at_ms  # the Feed reads the clock as the live one did in this call
        try:
            getattr(feed, str(name))(*args)
        finally:
            del feed.now_ms

    # the connector face the Sampler uses ------------------------------------------------------

    def book(self, pair: str) -> L2Book | None:
        conn = self.src.get(pair)
        feed = self.feeds.get(conn) if conn else None
        if self.follow:
            return feed.book(pair) if feed is not None else None
        if feed is not None and conn not in self.closed:
            book = feed.book(pair)
            if book is not None:
                return book
        for c, f in reversed(self.feeds.items()):
            if c not in self.closed:
                book = f.book(pair)
                if book is not None:
                    return book
        return None

    def request_resync(self, pair: str, reason: str) -> None:
        """The live sampler's resyncs are in the archive (``call`` records): replayed from there."""


def replay_archive(opts: Any, files: list[tuple[Path, dict[str, Any]]]) -> dict[str, Any]:
    """Replay archive ``files`` (``archive_headers``) per ``opts`` (``engine.ReplayOptions``;
    ``interval_ms`` / ``depth`` 0: as recorded)."""
    started = time.monotonic()
    head = files[0][1]
    if head.get("venue") != opts.venue:
        raise ArchiveReplayError(f"the archive is of venue {head.get('venue')!r}, not {opts.venue!r}")
    recorded_pairs = list(dict.fromkeys(p for _, h in files for p in h.get("pairs", [])))
    pairs = [p for p in recorded_pairs if opts.pairs is None or p in opts.pairs]
    if opts.pairs:
        missing = [p for p in opts.pairs if p not in recorded_pairs]
        if missing:
            raise ArchiveReplayError(f"pairs not in the archive: {', '.join(missing)}")
    recorded_interval = int(head.get("interval_ms", 0))
    interval = opts.interval_ms or recorded_interval
    depth = opts.depth or int(head.get("depth", 20))
    follow = interval == recorded_interval

    stats: list[LineStats] = []
    with replay_pipeline(opts.venue, pairs, opts.session_id, opts.data_dir, opts.formats, opts.writer) as pipe:
        sampler_counters, writer_counters, ring, writer = (
            pipe.sampler_counters,
            pipe.writer_counters,
            pipe.ring,
            pipe.writer,
        )
        emitter = RecordEmitter(opts.venue, pairs, ring, sampler_counters)
        channels = [str(c) for c in head.get("channels", ["book"])]
        feeds = ArchiveFeeds(follow, emitter, channels)
        sampler = Sampler(opts.venue, pairs, depth, interval, feeds, ring, sampler_counters)  # type: ignore[arg-type]

        def sample(tick: int, now_ms: float) -> None:
            if "book" in channels or not follow:
                sampler.sample(tick, now_ms)
            while writer.step():  # keep the ring drained
                pass

        tick: int | None = None
        ticks = 0
        for path, _ in files:
            st = LineStats()
            stats.append(st)
            for obj in iter_records(path, st):
                ns = obj.get("ns")
                t = obj["t"]
                if not isinstance(ns, int) or t == "header":
                    feeds.on_record(obj)
                    continue
                if follow:
                    if t == "tick" and isinstance(obj.get("tick"), int):
                        feeds.on_record(obj)
                        sample(obj["tick"], ns / 1e6)
                        ticks += 1
                        continue
                else:
                    recv_ms = ns / 1e6
                    if tick is None:
                        tick = next_tick_ms(recv_ms, interval)
                    while recv_ms >= tick:
                        sample(tick, float(tick))
                        ticks += 1
                        tick += interval
                feeds.on_record(obj)
                if t == "recv" and feeds.frames % 1024 == 0:
                    while writer.step():  # trades and quotes fill the ring between ticks too
                        pass
        if writer.drain("replay") != 0:
            raise ArchiveReplayError("could not store every snapshot (see the log)")
        # (keys are (exchange, pair), or (dataset, exchange, pair) where the writer stores several)
        books = [(k[-2:], n) for k, n in writer.committed_seq.items() if len(k) == 2 or k[0] == "books"]
        written = {pair: n for (ex, pair), n in books if ex == opts.venue}
        summary = {
            "venue": opts.venue,
            "session_id": opts.session_id,
            "archive_session": head.get("session"),
            "inputs": [str(p) for p, _ in files],
            "data_dir": str(Path(opts.data_dir)),
            "mode": "recorded ticks" if follow else "resampled",
            "interval_ms": interval,
            "depth": depth,
            "records": sum(s.records for s in stats),
            "frames_read": feeds.frames,
            "bad_lines": sum(s.bad_lines for s in stats),
            "truncated_inputs": [str(p) for (p, _), s in zip(files, stats, strict=True) if s.truncated],
            "feed_errors": feeds.feed_errors,
            "skipped_calls": feeds.skipped_calls,
            "archive_holes": feeds.holes[:_HOLES_LISTED],
            "archive_hole_count": len(feeds.holes),
            "archive_lost_frames": sum(int(h.get("frames") or 0) for h in feeds.holes),
            "ticks": ticks,
            "snapshots_written": int(writer_counters.get("snapshots_written")),
            "trades_written": int(writer_counters.get("trades_written")),
            "quotes_written": int(writer_counters.get("quotes_written")),
            "files_written": int(writer_counters.get("files_written")),
            "missed_ticks": int(sampler_counters.get("missed_ticks")),
            "pairs": {
                p: {"snapshots_written": written.get(p, 0), "missed_ticks": int(sampler_counters.get(f"missed:{p}"))}
                for p in pairs
            },
        }
        if summary["snapshots_written"] + summary["trades_written"] + summary["quotes_written"] == 0:
            raise ArchiveReplayError(f"nothing stored: no book of {', '.join(pairs)} was synced at a tick")
        summary["elapsed_s"] = round(time.monotonic() - started, 3)
        return summary
