"""One real capture (supervisor, venue and writer processes) against a simulator that injects
every fault kind in turn. Each test: the fault is detected (its counter moves), the capture
recovers (every book synced again, samples flowing), and the last test proves that what was
stored is complete, untorn and equal to the simulator's own books.

kill -9 of the venue process and of the writer is covered by test_capture_e2e.py.
"""

from __future__ import annotations

import json
import signal
import subprocess
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Sim, assert_no_torn_files, popen_cli, read_jsonl, status, terminate, wait_for, write_config

PAIRS = ["BTC-USDT", "ETH-USDT"]
SESSION = "faults"
pytestmark = pytest.mark.timeout(120)


class Capture:
    def __init__(self, sim: Sim, tmp: Path) -> None:
        self.sim = sim
        self.data = tmp / "data"
        cfg = write_config(
            tmp / "faults.toml",
            sim.urls,
            PAIRS,
            self.data,
            # snapshot_limit 1000 (weight 50, not the default 5000's 250): every fault here resyncs
            # every book, repeatedly, and the REST budget would pace the retries by the minute.
            venue_extra={"stall_timeout_s": 3.0, "lag_alert_s": 1.0, "rest_timeout_s": 2.0, "snapshot_limit": 1000},
            writer={"rotate_seconds": 2.0},
        )
        self.proc: subprocess.Popen[str] = popen_cli(
            "start-capture", "--config", str(cfg), "--interval", "0.5", "--session-id", SESSION
        )

    def status(self) -> dict[str, Any]:
        st = status(self.data, SESSION)
        return st if st and st.get("venues") else {}

    def venue(self) -> dict[str, Any]:
        return self.status().get("venues", {}).get("binance", {})

    def inject(self, **fault: Any) -> None:
        req = urllib.request.Request(
            f"{self.sim.urls['sim_url']}/sim/fault",
            data=json.dumps(fault).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.status == 200

    def wait_detected(self, what: str, get: Any, before: Any, timeout: float = 40) -> None:
        wait_for(lambda: (v := self.venue()) and get(v) > before, timeout, f"{what} to be detected")

    def wait_recovered(self, timeout: float = 60) -> None:
        """Every pair synced and sampling again (a few new samples per pair)."""
        before = {p: s["samples"] for p, s in self.venue()["pairs"].items()}

        def ok() -> bool:
            pairs = self.venue().get("pairs", {})
            return bool(pairs) and all(pairs[p]["synced"] and pairs[p]["samples"] >= before[p] + 3 for p in PAIRS)

        wait_for(ok, timeout, "recovery: all pairs synced and sampling")


@pytest.fixture(scope="module")
def cap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Capture]:
    sim = Sim("--seed", "11", "--ping-interval", "1")
    c = Capture(sim, tmp_path_factory.mktemp("faults"))
    try:
        wait_for(lambda: (v := c.venue()) and all(p["samples"] >= 2 for p in v["pairs"].values()), 60, "first sync")
        yield c
    finally:
        terminate(c.proc, 60)
        sim.stop()


def test_drop_is_detected_and_reconnected(cap: Capture) -> None:
    before = cap.venue()["reconnects"]
    cap.inject(kind="drop")
    cap.wait_detected("drop", lambda v: v["reconnects"], before)
    cap.wait_recovered()


def test_close_with_error_code(cap: Capture) -> None:
    before = cap.venue()["reconnects"]
    cap.inject(kind="close", code=4000)
    cap.wait_detected("close", lambda v: v["reconnects"], before)
    cap.wait_recovered()


def test_stall_is_detected_by_silence(cap: Capture) -> None:
    before = cap.venue()["stalls"]
    cap.inject(kind="stall", duration_s=8.0)  # longer than stall_timeout_s = 3
    cap.wait_detected("stall", lambda v: v["stalls"], before)
    cap.wait_recovered()


def test_malformed_frame_is_counted_and_ignored(cap: Capture) -> None:
    v0 = cap.venue()
    cap.inject(kind="malformed")
    cap.wait_detected("malformed frame", lambda v: v["malformed"], v0["malformed"])
    cap.wait_recovered()
    assert cap.venue()["reconnects"] == v0["reconnects"]  # a bad frame is not a reason to reconnect


