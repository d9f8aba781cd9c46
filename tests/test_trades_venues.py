"""Trades of Coinbase, Kraken v2, OKX and Bybit through their Feeds (recorder/venues/trades/).

The digest's verbatim frames (trades-protocols.md §4-§7, §9) as unit cases, and the real
recordings that carry trades (Coinbase ``market_trades``, Bybit ``publicTrade`` spot and linear,
OKX ``trades``) against a parse written here with plain ``json`` and the digest's rules: every
trade once, the taker's side, exact prices, µs times, and the trade gaps this file counts itself.
"""

from __future__ import annotations

import calendar
import json
import time
from collections.abc import Iterable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from recorder.model import Trade
from recorder.venues.bybit import BybitFeed, feed_for_url
from recorder.venues.coinbase import CoinbaseFeed
from recorder.venues.kraken import KrakenFeed
from recorder.venues.okx import OkxFeed
from tests.checksum_venue_support import read_text_capture
from tests.venue_live import RECORDINGS, read_jsonl_zst

Row = tuple[str, str, str, float, float, str, int]  # exchange, pair, id, price, qty, side, exchange µs


def _row(t: Trade) -> Row:
    return (t.exchange, t.pair, t.trade_id, t.price, t.quantity, t.side, t.exchange_time_us or 0)


def _collect(feed: Any) -> list[Trade]:
    out: list[Trade] = []
    feed.on_trade = out.append
    return out


def _us(text: str) -> int:
    """RFC 3339 UTC -> epoch µs, written independently of the recorder's parser."""
    head, _, frac = text.rstrip("Z").partition(".")
    seconds = calendar.timegm(time.strptime(head, "%Y-%m-%dT%H:%M:%S"))
    return seconds * 1_000_000 + int((frac + "000000")[:6])


# --- the digest's frames, verbatim -----------------------------------------------------------------

CB_ONE = b'{"channel":"market_trades","timestamp":"2026-08-09T21:05:48.251397169Z","sequence_num":9,"events":[{"type":"update","trades":[{"product_id":"BTC-USD","trade_id":"1068572091","price":"65083.67","size":"0.01034361","time":"2026-08-09T21:05:48.167634Z","side":"SELL"}]}]}'  # noqa: E501
CB_FOUR = b'{"channel":"market_trades","timestamp":"2026-08-09T21:05:54.379555714Z","sequence_num":255,"events":[{"type":"update","trades":[{"product_id":"ETH-USD","trade_id":"833140787","price":"1919.38","size":"0.89452679","time":"2026-08-09T21:05:54.257824Z","side":"BUY"},{"product_id":"ETH-USD","trade_id":"833140786","price":"1919.42","size":"0.00066375","time":"2026-08-09T21:05:54.257824Z","side":"BUY"},{"product_id":"ETH-USD","trade_id":"833140785","price":"1919.43","size":"0.05050291","time":"2026-08-09T21:05:54.257824Z","side":"BUY"},{"product_id":"ETH-USD","trade_id":"833140784","price":"1919.47","size":"0.10672916","time":"2026-08-09T21:05:54.257824Z","side":"BUY"}]}]}'  # noqa: E501
KR_UPDATE = b'{"channel":"trade","type":"update","data":[{"symbol":"BTC/USD","side":"buy","price":83744.3,"qty":0.00044780,"ord_type":"limit","trade_id":109116693,"timestamp":"2026-09-25T17:48:26.844359Z"}]}'  # noqa: E501
KR_DOC = b'{"channel":"trade","type":"snapshot","data":[{"symbol":"MATIC/USD","side":"buy","price":0.5147,"qty":6423.46326,"ord_type":"limit","trade_id":4665846,"timestamp":"2023-09-25T07:48:36.925533Z"},{"symbol":"MATIC/USD","side":"buy","price":0.5147,"qty":1136.19677815,"ord_type":"limit","trade_id":4665847,"timestamp":"2023-09-25T07:49:36.925603Z"}]}'  # noqa: E501
KR_ACK = b'{"method":"subscribe","result":{"channel":"trade","snapshot":false,"symbol":"BTC/USD"},"success":true,"time_in":"2026-09-25T17:48:24.745996Z","time_out":"2026-09-25T17:48:24.746032Z"}'  # noqa: E501
OKX_OLD = b'{"arg":{"channel":"trades","instId":"BTC-USDT"},"data":[{"instId":"BTC-USDT","tradeId":"338476308","px":"30243.5","sz":"0.001","side":"buy","ts":"1652459226050"}]}'  # noqa: E501
OKX_AGG = b'{"arg":{"channel":"trades","instId":"BTC-USDT"},"data":[{"instId":"BTC-USDT","tradeId":"130639474","px":"42219.9","sz":"0.12060306","side":"buy","ts":"1630048897897","count":"3","source":"0","seqId":1234}]}'  # noqa: E501
OKX_NOW = b'{"arg":{"channel":"trades","instId":"BTC-USDT"},"data":[{"instId":"BTC-USDT","tradeId":"1062992715","px":"83772.6","sz":"0.0000178","side":"buy","ts":"1790358565298","count":"1","source":"1","seqId":81625379835}]}'  # noqa: E501
BY_LINEAR = b'{"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":1786310819681,"data":[{"T":1786310819680,"s":"BTCUSDT","S":"Sell","v":"0.004","p":"65114.20","L":"MinusTick","i":"a9188a0a-82bc-50de-be60-03eedbe3cdd7","BT":false,"RPI":false,"seq":753843954913}]}'  # noqa: E501
BY_SPOT = b'{"topic":"publicTrade.BTCUSDT","ts":1786310822606,"type":"snapshot","data":[{"i":"2290000001189048101","T":1786310822605,"p":"65140.5","v":"0.002705","S":"Buy","seq":112488547164,"s":"BTCUSDT","BT":false,"RPI":false}]}'  # noqa: E501


