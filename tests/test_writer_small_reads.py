"""The writer's usual ring read (a 20 ms poll: some hundred trades and quotes of many pairs)
decodes a dataset's records in one msgspec call: each record must come out exactly as decoding
it alone does, the same struct or the same error, worded the same."""

from __future__ import annotations

import random
from typing import Any

import msgspec
import pytest

from recorder.model import Quote, Trade, quote_record, trade_record
from recorder.writer.datasets import RECORD_ERRORS, SPECS
from recorder.writer.intake import take_records

_T0_US = 1_780_000_000_000_000


def _alone(payload: bytes) -> Any:
    """The record as the writer decoded each one alone: its struct, or its error."""
    spec = SPECS["trades"] if payload[:1] == b"T" else SPECS["quotes"]
    try:
        return spec.decode(payload)
    except RECORD_ERRORS as exc:
        return exc


def _same(got: Any, expected: Any) -> bool:
    if isinstance(expected, RECORD_ERRORS):
        return type(got) is type(expected) and str(got) == str(expected)
    return type(got) is type(expected) and got == expected


def _trade(i: int, **change: Any) -> Trade:
    fields = {"exchange": "binance", "pair": f"P{i % 7}-USDT", "trade_id": str(i), "price": 1.5 + i,
              "quantity": 0.25, "side": "buy" if i % 2 else "sell", "exchange_time_us": None,
              "local_time_us": _T0_US + i}  # fmt: skip
    return Trade(**{**fields, **change})


def _quote(i: int, **change: Any) -> Quote:
    fields = {"exchange": "okx", "pair": f"Q{i % 5}-EUR", "bid_price": None, "bid_qty": None, "ask_price": 2.0,
              "ask_qty": 1.0, "exchange_time_us": _T0_US, "local_time_us": _T0_US + i, "update_id": i}  # fmt: skip
    return Quote(**{**fields, **change})


def _bad_ones() -> list[bytes]:
    """Records each refused alone, by msgspec or by the dataset's checks."""
    enc = msgspec.msgpack.encode
    good = trade_record(_trade(1))
    out = [trade_record(_trade(2, **c)) for c in ({"side": "hold"}, {"pair": ""}, {"trade_id": ""},
           {"exchange": "../x"}, {"local_time_us": -5_000}, {"local_time_us": 2**63 - 1})]  # fmt: skip
    out += [quote_record(_quote(3, **c)) for c in ({"pair": ""}, {"exchange": "a b"}, {"local_time_us": -1})]
    out += [good + b"\xc0", good[:-3], b"T", b"Q" + enc([1, 2]), b"T" + enc("text"), b"T\x05"]
    return out


def _misaligned() -> list[bytes]:
    """Two trades, each refused alone, whose bytes joined are two good trades: the first is a
    trade cut where its bytes hold a ``T``, the second the rest of it followed by a whole trade."""
    whole = trade_record(_trade(9, trade_id="xTx"))
    cut = whole.index(b"T", 1)
    return [whole[:cut], whole[cut:] + trade_record(_trade(10))]


@pytest.mark.parametrize("size", [1, 2, 15, 16, 300])
def test_a_small_read_decodes_each_record_as_decoding_it_alone(size: int) -> None:
    rng = random.Random(size)
    good = [trade_record(_trade(i)) for i in range(size)] + [quote_record(_quote(i)) for i in range(size)]
    reads = [good, good + _bad_ones(), good + _misaligned(), _misaligned()]
    reads += [[*good, bad] for bad in _bad_ones()]  # each alone among good ones: its own check refuses it
    for read in reads:
        read = rng.sample(read, len(read))
        for structs in (False, True):
            took = take_records(read, structs)
            assert all(_same(got, _alone(p)) for got, p in zip(took.records, read, strict=True))
            for i, rec in enumerate(took.records):  # a usable record is keyed from its struct
                if isinstance(rec, RECORD_ERRORS):
                    assert took.group[i] == -1
                else:
                    assert took.groups[took.group[i]] == (took.specs[i], rec.exchange, rec.pair)
                    assert took.time_ms[i] == rec.local_time_us // 1000
