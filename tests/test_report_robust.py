"""`report` on data a user really has: corrupt files beside good ones, a session stopped and
started again, books stored short of the requested depth, pairs that never synced.

The data is written here with plain pyarrow / json (the stored layout, ``depth_complete`` right
after ``verified`` as the shared contract says), so every expected figure is computed in the test
from the snapshots it wrote, never by the code under test.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from tests.chromium import load_page
from tests.conftest import Sim, every_pair_sampled, run_cli, running_cli, stop_cli, wait_for, write_config

T0 = 1_795_000_000_000  # on the 1 s grid
IV = 1000
UNREADABLE_EXIT = 3  # README: report printed, some files unreadable


@dataclass
class Snap:
    pair: str
    ts: int
    seq: int
    depth_complete: bool | None = True
    session: str = "s1"
    exchange: str = "binance"

    @property
    def bid(self) -> float:
        return 100.0 + (self.ts // IV) % 7 + sum(map(ord, self.pair)) % 50

    @property
    def ask(self) -> float:
        return self.bid + 0.5 + (self.ts // IV) % 3


def _path(data: Path, fmt: str, snaps: list[Snap], segment: int) -> Path:
    s = snaps[0]
    date = dt.datetime.fromtimestamp(s.ts / 1000, dt.UTC).strftime("%Y-%m-%d")
    d = data / fmt / f"exchange={s.exchange}" / f"date={date}"
    d.mkdir(parents=True, exist_ok=True)
    return d / f"{s.session}-{s.ts}-{segment:06d}.{fmt}"


def write_parquet(data: Path, snaps: list[Snap], segment: int, with_depth: bool = True) -> Path:
    """Long form as the writer stores it: two levels a side, one row per level."""
    cols: dict[str, list] = {
        k: []
        for k in (
            *("exchange", "pair", "timestamp_ms", "side", "level", "price", "quantity", "capture_latency_ms"),
            *("sequence_number", "exchange_time_ms", "update_id", "verified", "depth_complete", "session_id"),
        )
    }
    for s in snaps:
        for side, base, sign in (("bid", s.bid, -1), ("ask", s.ask, 1)):
            for level in range(2):
                row = {
                    "exchange": s.exchange,
                    "pair": s.pair,
                    "timestamp_ms": s.ts,
                    "side": side,
                    "level": level,
                    "price": base + sign * level,
                    "quantity": 1.0 + level,
                    "capture_latency_ms": 2.0 + s.seq % 5,
                    "sequence_number": s.seq,
                    "exchange_time_ms": s.ts - 3,
                    "update_id": 1000 + s.seq,
                    "verified": True,
                    "depth_complete": s.depth_complete,
                    "session_id": s.session,
                }
                for k, v in row.items():
                    cols[k].append(v)
    types = {"level": pa.int16(), "depth_complete": pa.bool_()}
    table = pa.table({k: pa.array(v, types.get(k)) for k, v in cols.items()})
    if not with_depth:
        table = table.drop_columns(["depth_complete"])  # a file written before the column existed
    path = _path(data, "parquet", snaps, segment)
    pq.write_table(table, path, compression="zstd")
    return path


def jsonl_line(s: Snap) -> bytes:
    line = {
        "exchange": s.exchange,
        "pair": s.pair,
        "timestamp_ms": s.ts,
        "bids": [{"price": s.bid - i, "qty": 1.0 + i} for i in range(2)],
        "asks": [{"price": s.ask + i, "qty": 1.0 + i} for i in range(2)],
        "capture_latency_ms": 2.0 + s.seq % 5,
        "sequence_number": s.seq,
        "exchange_time_ms": s.ts - 3,
        "update_id": 1000 + s.seq,
        "verified": True,
        "depth_complete": s.depth_complete,
        "session_id": s.session,
    }
    if s.depth_complete is None:
        del line["depth_complete"]
    return json.dumps(line).encode() + b"\n"


def write_jsonl(data: Path, snaps: list[Snap], segment: int) -> Path:
    path = _path(data, "jsonl", snaps, segment)
    path.write_bytes(b"".join(jsonl_line(s) for s in snaps))
    return path


def series(pair: str, ticks: list[int], session: str = "s1", seq0: int = 0) -> list[Snap]:
    return [Snap(pair, T0 + t * IV, seq0 + i, session=session) for i, t in enumerate(ticks)]


def report(data: Path, *extra: str) -> tuple[int, dict, str]:
    res = run_cli("report", "--data-dir", str(data), "--json", *extra)
    assert "Traceback" not in res.stderr, res.stderr
    return res.returncode, json.loads(res.stdout) if res.stdout.strip() else {}, res.stderr


def tree_digest(data: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(data.rglob("*")) if p.is_file()}


def pairs_of(rep: dict) -> dict[str, dict]:
    return {p["pair"]: p for s in rep["sessions"] for p in s["pairs"]}


# -- corrupt files ---------------------------------------------------------------------------


def _good_and_bad(data: Path) -> tuple[dict[str, list[Snap]], dict[str, list[Path]]]:
    """Three good files per format and pair set, plus the corrupt ones a user meets."""
    snaps = {"BTC-USDT": series("BTC-USDT", list(range(30))), "ETH-USDT": series("ETH-USDT", list(range(30)))}
    for seg, (lo, hi) in enumerate(((0, 10), (10, 20), (20, 30))):
        part = [s for p in snaps.values() for s in p[lo:hi]]
        write_parquet(data, part, seg)
        write_jsonl(data, part, seg)
    # Lost in the corrupt files: ETH ticks 30..39 (so nothing of them may appear in the report).
    lost = series("ETH-USDT", list(range(30, 40)), seq0=30)
    random_pq = _path(data, "parquet", lost, 7)
    random_pq.write_bytes(os.urandom(4096))
    empty_pq = _path(data, "parquet", lost, 8)
    empty_pq.write_bytes(b"")
    full = write_parquet(data, lost, 9)
    full.write_bytes(full.read_bytes()[: full.stat().st_size // 2])  # truncated mid-file
    torn = write_jsonl(data, lost, 9)
    torn.write_bytes(torn.read_bytes()[:-40])  # the last line half-written
    return snaps, {"parquet": [random_pq, empty_pq, full], "jsonl": [torn]}


def test_report_names_each_unreadable_file_and_reports_the_rest(tmp_path: Path) -> None:
    data = tmp_path / ("a-long-directory-name-without-any-space" * 4) / "data"
    snaps, bad = _good_and_bad(data)
    before = tree_digest(data)
    all_bad = bad["parquet"] + bad["jsonl"]
    for fmt in ("parquet", "jsonl"):
        code, rep, err = report(data, "--format", fmt)
        assert code == UNREADABLE_EXIT, err
        # One line per unreadable file, on stderr and in the JSON; nothing else on stderr. Both
        # formats' files are read (each pair's bytes per format), so both formats' are named.
        lines = err.splitlines()
        assert len(lines) == len(all_bad) and all(line.startswith("Error: unreadable file ") for line in lines)
        assert sorted(u["path"] for u in rep["unreadable"]) == sorted(map(str, all_bad))
        assert all(any(line.startswith(f"Error: unreadable file {p}: ") for line in lines) for p in all_bad)
        # Everything readable is reported exactly: the good snapshots only.
        got = pairs_of(rep)
        for pair, want in snaps.items():
            p = got[pair]
            ticks = [s.ts for s in want]
            if fmt == "jsonl" and pair == "ETH-USDT":
                ticks += [s.ts for s in series("ETH-USDT", list(range(30, 40)))][:9]  # the torn line lost
            assert (p["stored"], p["first_ms"], p["last_ms"]) == (len(ticks), min(ticks), max(ticks)), (fmt, pair)
            assert p["gaps"] == [] and p["coverage_pct"] == 100.0
        (torn,) = [u["error"] for u in rep["unreadable"] if u["path"].endswith(".jsonl")]
        assert torn == "1 malformed line(s) left out (line 10)"
    # The table and the HTML page name them too; the data is untouched.
    out = tmp_path / "r.html"
    res = run_cli("report", "--data-dir", str(data), "--out", str(out))
    assert res.returncode == UNREADABLE_EXIT and "Traceback" not in res.stderr
    assert len(res.stderr.splitlines()) == len(all_bad)
    page = out.read_text()
    for p in all_bad:
        assert str(p) in res.stdout and str(p) in page
    assert tree_digest(data) == before
    dom = load_page(out.as_uri(), width=1400).dom
    assert "Unreadable files (4)" in dom["text"] and dom["page"]["scrollWidth"] <= dom["page"]["clientWidth"]


def test_report_with_only_unreadable_files_is_one_error_per_file(tmp_path: Path) -> None:
    data = tmp_path / "data"
    lost = series("BTC-USDT", list(range(5)))
    bad = _path(data, "parquet", lost, 0)
    bad.write_bytes(os.urandom(1000))
    res = run_cli("report", "--data-dir", str(data))
    assert res.returncode == 2 and res.stdout == ""
    lines = res.stderr.splitlines()
    assert lines[0] == f"Error: unreadable file {bad}: " + lines[0].split(": ", 2)[2]
    assert lines[1].startswith("Error: no readable snapshots") and len(lines) == 2


# -- runs of one session ---------------------------------------------------------------------


def _write_runs(data: Path, session: str, events: list[tuple[str, int]], intervals: tuple[float, ...] = ()) -> None:
    d = data / ".sessions" / session
    d.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"event": e, "ms": ms}) for e, ms in events]
    starts = [i for i, (e, _) in enumerate(events) if e == "start"]
    for i, interval_s in zip(starts, intervals, strict=False):
        lines[i] = json.dumps({"event": "start", "ms": events[i][1], "interval_s": interval_s})
    (d / "runs.jsonl").write_text("\n".join(lines) + '\n{"event": "sto')  # and a torn last line


def _expected_running(ticks: list[int], runs: list[tuple[int, int]]) -> int:
    """Grid ticks from first to last stored that are stored or inside a run (independent count)."""
    stored = {T0 + t * IV for t in ticks}
    grid = range(T0 + min(ticks) * IV, T0 + max(ticks) * IV + 1, IV)
    return sum(1 for g in grid if g in stored or any(a <= g <= b for a, b in runs))


def test_a_pause_between_runs_is_not_a_gap(tmp_path: Path) -> None:
    data = tmp_path / "data"
    # Run 1 stores ticks 0..9 and stops at 9.5 s; run 2 starts at 100 s, the pair first syncs at
    # 103 s (warm-up), stores to 119 s and loses ticks 110..111 to nothing the logs explain.
    ticks = list(range(10)) + [t for t in range(103, 120) if t not in (110, 111)]
    write_parquet(data, series("BTC-USDT", ticks), 0)
    runs = [(T0, T0 + 9500), (T0 + 100_000, T0 + 119_400)]
    _write_runs(data, "s1", [("start", runs[0][0]), ("stop", runs[0][1]), ("start", runs[1][0]), ("stop", runs[1][1])])
    code, rep, err = report(data)
    assert code == 0, err
    (p,) = pairs_of(rep).values()
    expected = _expected_running(ticks, runs)
    assert p["expected"] == expected == 10 + 20
    assert p["stored"] == len(ticks) and p["not_running_ticks"] == 90
    assert [(g["start_ms"], g["end_ms"], g["ticks"]) for g in p["pauses"]] == [(T0 + 10_000, T0 + 99_000, 90)]
    assert p["coverage_pct"] == round(100 * len(ticks) / expected, 3)
    gaps = [(g["start_ms"], g["end_ms"], g["causes"]) for g in p["gaps"]]
    assert gaps == [(T0 + 100_000, T0 + 102_000, {"warmup": 3}), (T0 + 110_000, T0 + 111_000, {"unknown": 2})]
    assert p["missed_in_gaps"] == 5 == expected - len(ticks)
    (session,) = rep["sessions"]
    assert [(r["start_ms"], r["stop_ms"], r["stop_recorded"]) for r in session["runs"]] == [(*r, True) for r in runs]

    # Without runs.jsonl: as before, the pause is a gap nobody explains.
    (data / ".sessions" / "s1" / "runs.jsonl").unlink()
    code, rep, _ = report(data)
    (p,) = pairs_of(rep).values()
    assert p["expected"] == 120 and p["not_running_ticks"] == 0 and rep["sessions"][0]["runs"] is None


def test_a_run_without_a_stop_ends_at_its_last_stored_snapshot(tmp_path: Path) -> None:
    """A supervisor killed with SIGKILL writes no stop line: its run ended when its data did."""
    data = tmp_path / "data"
    ticks = list(range(10)) + list(range(52, 60))
    write_parquet(data, series("BTC-USDT", ticks), 0)
    _write_runs(data, "s1", [("start", T0 - 500), ("start", T0 + 50_000), ("stop", T0 + 59_500)], (0.5, 1.0))
    code, rep, err = report(data)
    assert code == 0, err
    (p,) = pairs_of(rep).values()
    runs = [(T0 - 500, T0 + 9000), (T0 + 50_000, T0 + 59_500)]
    assert p["expected"] == _expected_running(ticks, runs) == 10 + 10
    assert [g["causes"] for g in p["gaps"]] == [{"warmup": 2}]
    (session,) = rep["sessions"]
    assert [r["stop_recorded"] for r in session["runs"]] == [False, True]
    assert session["runs"][0]["stop_ms"] == T0 + 9000
    # Data from before the first recorded start (an older recorder) is a run of its own.
    _write_runs(data, "s1", [("start", T0 + 50_000), ("stop", T0 + 59_500)])
    (p,) = pairs_of(report(data)[1]).values()
    assert (p["expected"], [g["causes"] for g in p["gaps"]]) == (20, [{"warmup": 2}])
    _write_runs(data, "s1", [("start", T0 - 500), ("start", T0 + 50_000), ("stop", T0 + 59_500)], (0.5, 1.0))
    # Restarted with another interval: the one grid the figures use is called out.
    assert [r["interval_s"] for r in session["runs"]] == [0.5, 1.0]
    text = run_cli("report", "--data-dir", str(data)).stdout
    assert "WARNING: runs used different intervals (0.5s, 1s); figures use 1000 ms" in text


# -- depth_short and warm-up -----------------------------------------------------------------


def _status(data: Path, session: str, venues: dict) -> None:
    d = data / ".sessions" / session
    d.mkdir(parents=True, exist_ok=True)
    (d / "status.json").write_text(json.dumps({"interval_s": 1.0, "state": "stopped", "venues": venues}))


def _short_spans(snaps: list[Snap]) -> list[tuple[int, int, int]]:
    spans: list[list[int]] = []
    prev_short = False
    for s in snaps:
        if s.depth_complete is False:
            if prev_short:
                spans[-1][1] = s.ts
                spans[-1][2] += 1
            else:
                spans.append([s.ts, s.ts, 1])
        prev_short = s.depth_complete is False
    return [tuple(x) for x in spans]  # type: ignore[misc]


def test_depth_short_spans_and_warmup_per_pair(tmp_path: Path) -> None:
    data = tmp_path / "data"
    btc = series("BTC-USDT", list(range(40)))
    for i in (3, 4, 5, 17, 30, 31):
        btc[i].depth_complete = False
    eth_old = series("ETH-USDT", list(range(20)))  # a file from before depth_complete: unknown
    eth_new = series("ETH-USDT", list(range(20, 40)), seq0=20)
    eth_new[5].depth_complete = False
    write_parquet(data, btc[:20] + eth_old, 0, with_depth=False)
    write_parquet(data, btc[20:] + eth_new, 1)
    # JSONL: same snapshots, the old file without the key.
    for i, s in enumerate(btc[:20] + eth_old):
        s_old = s.depth_complete
        s.depth_complete = None
        write_jsonl(data, [s], i)
        s.depth_complete = s_old
    write_jsonl(data, btc[20:] + eth_new, 1000)
    venue = {
        "pairs_never_synced": 1,
        "pairs": {
            "BTC-USDT": {"missed_ticks": 0, "warmup_ticks": 12, "time_to_first_sync_s": 1.25, "first_sync_ms": T0},
            "ETH-USDT": {"missed_ticks": 0},  # an older capture: no warm-up keys, none shown
            "XRP-USDT": {"missed_ticks": 0, "warmup_ticks": 40, "time_to_first_sync_s": None, "first_sync_ms": None},
        },
    }
    _status(data, "s1", {"binance": venue})
    for fmt in ("parquet", "jsonl"):
        code, rep, err = report(data, "--format", fmt)
        assert code == 0, err
        got = pairs_of(rep)
        btc_new = btc[20:]
        b, e = got["BTC-USDT"], got["ETH-USDT"]
        assert (b["depth_short"], b["depth_unknown"]) == (sum(s.depth_complete is False for s in btc_new), 20)
        spans = [(s["start_ms"], s["end_ms"], s["snapshots"]) for s in b["depth_short_spans"]]
        assert spans == _short_spans(btc_new) == [(T0 + 30_000, T0 + 31_000, 2)]
        assert (e["depth_short"], e["depth_unknown"]) == (1, 20)
        assert (b["warmup_ticks"], b["time_to_first_sync_s"], b["first_sync_ms"]) == (12, 1.25, T0)
        assert (e["warmup_ticks"], e["time_to_first_sync_s"]) == (None, None)
        (session,) = rep["sessions"]
        assert session["status"]["venues"]["binance"]["pairs_never_synced"] == 1
        (xrp,) = session["unstored_pairs"]
        assert xrp == {"exchange": "binance", "pair": "XRP-USDT", **venue["pairs"]["XRP-USDT"]}
    res = run_cli("report", "--data-dir", str(data))
    assert res.returncode == 0
    assert "binance XRP-USDT (never synced, 40 warm-up ticks)" in res.stdout
    assert "12 ticks / 1.25s" in res.stdout and "depth short (2 spans)" in res.stdout


def test_all_depth_short_in_a_file_without_the_column_is_unknown_not_zero(tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_parquet(data, series("BTC-USDT", list(range(5))), 0, with_depth=False)
    code, rep, _ = report(data)
    (p,) = pairs_of(rep).values()
    assert code == 0 and p["depth_short"] is None and p["depth_unknown"] == 5
    assert re.search(r"BTC-USDT .* unknown ", run_cli("report", "--data-dir", str(data)).stdout)


# -- the page --------------------------------------------------------------------------------


def test_html_fits_1400px_and_the_spread_line_breaks_at_gaps(tmp_path: Path) -> None:
    data = tmp_path / "data"
    ticks = [t for t in range(60) if not 20 <= t < 30]  # one 10-tick gap
    write_parquet(data, series("BTC-USDT", ticks), 0)
    write_parquet(data, series("ETH-USDT", list(range(60))), 1)
    # The widest cells a real report has: a long pair, a broken sequence, depth and warm-up text.
    shib = series("1000SHIB-USDT", list(range(60)))
    shib[7].seq = shib[6].seq
    shib[40].depth_complete = False
    write_parquet(data, shib[:30], 2, with_depth=False)
    write_parquet(data, shib[30:], 3)
    warm = {"warmup_ticks": 123456, "time_to_first_sync_s": 12.345, "first_sync_ms": T0, "missed_ticks": 99999}
    _status(data, "s1", {"binance": {"pairs": {p: warm for p in ("BTC-USDT", "ETH-USDT", "1000SHIB-USDT")}}})
    out = tmp_path / "r.html"
    res = run_cli("report", "--data-dir", str(data), "--out", str(out))
    assert res.returncode == 0, res.stderr
    shot = os.environ.get("REPORT_SCREENSHOT")  # a developer's look: REPORT_SCREENSHOT=/tmp/r.png
    page = load_page(out.as_uri(), width=1400, screenshot=shot)
    assert page.errors == []
    dom = page.dom
    # Nothing wider than the page (its width less a scroll bar), no table scrolling in its box.
    width = dom["page"]["clientWidth"]
    assert dom["page"]["width"] == 1400 and dom["page"]["scrollWidth"] <= width, dom["page"]
    assert dom["tables"] and all(t["right"] <= width and not t["scrolls"] for t in dom["tables"]), dom["tables"]
    # The spread figure: one line per pair; BTC's lifts the pen once (two runs of points).
    spread = out.read_text().split('<figure class="plot spread">')[1].split("</figure>")[0]
    paths = re.findall(r'<g id="line2d_\d+">\s*<path d="([^"]+)"[^>]*style="fill: none;[^"]*stroke: #', spread)
    moves = sorted(d.count("M") for d in paths if d.count("L") > 5)
    assert moves == [1, 1, 2], paths


def test_a_real_session_stopped_and_started_again(sim: Sim, tmp_path: Path) -> None:
    """Two real captures of one session with a pause between: the supervisor records both runs,
    the pause is 'not running' (on old main: one gap of cause unknown), coverage counts running
    time only, and the restart's warm-up is a gap of its own cause."""
    data = tmp_path / "data"
    cfg = write_config(tmp_path / "c.toml", sim.urls, ["BTC-USDT", "ETH-USDT"], data)
    args = ("start-capture", "--config", str(cfg), "--interval", "0.25", "--session-id", "twice", "--format", "parquet")
    for n in (8, 16):
        with running_cli(*args) as proc:
            wait_for(lambda n=n: every_pair_sampled(data, "twice", n), 90, f"{n} samples of every pair")
            stop_cli(proc)
        if n == 8:
            time.sleep(3)  # the pause: 12 ticks of nobody running
    lines = [json.loads(x) for x in (data / ".sessions" / "twice" / "runs.jsonl").read_text().splitlines()]
    assert [x["event"] for x in lines] == ["start", "stop", "start", "stop"]
    runs = [(lines[0]["ms"], lines[1]["ms"]), (lines[2]["ms"], lines[3]["ms"])]
    code, rep, err = report(data)
    assert code == 0, err
    (session,) = rep["sessions"]
    assert [(r["start_ms"], r["stop_ms"]) for r in session["runs"]] == runs
    rows = pq.read_table(data / "parquet", partitioning=None, columns=["pair", "timestamp_ms"]).to_pylist()
    for pair, p in pairs_of(rep).items():
        stored = {r["timestamp_ms"] for r in rows if r["pair"] == pair}
        grid = range(min(stored), max(stored) + 1, 250)
        running = [g for g in grid if g in stored or any(a <= g <= b for a, b in runs)]
        assert p["expected"] == len(running) and p["stored"] == len(stored)
        assert p["not_running_ticks"] == len(grid) - len(running) >= 3 * 4 - 1
        assert p["missed_in_gaps"] == len(running) - len(stored)
        causes = {c for g in p["gaps"] for c in g["causes"]}
        assert "unknown" not in causes and "warmup" in causes, p["gaps"]