def test_coinbase_digest_frames_invert_the_maker_side_and_sort_by_id() -> None:
    feed = CoinbaseFeed()
    got = _collect(feed)
    feed.on_frame(CB_ONE, 1.5)
    assert [_row(t) for t in got] == [("coinbase", "BTC-USD", "1068572091", 65083.67, 0.01034361, "buy",
                                       1786309548167634)]  # fmt: skip
    assert got[0].local_time_us == 1500
    feed.on_frame(CB_FOUR.replace(b'"sequence_num":255', b'"sequence_num":10'), 2.0)
    four = got[1:]
    assert [t.trade_id for t in four] == ["833140784", "833140785", "833140786", "833140787"]
    assert {t.side for t in four} == {"sell"} and {t.exchange_time_us for t in four} == {1786309554257824}
    assert feed.stats.per_pair["ETH-USD"]["trades"] == 4 and feed.stats.gaps == 0


def test_kraken_digest_frames_keep_the_numbers_exact() -> None:
    feed = KrakenFeed()
    got = _collect(feed)
    for frame in (KR_ACK, KR_UPDATE, KR_DOC):
        feed.on_frame(frame, 7.0)
    assert [_row(t) for t in got] == [
        ("kraken", "BTC-USD", "109116693", 83744.3, float(Decimal("0.00044780")), "buy", 1790358506844359),
        ("kraken", "MATIC-USD", "4665846", 0.5147, 6423.46326, "buy", 1695628116925533),
        ("kraken", "MATIC-USD", "4665847", 0.5147, 1136.19677815, "buy", 1695628176925603),
    ]
    assert feed.stats.malformed == 0 and feed.stats.kinds["trade"] == 2


def test_okx_digest_frames_and_the_aggregation_gap_rule() -> None:
    feed = OkxFeed()
    got = _collect(feed)
    feed.on_frame(OKX_AGG, 1.0)
    assert [_row(t) for t in got] == [("okx", "BTC-USDT", "130639474", 42219.9, 0.12060306, "buy", 1630048897897000)]
    # tradeId - count == previous tradeId: 130639477 with count 3 follows 130639474 without a gap.
    feed.on_frame(OKX_AGG.replace(b"130639474", b"130639477"), 2.0)
    assert feed.stats.per_pair["BTC-USDT"].get("trade_gaps", 0) == 0
    # count 1 at 130639479: 130639478 is missing.
    feed.on_frame(OKX_AGG.replace(b"130639474", b"130639479").replace(b'"count":"3"', b'"count":"1"'), 3.0)
    assert feed.stats.per_pair["BTC-USDT"]["trade_gaps"] == 1
    old, now = OkxFeed(), OkxFeed()
    old_got, now_got = _collect(old), _collect(now)
    old.on_frame(OKX_OLD, 1.0)
    now.on_frame(OKX_NOW, 1.0)
    assert [_row(t) for t in old_got] == [("okx", "BTC-USDT", "338476308", 30243.5, 0.001, "buy", 1652459226050000)]
    assert [_row(t) for t in now_got] == [("okx", "BTC-USDT", "1062992715", 83772.6, 0.0000178, "buy",
                                           1790358565298000)]  # fmt: skip


