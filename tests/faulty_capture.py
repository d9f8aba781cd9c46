"""One real capture against the simulator with faults injected at known wall-clock times, shared
by the dataset and report tests through the session-scoped `faulty_capture` fixture (conftest.py).

Faults, in order, each waited out until both pairs sample again:
  1. the WebSocket is cut by a TCP proxy between recorder and simulator  -> cause ``disconnect``
  2. the venue process is killed with SIGKILL (the supervisor restarts it) -> cause ``restart``
  3. the WebSocket is cut again                                           -> cause ``disconnect``
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import CLI, ROOT, Sim, status, wait_for, write_config
from tests.tcp_proxy import TcpProxy

PAIRS = ["BTC-USDT", "ETH-USDT"]
SESSION = "faulty"
INTERVAL_MS = 250


@dataclass
class FaultyCapture:
    data: Path
    session: str
    faults: list[tuple[str, int]]  # (expected cause, wall-clock ms of the injection)
    final_status: dict


def _venue(data: Path) -> dict:
    st = status(data, SESSION)
    return (st or {}).get("venues", {}).get("binance", {})


def _pair_samples(data: Path) -> dict[str, int]:
    st = status(data, SESSION)
    if not st or not st.get("venues"):
        return {p: 0 for p in PAIRS}
    return {p: v["samples"] for p, v in st["venues"]["binance"]["pairs"].items()}


def _wait_all_pairs_sample(data: Path, more: int, what: str) -> None:
    """Until every pair has ``more`` new samples: the fault is over for all of them."""
    base = _pair_samples(data)
    wait_for(lambda: all(_pair_samples(data)[p] >= base[p] + more for p in PAIRS), 90, what)


def run_faulty_capture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultyCapture]:
    tmp = tmp_path_factory.mktemp("faulty")
    data = tmp / "data"
    sim = Sim("--seed", "11", "--ping-interval", "2")
    host, port = sim.urls["ws_url"].removeprefix("ws://").rsplit(":", 1)
    proxy = TcpProxy(host, int(port))
    urls = {**sim.urls, "ws_url": f"ws://127.0.0.1:{proxy.port}"}
    cfg = write_config(tmp / "c.toml", urls, PAIRS, data, writer={"rotate_snapshots": 40})
    log = open(tmp / "capture.log", "w")  # a file, not a pipe: a full pipe would block the capture
    proc = subprocess.Popen(
        [*CLI, "start-capture", "--config", str(cfg), "--interval", f"{INTERVAL_MS / 1000}", "--session-id", SESSION],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    faults: list[tuple[str, int]] = []
    try:
        _wait_all_pairs_sample(data, 12, "first samples")

        faults.append(("disconnect", proxy.cut()))
        wait_for(lambda: _venue(data).get("reconnects", 0) >= 1, 60, "reconnect")
        _wait_all_pairs_sample(data, 12, "samples after the first cut")

        pid = _venue(data)["pid"]
        faults.append(("restart", int(time.time() * 1000)))
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: _venue(data).get("pid") not in (None, pid), 60, "venue restart")
        _wait_all_pairs_sample(data, 12, "samples after the venue restart")

        faults.append(("disconnect", proxy.cut()))
        wait_for(lambda: _venue(data).get("reconnects", 0) >= 2, 60, "second reconnect")
        _wait_all_pairs_sample(data, 12, "samples after the second cut")

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(90) == 0, (tmp / "capture.log").read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        proxy.close()
        sim.stop()
        log.close()
    final = status(data, SESSION)
    assert final is not None and final["state"] == "stopped" and final["flushed"] is True
    yield FaultyCapture(data, SESSION, faults, final)
