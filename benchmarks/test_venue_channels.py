"""What trades and quotes cost the venue process, on the same frames every round: CPU per sampled
snapshot with books only (the baseline), books + trades, books + quotes, books + trades + quotes.

The Binance simulator serves P pairs (depth and ``@trade`` streams) for S seconds; its frames and one
REST snapshot per pair are recorded once with their receive times, then replayed through the venue
process's own parts: the Feed, the trade parser, the quote tracker, the emitter, the sampler at
every 100 ms of recorded time and a shared-memory ring. No sockets and no other process: the
figure is CPU time (``time.process_time``, min of the rounds), the same input every round, so it
stays comparable on a loaded machine where the end-to-end run (``test_e2e.py`` with
``BENCH_E2E_CHANNELS``) is not. Reported: µs per snapshot, the ratio to books only, and the
marginal CPU per trade and per quote.

``BENCH_CHANNELS_PAIRS`` (300) and ``BENCH_CHANNELS_SECONDS`` (20); quick mode: 5 pairs for 3 s.
``BENCH_CHANNELS_FRAMES=<file>`` keeps the recorded frames there (recorded if the file is missing)
so that two checkouts compare on the same input.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest

from benchmarks.quick import size
from recorder.metrics import SharedCounters
from recorder.ring.shm_ring import ShmRing
from recorder.sampler.emitter import RecordEmitter
from recorder.sampler.sampler import Sampler
from recorder.supervisor.venue_worker import venue_counter_fields
from recorder.venues.base import Counters
from recorder.venues.binance import BinanceFeed, TradeIds

ROOT = Path(__file__).resolve().parent.parent
PAIRS = int(os.environ.get("BENCH_CHANNELS_PAIRS", size("300", "5")))
SECONDS = float(os.environ.get("BENCH_CHANNELS_SECONDS", size("20", "3")))
ROUNDS = size(5, 1)
CHANNEL_SETS = ["book", "book,trades", "book,quotes", "book,trades,quotes"]
_BASE: dict[str, float] = {}  # books only: CPU s of the replay

Event = tuple[str, str, bytes, float]  # ("ws" | "rest", symbol of a snapshot, payload, receive ms)


async def _record(urls: dict[str, str], symbols: list[str]) -> list[Event]:
    events: list[Event] = []
    async with aiohttp.ClientSession() as http:

        async def connection(group: list[str]) -> None:
            streams = "/".join(f"{s.lower()}@depth@100ms/{s.lower()}@trade" for s in group)
            async with http.ws_connect(f"{urls['ws_url']}/stream?streams={streams}", max_msg_size=0) as ws:
                end = time.monotonic() + SECONDS
                async for msg in ws:
                    if msg.type == aiohttp.WSMsgType.TEXT:
                        events.append(("ws", "", msg.data.encode(), time.time() * 1000.0))
                    if time.monotonic() > end:
                        return

        tasks = [asyncio.create_task(connection(symbols[i : i + 100])) for i in range(0, len(symbols), 100)]
        await asyncio.sleep(1.0)  # diffs buffered first, as live
        for s in symbols:
            async with http.get(f"{urls['rest_url']}/api/v3/depth", params={"symbol": s, "limit": "100"}) as r:
                events.append(("rest", s, await r.read(), time.time() * 1000.0))
        await asyncio.gather(*tasks)
    return events


@pytest.fixture(scope="module")
def frames() -> list[Event]:
    kept = os.environ.get("BENCH_CHANNELS_FRAMES")
    if kept and Path(kept).exists():
        return msgspec.msgpack.decode(Path(kept).read_bytes(), type=list[tuple[str, str, bytes, float]])
    events = _simulated()
    if kept:
        Path(kept).write_bytes(msgspec.msgpack.encode(events))
    return events


def _simulated() -> list[Event]:
    symbols = [f"B{i:04d}USDT" for i in range(PAIRS)]
    sim = subprocess.Popen([sys.executable, str(ROOT / "cli.py"), "simulate", "--venue", "binance", "--port", "0",
                            "--seed", "1", "--symbols", ",".join(symbols)],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)  # fmt: skip
    try:
        assert sim.stdout is not None
        return asyncio.run(_record(json.loads(sim.stdout.readline()), symbols))
    finally:
        sim.send_signal(signal.SIGTERM)
        try:
            sim.wait(30)
        except subprocess.TimeoutExpired:
            sim.kill()
            sim.wait(30)


def _replay(events: list[Event], channels: list[str]) -> dict[str, float]:
    pairs = sorted({f"{e[1][:-4]}-USDT" for e in events if e[0] == "rest"})
    counters = SharedCounters.create(venue_counter_fields(pairs))
    ring = ShmRing.create(64 << 20)
    try:
        return _replay_into(events, channels, pairs, counters, ring)
    finally:
        ring.close()
        counters.close()


def _replay_into(
    events: list[Event], channels: list[str], pairs: list[str], counters: SharedCounters, ring: ShmRing
) -> dict[str, float]:
    """CPU seconds of the replay after every snapshot arrived, and what it made."""
    view = Counters(counters)
    feed = BinanceFeed(pairs, view, snapshot_limit=100, trade_ids=TradeIds(view, pairs))
    emitter = RecordEmitter("binance", pairs, ring, counters)
    if "trades" in channels:
        feed.on_trade = emitter.trade
    if "quotes" in channels:
        feed.on_quote = emitter.quote
    sampler = Sampler("binance", pairs, 20, 100, feed, ring, counters)
    start = max(e[3] for e in events if e[0] == "rest") + 1000.0  # every book synced by then
    tick = (int(start) // 100 + 1) * 100
    cpu0: float | None = None
    before: dict[str, float] = {}
    for kind, symbol, payload, at in events:
        if cpu0 is None and at >= start:
            cpu0 = time.process_time()
            before = {k: counters.get(k) for k in ("samples", "trades", "quotes")}
        while cpu0 is not None and at >= tick:
            sampler.sample(tick, tick + 1.0)
            ring.commit(ring.write_pos)  # the writer's part: the ring never fills
            tick += 100
        if kind == "ws":
            feed.on_frame(payload, at)
        else:
            feed.on_rest_snapshot(f"{symbol[:-4]}-USDT", payload, at)
    cpu = time.process_time() - (cpu0 if cpu0 is not None else time.process_time())
    made = {k: counters.get(k) - before.get(k, 0.0) for k in ("samples", "trades", "quotes")}
    return {"cpu_s": cpu, **made}


@pytest.mark.parametrize("channels", CHANNEL_SETS)
@pytest.mark.benchmark(group="venue cpu: books vs trades and quotes")
def test_venue_cpu_per_snapshot(benchmark: Any, frames: list[Event], channels: str) -> None:
    wanted = channels.split(",")
    events = frames if "trades" in wanted else [e for e in frames if not (e[0] == "ws" and b"@trade" in e[2][:48])]
    runs: list[dict[str, float]] = []
    benchmark.pedantic(lambda: runs.append(_replay(events, wanted)), rounds=ROUNDS, iterations=1)
    best = min(runs, key=lambda r: r["cpu_s"])
    assert best["samples"] > 0
    assert (best["trades"] > 0) == ("trades" in wanted) and (best["quotes"] > 0) == ("quotes" in wanted)
    if channels == "book":
        _BASE.update(best)
    info: dict[str, Any] = {
        "pairs": PAIRS,
        "seconds": SECONDS,
        "snapshots": int(best["samples"]),
        "trades": int(best["trades"]),
        "quotes": int(best["quotes"]),
        "cpu_us_per_snapshot": round(1e6 * best["cpu_s"] / best["samples"], 2),
        "baseline": channels == "book",
    }
    if _BASE and channels != "book":
        info["cpu_vs_books_only"] = round(best["cpu_s"] / _BASE["cpu_s"], 3)
        extra = best["cpu_s"] - _BASE["cpu_s"]
        records = best["trades"] + best["quotes"]
        info["extra_cpu_us_per_trade_or_quote"] = round(1e6 * extra / records, 2) if records else None
    benchmark.extra_info.update(info)
    print(json.dumps({"channels": channels, **info}))