def test_bybit_digest_frames_spot_and_linear() -> None:
    linear, spot = BybitFeed("linear", None, None), BybitFeed("spot", None, None)
    lin_got, spot_got = _collect(linear), _collect(spot)
    linear.on_frame(BY_LINEAR, 1.0)
    spot.on_frame(BY_SPOT, 1.0)
    assert [_row(t) for t in lin_got] == [("bybit", "BTC-USDT-PERP", "a9188a0a-82bc-50de-be60-03eedbe3cdd7", 65114.2,
                                           0.004, "sell", 1786310819680000)]  # fmt: skip
    assert [_row(t) for t in spot_got] == [("bybit", "BTC-USDT", "2290000001189048101", 65140.5, 0.002705, "buy",
                                            1786310822605000)]  # fmt: skip
    # The same frame again (ids are not contiguous: deduped on the id text), and no gap is ever counted.
    linear.on_frame(BY_LINEAR, 2.0)
    assert len(lin_got) == 1 and linear.stats.per_pair["BTC-USDT-PERP"]["trade_duplicates"] == 1
    # Spot sends ``topic`` first too, but a frame whose keys come in another order is a trade all the same.
    reordered = json.dumps({"ts": 1, "type": "snapshot", **json.loads(BY_SPOT.replace(b"2290000001189048101", b"7"))})
    spot.on_frame(reordered.encode(), 2.0)
    assert [t.trade_id for t in spot_got] == ["2290000001189048101", "7"]


def test_trades_are_parsed_only_when_asked_and_bad_ones_are_counted() -> None:
    feed = OkxFeed()
    feed.on_frame(OKX_NOW, 1.0)  # no on_trade: the frame is counted, not parsed
    assert feed.stats.kinds["trades"] == 1 and "BTC-USDT" not in feed.stats.per_pair
    got = _collect(feed)
    feed.on_frame(OKX_NOW.replace(b'"side":"buy"', b'"side":"up"'), 2.0)
    feed.on_frame(OKX_NOW.replace(b'"px":"83772.6"', b'"px":"NaN"'), 2.0)
    assert got == [] and feed.stats.malformed == 2
    cb = CoinbaseFeed(["BTC-USD"])  # followed products only
    cb_got = _collect(cb)
    cb.on_frame(CB_FOUR, 1.0)
    cb.on_frame(CB_ONE.replace(b'"sequence_num":9', b'"sequence_num":256').replace(b'"SELL"', b'"HOLD"'), 1.0)
    assert cb_got == [] and cb.stats.malformed == 1 and cb.stats.gaps == 0


def _with_trades(frame: bytes, key: str, trades: list[dict[str, Any]]) -> bytes:
    msg = json.loads(frame)
    holder = msg["events"][0] if key == "trades" else msg
    holder[key] = trades
    return json.dumps(msg).encode()


def test_every_venue_keeps_the_good_trades_of_a_message_around_a_bad_one_and_skips_foreign_ones() -> None:
    """One message per venue: a good trade, a malformed one, one of an instrument not followed,
    another good one. Both good trades come out in id order, the bad one is one malformed frame."""
    cb_trade = json.loads(CB_ONE)["events"][0]["trades"][0]
    kr_trade = json.loads(KR_UPDATE)["data"][0]
    okx_trade = json.loads(OKX_NOW)["data"][0]
    by_trade = json.loads(BY_SPOT)["data"][0]
    cases = [  # feed, frame, the trades' id field, what makes one malformed, symbol field, foreign symbol, ids
        (CoinbaseFeed(["BTC-USD"]), CB_ONE, "events", cb_trade, "trade_id", {"side": "HOLD"}, "product_id", "ETH-USD",
         ["11", "12", "13", "14"]),
        (KrakenFeed(["BTC-USD"]), KR_UPDATE, "data", kr_trade, "trade_id", {"side": "hold"}, "symbol", "ETH/USD",
         [11, 12, 13, 14]),
        (OkxFeed(["BTC-USDT"]), OKX_NOW, "data", okx_trade, "tradeId", {"px": "-1"}, "instId", "ETH-USDT",
         ["11", "12", "13", "14"]),
        (BybitFeed("spot", ["BTC-USDT"], None), BY_SPOT, "data", by_trade, "i", {"S": "Hold"}, "s", "ETHUSDT",
         ["11", "12", "13", "14"]),
    ]  # fmt: skip
    for feed, frame, key, trade, id_field, bad, symbol_field, foreign, ids in cases:
        got = _collect(feed)
        good_a, broken, other, good_b = ({**trade, id_field: i} for i in ids)
        broken.update(bad)
        other[symbol_field] = foreign
        if key == "events":  # Coinbase sends newest first
            feed.on_frame(_with_trades(frame, "trades", [good_b, other, broken, good_a]), 1.0)
        else:
            feed.on_frame(_with_trades(frame, key, [good_a, broken, other, good_b]), 1.0)
        assert [t.trade_id for t in got] == [str(ids[0]), str(ids[3])], feed
        assert feed.stats.malformed == 1, feed


