"""End to end on this machine: the simulator serves P pairs at 100 ms updates, the recorder
samples them every 100 ms at depth 20 for a fixed time. Reported per P: snapshots/s sampled and
stored against the P x 10 expected, ring drops, missed ticks, warm-up ticks (pairs not synced yet:
not "missed", but not stored either), pairs never synced, time to first sync p50/max, CPU per
process, CPU seconds per stored snapshot per process, peak RSS (and its growth over the run), grid
jitter p50/p99. The baseline is P=10 (per-pair cost ratios are read against it).

``BENCH_E2E_CHANNELS`` picks what the venue captures, one set or several separated by ``;``, e.g.
``book;book,trades,quotes``: every P then runs once per set, in that order, and each set after the
first reports its CPU per stored snapshot against the first set's at the same P, measured in the
same run (``cpu_per_snapshot_vs_first``): what trades and quotes cost on top of books.

Run with `pytest benchmarks/test_e2e.py -n 0` (not part of the default test run; ~1 minute per P).
Quick mode (benchmarks/quick.py): P=2 for 3 s.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pytest

from benchmarks.quick import size

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, str(ROOT / "cli.py")]
SECONDS = float(os.environ.get("BENCH_E2E_SECONDS", size("40", "3")))
# RSS growth is read after this many seconds of the window: the ring's first lap and the
# allocators' pools fill during it (see docs/benchmarks.md, "RSS").
WARMUP = float(os.environ.get("BENCH_E2E_WARMUP", size("20", "1")))
PAIRS = [int(p) for p in os.environ.get("BENCH_E2E_PAIRS", size("10,100", "2")).split(",")]
# What the venue captures (``channels``), e.g. "book" or "book,trades,quotes"; several sets separated
# by ";" run one after the other. Unset: the config's default.
CHANNEL_SETS = [[c for c in s.split(",") if c] for s in os.environ.get("BENCH_E2E_CHANNELS", "").split(";")]
# CPU µs per stored snapshot of the first channel set's run, per P (the ratio's baseline).
_FIRST_SET_CPU: dict[int, dict[str, float]] = {}


def _symbols(n: int) -> list[str]:
    return [f"B{i:04d}USDT" for i in range(n)]


def _pairs(n: int) -> list[str]:
    return [f"B{i:04d}-USDT" for i in range(n)]


def _rss_split(pid: int) -> tuple[int, int]:
    """(private anonymous, shared memory) resident bytes: the ring's pages count as the latter."""
    fields: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(("RssAnon:", "RssShmem:")):
                    name, value = line.split(":")
                    fields[name] = int(value.split()[0]) * 1024
    except OSError:
        pass
    return fields.get("RssAnon", 0), fields.get("RssShmem", 0)


class _Sampled:
    def __init__(self) -> None:
        self.cpu: dict[str, float] = {}
        self.rss_first: dict[str, int] = {}
        self.rss_peak: dict[str, int] = {}
        self.rss_last: dict[str, int] = {}
        self.rss_series: dict[str, list[float]] = {}  # MB, one value per sample (every second)
        self.anon_series: dict[str, list[float]] = {}  # MB of RssAnon (no shared memory)
        self.shmem_series: dict[str, list[float]] = {}  # MB of RssShmem (the ring, the counters)

    def sample(self, procs: dict[str, psutil.Process]) -> None:
        for name, p in procs.items():
            try:
                rss = p.memory_info().rss
                self.cpu[name] = sum(p.cpu_times()[:2])
            except psutil.Error:
                continue
            anon, shmem = _rss_split(p.pid)
            self.rss_first.setdefault(name, rss)
            self.rss_peak[name] = max(self.rss_peak.get(name, 0), rss)
            self.rss_last[name] = rss
            self.rss_series.setdefault(name, []).append(round(rss / 2**20, 1))
            self.anon_series.setdefault(name, []).append(round(anon / 2**20, 1))
            self.shmem_series.setdefault(name, []).append(round(shmem / 2**20, 1))


def _after_warmup(series: list[float]) -> float:
    """Growth from the end of the warm-up window to the end of the run (MB)."""
    start = min(int(WARMUP), len(series) - 1)
    return round(series[-1] - series[start], 1)


def _every(series: list[float], step_s: int) -> list[float]:
    """One value per ``step_s`` seconds of the window (samples are one second apart)."""
    return [series[i] for i in range(0, len(series), step_s)] + ([series[-1]] if (len(series) - 1) % step_s else [])


