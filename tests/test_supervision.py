"""The supervisor's own safety nets, with real processes: a hung child is killed and restarted,
and a child that keeps dying trips the crash-loop limit instead of restarting forever."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest

from recorder.supervisor import child as sup_child
from tests.conftest import Sim, popen_cli, read_jsonl, status, wait_for, write_config

pytestmark = pytest.mark.timeout(120)


def _die() -> None:
    sys.exit(7)


def test_crash_loop_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sup_child, "CRASH_LOOP_RESTARTS", 3)
    child = sup_child.Child("always-dies", _die, ())
    child.start()
    deadline = time.monotonic() + 60
    while child.poll():
        assert time.monotonic() < deadline, "crash loop never detected"
        time.sleep(0.05)
    assert child.last_exitcode == 7 and len(child.exits) == 3 and child.restarts == 2


def test_hung_venue_process_is_killed_and_restarted(sim: Sim, tmp_path: Path) -> None:
    data = tmp_path / "data"
    cfg = write_config(tmp_path / "c.toml", sim.urls, ["BTC-USDT"], data, hang_timeout_s=3.0)
    proc = popen_cli("start-capture", "--config", str(cfg), "--interval", "0.5", "--session-id", "hang")
    try:
        venue = lambda: (status(data, "hang") or {}).get("venues", {}).get("binance", {})  # noqa: E731
        wait_for(lambda: venue().get("samples", 0) >= 3, 60, "first samples")
        pid = venue()["pid"]
        os.kill(pid, signal.SIGSTOP)  # alive, but its event loop never runs again
        wait_for(lambda: venue().get("hangs", 0) >= 1 and venue().get("pid") not in (None, pid), 60, "hang handled")
        before = venue()["samples"]
        wait_for(lambda: venue()["samples"] >= before + 3, 60, "samples after the restart")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    final = status(data, "hang")
    assert final is not None and final["flushed"] and final["venues"]["binance"]["restarts"] == 1
    assert len(read_jsonl(data)) == final["venues"]["binance"]["samples"]
