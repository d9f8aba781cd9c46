"""What every venue connector shares: the interface to the venue process, backoff, counters."""

from __future__ import annotations

import logging
import random
import time
from array import array
from typing import Annotated, Protocol

import msgspec

from recorder.book import L2Book
from recorder.config import VenueConfig
from recorder.metrics import SharedCounters

# Counters every connector keeps (summed over the session by the supervisor).
CONNECTOR_FIELDS = [
    "messages",
    "bytes",
    "malformed",
    "resyncs",
    "gaps",
    "reconnects",
    "planned_reconnects",
    "stalls",
    "snapshots_fetched",
    "rest_errors",
    "http_429",
    "http_418",
    "connected",
    "lag_alerts",  # episodes of the feed falling behind (see LagMonitor)
    "lagging",  # 1 while it is behind
    # Checksum venues (Kraken, OKX): verified / failed checksums and per-symbol resubscribes.
    "checksums_ok",
    "checksum_failures",
    "resubscribes",
    "connections",  # WebSocket connections the venue's pairs are spread over
    "rest_weight_used",  # the limiter's estimate of the venue's count for our IP
    "rest_queue",  # REST requests waiting for budget
    "buffered_diffs",  # diffs held by books waiting for their snapshot (bounded per book)
]


# A price or quantity the venue prints as decimal text, decoded straight to float by msgspec in C
# (its decoder built with ``strict=False``), so no Python float() runs per level. NaN, infinities
# and negative numbers fail decoding: the frame is malformed, never a level in a book.
WireFloat = Annotated[float, msgspec.Meta(ge=0.0, lt=1e300)]
FloatLevel = tuple[WireFloat, WireFloat]


def pair_fields(pair: str) -> list[str]:
    # (checksum_failures:<pair> is a sampler pair field: its miss log names the cause)
    return [f"synced:{pair}", f"resyncs:{pair}", f"gaps:{pair}"]


class Connector(Protocol):
    """The interface the venue process uses; every venue module provides one of these."""

    venue: str

    async def run(self) -> None: ...

    async def close(self) -> None: ...

    def book(self, pair: str) -> L2Book | None:
        """The pair's book if it is synced and verified right now, else None."""

    def request_resync(self, pair: str, reason: str) -> None:
        """The sampler found the book unusable (e.g. crossed): resync that pair only."""


class UpdateCount:
    """What a Feed's hot path counts as slot adds, folded into ``FeedStats`` (and its live counters)
    when they are read or flushed: ``n`` updates of ``pair`` of frame kind ``kind`` (no kind:
    frames that are no update), each its own frame of ``nbytes`` together if ``framed``, and
    ``checked``: the verified checksums among them (``per_pair[pair]["checksums_ok"]``). A Feed
    whose frame is one update counts it with two adds, ``n += 1; nbytes += size``; a Feed whose
    frames carry several updates counts frames and updates in separate slots.
    """

    __slots__ = ("kind", "pair", "framed", "n", "nbytes", "checked")

    def __init__(self, kind: str, pair: str, framed: bool = False) -> None:
        self.kind = kind
        self.pair = pair
        self.framed = framed
        self.n = 0
        self.nbytes = 0
        self.checked = 0