def test_report_on_a_replay_session(tmp_path: Path) -> None:
    """A replay has no status.json: its summary (replay.json) gives the interval and the
    recorder's own counts; depth_short comes from the stored rows as for any session."""
    data = tmp_path / "data"
    rec = Path(__file__).resolve().parent / "data" / "recordings" / "binance" / "BINANCE.ws.1.0"
    res = run_cli("replay", "--venue", "binance", "--input", str(rec), "--data-dir", str(data), "--format", "parquet")
    assert res.returncode == 0, res.stderr[-2000:]
    summary = json.loads(res.stdout)
    code, rep, err = report(data)
    assert code == 0, err
    (session,) = rep["sessions"]
    assert (session["interval_ms"], session["interval_source"]) == (summary["interval_ms"], "replay.json")
    table = pq.read_table(data / "parquet", partitioning=None)
    flags: dict[tuple[str, int], bool | None] = {}
    for r in table.to_pylist():
        flags[(r["pair"], r["sequence_number"])] = r.get("depth_complete")
    got = pairs_of(rep)
    assert set(got) == set(summary["pairs"])
    for pair, p in got.items():
        want = summary["pairs"][pair]
        assert p["stored"] == want["snapshots_written"] and p["recorder_missed_ticks"] == want["missed_ticks"]
        assert p["warmup_ticks"] == want.get("warmup_ticks")
        mine = [f for (q, _), f in flags.items() if q == pair]
        if "depth_complete" in table.column_names:
            assert p["depth_short"] == sum(f is False for f in mine)
        else:
            assert p["depth_short"] is None and p["depth_unknown"] == len(mine)


