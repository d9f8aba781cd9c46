"""What every venue connector shares: the interface to the venue process, backoff, counters."""

from __future__ import annotations

import asyncio
import logging
import random
import time
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
    "connected",
]


# A price or quantity the venue prints as decimal text, decoded straight to float by msgspec in C
# (its decoder built with ``strict=False``), so no Python float() runs per level. NaN, infinities
# and negative numbers fail decoding: the frame is malformed, never a level in a book.
WireFloat = Annotated[float, msgspec.Meta(ge=0.0, lt=1e300)]
FloatLevel = tuple[WireFloat, WireFloat]


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
    """What a Feed saw; replay prints it, live connectors mirror it into shared counters.

    The event methods (``frame``, ``gap``, ``resync``, ...) count into both: a Feed calls them,
    and a live connector passes its :class:`Counters` so the supervisor sees the same figures.
    """

    def __init__(self, counters: Counters | None = None) -> None:
        self.counters = counters if counters is not None else Counters(None)
        self._frame_slots = self.counters.slots("messages", "bytes")
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

    def update(self, kind: str, pair: str) -> None:
        """``kind(kind)`` and ``pair(pair, "updates")`` in one call (once per venue update)."""
        kinds = self.kinds
        kinds[kind] = kinds.get(kind, 0) + 1
        per = self.per_pair.get(pair)
        if per is None:
            per = self.per_pair[pair] = {}
        per["updates"] = per.get("updates", 0) + 1

    def update_frame(self, nbytes: int, kind: str, pair: str) -> None:
        """``frame(nbytes)`` and ``update(kind, pair)`` in one call: the hot path of a Feed, for a
        frame that is one update of a known pair."""
        self.frames += 1
        hot = self._frame_slots
        if hot is not None:
            values, messages, size = hot
            values[messages] += 1.0
            values[size] += nbytes
        else:
            self.counters.incr("messages")
            self.counters.incr("bytes", nbytes)
        kinds = self.kinds
        kinds[kind] = kinds.get(kind, 0) + 1
        per = self.per_pair.get(pair)
        if per is None:
            per = self.per_pair[pair] = {}
        per["updates"] = per.get("updates", 0) + 1

    # events: stats + live counters ----------------------------------------------------------

    def frame(self, nbytes: int) -> None:
        self.frames += 1
        hot = self._frame_slots
        if hot is not None:  # once per frame: straight into shared memory, no name lookups
            values, messages, size = hot
            values[messages] += 1.0
            values[size] += nbytes
        else:
            self.counters.incr("messages")
            self.counters.incr("bytes", nbytes)

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
        if ok:
            self.checksums_ok += 1
            self.pair(pair, "checksums_ok")
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
        # Called per frame: one dict lookup and one store instead of has() + incr() by name.
        self._slots = {f: shared.slot(f) for f in shared.fields} if shared is not None else {}
        self._values = shared.values if shared is not None else None

    def incr(self, field: str, n: float = 1.0) -> None:
        i = self._slots.get(field)
        if i is not None:
            self._values[i] += n  # type: ignore[index]
        else:
            self._local[field] = self._local.get(field, 0.0) + n

    def slots(self, *fields: str) -> tuple[memoryview, ...] | None:
        """(values, slot of each field) when all are shared, for per-frame hot paths; else None."""
        if self._values is None or any(f not in self._slots for f in fields):
            return None
        return (self._values, *(self._slots[f] for f in fields))  # type: ignore[return-value]

    def set(self, field: str, value: float) -> None:
        if self._shared is not None and self._shared.has(field):
            self._shared.set(field, value)
        else:
            self._local[field] = value

    def get(self, field: str) -> float:
        if self._shared is not None and self._shared.has(field):
            return self._shared.get(field)
        return self._local.get(field, 0.0)


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
