"""Trades live: the real connector of Coinbase, Kraken, OKX and Bybit against its simulator over
loopback, its Feed's ``on_trade`` collecting. Every trade the simulator sent (its own record,
``GET /sim/trades``) arrives exactly once with the taker's side, price, size and time; a
``trade_gap`` fault and a ``trade_silence`` fault (subscribed, acknowledged, no frames) lose
trades that never arrive, and where ids are contiguous the missing ids are the trade gaps counted."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from recorder.sim.server import Simulator
from tests.conftest import until
from tests.venue_live import live_connector

# venue -> (pairs, simulator symbol of each pair, does the venue's id show a lost trade, OKX-style aggregation)
CASES: dict[str, tuple[list[str], list[str], bool, bool]] = {
    "coinbase": (["BTC-USD", "ETH-USD"], ["BTC-USD", "ETH-USD"], True, False),
    "kraken": (["BTC-USD", "ETH-USD"], ["BTC/USD", "ETH/USD"], True, False),
    "okx": (["BTC-USDT", "SOL-USDT-PERP"], ["BTC-USDT", "SOL-USDT-SWAP"], True, True),
    "bybit": (["BTC-USDT", "ETH-USDT-PERP"], ["spot:BTCUSDT", "linear:ETHUSDT"], False, False),
}


async def _fault(http: aiohttp.ClientSession, sim: Simulator, **fault: Any) -> None:
    async with http.post(f"{sim.urls['sim_url']}/sim/fault", json=fault) as resp:
        assert resp.status == 200, await resp.text()


async def _record(http: aiohttp.ClientSession, sim: Simulator, symbol: str) -> list[dict[str, Any]]:
    async with http.get(f"{sim.urls['sim_url']}/sim/trades", params={"symbol": symbol}) as resp:
        assert resp.status == 200, await resp.text()
        return (await resp.json())["trades"]  # type: ignore[no-any-return]


def _expected(rows: list[dict[str, Any]], aggregated: bool) -> list[dict[str, Any]]:
    """What the venue printed, one entry per message trade: OKX prints a fill once, with its last id
    and the fill's total size; the others every match."""
    if not aggregated:
        return rows
    fills: dict[int, list[dict[str, Any]]] = {}
    for r in rows:
        fills.setdefault(r["fill"], []).append(r)
    out = []
    for group in fills.values():
        last = max(group, key=lambda r: int(r["id"]))
        out.append({**last, "qty": str(sum(float(r["qty"]) for r in group)), "first": min(int(r["id"]) for r in group)})
    return out


@pytest.mark.parametrize("venue", sorted(CASES))
async def test_live_trades_every_one_once_and_faults_counted(venue: str) -> None:
    pairs, symbols, contiguous, aggregated = CASES[venue]
    async with live_connector(venue, pairs, symbols, 11, "on_trade") as live, aiohttp.ClientSession() as http:
        sim, connector, got = live.sim, live.connector, live.got

        def count(pair: str) -> int:
            return sum(1 for t in got if t.pair == pair)

        await until(lambda: all(count(p) >= 5 for p in pairs), 30, "trades of every pair")
        faulted, symbol = pairs[0], symbols[0]
        await _fault(http, sim, kind="trade_gap", symbol=symbol, count=2)
        before = count(faulted)
        await until(lambda: count(faulted) >= before + 10, 30, "trades after the gap")
        await _fault(http, sim, kind="trade_silence", symbol=symbol, duration_s=1.0)
        await asyncio.sleep(1.2)
        before = count(faulted)
        await until(lambda: count(faulted) >= before + 5, 30, "trades after the silence")
        await live.finish()
        records = {pair: await _record(http, sim, sym) for pair, sym in zip(pairs, symbols, strict=True)}
    counters = connector.counters
    for pair in pairs:
        mine = [t for t in got if t.pair == pair]
        assert len({t.trade_id for t in mine}) == len(mine), "a trade arrived twice"
        last = max(int(t.trade_id) for t in mine) if venue != "bybit" else None
        rows = _expected(records[pair], aggregated)
        if last is None:  # Bybit ids do not order: everything sent before the last one received
            ids = [r["id"] for r in rows]
            last_i = max(ids.index(t.trade_id) for t in mine)
            rows = rows[: last_i + 1]
        else:
            rows = [r for r in rows if int(r["id"]) <= last]
        sent = [r for r in rows if r["sent"]]
        withheld = [r for r in rows if r["withheld"]]
        by_id = {t.trade_id: t for t in mine}
        assert set(by_id) == {r["id"] for r in sent}, pair
        for r in sent:
            t = by_id[r["id"]]
            assert (t.side, t.price, t.quantity, t.exchange_time_us) == (
                r["side"], float(r["price"]), pytest.approx(float(r["qty"])), r["time_us"]), (pair, r)  # fmt: skip
        gaps = counters.get(f"trade_gaps:{pair}")
        if pair == pairs[0]:
            assert {r["withheld"] for r in withheld} == {"gap", "silence"}
            assert all(r["id"] not in by_id for r in withheld)
            assert sum(1 for r in withheld if r["withheld"] == "gap") >= 2
        if contiguous:
            first = min(int(t.trade_id) for t in mine)
            lost = sum(int(r["id"]) - r.get("first", int(r["id"])) + 1 for r in withheld if int(r["id"]) > first)
            assert gaps == lost, (pair, gaps, lost)
        else:
            assert gaps == 0


