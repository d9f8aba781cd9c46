"""The Binance Feed's trades and quotes on crafted frames (the sans-I/O Feed live and replay drive):
the taker's side, gaps and duplicates across a hand-over's two sockets, USD-M off-book prints,
and quotes only from a verified book, never measured across a gap."""

from __future__ import annotations

import json

from recorder.model import Quote, Trade
from recorder.venues.binance import BinanceFeed
from recorder.venues.binance_futures import BinanceFuturesFeed
from recorder.venues.binance_trades import TradeIds


def _trade(t: int, m: bool, sym: str = "BTCUSDT", x: str | None = None) -> bytes:
    data = {"e": "trade", "E": 1_700_000_000_123, "s": sym, "t": t, "p": "61837.63000000", "q": "0.02000000",
            "T": 1_700_000_000_120 + t % 3, "m": m, "M": True}  # fmt: skip
    if x is not None:
        data.pop("M")
        data["X"] = x
    return json.dumps({"stream": f"{sym.lower()}@trade", "data": data}).encode()


def _diff(first: int, last: int, bids: list[list[str]], asks: list[list[str]]) -> bytes:
    data = {"e": "depthUpdate", "E": 1_700_000_000_000 + last, "s": "BTCUSDT", "U": first, "u": last, "b": bids,
            "a": asks}  # fmt: skip
    return json.dumps({"stream": "btcusdt@depth@100ms", "data": data}).encode()


def test_trades_sides_gaps_and_the_hand_over_duplicates() -> None:
    ids = TradeIds()
    old, new = BinanceFeed(["BTC-USDT"], trade_ids=ids), BinanceFeed(["BTC-USDT"], trade_ids=ids)
    got: list[Trade] = []
    old.on_trade = new.on_trade = got.append
    old.on_frame(_trade(100, m=True), 5_000.0)  # buyer made: the taker sold
    old.on_frame(_trade(101, m=False), 5_001.0)
    new.on_frame(_trade(101, m=False), 5_002.0)  # the new socket of a hand-over: already stored
    new.on_frame(_trade(102, m=False), 5_003.0)
    new.on_frame(_trade(106, m=True), 5_004.0)  # 103..105 lost
    assert [(t.trade_id, t.side) for t in got] == [("100", "sell"), ("101", "buy"), ("102", "buy"), ("106", "sell")]
    assert got[0] == Trade("binance", "BTC-USDT", "100", 61837.63, 0.02, "sell", 1_700_000_000_121_000, 5_000_000)
    gaps = sum(f.stats.per_pair.get("BTC-USDT", {}).get("trade_gaps", 0) for f in (old, new))
    assert gaps == 3


def test_trades_are_not_parsed_without_a_consumer() -> None:
    feed = BinanceFeed(["BTC-USDT"])
    feed.on_frame(_trade(1, m=True), 1.0)
    assert feed.stats.kinds.get("trade", 0) == 0 and feed.stats.kinds.get("other_stream") == 1


def test_usdm_off_book_prints_are_skipped_but_keep_the_id_sequence() -> None:
    feed = BinanceFuturesFeed(["BTC-USDT-PERP"])
    got: list[Trade] = []
    feed.on_trade = got.append
    for t, x in ((10, "MARKET"), (11, "INSURANCE_FUND"), (12, "ADL"), (13, "MARKET")):
        feed.on_frame(_trade(t, m=False, x=x), 1.0)
    assert [t.trade_id for t in got] == ["10", "13"] and all(t.pair == "BTC-USDT-PERP" for t in got)
    assert feed.stats.per_pair["BTC-USDT-PERP"].get("trade_gaps", 0) == 0
    assert feed.stats.kinds["trade_offbook"] == 2


def test_quotes_come_from_the_verified_book_only_and_restart_after_a_gap() -> None:
    feed = BinanceFeed(["BTC-USDT"])
    quotes: list[Quote] = []
    feed.on_quote = quotes.append
    feed.on_frame(_diff(99, 101, [["100.0", "1.0"]], [["101.0", "2.0"]]), 10.0)  # buffered: no book yet
    assert quotes == []
    snap = json.dumps({"lastUpdateId": 100, "bids": [["100.0", "1.0"]], "asks": [["101.0", "2.0"]]}).encode()
    feed.on_rest_snapshot("BTC-USDT", snap, 11.0)
    assert feed.synced("BTC-USDT")
    assert [(q.bid_price, q.bid_qty, q.ask_price, q.ask_qty) for q in quotes] == [(100.0, 1.0, 101.0, 2.0)]
    feed.on_frame(_diff(102, 102, [["99.0", "5.0"]], []), 12.0)  # below the touch: no quote
    assert len(quotes) == 1
    feed.on_frame(_diff(103, 103, [["100.0", "3.0"]], []), 13.0)  # best bid size
    assert (quotes[-1].bid_qty, quotes[-1].update_id, quotes[-1].local_time_us) == (3.0, 103, 13_000)
    feed.on_frame(_diff(110, 110, [["100.5", "1.0"]], []), 14.0)  # a gap: the book is dropped
    assert len(quotes) == 2 and not feed.synced("BTC-USDT")
    snap = json.dumps({"lastUpdateId": 110, "bids": [["100.0", "3.0"]], "asks": [["101.0", "2.0"]]}).encode()
    feed.on_frame(_diff(111, 111, [["99.0", "1.0"]], []), 15.0)
    feed.on_rest_snapshot("BTC-USDT", snap, 16.0)
    # The resynced book's top equals the last quote, yet it is stored: no change is measured across a gap.
    assert len(quotes) == 3 and (quotes[-1].bid_qty, quotes[-1].ask_price) == (3.0, 101.0)
