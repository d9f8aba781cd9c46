"""Where the live path meets the archive: the hooks the connection code calls.

The venue process installs one ``Archive`` (``install``); without one every hook is a no-op and
the live path runs as before (``archived_feed`` returns the bare Feed, ``tap_of`` None).

* ``archived_feed(cls, *args, counters=..., **kw)`` builds a connection's Feed: with an archive, a
  ``feed`` record (how to build the same Feed again) and an ``ArchivedFeed`` proxy that records
  every call that changes the Feed's state besides a frame (``RECORDED``), so a replay makes the
  same calls at the same point of the frame stream.
* The connection's ``ConnTap`` (``tap_of(feed)``) records what crossed the socket: ``recv`` (before
  the Feed sees the frame, with the receive time the Feed is given), ``send``, ``connect``, ``close``.
* ``Archive.http`` records a REST response; ``bind`` ties the object decoded from it to it.
* ``SampledConnector`` is the connector the sampler sees: each tick becomes a ``tick`` record with
  the connection each stored book came from.
"""

from __future__ import annotations

import os
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from recorder.archive.queue import RECORD_OVERHEAD, RecordQueue, record_size

# Feed methods that change its state besides ``on_frame``; the proxy records them.
RECORDED = (
    "invalidate",
    "reset",
    "request_resync",
    "snapshot_in_flight",
    "on_snapshot",
    "begin_refetch",
    "on_refetch",
    "end_refetch",
)
_MAX_BOUND = 1024  # decoded REST bodies waiting to be handed to a Feed


class Archive:
    """The process's record queue (``ArchiveWriter.queue``) plus the ids that tie records together."""

    def __init__(self, queue: RecordQueue) -> None:
        self.queue = queue  # bounded; the writer's thread takes from its other end
        self.prefix = str(os.getpid())
        self._conns = 0
        self._http = 0
        self.last_ns = 0
        self.last_http = 0
        self._bound: OrderedDict[int, int] = OrderedDict()  # id(decoded body) -> http seq
        # conn -> its Feed, while the Feed lives (a failed connection attempt's goes with it).
        self.feeds: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()
        self.held: list[tuple] | None = None  # records made while a tick is being sampled

    def now(self) -> int:
        ns = time.time_ns()
        if ns < self.last_ns:  # the wall clock stepped back: keep the archive's order in time
            ns = self.last_ns
        self.last_ns = ns
        return ns

    def add(self, record: tuple) -> None:
        if self.held is not None:
            self.held.append(record)
        else:
            self.queue.put(record, record_size(record))

    def new_conn(self) -> str:
        self._conns += 1
        return f"{self.prefix}.{self._conns}"

    def http(self, url: str, status: int | None, body: bytes, conn: str = "") -> int:
        self._http += 1
        self.last_http = self._http
        self.add(("http", conn, self.now(), url, status, body, self._http))
        return self._http

    def bind(self, decoded: object, seq: int | None = None) -> None:
        """``decoded`` was decoded from the body of http record ``seq`` (default: the latest)."""
        self._bound[id(decoded)] = self.last_http if seq is None else seq
        while len(self._bound) > _MAX_BOUND:
            self._bound.popitem(last=False)

    def arg(self, value: Any) -> Any:
        if value is None or isinstance(value, str | int | float | bool):
            return value
        ref = self._bound.pop(id(value), None)
        if ref is not None:
            return {"ref": ref}
        # Never break the live path: the replay reports such a call as one it cannot make.
        return {"unarchived": type(value).__name__}


_current: Archive | None = None


def install(archive: Archive | None) -> None:
    global _current
    _current = archive


def current() -> Archive | None:
    return _current


class ConnTap:
    """One connection's records."""

    __slots__ = ("archive", "conn", "url")

    def __init__(self, archive: Archive, conn: str) -> None:
        self.archive, self.conn, self.url = archive, conn, ""

    def recv(self, payload: bytes) -> int:
        """Record a received frame; returns its receive time (ns) to give the Feed."""
        a = self.archive
        ns = time.time_ns()
        if ns < a.last_ns:
            ns = a.last_ns
        a.last_ns = ns
        if a.held is not None:
            a.held.append(("recv", self.conn, ns, payload))
        else:
            a.queue.put(("recv", self.conn, ns, payload), len(payload) + RECORD_OVERHEAD)
        return ns

    def send(self, payload: bytes) -> None:
        self.archive.add(("send", self.conn, self.archive.now(), payload))

    def connect(self, url: str) -> None:
        self.url = url
        self.archive.add(("connect", self.conn, self.archive.now(), url))

    def close(self) -> None:
        self.archive.add(("close", self.conn, self.archive.now()))
        self.archive.feeds.pop(self.conn, None)