@pytest.mark.parametrize("venue", sorted(CASES))
async def test_live_trades_through_a_dropped_connection(venue: str) -> None:
    """A dropped connection: the reconnect's trades join the old ones without a repeat (Coinbase's
    and Kraken's replayed recent trades are deduped and fill the hole), every trade received is the
    simulator's, and where ids are contiguous the ids never received are exactly the gaps counted."""
    pairs, symbols, contiguous, aggregated = CASES[venue]
    pair, symbol = pairs[0], symbols[0]
    async with live_connector(venue, pairs, symbols, 12, "on_trade") as live, aiohttp.ClientSession() as http:
        sim, connector, got = live.sim, live.connector, live.got

        def count() -> int:
            return sum(1 for t in got if t.pair == pair)

        await until(lambda: count() >= 10, 30, "trades")
        await _fault(http, sim, kind="drop", symbol=symbol)
        await until(lambda: connector.counters.get("reconnects") >= 1, 30, "the reconnect")
        before = count()
        await until(lambda: count() >= before + 20, 30, "trades after the reconnect")
        await live.finish()
        rows = await _record(http, sim, symbol)
    mine = [t for t in got if t.pair == pair]
    assert len({t.trade_id for t in mine}) == len(mine), "a trade arrived twice"
    by_id = {r["id"]: r for r in _expected(rows, aggregated)}
    for t in mine:
        r = by_id[t.trade_id]
        assert (t.side, t.price, t.quantity) == (r["side"], float(r["price"]), pytest.approx(float(r["qty"])))
    gaps = connector.counters.get(f"trade_gaps:{pair}")
    if not contiguous:
        assert gaps == 0
        return
    covered: set[int] = set()
    for t in mine:
        r = by_id[t.trade_id]
        covered.update(range(r.get("first", int(r["id"])), int(r["id"]) + 1))
    never = set(range(min(covered), max(covered) + 1)) - covered
    assert gaps == len(never), (venue, gaps, len(never))
    if venue in ("coinbase", "kraken"):  # the replay after the resubscribe brought what the drop lost
        assert gaps == 0


@pytest.mark.parametrize("venue", sorted(CASES))
async def test_live_book_resubscribe_loses_and_repeats_no_trade(venue: str) -> None:
    """A book sequence gap resubscribes the book (Coinbase renews its trades with it, whose replay
    is deduped): the trade stream goes on without a repeat and without a lost id."""
    pairs, symbols, contiguous, aggregated = CASES[venue]
    pair, symbol = pairs[0], symbols[0]
    lost = "checksum_failures" if venue == "kraken" else "gaps"  # Kraken has no sequence: its checksum fails
    async with live_connector(venue, pairs, symbols, 13, "on_trade") as live, aiohttp.ClientSession() as http:
        sim, connector, got = live.sim, live.connector, live.got

        def count() -> int:
            return sum(1 for t in got if t.pair == pair)

        await until(lambda: count() >= 10 and connector.book(pair) is not None, 30, "trades and the book")
        await _fault(http, sim, kind="gap", symbol=symbol)
        await until(lambda: connector.counters.get(lost) >= 1, 30, "the book gap")
        await until(lambda: connector.book(pair) is not None, 30, "the book resynced")
        before = count()
        await until(lambda: count() >= before + 10, 30, "trades after the resync")
        await live.finish()
        rows = await _record(http, sim, symbol)
    assert connector.counters.get("resubscribes") >= 1 and connector.counters.get("reconnects") == 0
    mine = [t for t in got if t.pair == pair]
    assert len({t.trade_id for t in mine}) == len(mine), "a trade arrived twice"
    rows = _expected(rows, aggregated)
    ids = [r["id"] for r in rows]
    if contiguous:
        last = max(int(t.trade_id) for t in mine)
        first = min(int(t.trade_id) for t in mine)
        want = [r["id"] for r in rows if first <= int(r["id"]) <= last]
    else:
        want = ids[ids.index(mine[0].trade_id) : ids.index(mine[-1].trade_id) + 1]
    assert [t.trade_id for t in mine] == want  # every trade, once, in the venue's order
    assert connector.counters.get(f"trade_gaps:{pair}") == 0
