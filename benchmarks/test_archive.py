"""The archive's cost, end to end: the simulator serves P pairs at 100 ms, the recorder samples
them every 100 ms at depth 20, once with the archive off (the baseline) and once on. Reported per
run: snapshots stored per second against the P x 10 expected (the book path must not lose any to
the archive), missed ticks, ring drops, the venue process's CPU; with the archive on also its
bytes per received frame against the raw frame size, and the zstd ratio.

Run with `pytest benchmarks/test_archive.py -n 0 -s` (~2 x 1 minute per P;
`BENCH_ARCHIVE_PAIRS=100,1000`). Quick mode (benchmarks/quick.py): P=2 for 3 s.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import zstandard

from benchmarks.quick import size
from benchmarks.test_e2e import _pairs, _stored, _symbols

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, str(ROOT / "cli.py")]
SECONDS = float(os.environ.get("BENCH_ARCHIVE_SECONDS", size("30", "3")))
PAIRS = [int(p) for p in os.environ.get("BENCH_ARCHIVE_PAIRS", size("100", "2")).split(",")]


_NONE = {"stored_per_s": 0.0, "stored_of_expected": 0.0, "pairs_stored": 0}


def _archive_figures(data: Path, session: str) -> dict[str, object]:
    """Archive bytes on disk per received frame, against the frames' own size (read back)."""
    files = sorted((data / "archive").rglob(f"{session}-*.jsonl.zst"))
    frames = raw = 0
    for path in files:
        with open(path, "rb") as fh:
            text = zstandard.ZstdDecompressor().stream_reader(fh, read_across_frames=True).read()
        for line in text.splitlines():
            if line.startswith(b'{"t":"recv"'):
                frames += 1
                raw += len(json.loads(line)["data"].encode())
    stored = sum(p.stat().st_size for p in files)
    return {
        "archive_files": len(files),
        "archive_bytes": stored,
        "frames": frames,
        "raw_frame_bytes_per_frame": round(raw / frames, 1) if frames else None,
        "archive_bytes_per_frame": round(stored / frames, 1) if frames else None,
        "archive_of_raw": round(stored / raw, 3) if raw else None,
    }


def _run(n: int, archive: bool, tmp: Path) -> dict[str, object]:
    sim = subprocess.Popen([*CLI, "simulate", "--venue", "binance", "--port", "0", "--seed", "1",
                            "--symbols", ",".join(_symbols(n))],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)  # fmt: skip
    assert sim.stdout is not None
    urls = json.loads(sim.stdout.readline())
    session = f"arc-{n}-{'on' if archive else 'off'}"
    data = tmp / session
    cfg = tmp / f"{session}.toml"
    cfg.write_text(
        f'session_id = "{session}"\ninterval = "100ms"\ndepth = 20\nformat = "parquet"\ndata_dir = "{data}"\n'
        f'[venues.binance]\npairs = {json.dumps(_pairs(n))}\nws_url = "{urls["ws_url"]}"\n'
        f'rest_url = "{urls["rest_url"]}"\nsnapshot_limit = 100\n[archive]\nenabled = {str(archive).lower()}\n'
    )
    cap = subprocess.Popen([*CLI, "start-capture", "--config", str(cfg), "--log-level", "WARNING"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    status_path = data / ".sessions" / session / "status.json"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # warm-up: every book synced
            if status_path.exists():
                v = json.loads(status_path.read_text())["venues"].get("binance")
                if v and all(p["synced"] for p in v["pairs"].values()):
                    break
            time.sleep(0.5)
        st0 = json.loads(status_path.read_text())
        venue = psutil.Process(st0["venues"]["binance"]["pid"])
        cpu0, t0 = sum(venue.cpu_times()[:2]), time.monotonic()
        time.sleep(SECONDS)
        cpu1, elapsed = sum(venue.cpu_times()[:2]), time.monotonic() - t0
        st1 = json.loads(status_path.read_text())
    finally:
        cap.send_signal(signal.SIGTERM)
        cap.wait(120)
        sim.send_signal(signal.SIGTERM)
        sim.wait(30)
    v0, v1 = st0["venues"]["binance"], st1["venues"]["binance"]
    result: dict[str, object] = {
        "pairs": n,
        "archive": archive,
        # (no file at all: nothing synced within the warm-up, e.g. on an overloaded machine)
        **(_stored(data, n, st0["updated_at_ms"], st1["updated_at_ms"]) if (data / "parquet").exists() else _NONE),
        "expected_per_s": n * 10,
        "missed_ticks": v1["missed_ticks"] - v0["missed_ticks"],
        "ring_drops": v1["ring_drops"] - v0["ring_drops"],
        "messages_per_s": round((v1["messages"] - v0["messages"]) / elapsed, 1),
        "venue_cpu_percent": round(100 * (cpu1 - cpu0) / elapsed, 1),
    }
    if archive:
        result.update(_archive_figures(data, session))
    return result


@pytest.mark.parametrize("archive", [False, True], ids=["archive-off", "archive-on"])
@pytest.mark.parametrize("n", PAIRS)
@pytest.mark.benchmark(group="archive end to end")
@pytest.mark.timeout(SECONDS + 600)
def test_archive_end_to_end(benchmark, n: int, archive: bool, tmp_path: Path) -> None:
    result = benchmark.pedantic(_run, args=(n, archive, tmp_path), rounds=1, iterations=1)
    benchmark.extra_info.update(result)
    benchmark.extra_info["baseline"] = not archive
    print(json.dumps(result))
    assert result["stored_per_s"] > 0
    if archive:
        assert result["frames"] > 0 and result["archive_bytes"] > 0
