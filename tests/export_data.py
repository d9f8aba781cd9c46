"""Data the export tests share: a capture on the simulator (through recorder.api) and real
recordings replayed (``python cli.py replay``); the export CLI; our snapshots per pair, read with
recorder.dataset (the reference, never the exporter).

A test module takes these fixtures by importing them (``from tests.export_data import replayed``)
and asking for them by name (``request.getfixturevalue``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from recorder.dataset import open_dataset
from tests.conftest import ROOT, run_cli, wait_for

REC = ROOT / "tests" / "data" / "recordings" / "binance"


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Binance spot and USD-M recordings replayed through the live code path."""
    data = tmp_path_factory.mktemp("replayed") / "data"
    for name, venue in (("BINANCE.ws.1.0", "binance"), ("BINANCE_FUTURES.ws.1.0", "binance-futures")):
        res = run_cli("replay", "--venue", venue, "--input", str(REC / name), "--data-dir", str(data))
        assert res.returncode == 0, res.stderr[-2000:]
    return data


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A short capture of two pairs on the simulator (JSONL and Parquet)."""
    from recorder.api import Capture

    data = tmp_path_factory.mktemp("simulated") / "data"
    pairs = ["BTC-USDT", "ETH-USDT"]
    with Capture(venue="binance", pairs=pairs, interval="200ms", data_dir=data, session_id="sim", simulate=True) as cap:

        def enough() -> bool:
            venues = cap.status().get("venues") or {}
            counts = [p["samples"] for v in venues.values() for p in v["pairs"].values()]
            return len(counts) == 2 and min(counts) >= 15

        wait_for(enough, 120, "15 samples per pair")
    return data


def export_cli(data: Path, to: str, out: Path, *extra: str) -> None:
    res = run_cli("export", "--to", to, "--data-dir", str(data), "--out", str(out), *extra, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.startswith("exported "), res.stdout


def ours(data: Path) -> dict[tuple[str, str], list]:
    books: dict[tuple[str, str], list] = {}
    for s in open_dataset(data).snapshots():
        books.setdefault((s.exchange, s.pair), []).append(s)
    return books
