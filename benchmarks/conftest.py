"""Benchmark fixtures: real recorded venue frames and a place to put figures for docs/benchmarks.md.

Every benchmark group has one baseline measured in the same run; `benchmarks/report.py` turns the
pytest-benchmark JSON into ratios against it, so a noisy machine shifts both sides alike.
"""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RECORDINGS = ROOT.parent / "shared" / "recordings"


def text_capture(path: Path) -> list[tuple[float, bytes]]:
    """`<unix s>: <frame>` lines of a cryptofeed text capture (URL line and sent frames skipped)."""
    out: list[tuple[float, bytes]] = []
    for line in path.read_bytes().splitlines():
        ts, sep, frame = line.partition(b": ")
        if not sep or b"<-" in ts or b" " in ts.strip():
            continue
        try:
            out.append((float(ts), frame))
        except ValueError:
            continue
    return out


def http_capture(path: Path) -> dict[str, bytes]:
    """`<url> -> <unix s>: <body>` lines -> {symbol: body}."""
    out: dict[str, bytes] = {}
    for line in path.read_bytes().splitlines():
        url, sep, rest = line.partition(b" -> ")
        if not sep:
            continue
        symbol = url.split(b"symbol=")[1].split(b"&")[0].decode()
        out[symbol] = rest.partition(b": ")[2]
    return out


@pytest.fixture(scope="session")
def binance_recording() -> tuple[list[bytes], dict[str, bytes]]:
    if not (RECORDINGS / "binance").exists():
        pytest.skip("../shared/recordings not beside the checkout")
    frames = [f for _, f in text_capture(RECORDINGS / "binance" / "BINANCE.ws.1.0") if b"@depth" in f[:40]]
    snaps = http_capture(RECORDINGS / "binance" / "BINANCE.http.0.0")
    return frames, snaps
