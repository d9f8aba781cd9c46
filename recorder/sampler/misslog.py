"""Runs of missed ticks per pair, with their cause, appended to the session's ``missed-ticks-<venue>.jsonl``.

The status counters say *how many* ticks were missed and why; the quality report needs *when*,
so each run of consecutive missed ticks of a pair becomes one JSON line once it ends (the pair is
sampled again, or the process stops). One line per run, not per tick: an hour-long outage of 500
pairs is 500 lines.

The cause is decided when the run ends, from what the sampler saw (restart, late, crossed, ring
drop) and from the connector counters that moved since the pair's last good sample. Priority, first match:
``restart`` (ticks lost while the venue process was down, or before its first sync after a
restart), ``disconnect`` (reconnects/stalls moved), ``checksum`` (``checksum_failures:<pair>``),
``sequence_gap`` (``gaps:<pair>``), ``crossed``, ``drop`` (ring full), ``late`` (event loop
blocked), ``resync`` (``resyncs:<pair>`` moved), ``not_synced``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

from recorder.metrics import SharedCounters
from recorder.model import json_encoder

log = logging.getLogger("recorder.sampler")

CAUSES = (
    "restart",
    "disconnect",
    "checksum",
    "sequence_gap",
    "crossed",
    "drop",
    "late",
    "resync",
    "not_synced",
)


def misslog_name(venue: str) -> str:
    return f"missed-ticks-{venue}.jsonl"


@dataclass
class _Run:
    first_ms: int
    last_ms: int
    ticks: int
    seen: set[str]
    base: tuple[float, ...]  # the pair's watched counters (see MissLog._watch) when the run began


@dataclass
class MissLog:
    """Tracks one open run per pair; ``path`` empty disables writing (unit tests, old specs)."""

    venue: str
    interval_ms: int
    counters: SharedCounters
    path: str = ""
    runs: dict[str, _Run] = field(default_factory=dict)
    synced_here: set[str] = field(default_factory=set)  # pairs sampled by this incarnation
    # Counters at each pair's last good sample: what moved since then explains the run (a
    # disconnect is usually counted before the first tick it costs, so the run's start is too late).
    base: dict[str, tuple[float, ...]] = field(default_factory=dict)
    _fd: int | None = None

    _keys: dict[str, tuple[str, ...]] = field(default_factory=dict)
    _slots: dict[str, tuple[int, ...]] = field(default_factory=dict)

    def _watch(self, pair: str) -> tuple[float, ...]:
        """The pair's watched counters, in the order of ``self._keys[pair]`` (read on every
        sample of every pair: slots are looked up once)."""
        slots = self._slots.get(pair)
        if slots is None:
            c = self.counters
            wanted = ("reconnects", "stalls", f"gaps:{pair}", f"resyncs:{pair}", f"checksum_failures:{pair}")
            keys = self._keys[pair] = tuple(k for k in wanted if c.has(k))
            slots = self._slots[pair] = tuple(c.slot(k) for k in keys)
        values = self.counters.values
        return tuple([values[i] for i in slots])

    def miss(self, pair: str, first_ms: int, n: int, cause: str) -> None:
        """``n`` consecutive ticks from ``first_ms`` missed for ``cause`` (restart, late, crossed, drop, not_synced)."""
        if n <= 0:
            return
        last_ms = first_ms + (n - 1) * self.interval_ms
        run = self.runs.get(pair)
        if run is not None and first_ms > run.last_ms + self.interval_ms:
            self._close(pair, ended=True)
            run = None
        if run is None:
            base = self.base.get(pair) or self._watch(pair)
            run = self.runs[pair] = _Run(first_ms, last_ms, 0, set(), base)
        if cause == "not_synced" and pair not in self.synced_here:
            cause = "restart"  # not synced yet since this process (re)started
        run.last_ms = max(run.last_ms, last_ms)
        run.ticks += n
        run.seen.add(cause)

    def hit(self, pair: str) -> None:
        """The pair was sampled: its open run (if any) has ended."""
        self.synced_here.add(pair)
        if pair in self.runs:
            self._close(pair, ended=True)
        self.base[pair] = self._watch(pair)

    def close(self) -> None:
        """Process stop: write the runs still open (``ended`` false), then close the file."""
        for pair in list(self.runs):
            self._close(pair, ended=False)
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _cause(self, pair: str, run: _Run) -> str:
        now = self._watch(pair)
        moved = {k for k, v, before in zip(self._keys[pair], now, run.base, strict=True) if v > before}
        checks = {
            "restart": "restart" in run.seen,
            "disconnect": bool(moved & {"reconnects", "stalls"}),
            "checksum": f"checksum_failures:{pair}" in moved,
            "sequence_gap": f"gaps:{pair}" in moved,
            "crossed": "crossed" in run.seen,
            "drop": "drop" in run.seen,
            "late": "late" in run.seen,
            "resync": f"resyncs:{pair}" in moved,
        }
        return next((cause for cause, hit in checks.items() if hit), "not_synced")

    def _close(self, pair: str, ended: bool) -> None:
        run = self.runs.pop(pair)
        cause = self._cause(pair, run)
        self.base[pair] = self._watch(pair)  # what moved so far belongs to this run, not the next
        if not self.path:
            return
        line = json_encoder.encode(
            {
                "exchange": self.venue,
                "pair": pair,
                "first_tick_ms": run.first_ms,
                "last_tick_ms": run.last_ms,
                "ticks": run.ticks,
                "cause": cause,
                "ended": ended,
            }
        )
        try:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            os.write(self._fd, line + b"\n")  # one write per line: O_APPEND keeps lines whole
        except OSError as exc:  # the log is diagnostics: never let it stop sampling
            log.warning("event=misslog_write_failed path=%s error=%s", self.path, exc)
