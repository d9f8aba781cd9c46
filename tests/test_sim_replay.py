"""`cli.py simulate --replay`: a live capture (real processes, real sockets) of a real recording."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from recorder.replay.readers import Kind, capture_files, read_capture
from tests.conftest import Sim, capture_whole_replay, read_jsonl, run_cli, status, write_config
from tests.test_replay import FUTURES, SPOT, Reference, _pair

SPOT_PAIRS = ["NKN-USDT", "BLZ-ETH", "LRC-BTC", "RUNE-EUR"]
FUTURES_PAIRS = ["SUSHI-USDT-PERP", "AKRO-USDT-PERP", "KEEP-USDT-PERP", "CTK-USDT-PERP"]


def _states_by_update_id(path: Path, futures: bool, depth: int = 20) -> dict[tuple[str, int], dict[str, Any]]:
    """(pair, update id) -> the reference book right after that id, from the raw recording."""
    ref = Reference(futures)
    out: dict[tuple[str, int], dict[str, Any]] = {}
    for r in read_capture(capture_files(path)):
        if r.kind is Kind.HTTP and r.url:
            ref.snapshot(r.url.split("symbol=")[1].split("&")[0], json.loads(r.payload))
        elif r.kind is Kind.WS:
            data = json.loads(r.payload).get("data", {})
            if data.get("e") == "depthUpdate":
                ref.diff(data)
        for symbol in ref.books:
            top = ref.top(symbol, depth)
            out.setdefault((_pair(symbol, futures), top["update_id"]), top)
    return out


@pytest.mark.parametrize(
    ("venue", "path", "pairs", "frames"),
    [("binance", SPOT, SPOT_PAIRS, 265), ("binance-futures", FUTURES, FUTURES_PAIRS, 1535)],
)
def test_live_capture_of_a_binance_recording_through_the_simulator(
    tmp_path: Path, venue: str, path: Path, pairs: list[str], frames: int
) -> None:
    sim = Sim("--venue", venue, "--replay", str(path), "--speed", "4")
    try:
        data = tmp_path / "data"
        cfg = write_config(tmp_path / "c.toml", sim.urls, pairs, data)
        cfg.write_text(cfg.read_text().replace("[venues.binance]", f"[venues.{venue}]"))
        capture_whole_replay(sim, cfg, data, "replayed", "0.5")  # ~31 s recorded, played at 4x
        _, stats = sim.get("/sim/stats")
    finally:
        sim.stop()
    assert stats["done"] is True
    assert stats["frames_sent"] == stats["frames_recorded"] == frames  # every recorded frame reached the capture
    assert stats["snapshots_served"] >= 4
    final = status(data, "replayed")
    assert final is not None and final["state"] == "stopped" and final["flushed"] is True
    counters = final["venues"][venue]
    assert counters["gaps"] == 0 and counters["malformed"] == 0
    stored = read_jsonl(data)
    assert {s["pair"] for s in stored} == set(pairs)
    reference = _states_by_update_id(path, futures=venue == "binance-futures")
    for s in stored:
        ref = reference.get((s["pair"], s["update_id"]))
        assert ref is not None, f"{s['pair']} update id {s['update_id']} is not in the recording"
        assert [(lv["price"], lv["qty"]) for lv in s["bids"]] == ref["bids"]
        assert [(lv["price"], lv["qty"]) for lv in s["asks"]] == ref["asks"]
    # The busiest pair's last recorded update made it into the stored books.
    last = max(u for p, u in reference if p == pairs[0])
    assert max(s["update_id"] for s in stored if s["pair"] == pairs[0]) == last


def test_simulate_replay_bad_file_is_a_one_line_error(tmp_path: Path) -> None:
    for args, message in [
        (("--replay", str(tmp_path / "missing.ws.1.0")), "not a readable file"),
        (("--replay", str(SPOT), "--speed", "0"), "'--speed': 0 must be above 0"),
    ]:
        res = run_cli("simulate", "--venue", "binance", *args)
        assert res.returncode == 2 and message in res.stderr, res.stderr
        assert len(res.stderr.strip().splitlines()) == 1


def test_replay_first_connection_gets_every_frame_even_after_a_rest_request() -> None:
    """A REST snapshot request that starts the timeline before the WebSocket handshake (a race a
    loaded machine can lose) must not cost the first connection the frames recorded meanwhile."""
    sim = Sim("--venue", "binance", "--replay", str(SPOT), "--speed", "4")
    try:
        # Recorded 2.6 s after the first frame: answered once the timeline gets there.
        with urllib.request.urlopen(f"{sim.urls['rest_url']}/api/v3/depth?symbol=BLZETH&limit=1000", timeout=30):
            pass

        async def receive_all() -> int:
            got = 0
            async with aiohttp.ClientSession() as session, session.ws_connect(sim.urls["ws_url"]) as ws:
                while got < 265:
                    msg = await ws.receive(timeout=30)
                    if msg.type is not aiohttp.WSMsgType.TEXT:
                        break
                    got += 1
            return got

        assert asyncio.run(receive_all()) == 265
        assert sim.get("/sim/stats")[1]["frames_sent"] == 265
    finally:
        sim.stop()
