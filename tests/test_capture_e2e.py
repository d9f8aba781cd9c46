"""Whole captures: real supervisor, venue and writer processes against the simulator."""

from __future__ import annotations

import json
import os
import signal
import urllib.request
from collections import defaultdict
from pathlib import Path

import duckdb
import polars as pl

from tests.conftest import (
    Sim,
    assert_no_torn_files,
    popen_cli,
    read_jsonl,
    read_parquet_rows,
    run_cli,
    snapshots_from_rows,
    status,
    wait_for,
    write_config,
)

PAIRS = ["BTC-USDT", "ETH-USDT"]


def _sim_book(sim: Sim, symbol: str, update_id: int, limit: int) -> dict | None:
    url = f"{sim.urls['sim_url']}/sim/book?symbol={symbol}&update_id={update_id}&limit={limit}"
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return json.load(resp)
    except urllib.error.HTTPError:
        return None


def test_capture_two_pairs_on_grid_matches_simulator(sim: Sim, tmp_path: Path) -> None:
    data = tmp_path / "data"
    cfg = write_config(tmp_path / "c.toml", sim.urls, PAIRS, data)
    res = run_cli(
        "start-capture",
        "--config",
        str(cfg),
        "--interval",
        "0.5",
        "--duration",
        "20s",
        "--format",
        "both",
        "--session-id",
        "e2e",
        timeout=120,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    final = status(data, "e2e")
    assert final is not None and final["state"] == "stopped" and final["flushed"] is True
    venue = final["venues"]["binance"]

    rows = read_parquet_rows(data)
    snaps = snapshots_from_rows(rows)
    jsonl = read_jsonl(data)
    assert len(jsonl) == len(snaps) == venue["samples"]
    # Every pair: on the 500 ms grid, one snapshot per tick from its first to its last, no holes.
    by_pair: dict[str, list[dict]] = defaultdict(list)
    for s in jsonl:
        by_pair[s["pair"]].append(s)
    assert set(by_pair) == set(PAIRS)
    for pair, items in by_pair.items():
        ts = [s["timestamp_ms"] for s in items]
        assert all(t % 500 == 0 for t in ts)
        assert ts == list(range(ts[0], ts[-1] + 1, 500)), f"{pair} has holes in the grid"
        assert len(ts) >= 25  # 20 s at 0.5 s, minus the initial sync
        assert [s["sequence_number"] for s in items] == list(range(len(items)))
        assert venue["pairs"][pair]["missed_ticks"] == 0
        for s in items:
            assert s["bids"][0]["price"] < s["asks"][0]["price"]
            assert len(s["bids"]) == len(s["asks"]) == 20
            # JSONL and Parquet hold the same snapshot.
            p = snaps[(pair, s["sequence_number"])]
            assert p["timestamp_ms"] == s["timestamp_ms"] and p["update_id"] == s["update_id"]
            assert p["bids"] == [(lv["price"], lv["qty"]) for lv in s["bids"]]
            assert p["asks"] == [(lv["price"], lv["qty"]) for lv in s["asks"]]
    # The simulator's own book at each stored update id equals the stored book.
    checked = 0
    for s in jsonl:
        ref = _sim_book(sim, s["pair"].replace("-", ""), s["update_id"], 20)
        assert ref is not None, f"simulator has no book at {s['update_id']}"
        assert [(float(p), float(q)) for p, q in ref["bids"]] == [(lv["price"], lv["qty"]) for lv in s["bids"]]
        assert [(float(p), float(q)) for p, q in ref["asks"]] == [(lv["price"], lv["qty"]) for lv in s["asks"]]
        checked += 1
    assert checked == len(jsonl)
    # Other readers see the same dataset through the Hive partitions.
    glob = str(data / "parquet" / "**" / "*.parquet")
    n_duck = duckdb.sql(f"select count(*) from read_parquet('{glob}', hive_partitioning=true)").fetchall()[0][0]
    n_polars = pl.scan_parquet(glob, hive_partitioning=True).select(pl.len()).collect().item()
    assert n_duck == n_polars == len(rows)
    assert_no_torn_files(data)


def _start_bg(sim: Sim, tmp_path: Path, session: str, *extra: str, **cfg_kw):
    data = tmp_path / "data"
    cfg = write_config(tmp_path / f"{session}.toml", sim.urls, PAIRS, data, **cfg_kw)
    proc = popen_cli("start-capture", "--config", str(cfg), "--interval", "0.25", "--session-id", session, *extra)
    return data, proc


def _samples(data: Path, session: str) -> int:
    st = status(data, session)
    return st["venues"]["binance"]["samples"] if st and st.get("venues") else 0


def _assert_stored_everything(data: Path, session: str) -> dict:
    final = status(data, session)
    assert final is not None and final["state"] == "stopped" and final["flushed"] is True
    jsonl = read_jsonl(data)
    snaps = snapshots_from_rows(read_parquet_rows(data))
    assert len(jsonl) == len(snaps) == final["venues"]["binance"]["samples"]
    per_pair: dict[str, list[int]] = defaultdict(list)
    for s in jsonl:
        per_pair[s["pair"]].append(s["sequence_number"])
    for seqs in per_pair.values():
        assert sorted(seqs) == list(range(len(seqs)))
    assert_no_torn_files(data)
    return final


def test_stop_capture_loses_nothing(sim: Sim, tmp_path: Path) -> None:
    data, proc = _start_bg(sim, tmp_path, "stopme")
    try:
        wait_for(lambda: _samples(data, "stopme") >= 10, 60, "samples")
        st = run_cli("capture-status", "--session-id", "stopme", "--data-dir", str(data), "--json")
        assert st.returncode == 0 and json.loads(st.stdout)["state"] == "running"
        text = run_cli("capture-status", "--session-id", "stopme", "--data-dir", str(data))
        assert "BTC-USDT" in text.stdout and "synced" in text.stdout
        res = run_cli("stop-capture", "--session-id", "stopme", "--data-dir", str(data))
        assert res.returncode == 0, res.stderr
        assert "flushed" in res.stdout
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    _assert_stored_everything(data, "stopme")


def test_sigterm_loses_nothing(sim: Sim, tmp_path: Path) -> None:
    data, proc = _start_bg(sim, tmp_path, "termme", writer={"rotate_snapshots": 7})
    try:
        wait_for(lambda: _samples(data, "termme") >= 20, 60, "samples")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    final = _assert_stored_everything(data, "termme")
    assert final["writer"]["files_written"] >= 4  # rotation by count happened


def test_kill_9_children_are_restarted_and_nothing_is_torn(sim: Sim, tmp_path: Path) -> None:
    data, proc = _start_bg(sim, tmp_path, "killme", writer={"rotate_snapshots": 5})
    try:
        wait_for(lambda: _samples(data, "killme") >= 10, 60, "samples")
        venue_pid = status(data, "killme")["venues"]["binance"]["pid"]
        os.kill(venue_pid, signal.SIGKILL)
        wait_for(
            lambda: (
                (st := status(data, "killme"))
                and st["venues"]["binance"]["restarts"] >= 1
                and st["venues"]["binance"]["pid"] != venue_pid
            ),
            30,
            "venue restart",
        )
        before = _samples(data, "killme")
        wait_for(lambda: _samples(data, "killme") >= before + 10, 60, "samples after venue restart")
        writer_pid = status(data, "killme")["writer"]["pid"]
        os.kill(writer_pid, signal.SIGKILL)
        wait_for(
            lambda: (st := status(data, "killme")) and st["writer"]["restarts"] >= 1 and st["writer"]["alive"],
            30,
            "writer restart",
        )
        before = _samples(data, "killme")
        wait_for(lambda: _samples(data, "killme") >= before + 10, 60, "samples after writer restart")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    final = _assert_stored_everything(data, "killme")
    venue = final["venues"]["binance"]
    assert venue["restarts"] == 1 and final["writer"]["restarts"] == 1
    # The ticks lost while the venue process was dead are counted, per pair, with their cause.
    assert venue["missed_by_cause"]["restart"] >= 2
    assert venue["missed_ticks"] == sum(p["missed_ticks"] for p in venue["pairs"].values())
    # Stored + missed covers every tick since the pairs first synced.
    for pair in PAIRS:
        ts = sorted(s["timestamp_ms"] for s in read_jsonl(data) if s["pair"] == pair)
        span = (ts[-1] - ts[0]) // 250 + 1
        assert len(ts) + venue["pairs"][pair]["missed_ticks"] == span


def test_planned_reconnect_misses_no_tick(sim: Sim, tmp_path: Path) -> None:
    # Four pairs over three connections (at most two streams each), each replaced every few
    # seconds, staggered: the new connection syncs before the old one closes.
    data = tmp_path / "data"
    pairs = ["BTC-USDT", "ETH-USDT", "BNB-USDT", "SOL-USDT", "XRP-USDT"]
    cfg = write_config(
        tmp_path / "age.toml",
        sim.urls,
        pairs,
        data,
        venue_extra={"max_connection_age_s": 4, "max_streams_per_connection": 2},
    )
    proc = popen_cli("start-capture", "--config", str(cfg), "--interval", "0.25", "--session-id", "age")
    try:
        wait_for(
            lambda: (
                (st := status(data, "age"))
                and st["venues"]["binance"]["planned_reconnects"] >= 6
                and st["venues"]["binance"]["connections"] >= 3
            ),
            90,
            "two planned reconnects per connection",
        )
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    final = _assert_stored_everything(data, "age")
    venue = final["venues"]["binance"]
    assert venue["missed_ticks"] == 0
    assert venue["reconnects"] == 0
    assert venue["gaps"] == 0
    stats = json.load(urllib.request.urlopen(f"{sim.urls['sim_url']}/sim/stats", timeout=5))
    assert stats["connections_total"] >= 3 + 6  # three at the start, then the replacements
    assert set(venue["pairs"]) == set(pairs)


def test_gap_on_one_pair_resyncs_only_that_pair(sim: Sim, tmp_path: Path) -> None:
    # Three pairs share one connection; the simulator withholds diffs of BTCUSDT only.
    data = tmp_path / "data"
    pairs = ["BTC-USDT", "ETH-USDT", "BNB-USDT"]
    cfg = write_config(tmp_path / "gap.toml", sim.urls, pairs, data)
    proc = popen_cli("start-capture", "--config", str(cfg), "--interval", "0.25", "--session-id", "gap")
    gaps_wanted = 4
    try:
        wait_for(lambda: _samples(data, "gap") >= 12, 60, "samples")
        for i in range(gaps_wanted):
            sim.fault(kind="gap", symbol="BTCUSDT", count=1)
            wait_for(
                lambda i=i: (st := status(data, "gap")) and st["venues"]["binance"]["pairs"]["BTC-USDT"]["gaps"] > i,
                30,
                f"gap {i + 1} detected",
            )
            wait_for(
                lambda: (st := status(data, "gap")) and st["venues"]["binance"]["pairs"]["BTC-USDT"]["synced"],
                30,
                "resync",
            )
        before = _samples(data, "gap")
        wait_for(lambda: _samples(data, "gap") >= before + 12, 60, "samples after the gaps")
        live = status(data, "gap")["venues"]["binance"]
        assert live["connections"] == 1 and live["connected"]
        text = run_cli("capture-status", "--session-id", "gap", "--data-dir", str(data)).stdout
        assert "connections 1  REST weight used" in text
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    final = _assert_stored_everything(data, "gap")
    venue = final["venues"]["binance"]
    btc = venue["pairs"]["BTC-USDT"]
    assert btc["gaps"] >= gaps_wanted and btc["resyncs"] >= gaps_wanted + 1
    for pair in ("ETH-USDT", "BNB-USDT"):
        other = venue["pairs"][pair]
        assert other["gaps"] == 0 and other["resyncs"] == 1 and other["missed_ticks"] == 0, (pair, other)
    assert venue["reconnects"] == 0
    # Every stored BTC book, before and after the resyncs, is the simulator's book at that id.
    for s in read_jsonl(data):
        if s["pair"] != "BTC-USDT":
            continue
        ref = _sim_book(sim, "BTCUSDT", s["update_id"], 20)
        assert ref is not None
        assert [(float(p), float(q)) for p, q in ref["bids"]] == [(lv["price"], lv["qty"]) for lv in s["bids"]]
