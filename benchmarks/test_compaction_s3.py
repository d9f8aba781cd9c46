"""Compaction on S3 (moto's server on loopback: a Python server, a floor for real S3): 120 small
Parquet files and 120 small JSONL files of one partition each, beside the floor of the same job
with bare boto3 (GET every file, PUT one concatenation, DELETE the sources) and no merge/commit.
"""

from __future__ import annotations

import os
from pathlib import Path

import boto3
import pytest

from benchmarks.quick import size
from recorder.compaction import compact
from recorder.config import S3Config
from recorder.model import Level, Snapshot
from recorder.sinks.local import prepare_jsonl, prepare_parquet, publish
from recorder.writer.batches import batches_to_table, data_file_path, snapshot_jsonl, snapshots_to_batch

FILES = size(120, 12)
SNAPS_PER_FILE = 100  # 20 pairs x 5 ticks, depth 10 a side
PAIRS = [f"P{i:02d}-USDT" for i in range(20)]
T0 = 1_795_000_000_000
PREFIX = "bench"


@pytest.fixture(scope="module")
def small_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    data = tmp_path_factory.mktemp("small") / "data"
    for f in range(FILES):
        snaps = [
            Snapshot(exchange="binance", pair=PAIRS[k % 20], timestamp_ms=T0 + (f * SNAPS_PER_FILE + k) // 20 * 1000,
                     bids=[Level(100.0 - 0.01 * j, 1.0 + k) for j in range(10)],
                     asks=[Level(100.1 + 0.01 * j, 1.0) for j in range(10)],
                     capture_latency_ms=1.0, sequence_number=f * 5 + k // 20, session_id="bench")
            for k in range(SNAPS_PER_FILE)
        ]  # fmt: skip
        for fmt in ("parquet", "jsonl"):
            path = data_file_path(data, fmt, "binance", "2026-11-18", "bench", T0 + f, f)
            if fmt == "parquet":
                publish(prepare_parquet(batches_to_table([snapshots_to_batch(snaps)]), path))
            else:
                publish(prepare_jsonl(b"".join(snapshot_jsonl(s) for s in snaps), path))
    return {p.relative_to(data).as_posix(): p.read_bytes() for p in data.rglob("*.*")}


def _fill(url: str, files: dict[str, bytes], n: int) -> str:
    client = boto3.client("s3", endpoint_url=url)
    bucket = f"bench-{os.getpid()}-{n}"
    client.create_bucket(Bucket=bucket)
    for rel, body in files.items():
        client.put_object(Bucket=bucket, Key=f"{PREFIX}/{rel}", Body=body)
    return bucket


@pytest.mark.benchmark(group="compaction-s3")
def test_compact_s3_both_formats(benchmark, moto_url: str, small_files: dict[str, bytes]) -> None:
    rounds = iter(range(100))
    buckets: list[str] = []

    def setup() -> tuple[tuple, dict]:
        buckets.append(_fill(moto_url, small_files, next(rounds)))
        return (), {}

    def run() -> None:
        cfg = S3Config(bucket=buckets[-1], prefix=PREFIX, endpoint_url=moto_url)
        res = compact(cfg, older_than_s=0)
        assert (res.files_in, res.files_out) == (2 * FILES, 2)

    benchmark.pedantic(run, setup=setup, rounds=3, iterations=1)
    keys = boto3.client("s3", endpoint_url=moto_url).list_objects_v2(Bucket=buckets[-1])["Contents"]
    assert len(keys) == 2
    benchmark.extra_info["files_before"] = 2 * FILES
    benchmark.extra_info["files_after"] = len(keys)


@pytest.mark.benchmark(group="compaction-s3")
def test_bare_boto3_floor(benchmark, moto_url: str, small_files: dict[str, bytes], tmp_path: Path) -> None:
    rounds = iter(range(100, 200))
    buckets: list[str] = []

    def setup() -> tuple[tuple, dict]:
        buckets.append(_fill(moto_url, small_files, next(rounds)))
        return (), {}

    def run() -> None:
        client = boto3.client("s3", endpoint_url=moto_url)
        bucket = buckets[-1]
        for fmt in ("parquet", "jsonl"):
            keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix=f"{PREFIX}/{fmt}/")["Contents"]]
            body = b"".join(client.get_object(Bucket=bucket, Key=k)["Body"].read() for k in keys)
            client.put_object(Bucket=bucket, Key=f"{PREFIX}/{fmt}/all.{fmt}", Body=body)
            client.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True})

    benchmark.pedantic(run, setup=setup, rounds=3, iterations=1)
    benchmark.extra_info["baseline"] = True