class FeedStats:
    """What a Feed saw; replay prints it, live connectors mirror it into shared counters.

    The event methods (``frame``, ``gap``, ``resync``, ...) count into both: a Feed calls them,
    and a live connector passes its :class:`Counters` so the supervisor sees the same figures.
    Frames, their bytes and updates are counted per frame in ``UpdateCount`` slots (no float
    arithmetic on the counters per frame) and reach the counters at ``flush``, which reading
    ``frames``, ``kinds`` or ``per_pair`` does first; the live connector flushes its Feed's stats
    every turn of its watch loop (a few times a second: the supervisor reads them once a second)
    and when the socket closes.
    """

    def __init__(self, counters: Counters | None = None) -> None:
        self.counters = counters if counters is not None else Counters(None)
        self._frames = 0
        self._kinds: dict[str, int] = {}  # frame kind (snapshot, update, heartbeat, ...) -> count
        self.malformed = 0
        self.checksums_ok = 0
        self.checksums_failed = 0
        self.gaps = 0
        self.resyncs = 0
        self._per_pair: dict[str, dict[str, int]] = {}  # pair -> {"gaps": n, "resyncs": n, ...}
        self._counts: list[UpdateCount] = []  # hot-path counts not yet folded into the two dicts
        self.frame_count = self.update_count("", "", framed=True)  # frames, not updates (``frame``)

    @property
    def frames(self) -> int:
        self.flush()
        return self._frames

    @frames.setter
    def frames(self, n: int) -> None:
        self.flush()
        self._frames = n

    @property
    def kinds(self) -> dict[str, int]:
        self.flush()
        return self._kinds

    @property
    def per_pair(self) -> dict[str, dict[str, int]]:
        self.flush()
        return self._per_pair

    def update_count(self, kind: str, pair: str, framed: bool = False) -> UpdateCount:
        """A slot for a hot path: updates of ``pair`` in ``kind`` frames, each a frame if ``framed``."""
        count = UpdateCount(kind, pair, framed)
        self._counts.append(count)
        return count

    def flush(self) -> None:
        """Fold the hot paths' counts into the stats and the counters."""
        kinds, per_pair = self._kinds, self._per_pair
        frames = nbytes = checked = 0
        for c in self._counts:
            n = c.n
            if n:
                c.n = 0
                if c.framed:
                    frames += n
                    nbytes += c.nbytes
                    c.nbytes = 0
                if c.kind:
                    kinds[c.kind] = kinds.get(c.kind, 0) + n
                    per = per_pair.setdefault(c.pair, {})
                    per["updates"] = per.get("updates", 0) + n
            n = c.checked
            if n:
                c.checked = 0
                checked += n
                if c.kind:  # (``frame_count`` carries ``checksum``'s, already in ``per_pair``)
                    per = per_pair.setdefault(c.pair, {})
                    per["checksums_ok"] = per.get("checksums_ok", 0) + n
        if frames:
            self._frames += frames
            self.counters.incr("messages", frames)
            self.counters.incr("bytes", nbytes)
        if checked:
            self.counters.incr("checksums_ok", checked)

    def kind(self, name: str) -> None:
        self._kinds[name] = self._kinds.get(name, 0) + 1

    def pair(self, pair: str, what: str, n: int = 1) -> None:
        per = self._per_pair.setdefault(pair, {})
        per[what] = per.get(what, 0) + n

    def update(self, kind: str, pair: str) -> None:
        """``kind(kind)`` and ``pair(pair, "updates")`` in one call (once per venue update)."""
        kinds = self._kinds
        kinds[kind] = kinds.get(kind, 0) + 1
        per = self._per_pair.get(pair)
        if per is None:
            per = self._per_pair[pair] = {}
        per["updates"] = per.get("updates", 0) + 1

    def update_frame_of(self, nbytes: int, count: UpdateCount) -> None:
        """``frame(nbytes)`` plus one update of the pair whose ``update_count`` is ``count`` (not
        ``framed``): slot adds, folded at ``flush``."""
        frame = self.frame_count
        frame.n += 1
        frame.nbytes += nbytes
        count.n += 1

    def verified_update_frame_of(self, nbytes: int, count: UpdateCount) -> None:
        """``update_frame_of`` plus ``checksum(pair, True)`` for that update, in one call (Kraken's
        one-level update: a frame, an update and a verified checksum each time)."""
        frame = self.frame_count
        frame.n += 1
        frame.nbytes += nbytes
        self.checksums_ok += 1
        count.n += 1
        count.checked += 1

    # events: stats + live counters ----------------------------------------------------------

    def frame(self, nbytes: int) -> None:
        count = self.frame_count
        count.n += 1
        count.nbytes += nbytes

    def malformed_frame(self) -> None:
        self.malformed += 1
        self.kind("malformed")
        self.counters.incr("malformed")

    def gap(self, pair: str) -> None:
        self.gaps += 1
        self.pair(pair, "gaps")
        self.counters.incr("gaps")
        self.counters.incr(f"gaps:{pair}")

    def resync(self, pair: str) -> None:
        """A book became synced (the first sync of a book counts too, as in the live counters)."""
        self.resyncs += 1
        self.pair(pair, "resyncs")
        self.counters.incr("resyncs")
        self.counters.incr(f"resyncs:{pair}")

    def checksum(self, pair: str, ok: bool) -> None:
        if ok:  # once per checksummed frame: pair() inlined
            self.checksums_ok += 1
            per = self._per_pair.get(pair)
            if per is None:
                per = self._per_pair[pair] = {}
            per["checksums_ok"] = per.get("checksums_ok", 0) + 1
            self.frame_count.checked += 1  # into the counters at ``flush``, with the frames
        else:
            self.checksums_failed += 1
            self.pair(pair, "checksums_failed")
            self.counters.incr("checksum_failures")
            self.counters.incr(f"checksum_failures:{pair}")  # the sampler's miss log names the cause

    def as_dict(self) -> dict[str, object]:
        return {
            "frames": self.frames,
            "kinds": dict(self.kinds),
            "malformed": self.malformed,
            "checksums_ok": self.checksums_ok,
            "checksums_failed": self.checksums_failed,
            "gaps": self.gaps,
            "resyncs": self.resyncs,
            "per_pair": {p: dict(v) for p, v in self.per_pair.items()},
        }


class Feed(Protocol):
    """Sans-I/O frame handling for one socket: parse, sync, verify. The live connector and
    ``replay`` drive the same Feed, so a recorded capture exercises exactly the live code path.

    ``recv_ms`` is the local receive time (wall clock, epoch ms) of the frame.
    """

    stats: FeedStats

    def on_frame(self, payload: bytes, recv_ms: float) -> None:
        """One WebSocket text frame. Malformed frames are counted in ``stats``, never raised."""

    def on_rest_snapshot(self, pair: str, body: bytes, recv_ms: float, limit: int | None = None) -> None:
        """A REST depth snapshot (venues that sync from REST), asked for with ``limit`` levels
        (None: unknown); others may ignore it."""

    def book(self, pair: str) -> L2Book | None:
        """The pair's book if it is synced and verified right now, else None."""

    def wants_snapshot(self) -> set[str]:
        """Pairs that need a REST snapshot (REST venues) or a resubscribe (checksum venues)."""

    def reset(self) -> None:
        """Every book is unknown until its next snapshot (a socket gone, an archive's hole)."""