class ArchivedFeed:
    """A Feed whose state-changing calls are recorded (see ``RECORDED``); every other attribute is
    the Feed's own, read and set (the hot ``on_frame`` and ``book`` are bound straight through)."""

    def __init__(self, feed: Any, tap: ConnTap) -> None:
        own = object.__setattr__
        own(self, "_feed", feed)
        own(self, "archive_tap", tap)
        own(self, "on_frame", feed.on_frame)
        own(self, "book", feed.book)
        own(self, "wants_snapshot", feed.wants_snapshot)
        own(self, "stats", feed.stats)
        for name in RECORDED:
            method = getattr(feed, name, None)
            if method is not None:
                own(self, name, self._recorded(name, method))

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._feed, name, value)  # e.g. a callback the connector wires into the Feed

    def _recorded(self, name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        tap, feed = self.archive_tap, self._feed
        clocked = hasattr(feed, "now_ms")

        def call(*args: Any) -> Any:
            a = tap.archive
            ns = a.now()
            a.add(("call", tap.conn, ns, name, [a.arg(v) for v in args]))
            if not clocked:
                return method(*args)
            # What the call dates by the clock (a quote at a snapshot's join) gets the recorded
            # time, which a replay gives it again.
            feed.now_ms = lambda: ns / 1e6
            try:
                return method(*args)
            finally:
                del feed.now_ms

        return call

    def __getattr__(self, name: str) -> Any:
        return getattr(self._feed, name)


def archived_feed(cls: type, *args: Any, counters: Any = None, **kw: Any) -> Any:
    """``cls(*args, counters=counters, **kw)``, recorded when an archive is installed."""
    feed = cls(*args, counters=counters, **kw)
    a = _current
    if a is None:
        return feed
    tap = ConnTap(a, a.new_conn())
    spec = {"cls": f"{cls.__module__}:{cls.__qualname__}", "args": [_plain(v) for v in args]}
    spec["kw"] = {k: _plain(v) for k, v in kw.items()}
    a.add(("feed", tap.conn, a.now(), spec))
    proxy = ArchivedFeed(feed, tap)
    a.feeds[tap.conn] = feed
    return proxy


def _plain(value: Any) -> Any:
    """A Feed argument as JSON; an object (shared state such as a trade-id registry) is recorded
    as null, and the replay gives the Feed its own (``replay/archive.py``)."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return None


def tap_of(feed: object) -> ConnTap | None:
    return getattr(feed, "archive_tap", None) if isinstance(feed, ArchivedFeed) else None


class SampledConnector:
    """The venue's connector as the sampler sees it, with ``archive_tick_begin`` / ``_end`` hooks:
    the sampler's reads of one tick become a ``tick`` record naming each book's connection, and
    what the sampling changed (``call`` records) follows it."""

    def __init__(self, connector: Any, archive: Archive) -> None:
        self._connector, self._archive = connector, archive
        self._src: dict[str, str | None] = {}  # pair -> conn of the book stored at the last tick
        self._changed: dict[str, str | None] = {}
        self.request_resync = connector.request_resync

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connector, name)

    def book(self, pair: str) -> Any:
        book = self._connector.book(pair)
        last = self._src.get(pair, "")
        if book is None:
            conn = None
        else:
            feeds = self._archive.feeds
            feed = feeds.get(last) if last else None
            if feed is not None and feed.book(pair) is book:
                return book
            conn = next((c for c, f in reversed(list(feeds.items())) if f.book(pair) is book), "?")
        if conn != last:
            self._src[pair] = self._changed[pair] = conn
        return book

    def archive_tick_begin(self, tick_ms: int) -> None:
        self._archive.held = []

    def archive_tick_end(self, tick_ms: int) -> None:
        a = self._archive
        held, a.held = a.held or [], None
        changed, self._changed = self._changed, {}
        put = a.queue.put
        put(("tick", "", a.now(), tick_ms, changed), RECORD_OVERHEAD)
        for record in held:
            put(record, record_size(record))
