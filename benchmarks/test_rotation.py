"""Writer rotation at a universe: files per hour, bytes per stored level and the writer's peak RSS.

1000 pairs at 1 s, depth 20, both formats (the defaults), through the real writer on a simulated
clock (``tests/universe_writer.py``: real ring, ``poll`` / rotation / ``try_commit`` / ``drain``,
each run in its own process so its RSS is the writer's). Baseline, in the same run: the old default,
a file every ``rotate_snapshots = 1000`` records (one tick of the universe: a file a second).
After: the default rule, files bounded by the bytes the writer holds (``rotate_mb``, half a ring),
or ``rotate_seconds``. Synthetic books (a random walk, 30 % of quantities changing per tick):
bytes per level are relative, real recordings compress differently.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.quick import size
from tests.universe_writer import run_universe

PAIRS, TICKS = size((1000, 90), (200, 12))


@pytest.mark.benchmark(group="writer-rotation")
def test_rotation_at_a_universe(benchmark, tmp_path: Path) -> None:
    before = run_universe(tmp_path / "before", PAIRS, TICKS, rotate_snapshots=1000)
    runs = iter(range(1000))
    after = benchmark.pedantic(
        lambda: run_universe(tmp_path / f"after-{next(runs)}", PAIRS, TICKS), rounds=1, iterations=1
    )
    for r in (before, after):
        assert r["snapshots_written"] == PAIRS * TICKS
        assert r["held_peak_bytes"] <= 64 * 1024 * 1024 + 4096
    assert len(after["files"]) < len(before["files"])
    benchmark.extra_info.update(
        pairs=PAIRS,
        seconds=TICKS,
        files_per_hour_before=round(before["files_per_hour"]),
        files_per_hour_after=round(after["files_per_hour"]),
        files_ratio=round(after["files_per_hour"] / before["files_per_hour"], 4),
        bytes_per_level_before=round(before["bytes_per_level"], 3),
        bytes_per_level_after=round(after["bytes_per_level"], 3),
        bytes_ratio=round(after["bytes_per_level"] / before["bytes_per_level"], 3),
        writer_rss_mib_before=round(before["writer_rss_mib"], 1),
        writer_rss_mib_after=round(after["writer_rss_mib"], 1),
        rss_ratio=round(after["writer_rss_mib"] / max(before["writer_rss_mib"], 1.0), 2),
        held_mib_after=round(after["held_peak_bytes"] / 2**20, 1),
    )
