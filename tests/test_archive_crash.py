"""A venue process killed with SIGKILL: its archive stays readable, its successor publishes it,
and the session's archive replays every live row up to the kill and from the restart on."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import zstandard

from tests.conftest import Sim, read_jsonl, run_cli, running_cli, status, stop_cli, wait_for, write_config

SESSION = "crash"


def decompress_cut(path: Path) -> str:
    """One zstd frame per file, possibly cut by the kill: everything up to the cut."""
    return zstandard.ZstdDecompressor().decompressobj().decompress(path.read_bytes()).decode()


def test_sigkill_loses_at_most_the_last_flush(sim: Sim, tmp_path: Path) -> None:
    data = tmp_path / "data"
    cfg = write_config(tmp_path / "c.toml", sim.urls, ["BTC-USDT", "ETH-USDT"], data, interval_s=0.5, depth=5)
    with open(cfg, "a") as fh:
        fh.write("\n[archive]\nflush_s = 0.2\n")
    with running_cli("start-capture", "--config", str(cfg), "--session-id", SESSION) as proc:
        samples = lambda: (status(data, SESSION) or {}).get("venues", {}).get("binance", {}).get("samples", 0)  # noqa: E731
        wait_for(lambda: samples() >= 8, 90, "8 samples")
        pid = status(data, SESSION)["venues"]["binance"]["pid"]
        os.kill(pid, signal.SIGKILL)
        restarted = lambda: (status(data, SESSION) or {})["venues"]["binance"].get("pid") not in (pid, None)  # noqa: E731
        wait_for(restarted, 60, "the venue process restarted")
        before = samples()
        wait_for(lambda: samples() >= before + 8, 90, "8 samples after the restart")
        stop_cli(proc)

    files = sorted((data / "archive" / "exchange=binance").rglob("*"))
    assert [p for p in files if p.name.endswith(".part")] == []  # the successor published the part
    archives = [p for p in files if p.name.endswith(".jsonl.zst")]
    pids, ticks_of = [], {}
    for path in archives:  # every file readable with zstd alone, each line JSON
        lines = [json.loads(line) for line in decompress_cut(path).splitlines()]
        header = lines[0]
        assert header["t"] == "header" and header["venue"] == "binance"
        pids.append(header["pid"])
        ticks_of.setdefault(header["pid"], []).extend(o["tick"] for o in lines if o["t"] == "tick")
    assert pid in pids and len(set(pids)) == 2
    new_pid = next(p for p in pids if p != pid)
    last_before, first_after = max(ticks_of[pid]), min(ticks_of[new_pid])

    out = tmp_path / "replayed"
    args = ["replay", "--venue", "binance", "--data-dir", str(out), "--session-id", SESSION]
    for path in archives:
        args += ["--input", str(path)]
    res = run_cli(*args)
    assert res.returncode == 0, res.stderr[-2000:]

    def content(s: dict[str, Any]) -> str:  # a stored snapshot but its sequence number
        return json.dumps({k: v for k, v in s.items() if k != "sequence_number"}, sort_keys=True)

    live = {content(s): s["timestamp_ms"] for s in read_jsonl(data)}
    replayed = {content(s): s["timestamp_ms"] for s in read_jsonl(out)}
    assert set(replayed) <= set(live)  # nothing the live capture did not store
    lost = sorted(ts for c, ts in live.items() if c not in replayed)
    # Only the ticks between the last flush before the kill and the new process's first tick.
    assert all(last_before < ts < first_after for ts in lost), (lost, last_before, first_after)
    assert sum(1 for ts in replayed.values() if ts <= last_before) >= 4
    assert sum(1 for ts in replayed.values() if ts >= first_after) >= 4
