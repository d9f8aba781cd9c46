"""S3 storage against a real S3 API server on loopback (moto's standalone server, HTTP via boto3).

The server runs in this test process (``ThreadedMotoServer``); the recorder runs as the real
CLI in a subprocess and only ever reaches S3 over HTTP. Stopping the server closes its port;
starting it again on the same port keeps the objects (moto's state lives in this process), which
is how an S3 outage and its recovery look from the recorder.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from moto.server import ThreadedMotoServer

from recorder.config import S3Config
from recorder.metrics import SharedCounters
from recorder.sinks.s3 import S3Store
from recorder.sinks.uploader import UPLOADER_COUNTER_FIELDS, Uploader, UploaderSpec
from tests.conftest import CLI, ROOT, Sim, free_port, popen_cli, run_cli, status, wait_for, write_config
from tests.s3_support import isolate_aws_env

PAIRS = ["BTC-USDT", "ETH-USDT"]
# Fake credentials, set in the environment only (the standard AWS chain). The secret must never
# show up in anything the recorder writes.
ACCESS_KEY = "AKIARECORDERTEST0001"
SECRET_KEY = "recorder-test-secret-7f3a9c"


class MotoS3:
    """moto's S3 server on a loopback port that can be stopped and started again."""

    def __init__(self) -> None:
        self.port = free_port()
        self.server: ThreadedMotoServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> MotoS3:
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def client(self) -> Any:
        return boto3.client("s3", endpoint_url=self.url, region_name="us-east-1")

    def create_bucket(self) -> str:
        bucket = f"rec-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=bucket)
        return bucket

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        out: list[str] = []
        for page in self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            out += [o["Key"] for o in page.get("Contents", [])]
        return out

    def dataset(self, bucket: str, prefix: str) -> ds.Dataset:
        fs = pafs.S3FileSystem(endpoint_override=f"127.0.0.1:{self.port}", scheme="http", region="us-east-1")
        return ds.dataset(f"{bucket}/{prefix}/parquet", filesystem=fs, format="parquet", partitioning="hive")


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_aws_env(monkeypatch, tmp_path, ACCESS_KEY, SECRET_KEY)


@pytest.fixture
def s3() -> Iterator[MotoS3]:
    server = MotoS3().start()
    yield server
    server.stop()


