"""The live view of ``start-capture`` from real status files (two venues, 19 pairs): it fits
80x24 and 120x40 (no line wider than the terminal, never taller, the header always there, pairs
past the height summed up in one "+N more" line), its per-pair rows carry their figures, and the
last frame after a graceful ``stop-capture`` says "stopped", not "DOWN" / "DISCONNECTED"."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from typing import Any

import pytest

from recorder.supervisor.view import render_text
from tests.conftest import every_pair_sampled, run_cli, running_cli, status, wait_for

pytestmark = pytest.mark.timeout(240)

VENUE_PAIRS = {
    "binance": ["BTC-USDT", "ETH-USDT", "BNB-USDT", "SOL-USDT", "XRP-USDT", "ADA-USDT", "DOGE-USDT", "LTC-USDT"]
    + ["ETH-BTC", "BNB-BTC", "TRX-USDT", "DOT-USDT"],
    "okx": ["BTC-USDT", "ETH-USDT", "SOL-USDT", "XRP-USDT", "DOGE-USDT", "LTC-USDT", "ETH-BTC"],
}
SIZES = [(80, 24), (120, 40)]
# Event-log lines longer than either terminal is wide.
RECENT = [
    f"2026-12-02T08:00:0{i}.000Z info proc=writer event=segment_committed segment={i} " + "x" * 90 for i in range(8)
]


@pytest.fixture(scope="module")
def statuses(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, dict[str, Any]]]:
    """A status written while running, and the final one after ``stop-capture``."""
    tmp = tmp_path_factory.mktemp("view")
    data = tmp / "data"
    lines = [f'data_dir = "{data}"', 'session_id = "view"', "simulate = true", 'interval = "500ms"', "depth = 5"]
    for venue, pairs in VENUE_PAIRS.items():
        lines += ["", f"[venues.{venue}]", "pairs = [" + ", ".join(f'"{p}"' for p in pairs) + "]"]
    (tmp / "view.toml").write_text("\n".join(lines) + "\n")
    with running_cli("start-capture", "--config", str(tmp / "view.toml")) as proc:
        wait_for(lambda: every_pair_sampled(data, "view", 2), 120, "samples of every pair")
        running = status(data, "view")
        stopped = run_cli("stop-capture", "--session-id", "view", "--data-dir", str(data))
        assert stopped.returncode == 0, stopped.stderr
        proc.wait(60)
    final = status(data, "view")
    assert running is not None and running["state"] == "running"
    assert final is not None and final["state"] == "stopped" and final["flushed"]
    yield {"running": running, "stopped": final}


def _pair_rows(frame: str) -> dict[str, list[str]]:
    """'venue PAIR  synced snaps missed drops resync gaps' rows of the frame, by 'venue PAIR'."""
    rows = {}
    for line in frame.splitlines():
        m = re.fullmatch(r"([a-z\-]+ [A-Z0-9\-]+)\s+(yes|NO)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)", line.rstrip())
        if m:
            rows[m.group(1)] = list(m.groups()[1:])
    return rows


def _expected_row(st: dict[str, Any], venue: str, pair: str) -> list[str]:
    p = st["venues"][venue]["pairs"][pair]
    figures = (p["samples"], p["missed_ticks"], p["ring_drops"], p["resyncs"], p["gaps"])
    return ["yes" if p["synced"] else "NO", *(str(x) for x in figures)]


@pytest.mark.parametrize("which", ["running", "stopped"])
@pytest.mark.parametrize(("width", "height"), SIZES)
def test_the_frame_fits_the_terminal(statuses: dict[str, dict[str, Any]], which: str, width: int, height: int) -> None:
    st = statuses[which]
    frame = render_text(st, RECENT, width, height)
    lines = frame.splitlines()
    assert len(lines) <= height - 1, "the terminal's last line stays free: drawing never scrolls"
    assert max(len(line) for line in lines) <= width
    assert lines[0].startswith(f"session view  {which}")
    headers = [line.split() for line in lines]
    assert ["venue", "synced", "msgs/s", "snaps", "missed", "p99", "ms", "drops", "resync", "reconn"] in headers
    assert ["pair", "synced", "snaps", "missed", "drops", "resync", "gaps"] in headers
    for venue in VENUE_PAIRS:
        assert any(line.startswith(f"{venue} ") for line in lines)
    rows = _pair_rows(frame)
    total = sum(len(p) for p in VENUE_PAIRS.values())
    more = [line for line in lines if line.startswith("+")]
    if height == 24:  # 19 pairs do not fit: the rest is one line, and every shown row is right
        assert 0 < len(rows) < total
        assert more == [f"+{total - len(rows)} more pairs (0 not synced; capture-status lists every pair)"]
    else:
        assert len(rows) == total and not more
        assert "recent events:" in lines  # room left for the event log's tail
    for name, cells in rows.items():
        venue, pair = name.split()
        assert cells == _expected_row(st, venue, pair), name


def test_an_unsynced_pair_is_never_cut_off(statuses: dict[str, dict[str, Any]]) -> None:
    st = copy.deepcopy(statuses["running"])
    st["venues"]["okx"]["pairs"]["ETH-BTC"]["synced"] = False  # okx rows are the ones cut at 80x24
    frame = render_text(st, RECENT, 80, 24)
    assert _pair_rows(frame)["okx ETH-BTC"][0] == "NO"
    assert "(1 not synced;" not in frame and "(0 not synced;" in frame


def test_the_last_frame_after_stop_capture_says_stopped(statuses: dict[str, dict[str, Any]]) -> None:
    st = statuses["stopped"]
    for width, height in SIZES:
        frame = render_text(st, RECENT, width, height)
        assert frame.splitlines()[0].startswith("session view  stopped (SIGTERM), flushed")
        assert "DOWN" not in frame and "DISCONNECTED" not in frame
        assert re.search(r"^writer  stopped  snapshots \d+", frame, re.M)


def test_a_venue_in_trouble_is_flagged_while_running(statuses: dict[str, dict[str, Any]]) -> None:
    st = copy.deepcopy(statuses["running"])
    st["venues"]["okx"].update(alive=False, connected=False)
    frame = render_text(st, RECENT, 80, 24)
    assert "okx: PROCESS DOWN, DISCONNECTED" in frame.splitlines()
    assert len(frame.splitlines()) <= 23
