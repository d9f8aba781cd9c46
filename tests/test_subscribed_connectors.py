"""The Kraken and OKX live connectors against their simulators over real loopback sockets:
keepalive pings through a silent venue, reconnect + resubscribe after a dropped connection, and
books equal to the simulator's at their update id afterwards."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from recorder.config import VenueConfig
from recorder.sim.server import SimOptions, Simulator
from recorder.venues import connector_class
from tests.conftest import every_pair_sampled, read_jsonl, run_cli, running_cli, status, stop_cli, until, wait_for

CASES = {
    "kraken": (["BTC-USD", "ETH-USD"], lambda pair: pair.replace("-", "/")),
    "okx": (["BTC-USDT", "SOL-USDT-PERP"], lambda pair: pair.replace("-PERP", "-SWAP")),
}


async def _get(http: aiohttp.ClientSession, url: str) -> Any:
    async with http.get(url) as resp:
        return await resp.json()


async def _fault(http: aiohttp.ClientSession, sim: Simulator, **fault: Any) -> Any:
    """Inject a fault now (``POST /sim/fault``, recorder/sim/faults.py)."""
    async with http.post(f"{sim.urls['sim_url']}/sim/fault", json=fault) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


@pytest.mark.parametrize("venue", sorted(CASES))
async def test_pings_through_silence_then_reconnect_and_resubscribe(venue: str) -> None:
    pairs, symbol = CASES[venue]
    sim = Simulator(SimOptions(venue=venue, port=0, seed=5))
    await sim.start()
    base = sim.urls["sim_url"]
    cfg = VenueConfig(pairs=pairs, ws_url=sim.urls["ws_url"], rest_url=sim.urls["rest_url"], stall_timeout_s=4.0)
    connector = connector_class(venue)(cfg, pairs, None)
    task = asyncio.create_task(connector.run())
    c = connector.counters
    try:
        async with aiohttp.ClientSession() as http:
            await until(lambda: all(connector.book(p) is not None for p in pairs), 30, "books synced")
            # The venue goes silent for longer than the stall timeout but answers pings: the
            # connector pings (after 1.3 s of silence at a 4 s stall timeout) and keeps the connection.
            await _fault(http, sim, kind="stall", quiet=True, duration_s=5.5)
            await asyncio.sleep(6.0)
            stats = await _get(http, f"{base}/sim/stats")
            assert stats["pings"] >= 2, stats
            assert c.get("stalls") == 0 and c.get("reconnects") == 0
            # The connection drops: reconnect with backoff, subscribe again, fresh snapshots.
            await _fault(http, sim, kind="close", code=1001)
            await until(lambda: c.get("reconnects") >= 1, 30, "reconnect")
            await until(lambda: all(connector.book(p) is not None for p in pairs), 30, "books after reconnect")
            assert c.get("checksum_failures") == 0 and c.get("gaps") == 0 and c.get("malformed") == 0
            # (the counters are live under these names; OKX sends checksum 0 today: none is counted)
            assert c.get("checksums_ok") > 0 if venue == "kraken" else c.get("checksums_ok") == 0
            assert (await _get(http, f"{base}/sim/stats"))["connections_total"] == 2
            # The sampler found a book unusable (e.g. crossed): that symbol alone is resubscribed.
            connector.request_resync(pairs[0], "test")
            assert connector.book(pairs[0]) is None and connector.book(pairs[1]) is not None
            await until(lambda: connector.book(pairs[0]) is not None, 30, "book after request_resync")
            assert c.get("resubscribes") == 1 and c.get(f"resyncs:{pairs[0]}") == 3
            for pair in pairs:
                book = connector.book(pair)
                assert book is not None
                bids, asks = book.top(20)
                ref = await _get(http, f"{base}/sim/book?symbol={symbol(pair)}&update_id={book.update_id}&limit=20")
                assert [(float(p), float(q)) for p, q in ref["bids"]] == [(lv.price, lv.qty) for lv in bids]
                assert [(float(p), float(q)) for p, q in ref["asks"]] == [(lv.price, lv.qty) for lv in asks]
    finally:
        await connector.close()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await sim.stop()


async def test_okx_books5_pushes_equal_the_simulator_top5() -> None:
    sim = Simulator(SimOptions(venue="okx", port=0, seed=9))
    await sim.start()
    pairs = ["ETH-USDT"]
    cfg = VenueConfig(pairs=pairs, ws_url=sim.urls["ws_url"], rest_url=sim.urls["rest_url"], channel="books5")
    connector = connector_class("okx")(cfg, pairs, None)
    task = asyncio.create_task(connector.run())
    try:
        await until(lambda: connector.book("ETH-USDT") is not None, 30, "books5 push")
        async with aiohttp.ClientSession() as http:
            for _ in range(5):
                book = connector.book("ETH-USDT")
                assert book is not None and book.depth() == (5, 5)
                bids, asks = book.top(5)
                url = f"{sim.urls['sim_url']}/sim/book?symbol=ETH-USDT&update_id={book.update_id}&limit=5"
                ref = await _get(http, url)
                assert [(float(p), float(q)) for p, q in ref["bids"]] == [(lv.price, lv.qty) for lv in bids]
                assert [(float(p), float(q)) for p, q in ref["asks"]] == [(lv.price, lv.qty) for lv in asks]
                await asyncio.sleep(0.3)
        # Each push replaces the book; only the first one is a sync.
        assert connector.counters.get("checksum_failures") == 0 and connector.counters.get("resyncs") == 1
    finally:
        await connector.close()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await sim.stop()


@pytest.mark.parametrize("venue", sorted(CASES))
async def test_planned_reconnect_hands_over_without_a_gap(venue: str) -> None:
    """At max_connection_age_s a second connection syncs while the first keeps serving books."""
    pairs, _ = CASES[venue]
    sim = Simulator(SimOptions(venue=venue, port=0, seed=6))
    await sim.start()
    cfg = VenueConfig(pairs=pairs, ws_url=sim.urls["ws_url"], rest_url=sim.urls["rest_url"], max_connection_age_s=1.5)
    connector = connector_class(venue)(cfg, pairs, None)
    task = asyncio.create_task(connector.run())
    try:
        await until(lambda: all(connector.book(p) is not None for p in pairs), 30, "books synced")
        unserved = 0
        deadline = time.monotonic() + 60
        while connector.counters.get("planned_reconnects") < 2 and time.monotonic() < deadline:
            unserved += sum(connector.book(p) is None for p in pairs)
            await asyncio.sleep(0.01)
        assert connector.counters.get("planned_reconnects") >= 2
        assert unserved == 0 and connector.counters.get("reconnects") == 0
        assert sim.venue.stats()["connections_total"] >= 3
    finally:
        await connector.close()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await sim.stop()


def test_a_pair_that_keeps_failing_is_resubscribed_ever_more_slowly() -> None:
    """Venues cap subscribe requests (OKX: 480 per connection-hour): 1, 2, 4 ... s between retries
    of a pair that fails again right after its resubscribe; a calm minute resets the pace."""
    from recorder.venues.subscribed import _Session
    from tests.test_kraken import V2_ASKS, V2_BIDS, v2_frame

    connector = connector_class("kraken")(VenueConfig(pairs=["BTC-USD"]), ["BTC-USD"], None)
    session = _Session(connector)  # not connected: what it would send goes nowhere
    feed = session.feed
    snapshot = v2_frame("snapshot", "BTC/USD", V2_BIDS, V2_ASKS, 3310070434)

    def resubscribes() -> int:
        return int(connector.counters.get("resubscribes"))

    def fail_at(t: float) -> None:
        feed.on_frame(snapshot, t * 1000)  # the resubscribe's snapshot arrives...
        session.resubscribe_wanted(t)
        feed.invalidate("BTC-USD")  # ...and the book breaks again at once

    feed.on_frame(snapshot, 0.0)
    feed.invalidate("BTC-USD")
    session.resubscribe_wanted(0.0)
    assert resubscribes() == 1
    fail_at(0.5)
    assert resubscribes() == 1  # 1 s after the first
    session.resubscribe_wanted(1.0)
    assert resubscribes() == 2
    fail_at(1.5)
    session.resubscribe_wanted(2.9)
    assert resubscribes() == 2  # 2 s after the second
    session.resubscribe_wanted(3.0)
    assert resubscribes() == 3
    # A resubscribe that brings no snapshot is repeated after RESUBSCRIBE_TIMEOUT_S.
    session.resubscribe_wanted(12.9)
    assert resubscribes() == 3
    session.resubscribe_wanted(13.0)
    assert resubscribes() == 4
    fail_at(80.0)  # calm for over a minute: straight away again
    session.resubscribe_wanted(80.0)
    assert resubscribes() == 5


def test_kraken_and_okx_in_one_capture_one_process_each(tmp_path: Path) -> None:
    """Both venues in one session with --simulate: one simulator and one venue process per venue."""
    data = tmp_path / "data"
    cfg = tmp_path / "both.toml"
    cfg.write_text(
        f'data_dir = "{data}"\nsimulate = true\nformat = "jsonl"\ninterval = "500ms"\n\n'
        '[venues.kraken]\npairs = ["BTC-USD", "ETH-USD"]\nsnapshot_limit = 25\n\n'
        '[venues.okx]\npairs = ["BTC-USDT", "ETH-USDT-PERP"]\nchannel = "books"\n'
    )
    # Until every pair has stored a few snapshots, not for a fixed time: on a loaded machine the
    # four processes can take longer to start and sync than a short capture lasts.
    with running_cli("start-capture", "--config", str(cfg), "--session-id", "both") as proc:
        wait_for(lambda: every_pair_sampled(data, "both", 4), 90, "snapshots of every pair of both venues")
        stop_cli(proc)
    final = status(data, "both")
    assert final is not None and final["flushed"] is True
    pids = {final["venues"][v]["pid"] for v in ("kraken", "okx")}
    assert len(pids) == 2 and None not in pids
    stored = read_jsonl(data)
    by_venue = {(s["exchange"], s["pair"]) for s in stored}
    assert by_venue == {("kraken", "BTC-USD"), ("kraken", "ETH-USD"), ("okx", "BTC-USDT"), ("okx", "ETH-USDT-PERP")}
    for venue in ("kraken", "okx"):
        v = final["venues"][venue]
        # The simulated OKX sends checksum 0, as OKX does today: its books rest on the seqId chain.
        assert (v["checksums_ok"] > 0) is (venue == "kraken") and v["checksums_failed"] == 0 and v["gaps"] == 0
        assert v["samples"] == sum(1 for s in stored if s["exchange"] == venue)


async def test_okx_maintenance_notice_triggers_a_planned_reconnect() -> None:
    """OKX announces a service upgrade (notice 64008) ~30 s ahead: hand over to a new connection
    before the old one is cut, with every book served throughout."""
    pairs = ["BTC-USDT", "ETH-USDT"]
    sim = Simulator(SimOptions(venue="okx", port=0, seed=8))
    await sim.start()
    cfg = VenueConfig(pairs=pairs, ws_url=sim.urls["ws_url"], rest_url=sim.urls["rest_url"])
    connector = connector_class("okx")(cfg, pairs, None)
    task = asyncio.create_task(connector.run())
    c = connector.counters
    try:
        await until(lambda: all(connector.book(p) is not None for p in pairs), 30, "books synced")
        async with aiohttp.ClientSession() as http:
            assert (await _fault(http, sim, kind="notice"))["kind"] == "notice"
        unserved = 0
        deadline = time.monotonic() + 30
        while c.get("planned_reconnects") < 1 and time.monotonic() < deadline:
            unserved += sum(connector.book(p) is None for p in pairs)
            await asyncio.sleep(0.01)
        assert c.get("planned_reconnects") == 1 and c.get("reconnects") == 0 and unserved == 0
        assert sim.venue.stats()["connections_total"] == 2
    finally:
        await connector.close()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await sim.stop()


async def test_a_hung_venue_is_detected_as_a_stall_and_reconnected() -> None:
    """The socket stays open but nothing comes (no data, no answer to the venue's own ping nor
    to WebSocket pings): after stall_timeout_s the connector counts a stall, reconnects and
    resubscribes."""
    pairs = ["BTC-USD"]
    sim = Simulator(SimOptions(venue="kraken", port=0, seed=4))
    await sim.start()
    cfg = VenueConfig(pairs=pairs, ws_url=sim.urls["ws_url"], rest_url=sim.urls["rest_url"], stall_timeout_s=2.0)
    connector = connector_class("kraken")(cfg, pairs, None)
    # The reconnect may land while the venue still holds its answers: ask again soon.
    connector.resubscribe_timeout_s = 2.0
    task = asyncio.create_task(connector.run())
    c = connector.counters
    try:
        await until(lambda: connector.book("BTC-USD") is not None, 30, "book synced")
        async with aiohttp.ClientSession() as http:
            await _fault(http, sim, kind="stall", duration_s=4.0)
        await until(lambda: c.get("stalls") >= 1, 30, "stall detected")
        await until(lambda: connector.book("BTC-USD") is not None and c.get("connected") == 1, 30, "book back")
        assert c.get("reconnects") >= 1 and c.get("checksum_failures") == 0
    finally:
        await connector.close()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await sim.stop()


async def test_a_subscribe_that_brings_no_snapshot_is_sent_again() -> None:
    """The venue swallows the first subscribe (a hung venue at connect time): without a snapshot
    within resubscribe_timeout_s the connector asks again instead of waiting forever."""
    pairs = ["BTC-USDT"]
    sim = Simulator(SimOptions(venue="okx", port=0, seed=3))
    await sim.start()
    async with aiohttp.ClientSession() as http:
        # Longer than resubscribe_timeout_s: what the venue answers comes too late.
        await _fault(http, sim, kind="stall", duration_s=3.0)
    cfg = VenueConfig(pairs=pairs, ws_url=sim.urls["ws_url"], rest_url=sim.urls["rest_url"], stall_timeout_s=30)
    connector = connector_class("okx")(cfg, pairs, None)
    connector.resubscribe_timeout_s = 2.0
    task = asyncio.create_task(connector.run())
    try:
        await until(lambda: connector.book("BTC-USDT") is not None, 30, "book after the second subscribe")
        assert connector.counters.get("resubscribes") >= 1 and connector.counters.get("reconnects") == 0
    finally:
        await connector.close()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await sim.stop()


@pytest.mark.parametrize(
    ("venue", "good", "bad"),
    [
        ("kraken", "BTC-USD", "NOPE-USD"),
        ("okx", "BTC-USDT", "NOPE-USDT"),
        ("bybit", "BTC-USDT", "NOPE-USDT-PERP"),
        ("coinbase", "BTC-USD", "NOPE-USD"),
    ],
)
def test_unknown_pair_is_a_one_line_error_before_the_capture_starts(
    tmp_path: Path, venue: str, good: str, bad: str
) -> None:
    """The venue's instrument list (its REST API, here the embedded simulator's) rejects the pair."""
    res = run_cli(
        "start-capture", "--venue", venue, "--pairs", f"{good},{bad}", "--simulate", "--duration", "5s",
        "--data-dir", str(tmp_path / "data"),
    )  # fmt: skip
    assert res.returncode != 0
    assert res.stderr.strip().splitlines()[-1] == f"Error: unknown pair(s) on {venue}: {bad}"
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "data").exists() or not any((tmp_path / "data").rglob("*.parquet"))
