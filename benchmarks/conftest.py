"""Benchmark fixtures: real recorded venue frames and a place to put figures for docs/benchmarks.md.

Every benchmark group has one baseline measured in the same run; `benchmarks/report.py` turns the
pytest-benchmark JSON into ratios against it, so a noisy machine shifts both sides alike.
`pytest benchmarks --benchmark-disable` runs every benchmark once on small sizes (benchmarks/quick.py).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from moto.server import ThreadedMotoServer

from recorder.replay.readers import CaptureReader, Kind
from tests.s3_support import isolate_aws_env

ROOT = Path(__file__).resolve().parent.parent
RECORDINGS = ROOT / "tests" / "data" / "recordings"


def pytest_configure(config: pytest.Config) -> None:
    # Before the benchmark modules are imported: their sizes read it (benchmarks/quick.py). Under
    # xdist pytest-benchmark measures nothing either, so that is quick mode too.
    disabled = config.getoption("benchmark_disable", False) or bool(getattr(config.option, "numprocesses", 0))
    if disabled or hasattr(config, "workerinput"):
        os.environ.setdefault("BENCH_QUICK", "1")


@pytest.fixture(scope="session")
def binance_recording() -> tuple[list[bytes], dict[str, bytes]]:
    ws = CaptureReader(RECORDINGS / "binance" / "BINANCE.ws.1.0")
    frames = [r.payload for r in ws if r.kind is Kind.WS and b"@depth" in r.payload[:40]]
    snaps: dict[str, bytes] = {}
    for r in CaptureReader(RECORDINGS / "binance" / "BINANCE.http.0.0"):
        if r.kind is Kind.HTTP and r.url and "symbol=" in r.url:
            snaps[r.url.split("symbol=")[1].split("&")[0]] = r.payload
    return frames, snaps


@pytest.fixture(scope="module")
def moto_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real S3 API (moto's server) on loopback, with throwaway credentials and no proxy."""
    home = tmp_path_factory.mktemp("aws")
    with pytest.MonkeyPatch.context() as mp:
        isolate_aws_env(mp, home, "AKIABENCH", "bench")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()
        yield f"http://127.0.0.1:{port}"
        server.stop()
