"""An archive uploaded to S3 by the spool (moto's S3 server), downloaded, replays into the rows
the capture uploaded."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Sim, run_cli, status
from tests.s3_support import isolate_aws_env
from tests.test_s3 import ACCESS_KEY, SECRET_KEY, MotoS3, s3_config


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[MotoS3]:
    isolate_aws_env(monkeypatch, tmp_path, ACCESS_KEY, SECRET_KEY)
    server = MotoS3().start()
    yield server
    server.stop()


def test_archive_uploaded_downloaded_and_replayed(sim: Sim, s3: MotoS3, tmp_path: Path) -> None:
    data = tmp_path / "data"
    bucket = s3.create_bucket()
    cfg = s3_config(tmp_path / "c.toml", sim, data, s3.url, bucket)
    with open(cfg, "a") as fh:
        fh.write("\n[archive]\nrotate_minutes = 0.05\nflush_s = 0.2\n")  # a new file every 3 s
    res = run_cli("start-capture", "--config", str(cfg), "--duration", "8s", "--session-id", "s3a", timeout=150)
    assert res.returncode == 0, res.stderr[-3000:]
    final = status(data, "s3a")
    assert final is not None and final["s3"]["spool_files"] == 0
    assert not list((data / "archive").rglob("*.zst"))  # uploaded, then deleted locally

    client = s3.client()
    keys = s3.keys(bucket, "orderbook_data/archive/exchange=binance/")
    assert len(keys) >= 2, keys  # rotated
    down = tmp_path / "down"
    for key in keys + s3.keys(bucket, "orderbook_data/jsonl/"):
        target = down / key.removeprefix("orderbook_data/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(client.get_object(Bucket=bucket, Key=key)["Body"].read())
    out = tmp_path / "replayed"
    args = ["replay", "--venue", "binance", "--data-dir", str(out), "--session-id", "s3a", "--format", "jsonl"]
    for f in sorted((down / "archive").rglob("*.jsonl.zst")):
        args += ["--input", str(f)]
    res = run_cli(*args)
    assert res.returncode == 0, res.stderr[-2000:]

    def snaps(root: Path) -> list[dict]:
        rows = [json.loads(line) for p in (root / "jsonl").rglob("*.jsonl") for line in p.read_text().splitlines()]
        return sorted(rows, key=lambda s: (s["pair"], s["sequence_number"]))

    live = snaps(down)
    assert len(live) == final["venues"]["binance"]["samples"] > 0
    assert snaps(out) == live
