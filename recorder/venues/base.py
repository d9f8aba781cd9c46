"""What every venue connector shares: the interface to the venue process, backoff, counters."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Protocol

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
    "connected",
    "lag_alerts",  # episodes of the feed falling behind (see LagMonitor)
    "lagging",  # 1 while it is behind
]


def pair_fields(pair: str) -> list[str]:
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


class FeedStats:
    """What a Feed saw; replay prints it, live connectors mirror it into shared counters."""

    def __init__(self) -> None:
        self.frames = 0
        self.kinds: dict[str, int] = {}  # frame kind (snapshot, update, heartbeat, ...) -> count
        self.malformed = 0
        self.checksums_ok = 0
        self.checksums_failed = 0
        self.gaps = 0
        self.resyncs = 0
        self.per_pair: dict[str, dict[str, int]] = {}  # pair -> {"gaps": n, "resyncs": n, "checksums_failed": n, ...}

    def kind(self, name: str) -> None:
        self.kinds[name] = self.kinds.get(name, 0) + 1

    def pair(self, pair: str, what: str, n: int = 1) -> None:
        per = self.per_pair.setdefault(pair, {})
        per[what] = per.get(what, 0) + n

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

    def on_rest_snapshot(self, pair: str, body: bytes, recv_ms: float) -> None:
        """A REST depth snapshot (venues that sync from REST); others may ignore it."""

    def book(self, pair: str) -> L2Book | None:
        """The pair's book if it is synced and verified right now, else None."""

    def wants_snapshot(self) -> set[str]:
        """Pairs that need a REST snapshot (REST venues) or a resubscribe (checksum venues)."""


class Counters:
    """Connector-side view of the shared counters; works without shared memory in unit tests."""

    def __init__(self, shared: SharedCounters | None) -> None:
        self._shared = shared
        self._local: dict[str, float] = {}

    def incr(self, field: str, n: float = 1.0) -> None:
        if self._shared is not None and self._shared.has(field):
            self._shared.incr(field, n)
        else:
            self._local[field] = self._local.get(field, 0.0) + n

    def set(self, field: str, value: float) -> None:
        if self._shared is not None and self._shared.has(field):
            self._shared.set(field, value)
        else:
            self._local[field] = value

    def get(self, field: str) -> float:
        if self._shared is not None and self._shared.has(field):
            return self._shared.get(field)
        return self._local.get(field, 0.0)


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


class WeightLimiter:
    """Keeps REST requests within a venue's per-minute weight budget.

    Requests wait (fairly, FIFO) rather than fire and collect a 429; a 429/418 from the venue
    pauses every request until its Retry-After has passed.
    """

    def __init__(self, budget_per_min: int, safety: float = 0.8) -> None:
        self.budget = max(1, int(budget_per_min * safety))
        self._spent: list[tuple[float, int]] = []
        self._lock = asyncio.Lock()
        self._paused_until = 0.0

    def pause(self, seconds: float) -> None:
        self._paused_until = max(self._paused_until, time.monotonic() + seconds)

    async def acquire(self, weight: int) -> None:
        async with self._lock:
            while True:
                now = time.monotonic()
                if now < self._paused_until:
                    await asyncio.sleep(self._paused_until - now)
                    continue
                self._spent = [(t, w) for t, w in self._spent if now - t < 60.0]
                used = sum(w for _, w in self._spent)
                if used + weight <= self.budget or not self._spent:
                    self._spent.append((now, weight))
                    return
                await asyncio.sleep(max(0.05, 60.0 - (now - self._spent[0][0])))


def venue_config_default(cfg: VenueConfig, attr: str, default: str) -> str:
    value = getattr(cfg, attr)
    return (value or default).rstrip("/")
