"""Compaction on S3 (moto's S3 server on loopback, the real CLI in a subprocess), both formats:
the result, the rows as the dataset reader sees them, and kill -9 at every step of the manifest
commit and at random moments — after each kill the reader sees exactly the same rows, and a
rerun finishes the job."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pytest

from recorder.compaction.manifest import is_manifest
from recorder.dataset import open_dataset
from recorder.dataset.source import resolve
from tests.compaction_data import jsonl_lines, make_small_files
from tests.compaction_data import run_compact as _compact
from tests.conftest import CLI, ROOT
from tests.s3_support import isolate_aws_env
from tests.test_s3 import MotoS3

PREFIX = "orderbook_data"
CRASH_POINTS = ["after_manifest", "mid_upload", "after_uploads", "mid_delete", "before_manifest_delete"]
# Small enough that a JSONL partition becomes several merged files (so "mid_upload" is a real
# state), large enough that every source file counts as small.
TARGET = ["--target-mb", "0.05", "--older-than", "0s"]


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoS3]:
    """One server for the module; every test gets its own bucket. Credentials and the endpoint
    come from the environment (the AWS chain), as for a user."""
    home = tmp_path_factory.mktemp("aws")
    with pytest.MonkeyPatch.context() as mp:
        server = MotoS3().start()
        isolate_aws_env(mp, home, "AKIACOMPACTTEST01", "compact-test-secret", AWS_ENDPOINT_URL=server.url)
        yield server
        server.stop()


@pytest.fixture(scope="module")
def small_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """Relative path -> content of every small file (both formats)."""
    data = tmp_path_factory.mktemp("small") / "data"
    make_small_files(data)
    return {p.relative_to(data).as_posix(): p.read_bytes() for p in sorted(data.rglob("*.*")) if p.is_file()}


def _upload(moto: MotoS3, files: dict[str, bytes]) -> str:
    bucket = moto.create_bucket()
    client = moto.client()
    for rel, body in files.items():
        client.put_object(Bucket=bucket, Key=f"{PREFIX}/{rel}", Body=body)
    return bucket


def _view(bucket: str) -> tuple[pa.Table, pa.Table]:
    """Both formats as the dataset reader sees them."""
    url = f"s3://{bucket}/{PREFIX}"
    return open_dataset(url, format="parquet").table(), open_dataset(url, format="jsonl").table()


def _assert_same(view: tuple[pa.Table, pa.Table], expected: tuple[pa.Table, pa.Table]) -> None:
    assert view[0].equals(expected[0]), "parquet rows differ"
    assert view[1].equals(expected[1]), "jsonl rows differ"


def _data_keys(moto: MotoS3, bucket: str) -> list[str]:
    return [k for k in moto.keys(bucket, f"{PREFIX}/") if k.endswith((".parquet", ".jsonl"))]


def _objects_lines(moto: MotoS3, bucket: str) -> Any:
    client = moto.client()
    keys = [k for k in _data_keys(moto, bucket) if k.endswith(".jsonl")]
    return jsonl_lines([client.get_object(Bucket=bucket, Key=k)["Body"].read() for k in keys])


@pytest.fixture(scope="module")
def expected(moto: MotoS3, small_files: dict[str, bytes]) -> tuple[pa.Table, pa.Table]:
    return _view(_upload(moto, small_files))


def test_s3_compaction_merges_both_formats_with_the_same_rows(
    moto: MotoS3, small_files: dict[str, bytes], expected: tuple[pa.Table, pa.Table]
) -> None:
    bucket = _upload(moto, small_files)
    lines = _objects_lines(moto, bucket)
    before = _data_keys(moto, bucket)
    res = _compact("--data-dir", f"s3://{bucket}/{PREFIX}", *TARGET)
    assert res.returncode == 0, res.stderr
    after = _data_keys(moto, bucket)
    assert "compacted 48 files into" in res.stdout and "in 4 partition(s)" in res.stdout
    assert len(before) == 48 and all(k.rsplit("/", 1)[1].startswith("compacted-") for k in after)
    assert len([k for k in after if k.endswith(".parquet")]) < len([k for k in after if k.endswith(".jsonl")]) < 24
    _assert_same(_view(bucket), expected)
    assert _objects_lines(moto, bucket) == lines  # every JSONL line once, byte for byte
    # No manifest, no lock, nothing hidden left behind.
    assert moto.keys(bucket) == after
    # Merged Parquet is smaller than its sources, so merged files still under half the target
    # are merged again by the next run; it converges and never changes the rows.
    for _ in range(3):
        again = _compact("--data-dir", f"s3://{bucket}/{PREFIX}", *TARGET)
        assert again.returncode == 0, again.stderr
        _assert_same(_view(bucket), expected)
        if "compacted 0 files" in again.stdout:
            break
    assert "compacted 0 files" in again.stdout


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_s3_compaction_killed_at_each_step_keeps_exactly_the_rows(
    moto: MotoS3, small_files: dict[str, bytes], expected: tuple[pa.Table, pa.Table], point: str
) -> None:
    bucket = _upload(moto, small_files)
    url = f"s3://{bucket}/{PREFIX}"
    res = _compact("--data-dir", url, *TARGET, env={"RECORDER_COMPACT_CRASH_AT": point})
    assert res.returncode == -signal.SIGKILL, res.stderr
    # The kill left a manifest (the reader rule is what keeps the view exact here).
    assert any(is_manifest(k.rsplit("/", 1)[1]) for k in moto.keys(bucket))
    _assert_same(_view(bucket), expected)
    res = _compact("--data-dir", url, *TARGET)
    assert res.returncode == 0, res.stderr
    assert "recovered:" in res.stdout
    assert ("recovered: finished" in res.stdout) == (point != "after_manifest" and point != "mid_upload")
    _assert_same(_view(bucket), expected)
    keys = moto.keys(bucket)
    assert keys == _data_keys(moto, bucket)  # no manifest or lock left
    assert all(k.rsplit("/", 1)[1].startswith("compacted-") for k in keys)


def test_s3_compaction_killed_at_random_moments_keeps_exactly_the_rows(
    moto: MotoS3, small_files: dict[str, bytes], expected: tuple[pa.Table, pa.Table]
) -> None:
    rng = random.Random(os.getpid())
    # How long a whole run takes here and now: the kills land at random moments within it
    # (past the interpreter's start-up, most of them while it works on S3).
    timed = _upload(moto, small_files)
    t0 = time.monotonic()
    assert _compact("--data-dir", f"s3://{timed}/{PREFIX}", *TARGET).returncode == 0
    whole = time.monotonic() - t0
    bucket = _upload(moto, small_files)
    lines = _objects_lines(moto, bucket)
    kills = 0
    for _ in range(5):
        url = f"s3://{bucket}/{PREFIX}"
        proc = subprocess.Popen([*CLI, "compact", "--data-dir", url, *TARGET], cwd=ROOT, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.4, 0.95) * whole)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        kills += proc.returncode == -signal.SIGKILL
        _assert_same(_view(bucket), expected)
        if all(k.rsplit("/", 1)[1].startswith("compacted-") for k in moto.keys(bucket)):
            bucket = _upload(moto, small_files)  # it finished before the kill: start over
    assert kills >= 1
    res = _compact("--data-dir", f"s3://{bucket}/{PREFIX}", *TARGET)
    assert res.returncode == 0, res.stderr
    _assert_same(_view(bucket), expected)
    assert _objects_lines(moto, bucket) == lines
    assert moto.keys(bucket) == _data_keys(moto, bucket)


def test_a_reader_polling_during_s3_compaction_always_sees_every_row_once(
    moto: MotoS3, small_files: dict[str, bytes], expected: tuple[pa.Table, pa.Table]
) -> None:
    bucket = _upload(moto, small_files)
    proc = subprocess.Popen(
        [*CLI, "compact", "--data-dir", f"s3://{bucket}/{PREFIX}", *TARGET], cwd=ROOT, stderr=subprocess.DEVNULL
    )
    answers = 0
    while proc.poll() is None:
        _assert_same(_view(bucket), expected)  # the reader re-lists by itself if files vanish
        answers += 1
    assert proc.returncode == 0 and answers >= 1
    _assert_same(_view(bucket), expected)


class _CompactOnFirstOpen(pafs.FileSystemHandler):
    """The real S3 filesystem, except that the first small data file (or manifest) opened is
    opened (its HEAD done) and then a whole compaction runs before it is read: the reader's GET
    finds the key deleted, the exact interleaving a polling reader meets at random under load."""

    def __init__(self, fs: pafs.FileSystem, compact: Any, suffix: str) -> None:
        self.fs, self.compact, self.suffix, self.opened_before_compaction = fs, compact, suffix, ""

    def _after_open(self, path: str, stream: Any) -> Any:
        if not self.opened_before_compaction and "/compacted-" not in path and path.endswith(self.suffix):
            self.opened_before_compaction = path
            self.compact()
        return stream

    def open_input_stream(self, path: str) -> Any:
        return self._after_open(path, self.fs.open_input_stream(path))

    def open_input_file(self, path: str) -> Any:
        return self._after_open(path, self.fs.open_input_file(path))

    def get_type_name(self) -> str:
        return "s3-compacting"

    def equals(self, other: Any) -> bool:
        return self is other

    def normalize_path(self, path: str) -> str:
        return self.fs.normalize_path(path)

    def get_file_info(self, paths: list[str]) -> list[pafs.FileInfo]:
        return self.fs.get_file_info(paths)

    def get_file_info_selector(self, selector: pafs.FileSelector) -> list[pafs.FileInfo]:
        return self.fs.get_file_info(selector)

    def _read_only(self, *_: Any) -> Any:
        raise OSError("read-only")

    create_dir = delete_dir = delete_dir_contents = delete_root_dir_contents = delete_file = _read_only
    move = copy_file = open_output_stream = open_append_stream = _read_only


@pytest.mark.parametrize(("fmt", "opened"), [("parquet", "data"), ("jsonl", "data"), ("jsonl", "manifest")])
def test_a_file_deleted_between_the_readers_open_and_read_is_read_again_from_the_new_listing(
    moto: MotoS3, small_files: dict[str, bytes], expected: tuple[pa.Table, pa.Table], fmt: str, opened: str
) -> None:
    bucket = _upload(moto, small_files)
    url = f"s3://{bucket}/{PREFIX}"
    if opened == "manifest":  # a killed compaction left one; the next run rolls it back and compacts
        assert _compact("--data-dir", url, *TARGET, env={"RECORDER_COMPACT_CRASH_AT": "after_manifest"}).returncode

    def compact() -> None:
        res = _compact("--data-dir", url, *TARGET)
        assert res.returncode == 0, res.stderr

    suffix = ".json" if opened == "manifest" else f".{fmt}"
    handler = _CompactOnFirstOpen(resolve(url)[0], compact, suffix)
    table = open_dataset(f"{bucket}/{PREFIX}", format=fmt, filesystem=pafs.PyFileSystem(handler)).table()
    assert handler.opened_before_compaction  # the read did straddle the whole compaction
    assert all(k.rsplit("/", 1)[1].startswith("compacted-") for k in _data_keys(moto, bucket))
    assert table.equals(expected[0 if fmt == "parquet" else 1])


def test_compact_takes_the_s3_destination_from_a_capture_config(
    moto: MotoS3, small_files: dict[str, bytes], expected: tuple[pa.Table, pa.Table], tmp_path: Path
) -> None:
    bucket = _upload(moto, small_files)
    cfg = tmp_path / "s3.toml"
    cfg.write_text(f'[storage.s3]\nbucket = "{bucket}"\nprefix = "{PREFIX}"\nendpoint_url = "{moto.url}"\n')
    env = {k: v for k, v in os.environ.items() if k != "AWS_ENDPOINT_URL"}  # from the config only
    res = subprocess.run(
        [*CLI, "compact", "--config", str(cfg), *TARGET], capture_output=True, text=True, timeout=120, cwd=ROOT, env=env
    )
    assert res.returncode == 0, res.stderr
    assert "compacted 48 files" in res.stdout
    _assert_same(_view(bucket), expected)
    # The same with the capture's flags instead of a file (endpoint from the AWS chain).
    bucket2 = _upload(moto, small_files)
    res = _compact("--s3-bucket", bucket2, "--s3-prefix", PREFIX, *TARGET)
    assert res.returncode == 0 and "compacted 48 files" in res.stdout, res.stderr
    _assert_same(_view(bucket2), expected)


def _one_line(res: subprocess.CompletedProcess[str], needle: str) -> None:
    assert res.returncode == 2, res.stdout + res.stderr
    assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr, res.stderr
    assert needle in res.stderr, res.stderr


def test_s3_compaction_bad_paths_are_one_line(moto: MotoS3, small_files: dict[str, bytes], tmp_path: Path) -> None:
    _one_line(_compact("--data-dir", "s3://no-such-bucket-for-compaction/x", *TARGET), "does not exist")
    _one_line(_compact("--s3-bucket", "Bad_Bucket"), "invalid S3 bucket name")
    local = tmp_path / "local.toml"
    local.write_text('data_dir = "data"\n')
    _one_line(_compact("--config", str(local)), "--config names local storage")
    bucket = _upload(moto, small_files)
    url = f"s3://{bucket}/{PREFIX}"
    lock = f"{PREFIX}/_compaction/lock.json"
    # A live compaction's lock (this process, on this host) is respected ...
    live = {"host": socket.gethostname(), "pid": os.getpid(), "started_ms": int(time.time() * 1000)}
    moto.client().put_object(Bucket=bucket, Key=lock, Body=json.dumps(live).encode())
    _one_line(_compact("--data-dir", url, *TARGET), "another compaction is running on this S3 location")
    assert len(_data_keys(moto, bucket)) == 48
    # ... one whose process is gone is taken over.
    dead = subprocess.Popen(["true"])
    dead.wait()
    moto.client().put_object(Bucket=bucket, Key=lock, Body=json.dumps({**live, "pid": dead.pid}).encode())
    res = _compact("--data-dir", url, *TARGET)
    assert res.returncode == 0 and "compacted 48 files" in res.stdout, res.stderr
    assert lock not in moto.keys(bucket)