def _stored(data: Path, n: int, start_ms: int, end_ms: int) -> dict[str, object]:
    """Snapshots in the stored files with a tick in [start_ms, end_ms), against the n pairs x ticks
    the grid has there: the figure no counter can flatter."""
    if not (data / "parquet").is_dir():  # nothing stored (no book synced on an overloaded machine)
        return {"stored_per_s": 0.0, "stored_of_expected": 0.0, "pairs_stored": 0}
    files = ds.dataset(data / "parquet", format="parquet", partitioning="hive")
    window = (ds.field("timestamp_ms") >= start_ms) & (ds.field("timestamp_ms") < end_ms)
    rows = files.to_table(columns=["pair", "timestamp_ms"], filter=window)
    stored = rows.group_by(["pair", "timestamp_ms"]).aggregate([]).num_rows if rows.num_rows else 0
    expected = n * len(range(-(-start_ms // 100) * 100, end_ms, 100))
    seconds = (end_ms - start_ms) / 1000
    return {
        "stored_per_s": round(stored / seconds, 1),
        "stored_of_expected": round(stored / expected, 3) if expected else None,
        "pairs_stored": len(pc.unique(rows["pair"])) if rows.num_rows else 0,
    }


def _warmup_figures(v0: dict[str, Any], v1: dict[str, Any], n: int, status_s: float) -> dict[str, object]:
    """What "missed 0" alone would hide: ticks of pairs not synced yet (warm-up) are not stored
    either. Rates are over the time between the two status files (``status_s``)."""
    first = sorted(p["time_to_first_sync_s"] for p in v1["pairs"].values() if p["time_to_first_sync_s"] is not None)
    delta = {k: v1[k] - v0[k] for k in ("samples", "missed_ticks", "warmup_ticks", "ring_drops")}
    return {
        "sampled_per_s": round(delta["samples"] / status_s, 1),
        "warmup_ticks": delta["warmup_ticks"],  # in the window
        "warmup_ticks_per_s": round(delta["warmup_ticks"] / status_s, 1),
        # Every pair's tick is one of these: their sum is the P x 10 expected (all accounted for).
        "accounted_per_s": round(sum(delta.values()) / status_s, 1),
        # The window starts once every pair synced, or after 120 s with some still warming up.
        "pairs_not_synced_at_window_start": v0["pairs_never_synced"],
        "warmup_ticks_before_window": v0["warmup_ticks"],
        "pairs_never_synced": v1["pairs_never_synced"],
        "time_to_first_sync_s_p50": round(statistics.median(first), 3) if first else None,
        "time_to_first_sync_s_max": first[-1] if first else None,
    }


def _per_snapshot(cpu_s: dict[str, float], snapshots: float) -> dict[str, float]:
    return {k: round(1e6 * v / snapshots, 2) if snapshots else 0.0 for k, v in cpu_s.items()}


def _run(n: int, channels: list[str], tmp: Path) -> dict[str, object]:
    sim = subprocess.Popen([*CLI, "simulate", "--venue", "binance", "--port", "0", "--seed", "1",
                            "--symbols", ",".join(_symbols(n))],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)  # fmt: skip
    assert sim.stdout is not None
    urls = json.loads(sim.stdout.readline())
    cfg = tmp / f"e2e-{n}.toml"
    cfg.write_text(
        f'session_id = "e2e-{n}"\ninterval = "100ms"\ndepth = 20\nformat = "parquet"\ndata_dir = "{tmp / "data"}"\n'
        f'[venues.binance]\npairs = {json.dumps(_pairs(n))}\nws_url = "{urls["ws_url"]}"\n'
        f'rest_url = "{urls["rest_url"]}"\nsnapshot_limit = 100\n'
        + (f"channels = {json.dumps(channels)}\n" if channels else "")
    )
    cap = subprocess.Popen([*CLI, "start-capture", "--config", str(cfg), "--log-level", "WARNING"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    status_path = tmp / "data" / ".sessions" / f"e2e-{n}" / "status.json"
    sampled = _Sampled()
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # warm-up: every book synced
            if status_path.exists():
                st = json.loads(status_path.read_text())
                v = st["venues"].get("binance")
                if v and all(p["synced"] for p in v["pairs"].values()):
                    break
            time.sleep(0.5)
        st0 = json.loads(status_path.read_text())
        procs = {"simulator": psutil.Process(sim.pid), "supervisor": psutil.Process(cap.pid),
                 "venue": psutil.Process(st0["venues"]["binance"]["pid"]),
                 "writer": psutil.Process(st0["writer"]["pid"])}  # fmt: skip
        sampled.sample(procs)
        cpu0 = dict(sampled.cpu)
        t0 = time.monotonic()
        while time.monotonic() - t0 < SECONDS:
            time.sleep(1.0)
            sampled.sample(procs)
        elapsed = time.monotonic() - t0
        st1 = json.loads(status_path.read_text())
    finally:
        cap.send_signal(signal.SIGTERM)
        cap.wait(120)
        sim.send_signal(signal.SIGTERM)
        try:
            sim.wait(30)
        except subprocess.TimeoutExpired:  # an overloaded machine: the figures are taken already
            sim.kill()
            sim.wait(30)
    v0, v1 = st0["venues"]["binance"], st1["venues"]["binance"]
    status_s = max(0.001, (st1["updated_at_ms"] - st0["updated_at_ms"]) / 1000)
    stored = _stored(tmp / "data", n, st0["updated_at_ms"], st1["updated_at_ms"])
    cpu_s = {k: sampled.cpu[k] - cpu0.get(k, 0.0) for k in sampled.cpu}
    return {
        "pairs": n,
        "seconds": round(elapsed, 1),
        **stored,
        # CPU (not wall) time per snapshot stored: what stays comparable on a shared machine; trades
        # and quotes are charged to the snapshots they ride with.
        "cpu_us_per_snapshot": _per_snapshot(cpu_s, float(stored["stored_per_s"]) * elapsed),  # type: ignore[arg-type]
        **_warmup_figures(v0, v1, n, status_s),
        "snapshots_per_s": round((v1["samples"] - v0["samples"]) / status_s, 1),
        "expected_per_s": n * 10,
        "ring_drops": v1["ring_drops"] - v0["ring_drops"],
        "missed_ticks": v1["missed_ticks"] - v0["missed_ticks"],
        "gaps": v1["gaps"] - v0["gaps"],
        "channels": v1.get("channels"),
        "trades_per_s": round((v1.get("trades", 0) - v0.get("trades", 0)) / status_s, 1),
        "quotes_per_s": round((v1.get("quotes", 0) - v0.get("quotes", 0)) / status_s, 1),
        "trade_gaps": v1.get("trade_gaps", 0) - v0.get("trade_gaps", 0),
        "trade_drops": v1.get("trade_drops", 0) - v0.get("trade_drops", 0),
        # Why ticks were missed, and whether the feed was lost meanwhile (a simulator that cannot
        # keep up closes slow consumers: every book then resyncs from REST).
        "missed_by_cause": {k: n - v0["missed_by_cause"][k] for k, n in v1["missed_by_cause"].items()},
        "reconnects": v1["reconnects"] - v0["reconnects"],
        "resyncs": v1["resyncs"] - v0["resyncs"],
        "jitter_ms_p50": v1["grid_jitter_ms"]["p50"],
        "jitter_ms_p99": v1["grid_jitter_ms"]["p99"],
        "cpu_percent": {k: round(100 * (sampled.cpu[k] - cpu0.get(k, 0.0)) / elapsed, 1) for k in sampled.cpu},
        "rss_peak_mb": {k: round(v / 2**20, 1) for k, v in sampled.rss_peak.items()},
        "rss_growth_mb": {k: round((sampled.rss_last[k] - sampled.rss_first[k]) / 2**20, 1) for k in sampled.rss_last},
        # The figure for "RSS flat": growth after the warm-up window, private memory only.
        "warmup_s": WARMUP,
        "anon_growth_after_warmup_mb": {k: _after_warmup(v) for k, v in sampled.anon_series.items()},
        "rss_growth_after_warmup_mb": {k: _after_warmup(v) for k, v in sampled.rss_series.items()},
        # RSS at 0, 25, 50, 75 and 100 % of the run: flat, or still growing at the end?
        "rss_quarters_mb": {
            k: [v[round(i * (len(v) - 1) / 4)] for i in range(5)] for k, v in sampled.rss_series.items()
        },  # noqa: E501
        "venue_anon_mb_every_20s": _every(sampled.anon_series.get("venue", [0.0]), 20),
        "venue_shmem_mb_every_20s": _every(sampled.shmem_series.get("venue", [0.0]), 20),
    }


@pytest.mark.parametrize(
    ("n", "channels"),
    [(n, c) for n in PAIRS for c in CHANNEL_SETS],
    ids=lambda v: ",".join(v) if isinstance(v, list) else str(v),
)
@pytest.mark.benchmark(group="end to end")
@pytest.mark.timeout(SECONDS + 600)  # warm-up (up to 120 s), the window, shutdown: not the suite's 180 s
def test_end_to_end(benchmark, n: int, channels: list[str], tmp_path: Path) -> None:
    result = benchmark.pedantic(_run, args=(n, channels, tmp_path), rounds=1, iterations=1)
    per_snapshot: dict[str, float] = result["cpu_us_per_snapshot"]  # type: ignore[assignment]
    if channels == CHANNEL_SETS[0]:
        _FIRST_SET_CPU[n] = per_snapshot
    elif n in _FIRST_SET_CPU:
        first = _FIRST_SET_CPU[n]
        result["cpu_per_snapshot_vs_first"] = {
            k: round(v / first[k], 3) for k, v in per_snapshot.items() if first.get(k)
        }
    benchmark.extra_info.update(result)
    benchmark.extra_info["baseline"] = n == min(PAIRS) and channels == CHANNEL_SETS[0]
    print(json.dumps(result))
    assert result["snapshots_per_s"] > 0
