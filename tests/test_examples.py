"""The examples in examples/ run as documented (on short captures)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT


def test_hftbacktest_market_maker_example(tmp_path: Path) -> None:
    pytest.importorskip("hftbacktest")
    out = tmp_path / "out"
    res = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "hftbacktest_market_maker.py"), "--seconds", "6", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert "backtest: " in res.stdout and " fills, equity " in res.stdout, res.stdout
    png = out / "market_maker.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert list((out / "hftbacktest").glob("binance_BTC-USDT_*.npz"))
