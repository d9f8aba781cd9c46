"""The reliability demo end to end: `demo --minutes 1` must pass (CI runs it)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.timeout(400)


def test_demo_one_minute_passes(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    res = run_cli("demo", "--minutes", "1", "--out", str(out), timeout=380)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    assert "RESULT: PASS" in res.stdout
    report = json.loads((out / "report.json").read_text())
    assert report["ok"] and not report["problems"]
    kinds = {f["kind"] for f in report["faults"]}
    assert {"drop", "stall", "close", "malformed", "gap", "corrupt", "slow", "restart"} <= kinds
    assert {"rest_refuse", "rest_delay", "kill_venue", "kill_writer"} <= kinds
    # Detected everywhere it applies (None: a REST snapshot fault on a venue that takes none).
    assert all(ok is not False for f in report["faults"] for ok in f["detected"].values())
    assert set(report["venues"]) == {"binance", "binance-futures", "bybit", "coinbase", "kraken", "okx"}
    assert not report["left_out"]
    for f in report["faults"]:
        if f["kind"].startswith("rest_"):
            assert f["detected"]["binance"] is True and f["detected"]["kraken"] is None, f
    for venue, tally in report["faults_per_venue"].items():
        assert tally["injected"] > 0 and tally["detected"] == tally["injected"], (venue, tally)
    assert report["books_verified"] > 0 and report["books_differing"] == 0
    assert {key.split("/")[0] for key in report["pairs"]} == set(report["venues"])
    for pair in report["pairs"].values():
        assert pair["unaccounted"] == 0 and pair["stored"] > 0


def test_demo_rejects_bad_arguments(tmp_path: Path) -> None:
    res = run_cli("demo", "--minutes", "0.5", "--out", str(tmp_path / "x"))
    assert res.returncode == 2 and "at least 1" in res.stderr and "Traceback" not in res.stderr
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "f").write_text("x")
    res = run_cli("demo", "--out", str(tmp_path / "full"))
    assert res.returncode == 2 and "not empty" in res.stderr
