"""JSONL compaction on a local data dir: the same planner and atomic swap as Parquet, real
processes killed at every step and at random moments."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from recorder.dataset import open_dataset
from recorder.writer.journal import rebuild_journal
from tests.compaction_data import jsonl_lines, make_small_files, run_compact
from tests.conftest import CLI, ROOT

CRASH_POINTS = ["after_journal", "mid_link", "before_exchange", "after_exchange", "mid_cleanup"]


def _files(data: Path, fmt: str = "jsonl") -> list[Path]:
    return sorted(p for p in (data / fmt).rglob(f"*.{fmt}") if not p.name.startswith("."))


def _lines(data: Path) -> Counter[bytes]:
    """What a reader globbing ``*.jsonl`` sees: every line of every visible file."""
    return jsonl_lines([p.read_bytes() for p in _files(data)])


def _compact(data: Path, *extra: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run_compact("--data-dir", str(data), *extra, env=env)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("pristine") / "data"
    make_small_files(data)
    return data


def _copy(pristine: Path, dest: Path) -> Path:
    shutil.copytree(pristine, dest, copy_function=shutil.copy2)
    return dest


def test_jsonl_and_parquet_compact_into_sorted_files_with_the_same_lines(pristine: Path, tmp_path: Path) -> None:
    data = _copy(pristine, tmp_path / "data")
    lines = _lines(data)
    before = open_dataset(data, format="jsonl").table()
    next_seq = rebuild_journal(data, "s1").next_seq
    res = _compact(data)
    assert res.returncode == 0, res.stderr
    assert "compacted 44 files into 4 in 4 partition(s)" in res.stdout
    merged = [p for p in _files(data) if p.name.startswith("compacted-")]
    assert len(merged) == 2 and len(_files(data)) == 4  # the fresh file of each day stays
    assert _lines(data) == lines  # byte for byte: no line lost, doubled or re-encoded
    for path in merged:
        recs = [json.loads(line) for line in path.read_text().splitlines()]
        keys = [(r["pair"], r["timestamp_ms"], r["session_id"], r["sequence_number"]) for r in recs]
        assert keys == sorted(keys)  # by pair, then time
    assert open_dataset(data, format="jsonl").table().equals(before)
    assert open_dataset(data, format="parquet").table().equals(before)  # both formats: one data set
    # A lost writer journal is rebuilt from compacted JSONL too: sequence numbers continue.
    jsonl_only = _copy(data, tmp_path / "jsonl-only")
    shutil.rmtree(jsonl_only / "parquet")
    assert rebuild_journal(jsonl_only, "s1").next_seq == next_seq
    assert "compacted 0 files" in _compact(data).stdout


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_jsonl_compaction_killed_at_each_step_keeps_every_line_once(pristine: Path, tmp_path: Path, point: str) -> None:
    data = _copy(pristine, tmp_path / "data")
    shutil.rmtree(data / "parquet")
    lines = _lines(data)
    res = _compact(data, env={"RECORDER_COMPACT_CRASH_AT": point})
    assert res.returncode == -signal.SIGKILL, res.stderr
    assert _lines(data) == lines  # what a reader sees right after the kill
    res = _compact(data)
    assert res.returncode == 0, res.stderr
    assert "recovered:" in res.stdout
    assert _lines(data) == lines and len(_files(data)) == 4


def test_jsonl_compaction_killed_at_random_moments_keeps_every_line_once(pristine: Path, tmp_path: Path) -> None:
    data = _copy(pristine, tmp_path / "data")
    lines = _lines(data)
    rng = random.Random(os.getpid())
    for _ in range(4):
        proc = subprocess.Popen([*CLI, "compact", "--data-dir", str(data)], cwd=ROOT, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.2, 1.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        assert _lines(data) == lines
        if len(_files(data)) == 4:  # it finished before the kill: start over from small files
            shutil.rmtree(data)
            _copy(pristine, data)
    assert _compact(data).returncode == 0
    assert _lines(data) == lines and len(_files(data)) == 4


def test_a_malformed_jsonl_file_stops_with_one_line_and_changes_nothing(pristine: Path, tmp_path: Path) -> None:
    data = _copy(pristine, tmp_path / "data")
    shutil.rmtree(data / "parquet")
    part = _files(data)[0].parent
    bad = part / "s0-1795000000000-000099.jsonl"
    bad.write_bytes(b'{"pair": "BTC-USDT", "timestamp_ms": 1}\n{not json\n')
    old = time.time() - 7200
    os.utime(bad, (old, old))
    before = {p: p.read_bytes() for p in _files(data)}
    res = _compact(data)
    assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stderr
    assert "malformed JSONL line in s0-1795000000000-000099.jsonl" in res.stderr
    assert {p: p.read_bytes() for p in _files(data)} == before
    assert not list((data / ".compaction").glob("stage-*"))
