"""The quality report on data written by real captures, gaps injected at known times."""

from __future__ import annotations

import json
from pathlib import Path

from tests.chromium import load_page
from tests.conftest import run_cli
from tests.faulty_capture import INTERVAL_MS, PAIRS, FaultyCapture

# How long after a fault the recorder may take to notice it (generous: a loaded 2-core box).
NOTICE_MS = 3000


def _report_json(data: Path, *extra: str) -> dict:
    res = run_cli("report", "--data-dir", str(data), "--json", *extra)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def test_report_finds_exactly_the_injected_gaps(faulty_capture: FaultyCapture) -> None:
    cap = faulty_capture
    rep = _report_json(cap.data, "--session-id", cap.session)
    (session,) = rep["sessions"]
    assert session["interval_ms"] == INTERVAL_MS and session["interval_source"] == "status.json"
    pairs = {p["pair"]: p for p in session["pairs"]}
    assert set(pairs) == set(PAIRS)
    venue = cap.final_status["venues"]["binance"]
    late = venue["missed_by_cause"]["late"]
    for pair, p in pairs.items():
        # A sampler starved of CPU for longer than an interval (a loaded CI box) loses ticks for
        # real; those gaps say so ('late') and are the only ones allowed beside the injected.
        gaps = [g for g in p["gaps"] if set(g["causes"]) != {"late"}]
        assert sum(g["causes"].get("late", 0) for g in p["gaps"]) <= late
        # One gap per injected fault, in order, each with the fault's cause.
        causes = [sorted(set(g["causes"]) - {"late"}) for g in gaps]
        assert causes == [[cause] for cause, _ in cap.faults], (pair, p["gaps"])
        for g, (_cause, at_ms) in zip(gaps, cap.faults, strict=True):
            # The fault happened before the gap ended and at most NOTICE_MS before it began.
            assert g["start_ms"] - INTERVAL_MS - NOTICE_MS <= at_ms <= g["end_ms"] + INTERVAL_MS, (pair, g, at_ms)
            assert g["ticks"] == (g["end_ms"] - g["start_ms"]) // INTERVAL_MS + 1
        # The report's missing ticks are exactly what the capture itself counted as missed.
        assert p["missed_in_gaps"] == venue["pairs"][pair]["missed_ticks"] == p["recorder_missed_ticks"]
        assert p["expected"] == p["stored"] + p["missed_in_gaps"]
        assert p["coverage_pct"] < 100
        assert p["seq_continuous"] and p["seq_first"] == 0 and p["seq_last"] == p["stored"] - 1
        assert p["crossed"] == p["empty"] == p["one_sided"] == p["unverified"] == 0 == p["off_grid"]
        lat = p["latency_ms"]
        assert lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
        for fmt in ("parquet", "jsonl"):
            st = p["storage"][fmt]
            assert st["files"] >= 2 and st["bytes"] > 0  # rotation every 40 snapshots
            assert st["bytes_per_snapshot"] == round(st["bytes"] / p["stored"], 1)
    # Both formats tell the same story.
    assert _report_json(cap.data, "--format", "jsonl")["sessions"][0]["pairs"] == session["pairs"]


def test_report_table_and_html_render_in_chromium(faulty_capture: FaultyCapture, tmp_path: Path) -> None:
    cap = faulty_capture
    out = tmp_path / "report.html"
    res = run_cli("report", "--data-dir", str(cap.data), "--out", str(out))
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    for pair in PAIRS:
        assert any(line.startswith("binance") and f" {pair} " in line for line in lines)
    gap_lines = [line for line in lines if line.rstrip().endswith(("disconnect", "restart"))]
    assert len(gap_lines) == len(PAIRS) * len(cap.faults)
    n_gaps = sum(len(p["gaps"]) for p in _report_json(cap.data)["sessions"][0]["pairs"])

    page = load_page(out.as_uri(), width=1400)
    assert page.errors == []
    dom = page.dom
    assert dom["title"].startswith("Data quality report")
    # Coverage timeline, latency histogram, spread over time: rendered, with drawn content.
    assert len(dom["svgs"]) == 3
    assert all(s["w"] > 200 and s["h"] > 80 and s["paths"] > 5 for s in dom["svgs"])
    assert all(img["ok"] for img in dom["images"])
    # At 1400 px nothing is wider than the page and no table needs its scroll bar.
    width = dom["page"]["clientWidth"]
    assert dom["page"]["scrollWidth"] <= width and all(t["right"] <= width and not t["scrolls"] for t in dom["tables"])
    assert f"Gaps ({n_gaps})" in dom["text"] and "gap: restart" in dom["text"] and "gap: disconnect" in dom["text"]


