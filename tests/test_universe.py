"""A venue's whole universe: 1,000+ instruments synced within the REST weight budget."""

from __future__ import annotations

import asyncio
import http.client
import json
import re
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

from recorder.config import VenueConfig
from recorder.venues.binance import BinanceConnector, list_pairs
from tests.conftest import CLI, ROOT, Sim, run_cli, status, wait_for, write_config

INSTRUMENTS = 1000


def _sim_stats(sim: Sim) -> dict:
    with urllib.request.urlopen(f"{sim.urls['sim_url']}/sim/stats", timeout=10) as resp:
        return json.load(resp)


def _hammer(sim: Sim, source_ip: str) -> list[tuple[int, str | None]]:
    """Depth requests at weight 250 from ``source_ip`` until the venue bans it."""
    host, port = sim.urls["rest_url"].removeprefix("http://").rsplit(":", 1)
    out: list[tuple[int, str | None]] = []
    while time.time() % 10 > 5:  # start early in the sim's 10 s weight window
        time.sleep(0.1)
    for _ in range(60):
        conn = http.client.HTTPConnection(host, int(port), timeout=10, source_address=(source_ip, 0))
        conn.request("GET", "/api/v3/depth?symbol=BTCUSDT&limit=5000")
        resp = conn.getresponse()
        resp.read()
        out.append((resp.status, resp.getheader("Retry-After")))
        conn.close()
        if resp.status == 418:
            break
    return out


def test_whole_universe_syncs_without_a_429(tmp_path: Path) -> None:
    # 1,012 instruments; 2,000 weight per 10 s. Syncing every book costs ~5,100 weight, so a client
    # that does not pace itself is told 429 within the first second (and banned soon after).
    sim = Sim("--seed", "3", "--instruments", str(INSTRUMENTS), "--weight-limit", "2000", "--weight-window", "10")
    data = tmp_path / "data"
    proc = None
    try:
        cfg = write_config(
            tmp_path / "u.toml",
            sim.urls,
            ["all"],
            data,
            depth=5,
            format="parquet",
            venue_extra={"snapshot_limit": 100, "max_streams_per_connection": 300},
        )
        # More connections than the venue allows per IP is refused up front, in one line.
        too_many = write_config(
            tmp_path / "t.toml", sim.urls, ["all"], data, venue_extra={"max_streams_per_connection": 3}
        )
        res = run_cli("start-capture", "--config", str(too_many), "--duration", "5s")
        assert res.returncode == 2 and "need 1012 connections" in res.stderr, res.stderr
        # Logs to a file: a thousand books log a thousand sync lines, more than a pipe holds.
        log = (tmp_path / "capture.log").open("w")
        args = ["start-capture", "--config", str(cfg), "--interval", "2", "--session-id", "universe"]
        proc = subprocess.Popen([*CLI, *args], stdout=log, stderr=log, text=True, cwd=ROOT)

        def all_synced() -> dict | None:
            st = status(data, "universe")
            if not st or not st.get("venues"):
                return None
            v = st["venues"]["binance"]
            return v if len(v["pairs"]) > INSTRUMENTS and all(p["synced"] for p in v["pairs"].values()) else None

        venue = wait_for(all_synced, 170, "every book synced")
        assert len(venue["pairs"]) == INSTRUMENTS + 12
        # 1,012 pairs x 2 streams (depth and trades: the default channels), at most 300 per connection
        assert venue["connections"] == 7
        assert venue["http_429"] == venue["http_418"] == 0
        assert venue["gaps"] == venue["reconnects"] == 0
        sim_stats = _sim_stats(sim)
        assert sim_stats["http_429"] == sim_stats["http_418"] == 0
        assert sim_stats["closed_rate_limit"] == 0  # subscribe messages were paced
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(90) == 0
        final = status(data, "universe")
        assert final is not None and final["flushed"] is True
        assert final["venues"]["binance"]["missed_ticks"] == 0

        # Quote filters pick from the same listing.
        btc = list_pairs(sim.urls["rest_url"], quotes=["btc"])
        assert btc and all(p.endswith("-BTC") for p in btc) and "ETH-BTC" in btc
        assert set(list_pairs(sim.urls["rest_url"], types=["margin"])) == set()

        # The venue does enforce that budget: a client ignoring it gets 429, then 418.
        statuses = _hammer(sim, "127.0.0.2")
        codes = "".join({200: "o", 429: "r", 418: "b"}[s] for s, _ in statuses)
        assert re.fullmatch(r"o+r+b", codes), codes
        assert all(retry is not None and int(retry) >= 1 for s, retry in statuses if s != 200)
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
        sim.stop()


async def test_wrong_budget_honours_retry_after_and_is_never_banned() -> None:
    # Our configured budget is far above the venue's: the venue's 429 + Retry-After must be obeyed.
    sim = Sim("--seed", "5", "--instruments", "30", "--weight-limit", "100", "--weight-window", "5")
    try:
        pairs = await asyncio.to_thread(list_pairs, sim.urls["rest_url"])
        cfg = VenueConfig(
            pairs=pairs,
            ws_url=sim.urls["ws_url"],
            rest_url=sim.urls["rest_url"],
            snapshot_limit=100,
            rest_weight_limit=100_000,
            rest_window_s=5,
        )
        connector = BinanceConnector(cfg, pairs)
        task = asyncio.create_task(connector.run())
        try:
            for _ in range(1500):
                if all(connector.book(p) is not None for p in pairs):
                    break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("not every book synced")
        finally:
            await connector.close()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        stats = await asyncio.to_thread(_sim_stats, sim)
        assert connector.counters.get("http_429") >= 1 and stats["http_429"] >= 1
        assert stats["http_418"] == 0 and connector.counters.get("http_418") == 0
    finally:
        sim.stop()


def test_pairs_all_bad_filters_and_limits_are_one_line_errors(sim: Sim, tmp_path: Path) -> None:

    data = tmp_path / "data"
    cfg = write_config(tmp_path / "q.toml", sim.urls, ["all"], data, venue_extra={"quote": ["XYZ"]})
    res = run_cli("start-capture", "--config", str(cfg), "--duration", "5s")
    assert res.returncode == 2 and "no binance instrument matches" in res.stderr, res.stderr
    assert res.stderr.strip().count("\n") == 0
    cfg = write_config(tmp_path / "l.toml", sim.urls, ["BTC-USDT"], data, venue_extra={"max_streams_per_connection": 0})
    res = run_cli("start-capture", "--config", str(cfg), "--duration", "5s")
    assert res.returncode == 2 and "max_streams_per_connection" in res.stderr
    # The session of a whole-universe capture is named after the venue, not a thousand pairs.
    cfg = write_config(tmp_path / "a.toml", sim.urls, ["all"], data, venue_extra={"quote": ["BTC"]})
    res = run_cli("start-capture", "--config", str(cfg), "--duration", "3s", "--interval", "0.5")
    assert res.returncode == 0, res.stderr[-2000:]
    final = status(data, "binance_all")
    assert final is not None and set(final["venues"]["binance"]["pairs"]) == {"ETH-BTC", "BNB-BTC"}
