"""S3 uploader costs, each beside a same-run baseline (see report.py).

* spool scan (mtime-cached walk + ledger filter) vs a plain ``os.walk`` of the same tree;
* verified multipart upload (upload_file + HEAD + ETag recompute) vs one bare ``put_object``,
  both to moto's server on loopback (a Python server: a floor for real S3, not a ceiling);
* the ETag recompute (MD5 per part) vs one MD5 over the file.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any

import pytest

from benchmarks.quick import size
from recorder.config import S3Config
from recorder.sinks.s3 import S3Store, expected_etag
from recorder.sinks.spool import Spool

MIB = 1024 * 1024
SCAN_FILES = size(5000, 300)
UPLOAD_MIB = size(32, 16)
PARTS = UPLOAD_MIB // 8  # 8 MiB parts


@pytest.fixture(scope="module")
def spool_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A week of 5-minute files for five exchanges, none uploaded yet (S3 down)."""
    root = tmp_path_factory.mktemp("spool")
    for i in range(SCAN_FILES):
        d = root / "parquet" / f"exchange=ex{i % 5}" / f"date=2026-11-{1 + i % 28:02d}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"bench-{1764028800000 + i}-{i:06d}.parquet").write_bytes(b"x")
    return root


@pytest.fixture(scope="module")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("big") / "big.parquet"
    path.write_bytes(os.urandom(UPLOAD_MIB * MIB))
    return path


@pytest.mark.benchmark(group=f"s3: scan a spool of {SCAN_FILES} files")
def test_scan_baseline_os_walk(benchmark: Any, spool_tree: Path) -> None:
    name = re.compile(r"^bench-(\d+)-(\d+)\.(parquet|jsonl)$")

    def walk() -> list[str]:
        return sorted(os.path.join(d, f) for d, _, files in os.walk(spool_tree) for f in files if name.match(f))

    assert len(benchmark(walk)) == SCAN_FILES
    benchmark.extra_info.update(baseline=True, files=SCAN_FILES)


@pytest.mark.benchmark(group=f"s3: scan a spool of {SCAN_FILES} files")
def test_scan_spool(benchmark: Any, spool_tree: Path) -> None:
    spool = Spool(spool_tree, "bench", "s3://b/p")
    spool.load()
    assert len(spool.scan()) == SCAN_FILES
    benchmark(spool.scan)
    benchmark.extra_info.update(files=SCAN_FILES)


@pytest.mark.benchmark(group=f"s3: upload {UPLOAD_MIB} MiB to moto on loopback")
def test_upload_baseline_put_object(benchmark: Any, moto_url: str, big_file: Path) -> None:
    store = S3Store(S3Config(bucket="bench-base", endpoint_url=moto_url))
    store.client.create_bucket(Bucket="bench-base")
    body = big_file.read_bytes()
    benchmark.pedantic(lambda: store.client.put_object(Bucket="bench-base", Key="k", Body=body), rounds=3)
    benchmark.extra_info.update(baseline=True, MiB=UPLOAD_MIB)


@pytest.mark.benchmark(group=f"s3: upload {UPLOAD_MIB} MiB to moto on loopback")
def test_upload_verified_multipart(benchmark: Any, moto_url: str, big_file: Path) -> None:
    cfg = S3Config(bucket="bench-bucket", endpoint_url=moto_url, part_size_mb=8, upload_concurrency=4)
    store = S3Store(cfg)
    store.client.create_bucket(Bucket="bench-bucket")
    nbytes, etag = benchmark.pedantic(lambda: store.upload(big_file, "bench/big.parquet"), rounds=3)
    assert nbytes == UPLOAD_MIB * MIB and etag.endswith(f"-{PARTS}")
    benchmark.extra_info.update(MiB=UPLOAD_MIB, parts=PARTS, concurrency=4)


@pytest.mark.benchmark(group=f"s3: ETag of {UPLOAD_MIB} MiB")
def test_etag_baseline_md5(benchmark: Any, big_file: Path) -> None:
    benchmark(lambda: hashlib.md5(big_file.read_bytes(), usedforsecurity=False).hexdigest())
    benchmark.extra_info.update(baseline=True)


@pytest.mark.benchmark(group=f"s3: ETag of {UPLOAD_MIB} MiB")
def test_etag_multipart_recompute(benchmark: Any, big_file: Path) -> None:
    transfer = S3Store(S3Config(bucket="x-bucket", part_size_mb=8)).transfer
    assert benchmark(expected_etag, big_file, UPLOAD_MIB * MIB, transfer).endswith(f"-{PARTS}")