def s3_config(
    path: Path, sim: Sim, data: Path, endpoint: str, bucket: str, *, rotate_s: float = 1.0, **s3: Any
) -> Path:
    write_config(path, sim.urls, PAIRS, data, writer={"rotate_seconds": rotate_s})
    section = {"bucket": bucket, "prefix": "orderbook_data", "endpoint_url": endpoint, **s3}
    with open(path, "a") as fh:
        fh.write("\n[storage.s3]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in section.items()))
    return path


def local_data_files(data: Path) -> list[Path]:
    """Every dataset's files (books, trades, quotes: recorder/layout.py) and the archive's."""
    dirs = ("parquet", "jsonl", "trades/parquet", "trades/jsonl", "quotes/parquet", "quotes/jsonl", "archive")
    return [p for d in dirs for p in (data / d).rglob("*") if p.is_file()]


def archived(data: Path, session: str) -> int:
    """Archive files the venue processes published (each is uploaded like the writer's files)."""
    index = data / ".sessions" / session / "archive-index.jsonl"
    return len(index.read_text().splitlines()) if index.exists() else 0


def assert_complete_and_unique(table: pa.Table, samples: int) -> None:
    """Every stored snapshot exactly once: per pair, sequence numbers 0..n-1 without a gap."""
    snaps = {(r["pair"], r["sequence_number"]) for r in table.select(["pair", "sequence_number"]).to_pylist()}
    assert len(snaps) == samples
    per_pair = Counter(pair for pair, _ in snaps)
    for pair, n in per_pair.items():
        assert sorted(seq for p, seq in snaps if p == pair) == list(range(n)), pair
    # No snapshot stored twice (a duplicate object would double every level row).
    rows = table.select(["pair", "sequence_number", "side", "level"]).to_pylist()
    assert len({tuple(r.values()) for r in rows}) == len(rows)


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        assert SECRET_KEY not in text
        assert ACCESS_KEY not in text


def test_capture_uploads_one_dataset_with_partitions(sim: Sim, s3: MotoS3, tmp_path: Path) -> None:
    data = tmp_path / "data"
    bucket = s3.create_bucket()
    cfg = s3_config(tmp_path / "c.toml", sim, data, s3.url, bucket)
    res = run_cli("start-capture", "--config", str(cfg), "--duration", "10s", "--session-id", "s3e2e", timeout=150)
    assert res.returncode == 0, res.stderr[-3000:]
    final = status(data, "s3e2e")
    assert final is not None and final["flushed"] is True and final["storage"] == "s3"
    st = final["s3"]
    samples = final["venues"]["binance"]["samples"]
    assert samples > 0
    assert st["spool_files"] == 0 and st["upload_failures"] == 0 and st["last_error"] is None
    assert st["uploads"] == final["writer"]["files_written"] + archived(data, "s3e2e")
    assert final["writer"]["files_written"] >= 4  # 1 s rotation, both formats
    assert st["deleted_files"] == st["uploads"] and local_data_files(data) == []

    keys = s3.keys(bucket)
    # Beside the data, the session's status object for fleet-status (its last word: stopped).
    assert "orderbook_data/_status/s3e2e.json" in keys
    last = json.loads(s3.client().get_object(Bucket=bucket, Key="orderbook_data/_status/s3e2e.json")["Body"].read())
    assert last["state"] == "stopped" and last["flushed"] is True
    keys = [k for k in keys if not k.startswith("orderbook_data/_status/")]
    books = ("orderbook_data/parquet/exchange=binance/date=", "orderbook_data/jsonl/")
    trades = ("orderbook_data/trades/parquet/exchange=binance/date=", "orderbook_data/trades/jsonl/")
    archive = ("orderbook_data/archive/exchange=binance/date=",)
    assert all(k.startswith(books + trades + archive) for k in keys)
    # Trades are uploaded like the books, in their own tree (the default channels: book, trades).
    trade_keys = [k for k in keys if k.startswith(trades[0])]
    assert trade_keys
    remote_trades = ds.dataset(
        f"{bucket}/orderbook_data/trades/parquet", filesystem=s3.dataset(bucket, "orderbook_data").filesystem
    ).to_table()
    assert remote_trades.num_rows == final["venues"]["binance"]["trades"] == final["writer"]["trades_written"]
    assert not [k for k in keys if "/.recorder-probe/" in k]  # the start-up probe cleaned up
    dataset = s3.dataset(bucket, "orderbook_data")
    table = dataset.to_table()
    assert set(table.column("exchange").to_pylist()) == {"binance"}
    assert_complete_and_unique(table, samples)
    jsonl_lines = sum(
        len(s3.client().get_object(Bucket=bucket, Key=k)["Body"].read().splitlines())
        for k in keys
        if k.startswith("orderbook_data/jsonl/")
    )
    assert jsonl_lines == samples

    # Partition pruning: a filter on the hive keys selects fragments by path alone.
    dates = sorted(set(table.column("date").to_pylist()))
    assert list(dataset.get_fragments(filter=ds.field("date") == "1999-01-01")) == []
    assert list(dataset.get_fragments(filter=ds.field("exchange") == "nosuchvenue")) == []
    today = dataset.to_table(filter=(ds.field("exchange") == "binance") & (ds.field("date") == dates[-1]))
    assert today.num_rows > 0
    # The recorder's reader takes s3://bucket/prefix exactly like the local data dir.
    from recorder.dataset import open_dataset

    url = f"s3://{bucket}/orderbook_data"
    for fmt in ("parquet", "jsonl"):
        remote = open_dataset(url, format=fmt, endpoint_url=s3.url, region="us-east-1")
        assert remote.table().num_rows == table.num_rows, fmt

    text = run_cli("capture-status", "--session-id", "s3e2e", "--data-dir", str(data)).stdout
    assert f"s3 s3://{bucket}/orderbook_data: spool 0 files" in text
    session_files = "".join(p.read_text() for p in (data / ".sessions" / "s3e2e").iterdir() if p.is_file())
    assert_no_secret(res.stdout, res.stderr, text, cfg.read_text(), session_files)


def test_multipart_upload_is_verified_and_not_repeated(s3: MotoS3, tmp_path: Path) -> None:
    data = tmp_path / "data"
    bucket = s3.create_bucket()
    session = "big"
    part_dir = data / "parquet" / "exchange=binance" / "date=2026-11-25"
    part_dir.mkdir(parents=True)
    n = 800_000  # random bytes don't compress: ~19 MB of Parquet, four 5 MiB parts
    noise = pa.FixedSizeBinaryArray.from_buffers(pa.binary(16), n, [None, pa.py_buffer(os.urandom(16 * n))])
    table = pa.table({"seq": pa.array(range(n), pa.int64()), "noise": noise})
    big = part_dir / f"{session}-1764028800000-000000.parquet"
    pq.write_table(table, big, compression="none")
    small = part_dir / f"{session}-1764028801000-000001.parquet"
    pq.write_table(table.slice(0, 10), small)
    assert big.stat().st_size > 12 * 1024 * 1024

    cfg = S3Config(bucket=bucket, endpoint_url=s3.url, part_size_mb=5, upload_concurrency=3, delete_after_upload=False)
    counters = SharedCounters.create(UPLOADER_COUNTER_FIELDS)
    try:
        spec = UploaderSpec(session_id=session, data_dir=str(data), s3=cfg, counters_name=counters.name)
        uploader = Uploader(spec, S3Store(cfg), counters)
        uploader.start()
        assert [f.rel for f in uploader.queue] == [str(p.relative_to(data)) for p in (big, small)]  # in order
        wait_for(lambda: uploader.step() is False and not uploader.queue, 120, "spool to drain")
        assert counters.get("uploads") == 2 and counters.get("upload_failures") == 0
        assert big.exists() and small.exists()  # delete_after_upload = false

        client = s3.client()
        head = client.head_object(Bucket=bucket, Key=f"orderbook_data/{big.relative_to(data)}")
        parts = -(-big.stat().st_size // (5 * 1024 * 1024))
        assert head["ETag"].strip('"').endswith(f"-{parts}") and head["ContentLength"] == big.stat().st_size
        dataset = s3.dataset(bucket, "orderbook_data")
        assert dataset.count_rows() == n + 10
        big_back = pq.read_table(
            f"{bucket}/orderbook_data/{big.relative_to(data)}", filesystem=dataset.filesystem, partitioning=None
        )
        assert big_back.equals(table)

        # A new uploader (a restart) knows from the ledger that nothing is left to send.
        again = Uploader(spec, S3Store(cfg), counters)
        again.start()
        assert again.queue == [] and counters.get("spool_files") == 0
    finally:
        counters.close()


def test_s3_outage_mid_run_loses_nothing(sim: Sim, s3: MotoS3, tmp_path: Path) -> None:
    data = tmp_path / "data"
    bucket = s3.create_bucket()
    cfg = s3_config(tmp_path / "c.toml", sim, data, s3.url, bucket, connect_timeout_s=2, read_timeout_s=5)
    proc = popen_cli("start-capture", "--config", str(cfg), "--format", "parquet", "--session-id", "outage")
    try:

        def s3_status() -> dict[str, Any]:
            return (status(data, "outage") or {}).get("s3") or {}

        wait_for(lambda: s3_status().get("uploads", 0) >= 2, 90, "first uploads")
        s3.stop()
        down = wait_for(
            lambda: (st := s3_status()).get("upload_failures", 0) >= 2 and st.get("spool_files", 0) >= 2 and st,
            90,
            "files to pile up in the spool while S3 is down",
        )
        assert down["last_error"] and "cannot reach S3 endpoint" in down["last_error"]
        assert local_data_files(data)
        s3.start()
        wait_for(
            lambda: (st := s3_status()).get("spool_files", 1) == 0 and st.get("uploads", 0) > down["uploads"],
            120,
            "the spool to drain after S3 returned",
        )
        assert s3_status()["upload_retries"] >= 1
        res = run_cli("stop-capture", "--session-id", "outage", "--data-dir", str(data), timeout=200)
        assert res.returncode == 0, res.stderr
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    stderr = proc.stderr.read() if proc.stderr else ""
    final = status(data, "outage")
    assert final is not None and final["flushed"] is True
    assert final["s3"]["spool_files"] == 0 and local_data_files(data) == []
    keys = s3.keys(bucket, "orderbook_data/parquet/") + s3.keys(bucket, "orderbook_data/trades/parquet/")
    assert len(keys) == len(set(keys)) == final["writer"]["files_written"]
    assert final["s3"]["uploads"] == final["writer"]["files_written"] + archived(data, "outage")
    assert_complete_and_unique(s3.dataset(bucket, "orderbook_data").to_table(), final["venues"]["binance"]["samples"])
    assert_no_secret(stderr, json.dumps(final))


def test_restart_resumes_a_non_empty_spool(sim: Sim, tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = MotoS3()  # not started: S3 is down for the whole first run
    bucket = "recorder-spool-test"
    cfg = s3_config(
        tmp_path / "c.toml", sim, data, server.url, bucket, start_anyway=True, connect_timeout_s=1, read_timeout_s=5
    )
    first = run_cli("start-capture", "--config", str(cfg), "--duration", "6s", "--session-id", "resume", timeout=150)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "event=s3_check_failed start_anyway=true" in first.stderr
    one = status(data, "resume")
    assert one is not None and one["flushed"] is True
    assert one["s3"]["uploads"] == 0 and one["s3"]["upload_failures"] >= 1
    spooled = one["s3"]["spool_files"]
    archived_one = archived(data, "resume")
    assert spooled == len(local_data_files(data)) == one["writer"]["files_written"] + archived_one
    assert one["writer"]["files_written"] >= 2

    server.start()
    try:
        server.client().create_bucket(Bucket=bucket)
        second = run_cli(
            "start-capture", "--config", str(cfg), "--duration", "4s", "--session-id", "resume", timeout=150
        )
        assert second.returncode == 0, second.stderr[-3000:]
        two = status(data, "resume")
        assert two is not None and two["flushed"] is True
        assert two["s3"]["spool_files"] == 0 and local_data_files(data) == []
        archived_two = archived(data, "resume") - archived_one
        assert two["s3"]["uploads"] == spooled + two["writer"]["files_written"] + archived_two
        # Both runs' snapshots, one dataset, sequence numbers continuing across the restart.
        samples = one["venues"]["binance"]["samples"] + two["venues"]["binance"]["samples"]
        assert_complete_and_unique(server.dataset(bucket, "orderbook_data").to_table(), samples)
        assert_no_secret(first.stderr, second.stderr)
    finally:
        server.stop()


def _one_line_error(res: Any, needle: str) -> str:
    assert res.returncode != 0
    assert "Traceback" not in res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr
    assert needle in lines[0], lines[0]
    return lines[0]


def test_bad_bucket_and_bad_endpoint_fail_with_one_line(sim: Sim, s3: MotoS3, tmp_path: Path) -> None:
    data = tmp_path / "data"
    cfg = s3_config(tmp_path / "nobucket.toml", sim, data, s3.url, "no-such-bucket-here")
    line = _one_line_error(run_cli("start-capture", "--config", str(cfg), "--duration", "5s"), "does not exist")
    assert "no-such-bucket-here" in line
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    cfg = s3_config(tmp_path / "noendpoint.toml", sim, data, dead, s3.create_bucket(), connect_timeout_s=1)
    started = time.monotonic()
    _one_line_error(run_cli("start-capture", "--config", str(cfg), "--duration", "5s"), "cannot reach S3 endpoint")
    assert time.monotonic() - started < 120  # fails fast, doesn't hang on retries


@pytest.mark.parametrize(
    ("extra", "args", "needle"),
    [
        ({"aws_secret_access_key": SECRET_KEY}, [], "must not hold credentials"),
        ({"endpoint_url": f"http://{ACCESS_KEY}:{SECRET_KEY}@127.0.0.1:9"}, [], "must not contain credentials"),
        ({"bucket": "Bad_Bucket"}, [], "invalid S3 bucket name"),
        ({"part_size_mb": 1}, [], "part_size_mb"),
        ({"prefix": "a/../b"}, [], "invalid S3 prefix"),
        ({"bucket": ""}, ["--storage", "s3"], "needs a bucket"),
    ],
)
def test_bad_s3_config(extra: dict[str, Any], args: list[str], needle: str, tmp_path: Path) -> None:
    urls = {"ws_url": "ws://127.0.0.1:9", "rest_url": "http://127.0.0.1:9"}
    cfg = write_config(tmp_path / "c.toml", urls, PAIRS, tmp_path / "d")
    section = {"bucket": "good-bucket", **extra}
    with open(cfg, "a") as fh:
        fh.write("\n[storage.s3]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in section.items()))
    res = run_cli("start-capture", "--config", str(cfg), *args)
    assert_no_secret(_one_line_error(res, needle))


def test_access_denied_fails_with_one_line(sim: Sim, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """moto's server as a subprocess with IAM enforced: a user without any policy is refused."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "3"}  # bucket, user, key; then auth applies
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: _port_open(port), 60, "moto server to listen")
        boto3.client("s3", endpoint_url=url).create_bucket(Bucket="locked-bucket")
        iam = boto3.client("iam", endpoint_url=url)
        iam.create_user(UserName="no-rights")
        key = iam.create_access_key(UserName="no-rights")["AccessKey"]
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
        cfg = s3_config(tmp_path / "c.toml", sim, tmp_path / "data", url, "locked-bucket")
        line = _one_line_error(run_cli("start-capture", "--config", str(cfg), "--duration", "5s"), "access denied")
        assert "locked-bucket" in line and key["SecretAccessKey"] not in line and key["AccessKeyId"] not in line
    finally:
        server.terminate()
        server.wait(10)


def _port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), 0.5).close()
    except OSError:
        return False
    return True


def test_ctrl_c_to_the_process_group_still_uploads_the_last_files(sim: Sim, s3: MotoS3, tmp_path: Path) -> None:
    """Ctrl-C hits every process at once; the uploader must still wait for the writer's last files."""
    data = tmp_path / "data"
    bucket = s3.create_bucket()
    cfg = s3_config(tmp_path / "c.toml", sim, data, s3.url, bucket, rotate_s=60.0)  # one file, at the stop
    proc = subprocess.Popen(
        [*CLI, "start-capture", "--config", str(cfg), "--format", "parquet", "--session-id", "ctrlc"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        wait_for(lambda: _samples(data, "ctrlc") >= 6, 90, "samples")
        os.killpg(proc.pid, signal.SIGINT)
        _, stderr = proc.communicate(timeout=150)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    assert proc.returncode == 0, stderr[-3000:]
    final = status(data, "ctrlc")
    assert final is not None and final["flushed"] is True
    assert final["s3"]["spool_files"] == 0 and local_data_files(data) == []
    assert final["s3"]["uploads"] == final["writer"]["files_written"] + archived(data, "ctrlc")
    assert final["writer"]["files_written"] >= 1
    assert_complete_and_unique(s3.dataset(bucket, "orderbook_data").to_table(), final["venues"]["binance"]["samples"])


def _samples(data: Path, session_id: str) -> int:
    return int((status(data, session_id) or {}).get("venues", {}).get("binance", {}).get("samples", 0))
