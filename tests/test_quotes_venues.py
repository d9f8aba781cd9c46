"""Quotes (every change of a served book's best bid or ask) of Coinbase, Kraken, OKX and Bybit.

On the real Bybit recording against a book rebuilt here with plain dicts; live, each venue's
connector against its simulator, every quote equal to the simulator's own book at the quote's
position, consecutive quotes always a change, none across a lost book.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from recorder.demo import sim_book_url
from recorder.model import Quote
from recorder.venues.bybit import feed_for_url, pair_for
from tests.conftest import until
from tests.test_bybit import RefBook
from tests.venue_live import RECORDINGS, live_connector, read_jsonl_zst

Top = tuple[float | None, float | None, float | None, float | None]


def _top(q: Quote) -> Top:
    return (q.bid_price, q.bid_qty, q.ask_price, q.ask_qty)


def test_bybit_recording_quotes_are_every_change_of_the_top() -> None:
    path = RECORDINGS / "bybit" / "BYBIT.jsonl.zst"
    if not path.exists():
        pytest.skip(f"recording not found: {path}")
    got: list[Quote] = []
    feeds: dict[str, Any] = {}
    markets: dict[str, str] = {}
    refs: dict[str, RefBook] = {}
    last: dict[str, Top] = {}
    expected: list[tuple[str, Top, int, int]] = []
    for rec in read_jsonl_zst(path):
        if rec["t"] == "connect":
            feeds[rec["conn"]] = feed_for_url(rec["addr"])
            feeds[rec["conn"]].on_quote = got.append
            markets[rec["conn"]] = rec["addr"].rsplit("/", 1)[1]
        if rec["t"] != "recv":
            continue
        feeds[rec["conn"]].on_frame(rec["data"].encode(), rec["ts"] * 1000.0)
        if '"orderbook.' not in rec["data"][:40]:
            continue
        msg = json.loads(rec["data"])
        pair = pair_for(markets[rec["conn"]], msg["data"]["s"])
        ref = refs.setdefault(pair, RefBook())
        ref.load(msg["data"]) if msg["type"] == "snapshot" else ref.apply(msg["data"])
        bids, asks = ref.top(1)
        top = (bids[0][0], bids[0][1], asks[0][0], asks[0][1])
        if last.get(pair) != top:
            last[pair] = top
            expected.append((pair, top, ref.u, msg["ts"] * 1000))
    assert len(expected) > 100
    assert [(q.pair, _top(q), q.update_id, q.exchange_time_us) for q in got] == expected
    assert all(q.exchange == "bybit" and q.local_time_us > 0 for q in got)


CASES = {
    "coinbase": (["BTC-USD", "ETH-USD"], ["BTC-USD", "ETH-USD"]),
    "kraken": (["BTC-USD", "ETH-USD"], ["BTC/USD", "ETH/USD"]),
    "okx": (["BTC-USDT", "SOL-USDT-PERP"], ["BTC-USDT", "SOL-USDT-SWAP"]),
    "bybit": (["BTC-USDT", "ETH-USDT-PERP"], ["spot:BTCUSDT", "linear:ETHUSDT"]),
}


@pytest.mark.parametrize("venue", sorted(CASES))
async def test_live_quotes_are_the_simulators_top_of_book(venue: str) -> None:
    pairs, symbols = CASES[venue]
    async with live_connector(venue, pairs, symbols, 21, "on_quote") as live:
        sim, got = live.sim, live.got
        await until(lambda: all(sum(q.pair == p for q in got) >= 20 for p in pairs), 30, "quotes of every pair")
        await live.finish()
        async with aiohttp.ClientSession() as http:
            for pair in pairs:
                mine = [q for q in got if q.pair == pair]
                assert all(_top(a) != _top(b) for a, b in zip(mine, mine[1:], strict=False)), "a quote of no change"
                for q in mine[-10:]:
                    snap = {"update_id": q.update_id, "exchange_time_ms": (q.exchange_time_us or 0) // 1000}
                    async with http.get(sim_book_url(sim.urls["sim_url"], venue, pair, snap, 1)) as resp:
                        assert resp.status == 200, await resp.text()
                        ref = await resp.json()
                    want = (float(ref["bids"][0][0]), float(ref["bids"][0][1]), float(ref["asks"][0][0]),
                            float(ref["asks"][0][1]))  # fmt: skip
                    assert _top(q) == want, (venue, pair, q)
                    assert q.exchange == venue and q.bid_price is not None and q.bid_price < (q.ask_price or 0)
