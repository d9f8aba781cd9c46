"""S3 uploader costs: scanning a large spool, and a verified multipart upload to moto on loopback.

Run: ``python -m pytest benchmarks/test_s3_bench.py --benchmark-only``. The upload figure is
bounded by moto (a Python server), so it is a floor for real S3, not a ceiling.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from moto.server import ThreadedMotoServer

from recorder.config import S3Config
from recorder.sinks.s3 import S3Store, expected_etag
from recorder.sinks.spool import Spool

MIB = 1024 * 1024


@pytest.fixture
def moto_url(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    for key in list(os.environ):
        if "proxy" in key.lower() or key.startswith("AWS_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIABENCH")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "bench")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


def test_spool_scan_5000_files(benchmark, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A week of 5-minute files for a few exchanges, none uploaded yet (S3 down)."""
    for i in range(5000):
        d = tmp_path / "parquet" / f"exchange=ex{i % 5}" / f"date=2026-11-{1 + i % 28:02d}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"bench-{1764028800000 + i}-{i:06d}.parquet").write_bytes(b"x")
    spool = Spool(tmp_path, "bench", "s3://b/p")
    spool.load()
    assert len(spool.scan()) == 5000
    benchmark(spool.scan)


def test_verified_multipart_upload_32mib(benchmark, moto_url: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    store = S3Store(S3Config(bucket="bench-bucket", endpoint_url=moto_url, part_size_mb=8, upload_concurrency=4))
    store.client.create_bucket(Bucket="bench-bucket")
    path = tmp_path / "big.parquet"
    path.write_bytes(os.urandom(32 * MIB))
    size, etag = benchmark.pedantic(lambda: store.upload(path, "bench/big.parquet"), rounds=3, iterations=1)
    assert size == 32 * MIB and etag.endswith("-4")
    benchmark.extra_info["MiB"] = 32


def test_etag_recompute_64mib(benchmark, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The local half of the confirmation: MD5 per part of a 64 MiB file."""
    path = tmp_path / "f"
    path.write_bytes(os.urandom(64 * MIB))
    store_cfg = S3Config(bucket="x-bucket", part_size_mb=16)
    transfer = S3Store(store_cfg).transfer
    etag = benchmark(expected_etag, path, 64 * MIB, transfer)
    assert etag.endswith("-4")
