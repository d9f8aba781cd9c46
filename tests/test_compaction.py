"""Compaction over real files and real processes, killed at every step and at random moments."""

from __future__ import annotations

import fcntl
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from recorder.compaction.formats import FormatError, codec_for
from tests.compaction_data import make_small_files, run_compact
from tests.conftest import CLI, ROOT, Sim, popen_cli, read_jsonl, run_cli, status, wait_for, write_config

DAY_MS = 86_400_000
T0 = 1_795_000_000_000 - (1_795_000_000_000 % DAY_MS)  # a UTC midnight
ALL_COLUMNS = ["exchange", "pair", "timestamp_ms", "session_id", "sequence_number", "side", "level"]
CRASH_POINTS = ["after_journal", "mid_link", "before_exchange", "after_exchange", "mid_cleanup"]


def _rows(data: Path) -> pa.Table:
    """What a reader sees: every visible file of the dataset, in a canonical order."""
    table = ds.dataset(data / "parquet", format="parquet").to_table()
    return table.sort_by([(c, "ascending") for c in ALL_COLUMNS])


def _files(data: Path) -> list[Path]:
    return sorted(p for p in (data / "parquet").rglob("*.parquet") if not p.name.startswith("."))


def _compact(data: Path, *extra: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run_compact("--data-dir", str(data), *extra, env=env)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pa.Table]:
    data = tmp_path_factory.mktemp("pristine") / "data"
    # like a writer rotating often: all two hours old but the last two of each day
    make_small_files(data, files_per_day=24, snaps_per_file=30, formats=("parquet",), fresh=2)
    return data, _rows(data)


def _copy(pristine: tuple[Path, pa.Table], dest: Path) -> Path:
    shutil.copytree(pristine[0], dest, copy_function=shutil.copy2)
    return dest


