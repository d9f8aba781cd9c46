"""The archive's memory is bounded: a writer that falls behind (a stalled disk) makes the venue
process leave frames out of the archive — counted, and marked in the file by a ``lost`` record at
the point of the stream where they are missing — instead of growing until the OOM killer; a write
that fails (a file size limit, as a full disk) is marked the same way and the files stay readable.
A replay resets its books at such a mark rather than serve a book it cannot prove."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import zstandard

from recorder.archive.tap import Archive, ConnTap
from recorder.archive.writer import ArchiveSettings, ArchiveWriter
from tests.conftest import read_parquet_rows, run_cli

DATA = Path(__file__).parent / "data" / "recordings" / "bybit" / "BYBIT.jsonl.zst"
HEADER = {"format": 1, "venue": "bybit", "session": "s", "pid": 1, "pairs": ["BTC-USDT"], "depth": 5}


def real_frames() -> list[bytes]:
    """The frames of a real Bybit capture (tests/data), read here independently of the recorder."""
    with open(DATA, "rb") as fh:
        text = zstandard.ZstdDecompressor().stream_reader(fh, read_across_frames=True).read().decode()
    lines = [json.loads(line) for line in text.splitlines()]
    return [line["data"].encode() for line in lines if line.get("t") == "recv"][:400]


def archive_lines(data: Path) -> list[dict[str, Any]]:
    """Every published file, in seq order, read with zstd and json alone."""
    files = sorted((data / "archive").rglob("*.jsonl.zst"), key=lambda p: int(p.name.split("-")[-1].split(".")[0]))
    out = []
    for path in files:
        with open(path, "rb") as fh:
            text = zstandard.ZstdDecompressor().stream_reader(fh, read_across_frames=True).read()
        # A file closed after a failed write may end in a partial line or block: read up to it.
        out += [json.loads(line) for line in text.decode(errors="replace").split("\n")[:-1]]
    return out


def test_a_stalled_writer_drops_counted_frames_not_memory(tmp_path: Path) -> None:
    frames = real_frames()
    limit = 40_000
    w = ArchiveWriter(str(tmp_path), "bybit", "s", ArchiveSettings(flush_s=0.05, max_buffer_bytes=limit), HEADER)
    w.start()
    tap = ConnTap(Archive(w.queue), "1.1")
    w._lock.acquire()  # the disk stalls: the thread cannot write
    stalled = 300
    for payload in frames[:stalled]:
        tap.recv(payload)
    assert w.queue.buffered_bytes <= limit  # bounded, whatever arrives
    dropped = w.queue.lost_frames
    assert dropped > 0
    w._lock.release()
    while w.queue.buffered_bytes:  # the thread catches up
        time.sleep(0.01)
    for payload in frames[stalled:]:
        tap.recv(payload)
    w.close()
    lines = archive_lines(tmp_path)
    kinds = [line["t"] for line in lines if line["t"] != "header"]
    lost = [line for line in lines if line["t"] == "lost"]
    assert len(lost) == 1 and lost[0]["why"] == "buffer_full" and lost[0]["frames"] == dropped
    kept = [line["data"].encode() for line in lines if line["t"] == "recv"]
    # The frames before the stall filled the buffer, the mark, then every frame after the stall
    # once the writer caught up: nothing else is missing, and nothing is out of order.
    at = kinds.index("lost")
    assert kept[:at] == frames[:at]
    assert kept[at:] == frames[at + dropped :]
    assert len(kept) + dropped == len(frames)
    assert lost[0]["from_ns"] <= lost[0]["ns"]
    index = [json.loads(x) for x in (tmp_path / ".sessions" / "s" / "archive-index.jsonl").read_text().splitlines()]
    assert sum(e["lost_frames"] for e in index) == dropped == w.lost_frames


def test_a_failed_write_is_marked_and_the_files_stay_readable(tmp_path: Path) -> None:
    """RLIMIT_FSIZE makes the kernel refuse writes past 30 kB per file (EFBIG), as a full disk
    refuses them: the writer records what it could not write and goes on in a new file."""
    frames = real_frames()
    (tmp_path / "frames.json").write_text(json.dumps([f.decode() for f in frames]))
    script = textwrap.dedent(
        f"""
        import json, resource, signal, time
        from recorder.archive.tap import Archive, ConnTap
        from recorder.archive.writer import ArchiveSettings, ArchiveWriter
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (30_000, 30_000))
        frames = [f.encode() for f in json.load(open({str(tmp_path / "frames.json")!r}))]
        w = ArchiveWriter({str(tmp_path)!r}, "bybit", "s", ArchiveSettings(flush_s=0.02, level=1), {HEADER!r})
        w.start()
        tap = ConnTap(Archive(w.queue), "1.1")
        for i, payload in enumerate(frames):
            tap.recv(payload)
            if i % 20 == 0:
                time.sleep(0.03)
        w.close()
        print(json.dumps({{"lost": w.lost_frames}}))
        """
    )
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    lost_total = json.loads(res.stdout.splitlines()[-1])["lost"]
    assert lost_total > 0, "the size limit never hit: make the frames bigger or the limit smaller"
    lines = archive_lines(tmp_path)
    marks = [line for line in lines if line["t"] == "lost"]
    assert marks and all(m["why"] == "write_failed" for m in marks)
    kept = [line["data"].encode() for line in lines if line["t"] == "recv"]
    # What is in the files is in order and a run of the frames sent; what is not, the marks count.
    assert len(kept) + sum(m["frames"] for m in marks) == len(frames)
    it = iter(frames)
    assert all(any(f == k for f in it) for k in kept)
    assert "event=archive_write_failed" in res.stderr


def test_a_replay_resets_its_books_at_a_hole_and_stores_only_live_rows(tmp_path: Path) -> None:
    """A live capture whose archive buffer (16 kB, written each second) overflows: the replay of
    that archive stores only rows the live capture stored, equal in every column, and no book row
    between a hole and the next snapshot frame the archive holds."""
    data = tmp_path / "data"
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f'data_dir = "{data}"\nsession_id = "ab"\nsimulate = true\ninterval = "200ms"\ndepth = 10\n'
        '[venues.bybit]\npairs = ["BTC-USDT"]\n[archive]\nflush_s = 1.0\nmax_buffer_mb = 0.016\n'
    )
    res = run_cli("start-capture", "--config", str(cfg), "--duration", "8s")
    assert res.returncode == 0, res.stderr[-2000:]
    lines = archive_lines(data)
    holes = [line for line in lines if line["t"] == "lost"]
    assert holes, "the buffer never overflowed"
    status = json.loads((data / ".sessions" / "ab" / "status.json").read_text())
    assert status["venues"]["bybit"]["archive_lost_frames"] == sum(h["frames"] for h in holes)

    out = tmp_path / "replayed"
    res = run_cli(
        "replay",
        "--venue",
        "bybit",
        "--data-dir",
        str(out),
        "--session-id",
        "ab",
        "--input",
        str(data / "archive" / "exchange=bybit"),
    )
    if res.returncode != 0:  # every book was lost before its first tick: said in one line
        assert res.stderr.startswith("Error:") and "nothing stored" in res.stderr, res.stderr
        return
    summary = json.loads(res.stdout)
    assert summary["archive_lost_frames"] == sum(h["frames"] for h in holes)
    key = lambda r: (r["pair"], r["timestamp_ms"], r["side"], r["level"])  # noqa: E731
    live = {key(r): r for r in read_parquet_rows(data)}
    replayed = read_parquet_rows(out)
    assert replayed
    for row in replayed:
        assert live[key(row)] == row
    snapshots_ns = [
        line["ns"]
        for line in lines
        if line["t"] == "recv" and '"type":"snapshot"' in line["data"] and '"topic":"orderbook.' in line["data"]
    ]
    for row in replayed:
        tick_ns = row["timestamp_ms"] * 1_000_000
        before = [h for h in holes if h["from_ns"] <= tick_ns]
        if before:
            last_hole = before[-1]["ns"]
            assert any(last_hole < s <= tick_ns for s in snapshots_ns), row