def test_coinbase_resubscribe_replay_is_deduped_and_fills_a_gap() -> None:
    """A replayed snapshot repeats nothing; a trade counted missing that it brings is stored after all."""

    def frame(seq: int, kind: str, ids: Iterable[int]) -> bytes:
        trades = [{"product_id": "BTC-USD", "trade_id": str(i), "price": "100.5", "size": "1", "side": "BUY",
                   "time": "2026-08-09T21:05:48.1Z"} for i in sorted(ids, reverse=True)]  # fmt: skip
        return json.dumps({"channel": "market_trades", "sequence_num": seq,
                           "events": [{"type": kind, "trades": trades}]}).encode()  # fmt: skip

    feed = CoinbaseFeed()
    got = _collect(feed)
    feed.on_frame(frame(0, "snapshot", range(1, 101)), 1.0)
    feed.on_frame(frame(1, "update", [101, 103]), 1.0)  # 102 lost
    per = feed.stats.per_pair["BTC-USD"]
    assert per["trade_gaps"] == 1 and len(got) == 102
    feed.on_frame(frame(2, "snapshot", range(4, 104)), 1.0)  # resubscribed: the last 100 again, 102 with them
    assert [t.trade_id for t in got[-1:]] == ["102"] and len(got) == 103
    assert per["trade_gaps"] == 0 and per["trade_duplicates"] == 99 and per["trades"] == 103
    assert got[0].exchange_time_us == _us("2026-08-09T21:05:48.1Z") and got[0].side == "sell"


# --- the real recordings ----------------------------------------------------------------------------


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"recording not found: {path}")
    return path


def _gaps(messages: list[list[tuple[str, int, int]]]) -> dict[str, int]:
    """Missing ids per pair, message by message: (pair, first id, last id) of each trade."""
    last: dict[str, int] = {}
    missing: dict[str, int] = {}
    for trades in messages:
        for pair, first, end in sorted(trades, key=lambda t: t[2]):
            if pair in last and end > last[pair]:
                missing[pair] = missing.get(pair, 0) + first - last[pair] - 1
            last[pair] = max(end, last.get(pair, end))
    return missing


