"""Counters in shared memory: children write them, the supervisor reads them.

Shared memory (not pipes or files) so that counts survive a child's crash exactly and a
restarted child continues them. Every slot is a float64; one writer per segment.
"""

from __future__ import annotations

from bisect import bisect_left
from multiprocessing import shared_memory

# Capture-latency histogram: log-spaced bucket upper bounds in ms (last bucket is +inf).
LATENCY_BOUNDS_MS: tuple[float, ...] = tuple([round(0.05 * (1.25**i), 4) for i in range(60)])


class SharedCounters:
    def __init__(self, shm: shared_memory.SharedMemory, fields: list[str], owner: bool) -> None:
        self._shm = shm
        self.fields = list(fields)
        self._index = {f: i for i, f in enumerate(self.fields)}
        self._values = shm.buf.cast("d")
        self._owner = owner

    @classmethod
    def create(cls, fields: list[str], name: str | None = None) -> SharedCounters:
        shm = shared_memory.SharedMemory(name=name, create=True, size=max(8, 8 * len(fields)))
        counters = cls(shm, fields, owner=True)
        for i in range(len(fields)):
            counters._values[i] = 0.0
        return counters

    @classmethod
    def attach(cls, name: str, fields: list[str]) -> SharedCounters:
        return cls(_attach_untracked(name), fields, owner=False)

    @property
    def name(self) -> str:
        return self._shm.name

    def has(self, field: str) -> bool:
        return field in self._index

    def slot(self, field: str) -> int:
        """The index of ``field`` in :attr:`values`, for hot paths that precompute it."""
        return self._index[field]

    @property
    def values(self) -> memoryview:
        """The slots as float64 (``values[slot(field)] += 1`` is ``incr(field)`` without the name lookup)."""
        return self._values

    def incr(self, field: str, n: float = 1.0) -> None:
        self._values[self._index[field]] += n

    def set(self, field: str, value: float) -> None:
        self._values[self._index[field]] = value

    def get(self, field: str) -> float:
        return self._values[self._index[field]]

    def as_dict(self) -> dict[str, float]:
        return {f: self._values[i] for i, f in enumerate(self.fields)}

    def close(self) -> None:
        self._values.release()
        self._shm.close()
        if self._owner:
            try:
                self._shm.unlink()
            except FileNotFoundError:
                pass


def _attach_untracked(name: str) -> shared_memory.SharedMemory:
    """Attach to a segment the supervisor owns, without letting this process's death unlink it.

    Children are spawned by the supervisor and share its resource tracker, so a plain attach
    only re-registers a name the tracker already holds; Python >= 3.13 can skip even that.
    """
    try:
        return shared_memory.SharedMemory(name=name, track=False)  # type: ignore[call-arg]
    except TypeError:
        return shared_memory.SharedMemory(name=name)


def latency_fields(prefix: str = "lat") -> list[str]:
    return [f"{prefix}_b{i}" for i in range(len(LATENCY_BOUNDS_MS) + 1)] + [f"{prefix}_max"]


def observe_latency(counters: SharedCounters, value_ms: float, prefix: str = "lat") -> None:
    idx = _bucket(abs(value_ms))
    counters.incr(f"{prefix}_b{idx}")
    if value_ms > counters.get(f"{prefix}_max"):
        counters.set(f"{prefix}_max", value_ms)


def _bucket(value: float) -> int:
    """The first bucket whose upper bound is >= value (the last, +inf, past every bound)."""
    return bisect_left(LATENCY_BOUNDS_MS, value)


class LatencyHistogram:
    """``observe_latency`` with the slots looked up once: for per-book calls on every tick."""

    def __init__(self, counters: SharedCounters, prefix: str = "lat") -> None:
        self._values = counters.values
        self._slots = [counters.slot(f) for f in latency_fields(prefix)[:-1]]
        self._max = counters.slot(f"{prefix}_max")

    def observe(self, value_ms: float) -> None:
        values = self._values
        values[self._slots[bisect_left(LATENCY_BOUNDS_MS, abs(value_ms))]] += 1.0
        if value_ms > values[self._max]:
            values[self._max] = value_ms


def histogram_quantiles(
    values: dict[str, float], quantiles: tuple[float, ...], prefix: str = "lat"
) -> dict[float, float | None]:
    """Quantiles (upper bucket bounds, capped at the observed maximum) from the histogram slots."""
    observed_max = values.get(f"{prefix}_max")
    counts = [values.get(f"{prefix}_b{i}", 0.0) for i in range(len(LATENCY_BOUNDS_MS) + 1)]
    total = sum(counts)
    out: dict[float, float | None] = {}
    for q in quantiles:
        if total == 0:
            out[q] = None
            continue
        target, acc = q * total, 0.0
        for i, c in enumerate(counts):
            acc += c
            if acc >= target:
                bound = LATENCY_BOUNDS_MS[i] if i < len(LATENCY_BOUNDS_MS) else observed_max
                # A bucket's upper bound can exceed every sample in it; never report p99 > max.
                if bound is not None and observed_max is not None and observed_max > 0:
                    bound = min(bound, observed_max)
                out[q] = bound
                break
    return out