def test_chromium_check_catches_a_broken_page(tmp_path: Path) -> None:
    """The render check can fail: a script error, a console error and a missing image are seen."""
    page = tmp_path / "bad.html"
    page.write_text(
        "<!DOCTYPE html><html><head><title>bad</title></head><body>"
        '<img src="missing.png"><script>console.error("boom"); notDefined();</script></body></html>'
    )
    res = load_page(page.as_uri())
    text = "\n".join(res.errors)
    assert "ReferenceError" in text and "boom" in text and "missing.png" in text
    assert res.dom["images"] == [{"src": (tmp_path / "missing.png").as_uri(), "ok": False}]


def test_report_flags_broken_data(tmp_path: Path) -> None:
    """Lost file, crossed / empty / one-sided / unverified books, an update-id regression, an
    off-grid timestamp: each is counted; the gap's cause is what the miss log explains, rest unknown."""
    from recorder.model import Level
    from tests.month_data import snapshot, write_segment

    data = tmp_path / "data"
    t0 = 1_795_000_000_000
    snaps = [snapshot("BTC-USDT", t0 + i * 1000, i, 100.0) for i in range(20)]
    snaps[12].bids, snaps[12].asks = [Level(101.0, 1.0)], [Level(100.0, 1.0)]  # crossed
    snaps[13].bids, snaps[13].asks = [], []  # empty
    snaps[14].asks = []  # one-sided
    snaps[15].verified = False
    snaps[16].update_id = 5  # goes back
    snaps[17].timestamp_ms += 3  # off the grid
    write_segment(data, snaps[:8], 0)
    write_segment(data, snaps[11:], 2)  # segment 1 (seq 8..10) is lost
    sdir = data / ".sessions" / "synthetic"
    sdir.mkdir(parents=True)
    run = {"exchange": "binance", "pair": "BTC-USDT", "first_tick_ms": t0 + 8000, "last_tick_ms": t0 + 9000}
    (sdir / "missed-ticks-binance.jsonl").write_text(
        json.dumps({**run, "ticks": 2, "cause": "sequence_gap", "ended": True}) + '\n{"exchange": "bin'
    )
    for fmt in ("parquet", "jsonl"):
        rep = _report_json(data, "--format", fmt)
        (session,) = rep["sessions"]
        assert (session["interval_ms"], session["interval_source"]) == (1000, "inferred")
        (p,) = session["pairs"]
        (gap,) = p["gaps"]
        assert (gap["start_ms"], gap["end_ms"], gap["ticks"]) == (t0 + 8000, t0 + 10000, 3)
        assert gap["causes"] == {"sequence_gap": 2, "unknown": 1} and gap["cause"] == "sequence_gap+unknown"
        assert (p["expected"], p["stored"], p["missed_in_gaps"]) == (20, 17, 3)
        assert p["coverage_pct"] == 85.0 and p["recorder_missed_ticks"] is None
        assert (p["seq_first"], p["seq_last"], p["seq_missing"], p["seq_continuous"]) == (0, 19, 3, False)
        assert (p["crossed"], p["empty"], p["one_sided"], p["unverified"]) == (1, 1, 1, 1)
        assert (p["update_id_regressions"], p["off_grid"]) == (1, 1)
        assert p["storage"]["parquet"]["files"] == p["storage"]["jsonl"]["files"] == 2
    res = run_cli("report", "--data-dir", str(data))
    assert res.returncode == 0 and "sequence_gap+unknown" in res.stdout and "missing 3" in res.stdout
