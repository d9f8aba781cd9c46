"""Event exports from the archive: what following every book change costs, and memory per day.

* ``test_archive_events_vs_archive_replay``: the archive of a synthetic Bybit session (one pair,
  20 frames a second, 50 level changes each) replayed through the Feeds alone (baseline: what the
  archive replay does before sampling) against :class:`recorder.export.events.ArchiveEvents`
  (the same, every change of the followed book noted as an event): the ratio is the cost of the
  recording books, which only this replay uses (the live path never sees them).
* ``test_hftbacktest_archive_export_peak_rss``: ``export --to hftbacktest`` from the archive of a
  long and a short session, each in its own process (``ru_maxrss``): events are spooled per
  pair-day on disk and the ``.npz`` is written in blocks, so the long one must not need
  proportionally more memory.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import pytest
import zstandard

from benchmarks.export_peak import export_peak
from benchmarks.quick import size

T0_NS = 1_795_000_000_000_000_000  # 2026-11-18
FRAMES_PER_S, CHANGES = 20, 50


def write_bybit_archive(data: Path, seconds: int, session: str = "bench", seed: int = 1) -> int:
    """A Bybit spot archive as the venue process writes it (header, feed, connect, a snapshot,
    then deltas chained by ``u``, a tick every 200 ms); returns the frames written."""
    rnd = random.Random(seed)
    conn = "1.1"
    out = [
        {"t": "header", "format": 1, "venue": "bybit", "session": session, "pid": 1, "pairs": ["BTC-USDT"], "depth": 20,
         "interval_ms": 200, "channels": ["book"], "file_seq": 0, "ns": T0_NS},
        {"t": "feed", "conn": conn, "ns": T0_NS, "cls": "recorder.venues.bybit:BybitFeed",
         "args": ["spot", ["BTC-USDT"], 200], "kw": {}},
        {"t": "connect", "conn": conn, "ns": T0_NS + 1, "url": "ws://127.0.0.1:1/v5/public/spot"},
    ]  # fmt: skip

    def frame(kind: str, ns: int, u: int, bids: list, asks: list) -> dict:
        data = {"s": "BTCUSDT", "b": bids, "a": asks, "u": u, "seq": u}
        msg = {"topic": "orderbook.200.BTCUSDT", "ts": ns // 1_000_000, "type": kind, "data": data}
        return {"t": "recv", "conn": conn, "ns": ns, "data": json.dumps(msg, separators=(",", ":"))}

    def px(ticks: int) -> str:
        return f"{ticks / 100:.2f}"

    mid = 6_000_000
    out.append(
        frame(
            "snapshot",
            T0_NS + 2,
            1,
            [[px(mid - i), f"{rnd.random():.5f}"] for i in range(1, 201)],
            [[px(mid + i), f"{rnd.random():.5f}"] for i in range(1, 201)],
        )
    )
    step = 1_000_000_000 // FRAMES_PER_S
    for k in range(1, seconds * FRAMES_PER_S):
        ns = T0_NS + 2 + k * step
        mid += rnd.choice((-1, 0, 1))
        half = CHANGES // 2
        qty = lambda: f"{rnd.random():.5f}" if rnd.random() > 0.2 else "0"  # noqa: E731
        bids = [[px(mid - rnd.randint(1, 100)), qty()] for _ in range(half)]
        asks = [[px(mid + rnd.randint(1, 100)), qty()] for _ in range(half)]
        out.append(frame("delta", ns, k + 1, bids, asks))
        if k % (FRAMES_PER_S // 5) == 0:
            out.append(
                {"t": "tick", "conn": "", "ns": ns + 1, "tick": (ns + 1) // 1_000_000, "src": {"BTC-USDT": conn}}
            )
    day = time.strftime("%Y-%m-%d", time.gmtime(T0_NS // 1_000_000_000))
    path = data / "archive" / "exchange=bybit" / f"date={day}" / f"{session}-{T0_NS // 1_000_000}-0.jsonl.zst"
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(o, separators=(",", ":")) + "\n" for o in out)
    path.write_bytes(zstandard.ZstdCompressor(level=3).compress(text.encode()))
    return seconds * FRAMES_PER_S


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("bybit-archive")
    write_bybit_archive(data, size(300, 20))
    return data


@pytest.mark.benchmark(group="archive-events")
def test_archive_replay_feeds_only_baseline(benchmark, archive: Path) -> None:
    from recorder.archive.format import iter_records
    from recorder.export.events import archive_sessions
    from recorder.replay.archive import ArchiveFeeds

    (session,) = archive_sessions(archive)

    def run() -> int:
        feeds = ArchiveFeeds(False, None, ["book"])
        for path, _ in session.files:
            for obj in iter_records(path):
                feeds.on_record(obj)
        return feeds.frames

    frames = benchmark.pedantic(run, rounds=size(3, 1), iterations=1)
    assert frames == size(300, 20) * FRAMES_PER_S
    benchmark.extra_info["frames"] = frames


@pytest.mark.benchmark(group="archive-events")
def test_archive_events_vs_archive_replay(benchmark, archive: Path) -> None:
    from recorder.export.events import UPDATE, ArchiveEvents, archive_sessions

    (session,) = archive_sessions(archive)

    def run() -> tuple[int, int]:
        n = updates = 0
        for batch in ArchiveEvents(session):
            n += len(batch.events)
            updates += int((batch.events["kind"] == UPDATE).sum())
        return n, updates

    events, updates = benchmark.pedantic(run, rounds=size(3, 1), iterations=1)
    frames = size(300, 20) * FRAMES_PER_S
    assert updates == (frames - 1) * CHANGES  # every change of every delta, none lost
    benchmark.extra_info.update({"frames": frames, "events": events})


@pytest.mark.benchmark(group="export-hftbacktest-archive-memory")
def test_hftbacktest_archive_export_peak_rss(benchmark, tmp_path: Path) -> None:
    pytest.importorskip("hftbacktest")
    short_s, long_s = size((900, 3600), (30, 120))
    days = {}
    for name, seconds in (("short", short_s), ("long", long_s)):
        days[name] = tmp_path / name
        write_bybit_archive(days[name], seconds)
    short = export_peak(days["short"], tmp_path / "short-out", to="hftbacktest", source="archive")
    runs = iter(range(1_000))
    long = benchmark.pedantic(
        lambda: export_peak(days["long"], tmp_path / f"long-{next(runs)}", to="hftbacktest", source="archive"),
        rounds=1,
        iterations=1,
    )
    assert long["counts"]["depth_events"] > 3 * short["counts"]["depth_events"]
    ratio = long["peak_mb"] / short["peak_mb"]
    benchmark.extra_info.update(
        {
            "short_s": short_s,
            "long_s": long_s,
            "short_events": short["counts"]["events"],
            "long_events": long["counts"]["events"],
            "short_peak_mb": round(short["peak_mb"]),
            "long_peak_mb": round(long["peak_mb"]),
            "peak_ratio": round(ratio, 2),
            "long_events_per_s": round(long["counts"]["events"] / long["s"]),
        }
    )
    assert ratio < 1.3, benchmark.extra_info