class _CompactingFs(pafs.FileSystemHandler):
    """The local filesystem, where the first read of ``victim`` finds it replaced (moved to
    ``moved_to``), as a compaction committing between the report's listing and its read does."""

    def __init__(self, victim: str, moved_to: str) -> None:
        self.fs = pafs.LocalFileSystem()
        self.victim, self.moved_to = victim, moved_to

    def get_type_name(self) -> str:
        return "compacting"

    def equals(self, other: object) -> bool:
        return self is other

    def normalize_path(self, path: str) -> str:
        return path

    def get_file_info(self, paths: list[str]) -> list[pafs.FileInfo]:
        return self.fs.get_file_info(paths)

    def get_file_info_selector(self, selector: pafs.FileSelector) -> list[pafs.FileInfo]:
        return self.fs.get_file_info(selector)

    def _swap(self, path: str) -> None:
        if path == self.victim and os.path.exists(path):
            os.rename(path, self.moved_to)
            raise FileNotFoundError(path)

    def open_input_file(self, path: str) -> object:
        self._swap(path)
        return self.fs.open_input_file(path)

    def open_input_stream(self, path: str) -> object:
        self._swap(path)
        return self.fs.open_input_stream(path)

    def _read_only(self, *args: object) -> object:
        raise OSError("read-only test filesystem")

    create_dir = delete_dir = delete_dir_contents = delete_root_dir_contents = delete_file = _read_only
    move = copy_file = open_output_stream = open_append_stream = _read_only


def test_a_file_replaced_while_read_is_read_again_not_called_unreadable(tmp_path: Path) -> None:
    from recorder.dataset import open_dataset
    from recorder.report.files import read_stored

    data = tmp_path / "data"
    write_parquet(data, series("BTC-USDT", list(range(10))), 0)
    victim = write_parquet(data, series("BTC-USDT", list(range(10, 20)), seq0=10), 1)
    moved = victim.with_name(victim.name.replace("-000001.", "-000009."))
    fs = pafs.PyFileSystem(_CompactingFs(str(victim), str(moved)))
    stored = read_stored(open_dataset(str(data), filesystem=fs), None)
    assert moved.exists() and not victim.exists()
    assert stored.unreadable == [] and sorted(stored.top["timestamp_ms"].to_pylist()) == [
        T0 + t * IV for t in range(20)
    ]
