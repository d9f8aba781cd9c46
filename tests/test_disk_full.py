"""A data volume that fills up, on a real (tmpfs) filesystem of a few MB.

While nothing can be written the venue keeps sampling into its shared-memory ring (the bound),
the condition is reported loudly, what overflows the ring is counted, and writing resumes by
itself once space returns; nothing that was kept is lost or torn.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from pathlib import Path

import pytest

from tests.conftest import Sim, assert_no_torn_files, popen_cli, read_jsonl, status, wait_for, write_config

pytestmark = pytest.mark.timeout(150)
SESSION = "full"


def _mount_tmpfs(path: Path, size: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a small tmpfs")
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount tmpfs: {res.stderr.decode().strip()}")


def _fill(path: Path) -> None:
    try:
        with open(path, "wb") as fh:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
    except OSError:  # full, possibly already by the capture's own files
        pass


def test_disk_full_buffers_in_memory_counts_overflow_and_resumes(sim: Sim, tmp_path: Path) -> None:
    data = tmp_path / "data"
    volume = data / "jsonl"  # only the data files live on the small volume; status stays readable
    volume.mkdir(parents=True)
    _mount_tmpfs(volume, "4m")
    proc: subprocess.Popen[str] | None = None
    try:
        cfg = write_config(
            tmp_path / "c.toml",
            sim.urls,
            ["BTC-USDT", "ETH-USDT"],
            data,
            format="jsonl",
            depth=100,
            writer={"ring_mb": 1, "rotate_seconds": 1.0},
        )
        proc = popen_cli("start-capture", "--config", str(cfg), "--interval", "50ms", "--session-id", SESSION)
        logs: list[str] = []
        assert proc.stderr is not None
        threading.Thread(target=lambda: logs.extend(iter(proc.stderr.readline, "")), daemon=True).start()

        def st() -> dict:
            return status(data, SESSION) or {}

        wait_for(lambda: st().get("writer", {}).get("files_written", 0) >= 2, 60, "first files")
        _fill(volume / "filler")
        wait_for(lambda: st()["writer"]["storage_failing"] == 1, 30, "storage failure to be reported")
        wait_for(lambda: any("event=storage_failing" in line for line in logs), 10, "a loud log line")
        written = st()["writer"]["snapshots_written"]
        # The ring fills up; the venue keeps sampling and counts what it cannot keep.
        wait_for(lambda: st()["venues"]["binance"]["ring_drops"] > 0, 60, "ring overflow to be counted")
        ticks = st()["venues"]["binance"]["ticks"]
        wait_for(lambda: st()["venues"]["binance"]["ticks"] > ticks + 10, 30, "the venue to keep sampling")
        assert st()["writer"]["snapshots_written"] == written  # nothing was written meanwhile
        (volume / "filler").unlink()
        wait_for(lambda: st()["writer"]["storage_failing"] == 0, 30, "writing to resume")
        wait_for(lambda: st()["writer"]["snapshots_written"] > written, 30, "the backlog to be written")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(90) == 0
        assert any("event=storage_recovered" in line for line in logs)
        final = status(data, SESSION)
        assert final is not None and final["flushed"] is True
        venue, writer = final["venues"]["binance"], final["writer"]
        assert writer["storage_outages"] >= 1 and writer["write_errors"] >= 1
        stored = read_jsonl(data)
        # Everything the venue pushed into the ring is stored; only the counted overflow is not.
        assert len(stored) == venue["samples"] == writer["snapshots_written"]
        assert venue["ring_drops"] > 0
        assert sum(p["ring_drops"] for p in venue["pairs"].values()) == venue["ring_drops"]  # per pair too
        for pair in ("BTC-USDT", "ETH-USDT"):
            seqs = sorted(s["sequence_number"] for s in stored if s["pair"] == pair)
            assert seqs == list(range(len(seqs)))
        assert not list(volume.rglob(".*.tmp"))
        assert_no_torn_files(data)
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(30)
        subprocess.run(["umount", "-l", str(volume)], check=False)
