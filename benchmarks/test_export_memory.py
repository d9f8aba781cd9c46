"""nautilus export memory: the peak RSS of exporting a long pair-day against a short one.

The export writes as it reads (a window of the day at a time, files of a bounded number of
objects), so a day four times as long must not need four times the memory: the figure is the
ratio of the two peaks, each measured in its own process (``ru_maxrss``). Baseline: the short
day, exported in the same run. A pair at 1 s, 20 levels, two trades a second (the README's case).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.export_peak import export_peak
from benchmarks.quick import size
from recorder.dataset import to_ms
from tests.busy_day import write_busy_day

SHORT_MIN, LONG_MIN = size((360, 1440), (15, 60))


@pytest.mark.benchmark(group="export-nautilus-memory")
def test_nautilus_export_peak_rss_long_vs_short_day(benchmark, tmp_path: Path) -> None:
    pytest.importorskip("nautilus_trader")
    days = {}
    for name, minutes in (("short", SHORT_MIN), ("long", LONG_MIN)):
        days[name] = tmp_path / name
        write_busy_day(days[name], to_ms("2026-11-20"), minutes)
    short = export_peak(days["short"], tmp_path / "short-catalog", to="nautilus")
    runs = iter(range(1_000))
    long = benchmark.pedantic(
        lambda: export_peak(days["long"], tmp_path / f"long-catalog-{next(runs)}", to="nautilus"),
        rounds=1,
        iterations=1,
    )
    assert long["counts"]["depth10"] == LONG_MIN * 60 and short["counts"]["depth10"] == SHORT_MIN * 60
    ratio = long["peak_mb"] / short["peak_mb"]
    benchmark.extra_info.update(
        {
            "short_day_min": SHORT_MIN,
            "long_day_min": LONG_MIN,
            "short_peak_mb": round(short["peak_mb"]),
            "long_peak_mb": round(long["peak_mb"]),
            "peak_ratio": round(ratio, 2),
        }
    )
    # Bounded: the long day's extra data costs no memory beyond a few files' worth of objects
    # (a day held whole needed ~2x more for 4x the data).
    assert ratio < 1.25, benchmark.extra_info
