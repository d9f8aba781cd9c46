"""A universe's books through the real writer, on a simulated clock, in a child process.

Shared by ``tests/test_rotation.py`` and ``benchmarks/test_rotation.py``: ``pairs`` books a tick
(a random walk per pair, depth ``depth``, a share of quantities changing each tick) are pushed to a
real ring, drained by the real :class:`~recorder.writer.process.Writer` (``poll``, its rotation
rule, ``try_commit``, ``drain``), with the writer's clock advanced by ``interval_s`` per tick so
``rotate_seconds`` acts as in a capture of ``ticks * interval_s`` seconds. It runs in a spawned
process so its peak RSS is the writer's own: the ring's pages are touched before the baseline is
taken, and each tick's records are made when pushed (no dataset held beside the writer).
"""

from __future__ import annotations

import multiprocessing as mp
import resource
import types
from pathlib import Path
from typing import Any

import numpy as np

SESSION = "universe"
T0 = 1_780_000_000_000  # 2026-05-28 20:26:40 UTC: far from midnight for short runs


class Clock:
    """The writer's ``time`` module: monotonic time that moves only when told (or slept)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.now += s


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _run(out: Any, data_dir: str, pairs: int, ticks: int, interval_s: float, depth: int, writer: dict) -> None:
    from recorder.metrics import SharedCounters
    from recorder.model import SampledBook, ring_encoder
    from recorder.ring.shm_ring import HEADER_SIZE, ShmRing
    from recorder.writer import process
    from recorder.writer.spec import WRITER_COUNTER_FIELDS, WriterSpec

    clock = Clock()
    process.time = types.SimpleNamespace(monotonic=clock.monotonic, sleep=clock.sleep)  # type: ignore[assignment]
    ring_bytes = int(writer.pop("ring_mb", 64) * 1024 * 1024)
    ring = ShmRing.create(ring_bytes)
    counters = SharedCounters.create(WRITER_COUNTER_FIELDS)
    try:
        spec = WriterSpec(
            session_id=SESSION,
            data_dir=data_dir,
            formats=writer.pop("formats", ["jsonl", "parquet"]),
            rotate_snapshots=writer.pop("rotate_snapshots", None),
            rotate_seconds=writer.pop("rotate_seconds", 300.0),
            rotate_bytes=int(writer.pop("rotate_mb", 64.0) * 1024 * 1024),
            rings={"binance": ring.name},
            counters_name=counters.name,
        )
        assert not writer, f"unknown writer settings {writer}"
        w = process.Writer(spec, {"binance": ring}, counters)
        w.recover()
        ring._shm.buf[HEADER_SIZE : HEADER_SIZE + ring_bytes] = bytes(ring_bytes)  # touch every page
        rng = np.random.default_rng(7)
        names = [f"P{i:04d}-USDT" for i in range(pairs)]
        mid = rng.uniform(1, 1000, pairs).round(2)
        step = np.maximum((mid * 1e-4).round(2), 0.01)
        offs = np.arange(1, depth + 1)
        qty = rng.uniform(0.001, 50, (pairs, 2 * depth)).round(4)
        base_rss = _rss_kib("VmRSS")
        commits: list[float] = []
        held_peak = 0
        for tick in range(ticks):
            ts = T0 + int(tick * interval_s * 1000)
            mid = (mid + step * rng.integers(-2, 3, pairs)).round(2)
            moved = rng.random(qty.shape) < 0.3
            qty = np.where(moved, rng.uniform(0.001, 50, qty.shape).round(4), qty)
            bids = (mid[:, None] - step[:, None] * offs).round(2).tolist()
            asks = (mid[:, None] + step[:, None] * offs).round(2).tolist()
            q = qty.tolist()
            recs = [
                ring_encoder.encode(
                    SampledBook(
                        "binance",
                        names[i],
                        ts,
                        bids[i],
                        q[i][:depth],
                        asks[i],
                        q[i][depth:],
                        1.5,
                        ts - 3,
                        tick,
                        True,
                        True,
                    )
                )
                for i in range(pairs)
            ]
            assert ring.push_many(recs) == pairs, "ring full: the writer did not keep up"
            while w.read_pos["binance"] != ring.write_pos or w.sealed is not None or w.journal.pending is not None:
                before = counters.get("segments_committed")
                held_peak = max(held_peak, w.segment.est_bytes)  # before a commit empties it
                w.step()
                if counters.get("segments_committed") != before:
                    commits.append(clock.now)
            clock.sleep(interval_s)
        held_peak = max(held_peak, w.segment.est_bytes)
        assert w.drain("stop") == 0
        out.put(
            dict(
                commits=commits,
                seconds=ticks * interval_s,
                base_rss_kib=base_rss,
                peak_rss_kib=_rss_kib("VmHWM"),
                held_peak_bytes=held_peak,
                rows_written=counters.get("rows_written"),
                snapshots_written=counters.get("snapshots_written"),
            )
        )
    finally:
        counters.close()
        ring.close()


def run_universe(
    data_dir: Path, pairs: int, ticks: int, interval_s: float = 1.0, depth: int = 20, **writer: Any
) -> dict[str, Any]:
    """Records ``ticks`` ticks of ``pairs`` books through a writer with ``writer`` settings
    (``rotate_snapshots``, ``rotate_seconds``, ``rotate_mb``, ``ring_mb``, ``formats``; unset:
    the config's defaults). Returns the run's figures and the files it wrote."""
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    proc = ctx.Process(target=_run, args=(out, str(data_dir), pairs, ticks, interval_s, depth, writer))
    proc.start()
    res = out.get(timeout=600)
    proc.join(60)
    assert proc.exitcode == 0
    files = sorted((data_dir / "parquet").rglob("*.parquet"))
    res["files"] = files
    res["bytes"] = sum(f.stat().st_size for f in files)
    res["writer_rss_mib"] = (res["peak_rss_kib"] - res["base_rss_kib"]) / 1024
    res["files_per_hour"] = len(res["commits"]) * 3600 / res["seconds"] if res["commits"] else 0.0
    res["bytes_per_level"] = res["bytes"] / (res["snapshots_written"] * 2 * depth)
    return res


__all__ = ["SESSION", "Clock", "run_universe"]