def test_gap_resyncs_only_that_book(cap: Capture) -> None:
    v0 = cap.venue()["pairs"]
    cap.inject(kind="gap", symbol="BTCUSDT", count=2)
    cap.wait_detected("gap", lambda v: v["pairs"]["BTC-USDT"]["gaps"], v0["BTC-USDT"]["gaps"])
    cap.wait_detected("resync", lambda v: v["pairs"]["BTC-USDT"]["resyncs"], v0["BTC-USDT"]["resyncs"])
    cap.wait_recovered()
    assert cap.venue()["pairs"]["ETH-USDT"]["gaps"] == v0["ETH-USDT"]["gaps"]


def test_corrupt_level_is_never_stored(cap: Capture) -> None:
    v0 = cap.venue()
    cap.inject(kind="corrupt", symbol="ETHUSDT")
    cap.wait_detected("corrupt book", lambda v: v["missed_by_cause"]["crossed"], v0["missed_by_cause"]["crossed"])
    cap.wait_detected("resync", lambda v: v["pairs"]["ETH-USDT"]["resyncs"], v0["pairs"]["ETH-USDT"]["resyncs"])
    cap.wait_recovered()


def test_refused_snapshot_is_retried(cap: Capture) -> None:
    before = cap.venue()["rest_errors"]
    cap.inject(kind="rest_refuse", duration_s=4.0, code=503)
    cap.inject(kind="gap", count=1)  # every book needs a snapshot now
    cap.wait_detected("refused snapshot", lambda v: v["rest_errors"], before)
    cap.wait_recovered()


def test_delayed_snapshot_times_out_and_is_retried(cap: Capture) -> None:
    before = cap.venue()["rest_errors"]
    cap.inject(kind="rest_delay", duration_s=4.0, delay_s=3.0)  # longer than rest_timeout_s = 2
    cap.inject(kind="gap", count=1)
    cap.wait_detected("snapshot timeout", lambda v: v["rest_errors"], before)
    cap.wait_recovered()


def test_slow_feed_is_reported_as_lagging(cap: Capture) -> None:
    before = cap.venue()["lag_alerts"]
    cap.inject(kind="slow", duration_s=4.0, rate=3.0)
    cap.wait_detected("lag", lambda v: v["lag_alerts"], before)
    wait_for(lambda: not cap.venue()["lagging"], 60, "the feed to catch up")
    cap.wait_recovered()


def test_simulator_restart(cap: Capture) -> None:
    before = cap.venue()["reconnects"]
    cap.inject(kind="restart", duration_s=3.0)
    cap.wait_detected("restart", lambda v: v["reconnects"], before)
    cap.wait_recovered()


def test_stop_flushes_everything_and_books_match_simulator(cap: Capture) -> None:
    cap.proc.send_signal(signal.SIGTERM)
    assert cap.proc.wait(90) == 0, cap.proc.stderr.read()[-3000:] if cap.proc.stderr else ""
    final = status(cap.data, SESSION)
    assert final is not None and final["state"] == "stopped" and final["flushed"] is True
    venue = final["venues"]["binance"]
    assert venue["ring_drops"] == 0
    stored = read_jsonl(cap.data)
    assert len(stored) == venue["samples"] == final["writer"]["snapshots_written"]
    by_pair: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for s in stored:
        by_pair[s["pair"]].append(s)
    for pair, items in by_pair.items():
        items.sort(key=lambda s: s["sequence_number"])
        assert [s["sequence_number"] for s in items] == list(range(len(items)))
        ts = [s["timestamp_ms"] for s in items]
        # Every tick from the first to the last is either stored or counted as missed.
        assert len(ts) + venue["pairs"][pair]["missed_ticks"] == (ts[-1] - ts[0]) // 500 + 1, pair
    for s in stored:
        url = f"{cap.sim.urls['sim_url']}/sim/book?symbol={s['pair'].replace('-', '')}&update_id={s['update_id']}"
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                ref = json.load(resp)
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"simulator has no book at {s['update_id']}") from exc
        assert [(float(p), float(q)) for p, q in ref["bids"]] == [(lv["price"], lv["qty"]) for lv in s["bids"]]
        assert [(float(p), float(q)) for p, q in ref["asks"]] == [(lv["price"], lv["qty"]) for lv in s["asks"]]
    assert_no_torn_files(cap.data)