def test_compaction_merges_into_sorted_files_with_the_same_rows(pristine, tmp_path: Path) -> None:
    data = _copy(pristine, tmp_path / "data")
    expected = pristine[1]
    part = data / "parquet" / "exchange=binance" / f"date={time.strftime('%Y-%m-%d', time.gmtime(T0 / 1000))}"
    # Fresh files (the current hour) and a writer's temp file must be left exactly as they are.
    fresh = {p: p.read_bytes() for p in data.rglob("*.parquet") if time.time() - p.stat().st_mtime < 3600}
    assert len(fresh) == 4
    temp = part / ".s0-1-000099.parquet.tmp"
    temp.write_bytes(b"in progress")
    res = _compact(data, "--row-group-rows", "1000")
    assert res.returncode == 0, res.stderr
    assert "compacted 44 files into 2 in 2 partition(s)" in res.stdout
    assert _rows(data).equals(expected)
    assert all(p.read_bytes() == content for p, content in fresh.items())
    assert temp.read_bytes() == b"in progress"
    merged = [p for p in _files(data) if p.name.startswith("compacted-")]
    assert len(merged) == 2 and len(_files(data)) == 6
    for path in merged:
        table = pq.read_table(path)
        keys = list(zip(table["pair"].to_pylist(), table["timestamp_ms"].to_pylist(), strict=True))
        assert keys == sorted(keys)  # by pair, then time
        meta = pq.ParquetFile(path).metadata
        assert meta.num_row_groups == -(-table.num_rows // 1000)
        # Row-group statistics let a reader skip everything outside a pair's time range.
        stats = meta.row_group(0).column(table.schema.get_field_index("timestamp_ms")).statistics
        assert stats is not None and stats.has_min_max
    # Nothing is left to do the second time.
    again = _compact(data)
    assert again.returncode == 0 and "compacted 0 files into 0" in again.stdout
    glob = str(data / "parquet" / "**" / "*.parquet")
    assert duckdb.sql(f"select count(*) from read_parquet('{glob}')").fetchall()[0][0] == expected.num_rows
    assert not list((data / ".compaction").glob("stage-*"))


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_compaction_killed_at_each_step_keeps_exactly_the_rows(pristine, tmp_path: Path, point: str) -> None:
    data = _copy(pristine, tmp_path / "data")
    res = _compact(data, env={"RECORDER_COMPACT_CRASH_AT": point})
    assert res.returncode == -signal.SIGKILL, res.stderr
    assert _rows(data).equals(pristine[1])  # the state a reader sees right after the kill
    res = _compact(data)
    assert res.returncode == 0, res.stderr
    assert "recovered:" in res.stdout
    assert _rows(data).equals(pristine[1])
    assert len(_files(data)) == 6
    assert not (data / ".compaction" / "journal.json").exists()


def test_compaction_killed_at_random_moments_keeps_exactly_the_rows(pristine, tmp_path: Path) -> None:
    data = _copy(pristine, tmp_path / "data")
    rng = random.Random(os.getpid())
    for _ in range(6):
        proc = subprocess.Popen([*CLI, "compact", "--data-dir", str(data)], cwd=ROOT, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.2, 1.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        assert _rows(data).equals(pristine[1])
        if len(_files(data)) == 6:  # it finished before the kill: start over from small files
            shutil.rmtree(data)
            _copy(pristine, data)
    # A reader polling while a compaction runs sees the full set every time; a file listed
    # before the swap and opened after it is the reader's to retry, never the user's.
    from recorder.dataset import open_dataset

    expected = open_dataset(pristine[0]).table()
    proc = subprocess.Popen([*CLI, "compact", "--data-dir", str(data)], cwd=ROOT, stderr=subprocess.DEVNULL)
    answers = 0
    while proc.poll() is None:
        assert open_dataset(data).table().equals(expected)
        answers += 1
    assert proc.returncode == 0 and answers >= 1
    assert _rows(data).equals(pristine[1]) and len(_files(data)) == 6


def test_compaction_bad_input_is_one_line(tmp_path: Path) -> None:
    res = run_cli("compact", "--data-dir", str(tmp_path / "missing"))
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "does not exist" in res.stderr
    res = run_cli("compact", "--data-dir", str(tmp_path), "--older-than", "soon")
    assert res.returncode == 2 and "invalid duration" in res.stderr
    res = run_cli("compact", "--data-dir", str(tmp_path), "--older-than", "0s")  # everything, now
    assert res.returncode == 0 and "compacted 0 files" in res.stdout
    (tmp_path / ".compaction").mkdir(exist_ok=True)
    with open(tmp_path / ".compaction" / "run.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        res = run_cli("compact", "--data-dir", str(tmp_path))
    assert res.returncode == 2 and "another compaction is running" in res.stderr


def test_a_corrupt_parquet_file_stops_compaction_with_one_line_every_time(tmp_path: Path) -> None:
    """Random bytes, a file cut short, an empty file named like a data file: each run says which
    file, exits 2 and changes nothing. Never SIGABRT: runs once aborted now and then at exit
    ("terminate called without an active exception": an Arrow worker thread released Python
    memory of a source file while the interpreter shut down), so the command runs many times."""
    damage = {
        "random": lambda good: random.Random(7).randbytes(3000),
        "truncated": lambda good: good[: len(good) // 2],
        "empty": lambda good: b"",
    }
    bad_files = {}
    for kind, make in damage.items():
        data = tmp_path / kind
        make_small_files(data, files_per_day=4, snaps_per_file=10, formats=("parquet",), fresh=0)
        first = _files(data)[0]
        # named after the latest first tick: read last, right after a good file, just before the exit
        bad = first.parent / f"s0-{T0 + 3_600_000}-000099.parquet"
        bad.write_bytes(make(first.read_bytes()))
        old = time.time() - 7200
        os.utime(bad, (old, old))
        bad_files[data] = bad
    before = {p: p.read_bytes() for d in bad_files for p in (d / "parquet").rglob("*") if p.is_file()}

    def runs(data: Path) -> list[tuple[Path, subprocess.CompletedProcess[str]]]:
        return [(data, _compact(data)) for _ in range(12)]  # one data dir: one run at a time

    with ThreadPoolExecutor(2) as pool:
        results = [r for rs in pool.map(runs, bad_files) for r in rs]
    codes = [r.returncode for _, r in results]
    assert codes == [2] * len(results), [r.stderr for _, r in results if r.returncode != 2]
    for data, r in results:
        (line,) = r.stderr.splitlines()
        assert line.startswith("Error: compaction failed: ") and f"cannot read {bad_files[data].name}: " in line, line
    assert {p: p.read_bytes() for d in bad_files for p in (d / "parquet").rglob("*") if p.is_file()} == before
    assert not [p for d in bad_files for p in (d / ".compaction").glob("stage-*")]


def test_a_parquet_merge_leaves_no_python_memory_to_arrow_threads(tmp_path: Path) -> None:
    """The cause of those aborts, made visible: once a merge has returned (or failed), no Arrow
    worker thread may still hold a source file's ``bytes``. Letting go of Python memory needs the
    GIL; a thread that asks for it while the interpreter exits is ended inside a C++ destructor:
    SIGABRT. The main thread keeps the GIL while it looks (a long switch interval), so a release
    still pending shows as a raised reference count (it did after 15-25 % of merges)."""
    data = tmp_path / "data"
    make_small_files(data, files_per_day=4, snaps_per_file=10, formats=("parquet",), fresh=0)
    sources = [(p.name, p.read_bytes()) for p in _files(data)[:4]]
    corrupt = [*sources, ("bad.parquet", random.Random(7).randbytes(3000))]
    baseline = [sys.getrefcount(blob) for _, blob in corrupt]
    codec = codec_for("parquet/exchange=binance/date=2026-11-24")
    held = 0
    interval = sys.getswitchinterval()
    sys.setswitchinterval(10.0)
    try:
        for i in range(300):
            if i % 2:
                assert codec.merge(sources, 1024).rows > 0
            else:
                with pytest.raises(FormatError, match="cannot read bad.parquet"):
                    codec.merge(corrupt, 1024)
            held += [sys.getrefcount(blob) for _, blob in corrupt] != baseline
    finally:
        sys.setswitchinterval(interval)
    assert held == 0


def test_writer_compacts_closed_files_while_capturing(sim: Sim, tmp_path: Path) -> None:

    data = tmp_path / "data"
    writer = {
        "rotate_snapshots": 4,
        "compact": True,
        "compact_older_than_s": 1,
        "compact_every_s": 1,
    }
    cfg = write_config(tmp_path / "c.toml", sim.urls, ["BTC-USDT", "ETH-USDT"], data, writer=writer)
    proc = popen_cli("start-capture", "--config", str(cfg), "--interval", "0.25", "--session-id", "cw")
    try:
        wait_for(
            lambda: (st := status(data, "cw")) and st["writer"].get("compactions", 0) >= 3,
            90,
            "three background compactions",
        )
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    final = status(data, "cw")
    assert final is not None and final["flushed"] and final["writer"]["compaction_errors"] == 0
    assert any(p.name.startswith("compacted-") for p in _files(data))
    # Parquet (compacted while the writer kept publishing into the same partition) and JSONL
    # (never compacted) hold exactly the same snapshots, each once.
    jsonl = read_jsonl(data)
    levels = sum(max(1, len(s["bids"]) + len(s["asks"])) for s in jsonl)
    rows = _rows(data)
    assert rows.num_rows == levels == final["writer"]["rows_written"]
    keys = set(zip(rows["pair"].to_pylist(), rows["sequence_number"].to_pylist(), strict=True))
    assert keys == {(s["pair"], s["sequence_number"]) for s in jsonl}
    assert len(jsonl) == final["venues"]["binance"]["samples"]


def test_writer_journal_rebuild_sees_compacted_rows(pristine, tmp_path: Path) -> None:
    from recorder.writer.journal import rebuild_journal

    data = _copy(pristine, tmp_path / "data")
    before = rebuild_journal(data, "s0").next_seq
    assert _compact(data).returncode == 0
    # With the session's small files merged away, sequence numbers still continue after them.
    assert rebuild_journal(data, "s0").next_seq == before
    assert before["binance"]["BTC-USDT"] == 23 * 30  # files 0, 2, ..., 22 of session s0


def test_dataset_reader_sees_the_same_data_after_compaction(pristine, tmp_path: Path) -> None:
    from recorder.dataset import open_dataset

    data = _copy(pristine, tmp_path / "data")
    start, end = T0 + 100_000, T0 + 400_000
    before_all = open_dataset(data).table()
    before = open_dataset(data).table(pairs="BTC-USDT", start=start, end=end)
    assert _compact(data).returncode == 0
    assert open_dataset(data).table().equals(before_all)
    assert open_dataset(data).table(pairs="BTC-USDT", start=start, end=end).equals(before)
    assert len(set(before.column("timestamp_ms").to_pylist())) == 300  # 300 ticks of one pair
    assert set(before.column("pair").to_pylist()) == {"BTC-USDT"}


def test_writer_compaction_config_is_validated() -> None:
    from recorder.config import ConfigError, build_config

    base = {"venues": {"binance": {"pairs": ["BTC-USDT"]}}}
    with pytest.raises(ConfigError, match="local storage only"):
        build_config({**base, "storage": "s3", "writer": {"compact": True}, "s3": {"bucket": "b-1"}}, {})
    with pytest.raises(ConfigError, match="compaction settings"):
        build_config({**base, "writer": {"compact": True, "compact_target_mb": 0}}, {})
    cfg = build_config({**base, "writer": {"compact": True}}, {})
    assert cfg.writer.compact and cfg.writer.compact_older_than_s == 3600
