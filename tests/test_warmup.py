"""Warm-up that everyone sees: ticks before a pair's first sync are not "missed", so a pair that
never syncs must show in status.json, Prometheus and `capture-status` by its warm-up ticks and its
missing first sync (issue 13 §5), with real processes on the Binance simulator."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import (
    Sim,
    free_port,
    read_jsonl,
    run_cli,
    running_cli,
    scrape_metrics,
    status,
    stop_cli,
    wait_for,
    write_config,
)

pytestmark = pytest.mark.timeout(150)

INTERVAL_MS = 200
SYNCED, BROKEN = "BTC-USDT", "ETH-USDT"


def _pairs(data: Path) -> dict[str, Any]:
    st = status(data, "warm")
    return st["venues"]["binance"]["pairs"] if st and st.get("venues") else {}


def test_a_pair_that_never_syncs_is_counted_everywhere(sim: Sim, tmp_path: Path) -> None:
    # Every ETHUSDT diff is withheld from the moment the recorder subscribes: its REST snapshot
    # never has a diff to join, so that book can never sync. BTCUSDT is untouched.
    sim.fault(kind="gap", symbol="ETHUSDT", count=10**7)
    data = tmp_path / "data"
    cfg = write_config(tmp_path / "c.toml", sim.urls, [SYNCED, BROKEN], data)
    port = free_port()
    args = ["--config", str(cfg), "--interval", f"{INTERVAL_MS / 1000}", "--format", "jsonl", "--session-id", "warm"]
    with running_cli("start-capture", *args, "--metrics-port", str(port)) as proc:
        wait_for(lambda: _pairs(data).get(SYNCED, {}).get("samples", 0) >= 5, 90, "samples of the synced pair")
        live = run_cli("capture-status", "--session-id", "warm", "--data-dir", str(data))
        assert live.returncode == 0, live.stderr
        assert "1 of 2 pairs still warming up, not synced yet, nothing stored for them" in live.stdout
        scraped = scrape_metrics(port)
        lb, ls = f'{{venue="binance",pair="{BROKEN}"}}', f'{{venue="binance",pair="{SYNCED}"}}'
        assert scraped['recorder_venue_pairs_never_synced{venue="binance"}'] == 1
        assert scraped[f"recorder_pair_ever_synced{lb}"] == 0 and scraped[f"recorder_pair_ever_synced{ls}"] == 1
        assert scraped[f"recorder_pair_warmup_ticks_total{lb}"] >= 5
        assert f"recorder_pair_time_to_first_sync_seconds{lb}" not in scraped
        assert scraped[f"recorder_pair_time_to_first_sync_seconds{ls}"] > 0
        # A venue process killed and restarted: the ticks lost meanwhile are still the broken
        # pair's warm-up (and the synced pair's misses), never uncounted.
        os.kill(status(data, "warm")["venues"]["binance"]["pid"], signal.SIGKILL)
        wait_for(lambda: status(data, "warm")["venues"]["binance"]["restarts"] >= 1, 60, "venue restart")
        before = _pairs(data)[SYNCED]["samples"]
        wait_for(lambda: _pairs(data)[SYNCED]["samples"] >= before + 3, 90, "samples after the restart")
        stop_cli(proc)

    final = status(data, "warm")
    assert final is not None and final["flushed"] is True
    venue = final["venues"]["binance"]
    broken, synced = venue["pairs"][BROKEN], venue["pairs"][SYNCED]
    assert venue["pairs_never_synced"] == 1
    assert broken["first_sync_ms"] is None and broken["time_to_first_sync_s"] is None
    assert broken["samples"] == 0 and broken["missed_ticks"] == 0
    assert venue["missed_by_cause"]["restart"] >= 1  # the restart did lose ticks
    # Every tick of the run is, for every pair, exactly one of: stored, missed, warm-up (no ring
    # drops here). The broken pair's warm-up is therefore the whole run, restart included.
    assert venue["ring_drops"] == 0
    total = synced["samples"] + synced["missed_ticks"] + synced["warmup_ticks"]
    assert broken["warmup_ticks"] == total
    assert venue["warmup_ticks"] == broken["warmup_ticks"] + synced["warmup_ticks"]

    # Against the stored files: nothing of the broken pair; the synced pair's first stored
    # snapshot is at its first sync, and that lies after the venue process started.
    stored = read_jsonl(data)
    assert {r["pair"] for r in stored} == {SYNCED}
    ticks = sorted(r["timestamp_ms"] for r in stored)
    assert len(ticks) == synced["samples"]
    assert synced["first_sync_ms"] == ticks[0]
    # The run's ticks span at least the stored ones plus the warm-up before the first of them.
    assert total >= (ticks[-1] - ticks[0]) // INTERVAL_MS + 1 + synced["warmup_ticks"]
    venue_started_s = synced["first_sync_ms"] / 1000 - synced["time_to_first_sync_s"]
    assert final["started_at_ms"] / 1000 <= venue_started_s + 0.001
    assert 0 < synced["time_to_first_sync_s"] < (ticks[0] - final["started_at_ms"]) / 1000 + 0.001
    # Warm-up ticks all lie between the venue process's start and the first sync.
    assert synced["warmup_ticks"] * INTERVAL_MS <= synced["time_to_first_sync_s"] * 1000 + INTERVAL_MS

    text = run_cli("capture-status", "--session-id", "warm", "--data-dir", str(data)).stdout
    line = next(x for x in text.splitlines() if "NEVER SYNCED" in x)
    assert line.strip().startswith("! binance: 1 of 2 pairs NEVER SYNCED") and line.endswith(f": {BROKEN}")
    assert f"({broken['warmup_ticks']} warm-up ticks, not counted as missed)" in line
    assert f"warm-up {synced['warmup_ticks']} (first sync {synced['time_to_first_sync_s']} s after start)" in text
