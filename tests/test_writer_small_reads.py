"""The writer's usual ring read (a 20 ms poll: some hundred trades and quotes of many pairs)
decodes a dataset's records in one msgspec call: each record must come out exactly as decoding
it alone does, the same struct or the same error, worded the same."""

from __future__ import annotations

import random
from typing import Any

import msgspec
import numpy as np
import pytest

from recorder.model import Quote, SampledBook, Trade, quote_record, ring_encoder, trade_record
from recorder.writer.columns import _float64_arrays_any_size, _float64_arrays_one_size, float64_arrays_ok
from recorder.writer.datasets import RECORD_ERRORS, SPECS
from recorder.writer.intake import take_records

_T0_US = 1_780_000_000_000_000


def _alone(payload: bytes) -> Any:
    """The record as the writer decoded each one alone: its struct, or its error."""
    spec = {b"T": SPECS["trades"], b"Q": SPECS["quotes"]}.get(payload[:1], SPECS["books"])
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


def _book(i: int, **change: Any) -> bytes:
    levels = [100.0 + k for k in range(20)]
    fields = {"exchange": "binance", "pair": f"B{i % 9}-USDT", "timestamp_ms": _T0_US // 1000 + i, "bid_px": levels,
              "bid_qty": levels, "ask_px": levels, "ask_qty": levels, "capture_latency_ms": 0.5,
              "exchange_time_ms": None, "update_id": i, "verified": True, "depth_complete": True}  # fmt: skip
    return ring_encoder.encode(SampledBook(**{**fields, **change}))


@pytest.mark.parametrize("size", [1, 2, 200])
def test_a_small_read_decodes_each_book_as_decoding_it_alone(size: int) -> None:
    """Books decoded in one loop and checked at once: each as decoding it alone gives it
    (refused for its own reason); one whose levels are ints is stored re-encoded, as ever."""
    rng = random.Random(size)
    good = [_book(i) for i in range(size)]
    refused = [_book(1, exchange="a/b"), _book(2, timestamp_ms=-1), _book(3, timestamp_ms=2**62), b"", b"\x93\x01"]
    refused.append(_book(4)[:-1])
    ints = msgspec.msgpack.encode([*msgspec.msgpack.decode(_book(5))[:3], [1, 2], [3, 4], [5], [6], *[None] * 3,
                                   True, None])  # fmt: skip
    trades = [trade_record(_trade(i)) for i in range(size)]
    for read in [good, good + trades, *([*good, bad] for bad in refused), good + [ints], good + refused + [ints]]:
        read = rng.sample(read, len(read))
        took = take_records(read)
        for i, p in enumerate(read):
            if p is ints:
                assert took.stored[i] != p and took.records[i] == SPECS["books"].decode(took.stored[i])
            else:
                assert _same(took.records[i], _alone(p)), p
            rec = took.records[i]
            if not isinstance(rec, RECORD_ERRORS):
                assert took.groups[took.group[i]] == (took.specs[i], rec.exchange, rec.pair)
                assert took.time_ms[i] == took.specs[i].time_ms(rec)
            else:
                assert took.group[i] == -1


def _float64_array(payload: bytes) -> int | None:
    """Reference: the count of a msgpack array of float64 values (each a 0xcb tag and 8 bytes)
    that ``payload`` is exactly, None when it is anything else."""
    tag = payload[0] if payload else 0
    if 0x90 <= tag <= 0x9F:
        count, at = tag - 0x90, 1
    elif tag in (0xDC, 0xDD):
        width = 2 if tag == 0xDC else 4
        count, at = int.from_bytes(payload[1 : 1 + width], "big"), 1 + width
    else:
        return None
    if len(payload) != at + 9 * count or any(payload[at + 9 * j] != 0xCB for j in range(count)):
        return None
    return count


def _one_size_values(rng: random.Random, count: int, kind: str) -> list[bytes]:
    """msgpack values of one size: float64 arrays of ``count`` values, and others as long."""
    floats = [rng.random() for _ in range(count)]
    good = msgspec.msgpack.encode(floats)  # msgspec writes a float as a float64
    if kind == "good":
        return [msgspec.msgpack.encode([rng.random() for _ in range(count)]) for _ in range(6)]
    out = [good, msgspec.msgpack.encode([rng.random() for _ in range(count)])]
    body = good[len(good) - 9 * count :]
    if count:  # a float32 tag (its bytes kept: only the tag differs), an int in place of a float
        out.append(good[: len(good) - 9 * count] + b"\xca" + body[1:])
        out.append(good[:-9] + b"\xd3" + body[-8:])
    if count < 16:  # the same count behind an array16 header: one of another size, as a value it is fine
        out.append(b"\xdc" + count.to_bytes(2, "big") + body[: 9 * count - 2] if count else b"\xdc\x00\x00")
    out.append(bytes([0xDD if count >= 16 else 0x91]) + body[: len(good) - 1])  # a header that lies
    size = len(good)
    return [v for v in out if len(v) == size]


@pytest.mark.parametrize("count", [0, 1, 15, 16, 20, 300])
@pytest.mark.parametrize("kind", ["good", "mixed"])
def test_level_columns_of_one_size_are_checked_as_float64_arrays(count: int, kind: str) -> None:
    """A read's books of one depth have their level columns checked in one 2-D view: each
    value judged as the reference parse here judges it."""
    rng = random.Random(count)
    values = _one_size_values(rng, count, kind)
    assert len({len(v) for v in values}) == 1
    grid = np.frombuffer(b"".join(values), np.uint8).reshape(len(values), -1)
    expected = [_float64_array(v) for v in values]
    lens = np.fromiter(map(len, values), np.int64, len(values))
    paths = (_float64_arrays_one_size(grid), _float64_arrays_any_size(values, lens), float64_arrays_ok(values))
    for ok, counts in paths:  # the 2-D path, the general one, and the one the writer takes
        assert ok.tolist() == [c is not None for c in expected]
        assert counts.tolist() == [c or 0 for c in expected]