def test_coinbase_recording_every_trade_once_with_the_taker_side_its_own_book_shows() -> None:
    records = [r for r in read_jsonl_zst(_need(RECORDINGS / "coinbase" / "COINBASE.jsonl.zst")) if r["t"] == "recv"]
    feed = CoinbaseFeed()
    got = _collect(feed)
    expected: dict[tuple[str, str], Row] = {}
    messages: list[list[tuple[str, int, int]]] = []
    books: dict[str, dict[str, dict[float, float]]] = {}
    checked = at_touch = 0
    for rec in records:
        before = len(got)
        feed.on_frame(rec["data"].encode(), rec["ts"] * 1000.0)
        msg = json.loads(rec["data"])
        if msg.get("channel") == "l2_data":
            for ev in msg["events"]:
                book = books.setdefault(ev["product_id"], {"bid": {}, "offer": {}})
                if ev["type"] == "snapshot":
                    book["bid"].clear(), book["offer"].clear()
                for u in ev["updates"]:
                    side = book[u["side"]]
                    side.pop(float(u["price_level"]), None) if float(u["new_quantity"]) == 0 else side.__setitem__(
                        float(u["price_level"]), float(u["new_quantity"]))  # fmt: skip
        if msg.get("channel") != "market_trades":
            continue
        ids = []
        for ev in msg["events"]:
            for t in sorted(ev["trades"], key=lambda t: int(t["trade_id"])):  # newest first on the wire
                taker = {"BUY": "sell", "SELL": "buy"}[t["side"]]
                row = ("coinbase", t["product_id"], t["trade_id"], float(t["price"]), float(t["size"]), taker,
                       _us(t["time"]))  # fmt: skip
                expected.setdefault((t["product_id"], t["trade_id"]), row)  # (first seen, in order)
                ids.append((t["product_id"], int(t["trade_id"]), int(t["trade_id"])))
                book = books.get(t["product_id"])
                if ev["type"] == "update" and book and book["bid"] and book["offer"]:
                    # The taker's side against the book in force: a buy never prints at/under the best bid.
                    best_bid, best_ask, price = max(book["bid"]), min(book["offer"]), float(t["price"])
                    mine = {x.trade_id: x.side for x in got[before:]}[t["trade_id"]]
                    assert (price > best_bid) if mine == "buy" else (price < best_ask), (t, best_bid, best_ask)
                    at_touch += price >= best_ask if mine == "buy" else price <= best_bid
                    checked += 1
        messages.append(ids)
    assert [_row(t) for t in got] == list(expected.values())
    assert len(got) == len(expected) == len({(t.pair, t.trade_id) for t in got}) == 279  # 200 replayed + 79 live
    assert checked == 78 and at_touch >= 70  # the digest: 71 at the touch, the rest inside the spread
    gaps = {p: v.get("trade_gaps", 0) for p, v in feed.stats.per_pair.items()}
    assert {p: gaps.get(p, 0) for p in ("BTC-USD", "ETH-USD")} == {p: _gaps(messages).get(p, 0) for p in
                                                                     ("BTC-USD", "ETH-USD")}  # fmt: skip
    assert feed.stats.gaps == 0 and feed.stats.malformed == 0  # trade frames kept the book's sequence


def test_bybit_recording_spot_and_linear_every_trade_once() -> None:
    feeds: dict[str, BybitFeed] = {}
    got: list[Trade] = []
    expected: list[Row] = []
    markets: dict[str, str] = {}
    for rec in read_jsonl_zst(_need(RECORDINGS / "bybit" / "BYBIT.jsonl.zst")):
        if rec["t"] == "connect":
            feeds[rec["conn"]] = feed_for_url(rec["addr"])
            feeds[rec["conn"]].on_trade = got.append
            markets[rec["conn"]] = rec["addr"].rsplit("/", 1)[1]
        if rec["t"] != "recv":
            continue
        feeds[rec["conn"]].on_frame(rec["data"].encode(), rec["ts"] * 1000.0)
        msg = json.loads(rec["data"])
        if not str(msg.get("topic", "")).startswith("publicTrade."):
            continue
        for t in msg["data"]:
            sym = t["s"]
            base, quote = sym[: -len("USDT")], "USDT"
            pair = f"{base}-{quote}" + ("-PERP" if markets[rec["conn"]] == "linear" else "")
            expected.append(("bybit", pair, t["i"], float(Decimal(t["p"])), float(Decimal(t["v"])), t["S"].lower(),
                             t["T"] * 1000))  # fmt: skip
    assert [_row(t) for t in got] == expected
    assert len(expected) == 347 and len({(r[1], r[2]) for r in expected}) == 347  # 327 linear + 20 spot
    assert sum(1 for r in expected if r[1].endswith("-PERP")) == 327
    assert all(f.stats.malformed == 0 and f.stats.gaps == 0 for f in feeds.values())
    assert not any(v.get("trade_gaps") for f in feeds.values() for v in f.stats.per_pair.values())


