"""The archive's files without a capture: rotation, atomic publish, recovery of a killed process's
part, what is lossless (any bytes), and the one-line errors of its settings and of its replay."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import zstandard

from recorder.archive.format import iter_records, payload_of
from recorder.archive.writer import ArchiveSettings, ArchiveWriter
from tests.conftest import run_cli

HEADER = {
    "format": 1,
    "venue": "bybit",
    "session": "s",
    "pid": 1,
    "pairs": ["BTC-USDT"],
    "depth": 5,
    "interval_ms": 100,
}


def writer(data: Path, **settings: float) -> ArchiveWriter:
    return ArchiveWriter(str(data), "bybit", "s", ArchiveSettings(flush_s=0.05, **settings), dict(HEADER))  # type: ignore[arg-type]


def frames(n: int, size: int = 2000) -> list[bytes]:
    # Incompressible text, so a size rotation comes quickly.
    return [os.urandom(size // 2).hex().encode() for _ in range(n)]


def test_rotation_publish_and_every_byte_kept(tmp_path: Path) -> None:
    w = writer(tmp_path, rotate_bytes=20_000)
    w.start()
    sent = [*frames(60), b"\xff\xfe not utf-8", '{"x":"é\\n"}'.encode()]
    for i, payload in enumerate(sent):
        w.records.append(("recv", "1.1", time.time_ns(), payload))
        if i % 10 == 0:
            time.sleep(0.08)  # several flushes, so several size rotations
    w.close()
    files = sorted((tmp_path / "archive" / "exchange=bybit").rglob("*"))
    files = [p for p in files if p.is_file()]
    assert len(files) >= 3 and not [p for p in files if p.name.startswith(".")]
    got = []
    for path in sorted(files, key=lambda p: int(p.name.split("-")[-1].split(".")[0])):
        records = list(iter_records(path))
        assert records[0]["t"] == "header" and records[0]["venue"] == "bybit"
        got += [payload_of(r) for r in records if r["t"] == "recv"]
    assert got == sent
    index = (tmp_path / ".sessions" / "s" / "archive-index.jsonl").read_text().splitlines()
    assert len(index) == len(files)


def test_a_killed_process_part_is_readable_and_published_by_the_next(tmp_path: Path) -> None:
    w = writer(tmp_path)
    w.start()
    sent = frames(5, 200)
    for payload in sent:
        w.records.append(("recv", "1.1", time.time_ns(), payload))
    time.sleep(0.3)  # flushed; then "killed": never closed
    w._stop.set()
    parts = list((tmp_path / "archive").rglob(".*.part"))
    assert len(parts) == 1
    # Readable as it is, with zstd alone, up to the last flush.
    text = zstandard.ZstdDecompressor().decompressobj().decompress(parts[0].read_bytes())
    assert text.count(b"\n") == 1 + len(sent)
    successor = writer(tmp_path)
    successor.start()
    successor.close()
    published = [p for p in (tmp_path / "archive").rglob("*.zst")]
    assert len(published) == 1 and not list((tmp_path / "archive").rglob(".*.part"))
    assert [payload_of(r) for r in iter_records(published[0]) if r["t"] == "recv"] == sent
    assert published[0].name.endswith("-0.jsonl.zst")
    # The successor's own files number on.
    successor = writer(tmp_path)
    successor.start()
    successor.records.append(("recv", "2.1", time.time_ns(), b"x"))
    successor.close()
    assert any(p.name.endswith("-1.jsonl.zst") for p in (tmp_path / "archive").rglob("*.zst"))


@pytest.mark.parametrize(
    ("setting", "needle"),
    [
        ("rotate_minutes = 0", "invalid [archive] rotate_minutes = 0"),
        ("rotate_mb = -1", "invalid [archive] rotate_mb = -1"),
        ("flush_s = 0", "invalid [archive] flush_s = 0"),
        ("level = 30", "invalid [archive] level = 30"),
        ("enabled = 'yes'", "Expected `bool`"),
        ("colour = 1", "colour"),
    ],
)
def test_bad_archive_settings_fail_with_one_line(tmp_path: Path, setting: str, needle: str) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f'simulate = true\ndata_dir = "{tmp_path}"\n[venues.bybit]\npairs = ["BTC-USDT"]\n[archive]\n{setting}\n'
    )
    res = run_cli("start-capture", "--config", str(cfg))
    assert res.returncode == 2 and needle in res.stderr, res.stderr
    assert res.stderr.startswith("Error:") and len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "archive").exists()


def test_replay_of_an_archive_with_its_first_file_missing_or_mixed(tmp_path: Path) -> None:
    w = writer(tmp_path / "a")
    w.start()
    w.records.append(("recv", "1.1", time.time_ns(), b'{"topic":"orderbook.50.BTCUSDT"}'))
    w.close()
    (archive,) = (tmp_path / "a" / "archive").rglob("*.zst")
    res = run_cli("replay", "--venue", "bybit", "--input", str(archive), "--data-dir", str(tmp_path / "out"))
    assert res.returncode == 2 and "Error: frames of connection '1.1' before its start" in res.stderr, res.stderr
    other = tmp_path / "other.jsonl"
    other.write_text('{"t":"recv","conn":"a","ts":1.0,"data":"{}"}\n')
    args = ["replay", "--venue", "bybit", "--input", str(archive), "--input", str(other)]
    res = run_cli(*args, "--data-dir", str(tmp_path / "out"))
    assert res.returncode == 2 and "is not an archive file" in res.stderr, res.stderr
    res = run_cli("replay", "--venue", "okx", "--input", str(archive), "--data-dir", str(tmp_path / "out"))
    assert res.returncode == 2 and "the archive is of venue 'bybit', not 'okx'" in res.stderr, res.stderr
    (tmp_path / "empty").mkdir()
    res = run_cli("replay", "--venue", "okx", "--input", str(tmp_path / "empty"), "--data-dir", str(tmp_path / "o"))
    assert res.returncode == 2 and "Error: no archive files (*.jsonl.zst) in directory" in res.stderr, res.stderr
