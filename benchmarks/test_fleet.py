"""Fleet figures: one shard of N pairs vs two shards of N/2 on the same box (stored snapshots per
second, CPU seconds per stored snapshot), and a Dask cluster vs one process reading one dataset.

Full run: ``python -m pytest benchmarks/test_fleet.py -n 0 -s`` (1000 pairs, a 30 s window; 14 days
of data read). Quick mode (CI) runs both on small sizes.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from benchmarks.quick import size
from tests.conftest import CLI, ROOT

PAIRS = size(1000, 40)
WINDOW_S = size(30.0, 4.0)
DAYS = size(14, 1)
START_MS = 1_767_225_600_000  # 2026-01-01T00:00Z


def _tree_cpu(pids: list[int]) -> float:
    """User + system CPU seconds of these processes and all their children."""
    total = 0.0
    for pid in pids:
        try:
            root = psutil.Process(pid)
            for p in [root, *root.children(recursive=True)]:
                t = p.cpu_times()
                total += t.user + t.system
        except psutil.Error:
            pass
    return total


def _written(data: Path, session: str) -> int | None:
    try:
        st = json.loads((data / ".sessions" / session / "status.json").read_text())
    except (OSError, ValueError):
        return None
    pairs = st["venues"]["binance"]["pairs"] if st.get("venues") else {}
    if not pairs or not all(p["synced"] for p in pairs.values()):
        return None
    # Sampled into the ring: stored within a rotation (the writer's own count moves per file).
    return int(st["venues"]["binance"]["samples"])


def _capture(tmp: Path, urls: dict[str, str], shards: int) -> dict[str, float]:
    data = tmp / f"data{shards}"
    cfg = tmp / f"fleet{shards}.toml"
    cfg.write_text(
        f'session_id = "b{shards}"\ninterval = "1s"\ndepth = 10\nformat = "parquet"\ndata_dir = "{data}"\n'
        f'[venues.binance]\npairs = ["all"]\nws_url = "{urls["ws_url"]}"\nrest_url = "{urls["rest_url"]}"\n'
        "snapshot_limit = 100\nmax_streams_per_connection = 300\n"
        "[writer]\nrotate_seconds = 5.0\n"
    )
    sessions = [f"b{shards}-s{i}of{shards}" for i in range(shards)] if shards > 1 else ["b1"]
    procs = [
        subprocess.Popen(
            [*CLI, "start-capture", "--config", str(cfg), "--log-level", "WARNING"]
            + (["--shard", f"{i}/{shards}"] if shards > 1 else []),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=ROOT,
        )  # fmt: skip
        for i in range(shards)
    ]
    try:
        deadline = time.monotonic() + 240
        while any(_written(data, s) is None for s in sessions):
            assert time.monotonic() < deadline, "shards did not sync"
            assert all(p.poll() is None for p in procs), "a capture exited"
            time.sleep(0.5)
        cpu0, t0 = _tree_cpu([p.pid for p in procs]), time.monotonic()
        w0 = sum(_written(data, s) or 0 for s in sessions)
        time.sleep(WINDOW_S)
        cpu1, t1 = _tree_cpu([p.pid for p in procs]), time.monotonic()
        w1 = sum(_written(data, s) or 0 for s in sessions)
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(120)
    stored = max(1, w1 - w0)
    return {
        "stored_per_s": round(stored / (t1 - t0), 1),
        "cpu_ms_per_snapshot": round(1000 * (cpu1 - cpu0) / stored, 3),
    }


@pytest.mark.timeout(900)
def test_one_shard_vs_two(tmp_path: Path) -> None:
    sim = subprocess.Popen(
        [*CLI, "simulate", "--venue", "binance", "--port", "0", "--seed", "2", "--instruments", str(PAIRS - 12)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT,
    )  # fmt: skip
    try:
        assert sim.stdout is not None
        urls = json.loads(sim.stdout.readline())
        one = _capture(tmp_path, urls, 1)
        two = _capture(tmp_path, urls, 2)
    finally:
        sim.send_signal(signal.SIGTERM)
        sim.wait(30)
    result: dict[str, Any] = {
        "pairs": PAIRS,
        "one_shard": one,
        "two_shards": two,
        "stored_per_s_ratio": round(two["stored_per_s"] / one["stored_per_s"], 2),
        "cpu_per_snapshot_ratio": round(two["cpu_ms_per_snapshot"] / max(1e-9, one["cpu_ms_per_snapshot"]), 2),
    }
    print(json.dumps(result))
    assert one["stored_per_s"] > 0 and two["stored_per_s"] > 0


@pytest.mark.timeout(600)
def test_dask_vs_one_process_read(tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed", reason="pip install -e '.[fleet]'")
    from recorder.dataset import open_dataset
    from tests.month_data import write_month

    files = write_month(tmp_path, START_MS, DAYS, step_ms=size(5_000, 60_000))
    ds = open_dataset(str(tmp_path))
    t0 = time.perf_counter()
    one = ds.wide(depth=1).to_pandas().groupby("pair")["mid"].mean()
    one_s = time.perf_counter() - t0
    with (
        distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        distributed.Client(cluster),
    ):
        t0 = time.perf_counter()
        frame = ds.to_dask(depth=1)
        many = frame.groupby("pair")["mid"].mean().compute()
        dask_s = time.perf_counter() - t0
    assert sorted(many.astype("float64").round(9).items()) == sorted(one.astype("float64").round(9).items())
    print(json.dumps({"files": files, "one_process_s": round(one_s, 2), "dask_2_workers_s": round(dask_s, 2),
                      "ratio": round(dask_s / one_s, 2)}))  # fmt: skip