class Counters:
    """Connector-side view of the shared counters; works without shared memory (unit tests, replay).

    Without shared memory the connector's own fields live in a local float64 array, so the per-frame
    hot paths index ``values`` the same way in both cases; other names go to a dict."""

    def __init__(self, shared: SharedCounters | None) -> None:
        self._local: dict[str, float] = {}
        # Called per frame: one dict lookup and one store instead of has() + incr() by name.
        if shared is not None:
            self._slots = {f: shared.slot(f) for f in shared.fields}
            self._values: memoryview | array[float] = shared.values
        else:
            self._slots = {f: i for i, f in enumerate(CONNECTOR_FIELDS)}
            self._values = array("d", bytes(8 * len(CONNECTOR_FIELDS)))

    def incr(self, field: str, n: float = 1.0) -> None:
        i = self._slots.get(field)
        if i is not None:
            self._values[i] += n
        else:
            self._local[field] = self._local.get(field, 0.0) + n

    def slots(self, *fields: str) -> tuple[memoryview | array[float] | int, ...] | None:
        """(values, slot of each field) when all have a slot, for per-frame hot paths; else None."""
        if any(f not in self._slots for f in fields):
            return None
        return (self._values, *(self._slots[f] for f in fields))

    def set(self, field: str, value: float) -> None:
        i = self._slots.get(field)
        if i is not None:
            self._values[i] = value
        else:
            self._local[field] = value

    def get(self, field: str) -> float:
        i = self._slots.get(field)
        return self._values[i] if i is not None else self._local.get(field, 0.0)


class LagMonitor:
    """Notices a feed falling behind (a slow link, a venue or host under backpressure).

    Delivery delay = local receive time - exchange event time of a book's last update. It
    includes the clock offset between venue and host, so the alarm is relative to the smallest
    delay seen, not to zero: ``alert_s`` above that baseline is an episode (counted and
    logged once); back under half of it ends the episode.
    """

    def __init__(self, venue: str, counters: Counters | SharedCounters, alert_s: float, log: logging.Logger) -> None:
        self.venue, self.counters, self.alert_ms, self.log = venue, counters, alert_s * 1000.0, log
        self.baseline_ms: float | None = None
        self.lagging = False

    def observe(self, recv_ms: float, exchange_ms: int) -> None:
        if exchange_ms <= 0:
            return
        delay = recv_ms - exchange_ms
        if self.baseline_ms is None or delay < self.baseline_ms:
            self.baseline_ms = delay
        behind = delay - self.baseline_ms
        if not self.lagging and behind > self.alert_ms:
            self.lagging = True
            self.counters.incr("lag_alerts")
            self.counters.set("lagging", 1)
            self.log.warning("event=feed_lagging venue=%s behind_ms=%.0f", self.venue, behind)
        elif self.lagging and behind < self.alert_ms / 2:
            self.lagging = False
            self.counters.set("lagging", 0)
            self.log.info("event=feed_caught_up venue=%s behind_ms=%.0f", self.venue, behind)


class Backoff:
    """Exponential backoff with full jitter that never gives up (users run for days)."""

    def __init__(self, base_s: float = 0.5, cap_s: float = 30.0, healthy_after_s: float = 60.0) -> None:
        self.base_s, self.cap_s, self.healthy_after_s = base_s, cap_s, healthy_after_s
        self.attempt = 0
        self._since: float | None = None

    def success(self) -> None:
        self._since = time.monotonic()

    def next_delay(self) -> float:
        # A connection that stayed healthy for a while earns a fresh start.
        if self._since is not None and time.monotonic() - self._since >= self.healthy_after_s:
            self.attempt = 0
        self._since = None
        delay = min(self.cap_s, self.base_s * (2**self.attempt))
        self.attempt = min(self.attempt + 1, 20)
        return random.uniform(delay / 2, delay)


class LogThrottle:
    """Log the first few occurrences of an event kind, then one in every ``every``."""

    def __init__(self, log: logging.Logger, first: int = 5, every: int = 1000) -> None:
        self.log, self.first, self.every = log, first, every
        self.counts: dict[str, int] = {}

    def warning(self, kind: str, msg: str, *args: object) -> None:
        n = self.counts.get(kind, 0) + 1
        self.counts[kind] = n
        if n <= self.first or n % self.every == 0:
            self.log.warning(f"{msg} (occurrence {n})", *args)


def venue_config_default(cfg: VenueConfig, attr: str, default: str) -> str:
    value = getattr(cfg, attr)
    return (value or default).rstrip("/")
