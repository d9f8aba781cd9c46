"""When a session ran: ``.sessions/<id>/runs.jsonl``, one line per start and stop of a capture
(written by the supervisor). A hole in a pair's grid is a gap only while the session ran; the
time between a stop and the next start is "not running", not missing data.

A start with no stop (the supervisor was killed) ends at the session's last stored snapshot
before the next start: the last moment the capture is known to have run. Data stored before the
first recorded start is a run of its own, from its first to its last snapshot. A session without the
file (older captures, replays) is taken to have run throughout, as before.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import msgspec
import numpy as np

RUNS_FILE = "runs.jsonl"


@dataclass
class Run:
    start_ms: int
    stop_ms: int
    stop_recorded: bool  # False: no stop line, the end is the last stored snapshot of the run
    stop_reason: str | None = None
    interval_s: float | None = None  # the run's sampling interval, as started


class _RunLine(msgspec.Struct):
    event: str
    ms: int
    reason: str | None = None
    interval_s: float | None = None


def read_runs(data_dir: str, session_id: str, stored_ms: np.ndarray) -> list[Run] | None:
    """The session's runs in time order, or None when nothing recorded them. ``stored_ms``:
    every stored snapshot time of the session, sorted (ends the runs that have no stop line)."""
    if "://" in data_dir:
        return None
    try:
        with open(os.path.join(data_dir, ".sessions", session_id, RUNS_FILE), "rb") as fh:
            raw = fh.read()
    except OSError:
        return None
    events: list[_RunLine] = []
    for line in raw.split(b"\n"):
        try:
            events.append(msgspec.json.decode(line, type=_RunLine))
        except msgspec.DecodeError:
            continue  # empty, or torn by a crash mid-write
    starts = [e for e in events if e.event == "start"]
    if not starts:
        return None
    runs: list[Run] = []
    if len(stored_ms) and stored_ms[0] < starts[0].ms:
        # Data from before the first recorded start (a run by a recorder that kept no runs.jsonl):
        # a run of unknown bounds, known to have run from its first to its last stored snapshot.
        before = stored_ms[stored_ms < starts[0].ms]
        runs.append(Run(int(before[0]), int(before[-1]), False))
    for i, start in enumerate(starts):
        next_start = starts[i + 1].ms if i + 1 < len(starts) else None
        stop = next(
            (e for e in events if e.event == "stop" and e.ms >= start.ms and (next_start is None or e.ms < next_start)),
            None,
        )
        if stop is not None:
            runs.append(Run(start.ms, stop.ms, True, stop.reason, start.interval_s))
            continue
        before = stored_ms if next_start is None else stored_ms[stored_ms < next_start]
        last = int(before[-1]) if len(before) and before[-1] >= start.ms else start.ms
        runs.append(Run(start.ms, last, False, None, start.interval_s))
    return runs


def ticks_between(lo: int, hi: int, origin: int, interval: int) -> int:
    """Grid ticks ``origin + k * interval`` inside [lo, hi]."""
    if hi < lo:
        return 0
    first = -(-(lo - origin) // interval)  # ceil
    last = (hi - origin) // interval
    return max(0, last - first + 1)


@dataclass
class Segment:
    """Part of a hole in a pair's grid: first and last tick, and whether the session ran then."""

    start_ms: int
    end_ms: int
    ticks: int
    running: bool
    after_start: bool  # begins at a run's start: the pair had not synced yet in that run


def split_hole(start: int, end: int, interval: int, runs: list[Run] | None) -> list[Segment]:
    """The ticks ``start, start + interval, ..., end`` cut at the runs' edges."""
    total = (end - start) // interval + 1
    if runs is None:
        return [Segment(start, end, total, True, False)]
    out: list[Segment] = []
    t = start
    for run in runs:
        if run.stop_ms < t:
            continue
        if run.start_ms > end:
            break
        if run.start_ms > t:  # not running until this run starts
            n = ticks_between(t, run.start_ms - 1, start, interval)
            if n:
                last = t + (n - 1) * interval
                out.append(Segment(t, last, n, False, False))
                t = last + interval
        n = ticks_between(max(t, run.start_ms), min(end, run.stop_ms), start, interval)
        if n:
            first = start + -(-(max(t, run.start_ms) - start) // interval) * interval
            last = first + (n - 1) * interval
            out.append(Segment(first, last, n, True, first - interval < run.start_ms))
            t = last + interval
    if t <= end:
        out.append(Segment(t, end, (end - t) // interval + 1, False, False))
    return out