def test_okx_recording_every_trade_once_and_a_dropped_frame_is_a_counted_gap() -> None:
    frames = read_text_capture(_need(RECORDINGS / "okx" / "OKX.ws.1.0"))
    trade_frames = [i for i, (_, f) in enumerate(frames) if b'"channel":"trades"' in f and b'"data"' in f]
    expected: list[Row] = []
    messages: list[list[tuple[str, int, int]]] = []
    for i in trade_frames:
        msg = json.loads(frames[i][1])
        ids = []
        for t in msg["data"]:
            pair = t["instId"][: -len("-SWAP")] + "-PERP" if t["instId"].endswith("-SWAP") else t["instId"]
            expected.append(("okx", pair, t["tradeId"], float(t["px"]), float(t["sz"]), t["side"], int(t["ts"]) * 1000))
            n = int(t.get("count", "1"))
            ids.append((pair, int(t["tradeId"]) - n + 1, int(t["tradeId"])))
        messages.append(ids)
    assert len(expected) == 74

    def replay(skip: int | None) -> tuple[OkxFeed, list[Trade]]:
        feed = OkxFeed()
        got = _collect(feed)
        for i, (ts, payload) in enumerate(frames):
            if i != skip:
                feed.on_frame(payload, ts)
        return feed, got

    feed, got = replay(None)
    assert [_row(t) for t in got] == expected
    want = _gaps(messages)
    assert {p: v.get("trade_gaps", 0) for p, v in feed.stats.per_pair.items() if "trades" in v} == {
        p: want.get(p, 0) for p in ("BTC-USDT", "BTC-USD-220527", "UNI-USD-PERP")}  # fmt: skip
    assert feed.stats.malformed == 0 and feed.stats.checksums_failed == 0
    # Lose one BTC-USDT trade frame in the middle: the ids it carried are the gap, and nothing else changes.
    btc = [i for i in trade_frames if b'"instId":"BTC-USDT"}' in frames[i][1]]
    lost = btc[len(btc) // 2]
    k = trade_frames.index(lost)
    feed, got = replay(lost)
    assert [_row(t) for t in got] == expected[:k] + expected[k + 1 :]
    want = _gaps(messages[:k] + messages[k + 1 :])
    assert want["BTC-USDT"] >= 1 and feed.stats.per_pair["BTC-USDT"]["trade_gaps"] == want["BTC-USDT"]


def test_a_restarted_venue_process_stores_no_replayed_trade_twice_and_counts_what_it_missed() -> None:
    """The highest id per pair lives in the shared counters (``trade_last_id:<pair>``): a new
    process's tape starts from it, so Coinbase's replay of the last 100 trades is not stored again,
    and ids lost while the process was down are a counted gap."""
    from recorder.venues.base import Counters
    from recorder.venues.trades.tape import TradeTape

    def frame(seq: int, kind: str, ids: Iterable[int]) -> bytes:
        trades = [{"product_id": "BTC-USD", "trade_id": str(i), "price": "1", "size": "1", "side": "SELL",
                   "time": "2026-08-09T21:05:48Z"} for i in sorted(ids, reverse=True)]  # fmt: skip
        return json.dumps({"channel": "market_trades", "sequence_num": seq,
                           "events": [{"type": kind, "trades": trades}]}).encode()  # fmt: skip

    shared = Counters(None)  # stands for the shared memory that outlives the process

    def process() -> tuple[CoinbaseFeed, list[Trade]]:
        feed = CoinbaseFeed(["BTC-USD"], counters=shared)
        feed.trades.tape = TradeTape(True, shared, ["BTC-USD"])
        return feed, _collect(feed)

    first, got = process()
    first.on_frame(frame(0, "snapshot", range(1, 101)), 1.0)
    first.on_frame(frame(1, "update", [101]), 1.0)
    assert len(got) == 101 and shared.get("trade_last_id:BTC-USD") == 101
    second, again = process()  # killed and restarted; 102..109 happened meanwhile, 110.. replayed
    second.on_frame(frame(0, "snapshot", range(10, 110)), 2.0)
    assert [t.trade_id for t in again] == [str(i) for i in range(102, 110)]
    assert shared.get("trade_gaps:BTC-USD") == 0
    third, more = process()
    third.on_frame(frame(0, "snapshot", range(200, 300)), 3.0)  # more than 100 missed: 110..199 lost
    assert len(more) == 100 and shared.get("trade_gaps:BTC-USD") == 90


def test_a_venue_that_renumbers_its_trades_is_followed_not_dropped() -> None:
    feed = OkxFeed()
    got = _collect(feed)
    feed.on_frame(OKX_NOW, 1.0)  # id 1062992715
    feed.on_frame(OKX_NOW.replace(b"1062992715", b"1062992714"), 1.0)  # a repeat of an older one: dropped
    feed.on_frame(OKX_NOW.replace(b"1062992715", b"17"), 2.0)  # far below: the venue started over
    feed.on_frame(OKX_NOW.replace(b"1062992715", b"18"), 3.0)
    assert [t.trade_id for t in got] == ["1062992715", "17", "18"]
    per = feed.stats.per_pair["BTC-USDT"]
    assert per["trade_id_resets"] == 1 and per.get("trade_gaps", 0) == 0 and per["trade_duplicates"] == 1
