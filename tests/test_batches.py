"""The stored rows, built from ring records (the writer's bulk path) and from Snapshot structs,
against rows written out one by one from an independent decode of the same records: the column
builders may vectorise, the rows may not change."""

from __future__ import annotations

import datetime as dt
import math
import random
import re
import struct
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recorder.model import Level, Quote, Snapshot, Trade, quote_record, ring_decoder, ring_record, trade_record
from recorder.sinks.local import DEFAULT_ROW_GROUP_ROWS, prepare_parquet_pieces
from recorder.sinks.parquet_format import write_parquet
from recorder.writer.batches import snapshot_jsonl, snapshots_to_batch
from recorder.writer.datasets import (
    BOOKS_SPEC,
    RECORD_ERRORS,
    SPECS,
    DatasetSpec,
    build_pieces,
    build_table,
)
from recorder.writer.file_order import record_order
from recorder.writer.intake import decode_records, take_records
from recorder.writer.lines import lines_bytes, read_lines
from recorder.writer.segment import Partition, Segment


def _random_snapshots(n: int) -> list[Snapshot]:
    rng = random.Random(5)
    out = []
    for i in range(n):
        nb, na = rng.choice([0, 0, 1, 3, 20]), rng.choice([0, 1, 5, 20])  # empty and one-sided too
        out.append(
            Snapshot(
                exchange=rng.choice(["binance", "okx"]),
                pair=f"P{i % 7}-USDT",
                timestamp_ms=1_700_000_000_000 + i,
                bids=[Level(rng.uniform(1, 100), rng.uniform(0, 5)) for _ in range(nb)],
                asks=[Level(rng.uniform(100, 200), rng.uniform(0, 5)) for _ in range(na)],
                capture_latency_ms=rng.choice([None, -0.5, 1.25]),
                sequence_number=i,
                exchange_time_ms=rng.choice([None, 1_700_000_000_000]),
                update_id=rng.choice([None, 7, 2**40]),
                verified=rng.random() < 0.5,
                depth_complete=rng.random() < 0.5,
                session_id="s1",
            )
        )
    return out


def _expected_rows(snaps: list[Snapshot]) -> list[dict[str, object]]:
    rows = []
    for s in snaps:
        common = {
            "exchange": s.exchange,
            "pair": s.pair,
            "timestamp_ms": s.timestamp_ms,
            "capture_latency_ms": s.capture_latency_ms,
            "sequence_number": s.sequence_number,
            "exchange_time_ms": s.exchange_time_ms,
            "update_id": s.update_id,
            "verified": s.verified,
            "depth_complete": s.depth_complete,
            "session_id": s.session_id,
        }
        levels = [("bid", k, lv) for k, lv in enumerate(s.bids)] + [("ask", k, lv) for k, lv in enumerate(s.asks)]
        if not levels:  # a book with no level keeps one row, so its sequence number shows
            rows.append({**common, "side": None, "level": None, "price": None, "quantity": None})
        for side, k, lv in levels:
            rows.append({**common, "side": side, "level": k, "price": lv.price, "quantity": lv.qty})
    return rows


def _by_pair_then_sequence(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(rows, key=lambda r: (r["pair"].encode(), r["sequence_number"]))  # stable: levels keep order


def test_both_batch_builders_write_the_rows_one_by_one_would() -> None:
    snaps = _random_snapshots(500)
    expected = _expected_rows(snaps)
    assert any(r["side"] is None for r in expected)
    assert snapshots_to_batch(snaps).to_pylist() == expected
    specs, _, stored = decode_records([ring_record(s) for s in snaps])
    assert set(specs) == {BOOKS_SPEC}
    table = build_table(BOOKS_SPEC, stored, [s.sequence_number for s in snaps], "s1")
    assert table.to_pylist() == _by_pair_then_sequence(expected)


# -- files written from ring records against an independent decode of the same records ---------


def _bits(value: Any) -> Any:
    """Floats compared bit for bit (-0.0 is not 0.0, every NaN is itself)."""
    return struct.pack(">d", value) if isinstance(value, float) else value


def _same(rows: list[dict[str, Any]], expected: list[dict[str, Any]]) -> bool:
    return [{k: _bits(v) for k, v in r.items()} for r in rows] == [
        {k: _bits(v) for k, v in r.items()} for r in expected
    ]


_BOOK_COMMON = ("exchange", "pair", "timestamp_ms", None, None, None, None, "capture_latency_ms",
                "exchange_time_ms", "update_id", "verified", "depth_complete")  # fmt: skip


def _book_rows_from_msgpack(payload: bytes, seq: int) -> list[dict[str, Any]]:
    """The rows of one book record, from msgpack's own decode of it (plain lists, no schema)."""
    rec = msgspec.msgpack.decode(payload)
    common = {name: rec[i] for i, name in enumerate(_BOOK_COMMON) if name}
    common.update(sequence_number=seq, session_id="s1")
    bid_px, bid_qty, ask_px, ask_qty = rec[3:7]
    levels = [("bid", k, p, q) for k, (p, q) in enumerate(zip(bid_px, bid_qty, strict=True))]
    levels += [("ask", k, p, q) for k, (p, q) in enumerate(zip(ask_px, ask_qty, strict=True))]
    if not levels:
        return [{**common, "side": None, "level": None, "price": None, "quantity": None}]
    return [{**common, "side": s, "level": k, "price": float(p), "quantity": float(q)} for s, k, p, q in levels]


def _odd_books() -> list[bytes]:
    """Books the bulk reader must get right or hand to the slow path: every msgpack array header
    size the sampler can produce (depth 15 / 16 / 17), values at the edges of float64, ints
    where floats belong (another producer), and one record that is no book at all."""
    edge = [0.0, -0.0, math.inf, -math.inf, math.nan, 5e-324, 1.7976931348623157e308, 0.1, 1e-300]
    out = []
    for i, depth in enumerate((15, 16, 17, 1, 0, 40)):
        px = [100.0 - k * 0.5 for k in range(depth)]
        qty = [edge[(k + i) % len(edge)] for k in range(depth)]
        out.append(ring_record(Snapshot(exchange="binance", pair=f"P{i % 3}", timestamp_ms=1_700_000_000_000 + i,
                                        bids=list(map(Level, px, qty)), asks=list(map(Level, px[::-1], qty)),
                                        capture_latency_ms=None, update_id=i)))  # fmt: skip
    ints = Snapshot(exchange="binance", pair="P1", timestamp_ms=1_700_000_000_100,
                    bids=[Level(100, 2), Level(99.5, 3)], asks=[Level(101, 1)], capture_latency_ms=0.5)  # fmt: skip
    out.append(ring_record(ints))
    not_a_book = msgspec.msgpack.decode(ring_record(ints))
    not_a_book[3] = ["100", "99.5"]
    out.append(msgspec.msgpack.encode(not_a_book))
    return out


def _write_as_the_writer(
    spec: DatasetSpec, stored: list[bytes], seqs: list[int], out: Path, group_rows: int, read: pa.Table | None = None
) -> None:
    """The file the writer writes of these records (built and written a row group at a time),
    its row groups checked: ``group_rows`` rows each, the last one at most that."""
    pieces = build_pieces(spec, stored, seqs, "s1", group_rows, read)
    prepared = prepare_parquet_pieces(spec.schema, pieces, out.with_suffix(".final"), row_group_size=group_rows)
    Path(prepared.tmp_path).replace(out)
    meta = pq.read_metadata(out)
    sizes = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
    assert sizes[:-1] == [group_rows] * (len(sizes) - 1) and 0 < sizes[-1] <= group_rows
    assert sum(sizes) == prepared.rows


# Rows per row group: a prime, so row groups end inside books and pieces; and the writer's own.
GROUP_ROWS = [97, DEFAULT_ROW_GROUP_ROWS]


@pytest.mark.parametrize("group_rows", GROUP_ROWS)
def test_a_books_file_holds_what_an_independent_decode_of_its_ring_records_reads(
    tmp_path: Path, group_rows: int
) -> None:
    payloads = [ring_record(s) for s in _random_snapshots(300)] + _odd_books()
    specs, records, stored = decode_records(payloads)
    assert isinstance(records[-1], RECORD_ERRORS) and not any(isinstance(r, RECORD_ERRORS) for r in records[:-1])
    kept = payloads[:-1]
    seqs = list(range(len(kept)))
    out = tmp_path / "books.parquet"
    _write_as_the_writer(BOOKS_SPEC, stored[:-1], seqs, out, group_rows)
    expected = [row for p, seq in zip(kept, seqs, strict=True) for row in _book_rows_from_msgpack(p, seq)]
    assert _same(pq.read_table(out).to_pylist(), _by_pair_then_sequence(expected))
    # JSONL is unchanged: each line as the SampledBook of the record (decoded with float lists,
    # as before the bulk path) renders it.
    for p, rec, seq in zip(kept, records[:-1], seqs, strict=True):
        assert BOOKS_SPEC.jsonl(rec, seq, "s1") == snapshot_jsonl(ring_decoder.decode(p).to_snapshot(seq, "s1"))


def _flat_records(dataset: str) -> list[bytes]:
    rng = random.Random(9)
    out = []
    for i in range(3000):
        t_us = 1_700_000_000_000_000 + i * 997
        pair = rng.choice(["BTC-USDT", "ETH-USDT", "SOL-USDT", "ÄÖ-EUR"])
        ex_time = None if i % 7 == 0 else t_us - rng.randrange(0, 2**20)
        if dataset == "trades":
            rec = Trade(rng.choice(["binance", "okx"]), pair, str(rng.randrange(2**64)), rng.uniform(1, 1e5),
                        rng.choice([1e-9, 0.5, 2.0, 1e9]), rng.choice(["buy", "sell"]), ex_time, t_us)  # fmt: skip
            out.append(trade_record(rec))
        else:
            bid = None if i % 11 == 0 else rng.uniform(1, 1e5)
            update_id = None if i % 5 == 0 else rng.randrange(-(2**63), 2**63)
            rec = Quote("binance", pair, bid, None if bid is None else rng.uniform(0, 9), rng.uniform(1, 1e5),
                        rng.uniform(0, 9), ex_time, t_us, update_id)  # fmt: skip
            out.append(quote_record(rec))
    return out


_FLAT_FIELDS = {
    "trades": ("exchange", "pair", "trade_id", "price", "quantity", "side", "exchange_time", "local_time"),
    "quotes": ("exchange", "pair", "bid_price", "bid_qty", "ask_price", "ask_qty", "exchange_time", "local_time",
               "update_id"),
}  # fmt: skip


@pytest.mark.parametrize("group_rows", GROUP_ROWS)
@pytest.mark.parametrize("dataset", ["trades", "quotes"])
@pytest.mark.parametrize("from_reads", [None, "some", "all"])
def test_a_trades_or_quotes_file_holds_what_an_independent_decode_reads(
    tmp_path: Path, dataset: str, group_rows: int, from_reads: str | None
) -> None:
    """Built from the records, or as the writer builds it: from the columns its intake read of
    several ring reads, the file's records picked out of them (some: one exchange's, the
    others' and some bad records in between; all: every row of the reads)."""
    payloads = _flat_records(dataset)
    specs, _, stored = decode_records(payloads)
    assert set(specs) == {SPECS[dataset]}
    read = None
    if from_reads:

        def unusable(p: bytes) -> bytes:  # its exchange cannot name a folder: skipped
            return p[:1] + msgspec.msgpack.encode(["../x", *msgspec.msgpack.decode(p[1:])[1:]])

        some = from_reads == "some"
        ring_reads = [payloads[i : i + 700] + [unusable(payloads[i])] * some for i in range(0, len(payloads), 700)]
        seg, part = Segment(), Partition(SPECS[dataset], "binance", "2023-11-14", 0)
        for ring_read in ring_reads:
            took = take_records(ring_read, row_base=seg.keep_read_columns, bulk_min=0)
            assert not some or (took.row[-1] == -1 and isinstance(took.records[-1], RECORD_ERRORS))
            for i in range(len(ring_read) - some):
                if not some or (took.exchange[i] == "binance" and i % 5 != 2):  # others' records between
                    part.payloads.append(took.stored[i])
                    part.read_rows.append(took.row[i])
        payloads = part.payloads
        stored = payloads
        read = seg.columns_of(part)
        assert read is not None and read.num_rows == len(payloads) and (len(payloads) < 3000) == some
    seqs = [i // 3 for i in range(len(payloads))]
    out = tmp_path / f"{dataset}.parquet"
    _write_as_the_writer(SPECS[dataset], stored, seqs, out, group_rows, read)
    expected = []
    for p, seq in zip(payloads, seqs, strict=True):
        row = dict(zip(_FLAT_FIELDS[dataset], msgspec.msgpack.decode(p[1:]), strict=True))
        expected.append({**row, "session_id": "s1", "sequence_number": seq})
    rows = pq.read_table(out).to_pylist()
    for r in rows:  # timestamps back to the stored microseconds
        for name in ("exchange_time", "local_time"):
            v = r[name]
            r[name] = None if v is None else (v - _EPOCH) // _US
    assert _same(rows, _by_pair_then_sequence(expected))
    # Byte for byte the file of a plain table of the decoded rows (the writer's few-valued strings
    # go through as dictionary arrays: the file must not show it), and build_table's plain schema.
    reference = tmp_path / "reference.parquet"
    spec = SPECS[dataset]
    write_parquet(pa.Table.from_pylist(_by_pair_then_sequence(expected), schema=spec.schema), reference, group_rows)
    assert out.read_bytes() == reference.read_bytes()
    assert build_table(spec, stored, seqs, "s1").schema == spec.schema


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_US = dt.timedelta(microseconds=1)


def test_a_ring_record_turns_back_into_its_snapshot() -> None:
    for s in _random_snapshots(50):
        assert ring_decoder.decode(ring_record(s)).to_snapshot(s.sequence_number, s.session_id) == s


def test_a_book_deeper_than_a_msgpack_array16_is_stored_whole() -> None:
    """70 000 levels a side: the level arrays take msgpack's 5-byte array header."""
    px = [1000.0 + k for k in range(70_000)]
    qty = [0.5 + k % 7 for k in range(70_000)]
    book = Snapshot(exchange="binance", pair="P", timestamp_ms=1_700_000_000_000,
                    bids=list(map(Level, px, qty)), asks=[], capture_latency_ms=None)  # fmt: skip
    payload = ring_record(book)
    assert msgspec.msgpack.decode(payload)[3] == px  # the reference: msgpack's own decode
    _, records, stored = decode_records([payload])
    assert BOOKS_SPEC.rows(records[0]) == 70_000
    table = build_table(BOOKS_SPEC, stored, [0], "s1")
    assert table["price"].to_pylist() == px and table["quantity"].to_pylist() == qty
    assert table["level"].to_pylist()[:32_768] == list(range(32_768))  # int16 in the schema


# -- trades and quotes taken in bulk: the same records skipped, the same keys, as one by one -----

_T0_US = 1_700_000_000_000_000
_EXCHANGE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")


def _trade_fields(**change: Any) -> list[Any]:
    fields = {"exchange": "binance", "pair": "BTC-USDT", "trade_id": "7", "price": 1.5, "quantity": 2,
              "side": "buy", "exchange_time": None, "local_time": _T0_US}  # fmt: skip
    return list({**fields, **change}.values())


def _quote_fields(**change: Any) -> list[Any]:
    fields = {"exchange": "okx", "pair": "ETH-USDT", "bid_price": None, "bid_qty": None, "ask_price": 3.0,
              "ask_qty": 1.0, "exchange_time": _T0_US - 5, "local_time": _T0_US, "update_id": -(2**63)}  # fmt: skip
    return list({**fields, **change}.values())


def _independent_keys(payload: bytes) -> tuple[str, str, int] | None:
    """A trade or quote record's exchange, pair and time (ms) if the writer may store it, from
    msgpack's schema-free decode and the rules written out here; None if it may not."""
    try:
        fields = msgspec.msgpack.decode(payload[1:])
    except msgspec.DecodeError:
        return None
    trade = payload[:1] == b"T"
    if not isinstance(fields, list) or len(fields) < (8 if trade else 9):
        return None
    exchange, pair, *rest = fields[: 8 if trade else 9]  # what follows is ignored, as ever
    number = (int, float)
    if trade:
        trade_id, price, qty, side, ex_time, local = rest
        if not isinstance(trade_id, str) or not trade_id or side not in ("buy", "sell"):
            return None
        if not all(isinstance(v, number) and not isinstance(v, bool) for v in (price, qty)):
            return None
    else:
        *sides, ex_time, local, update_id = rest
        if not all(v is None or (isinstance(v, number) and not isinstance(v, bool)) for v in sides):
            return None
        if not (update_id is None or type(update_id) is int):
            return None
    if not (ex_time is None or type(ex_time) is int) or type(local) is not int:
        return None
    if not isinstance(exchange, str) or not _EXCHANGE_NAME.fullmatch(exchange) or ".." in exchange:
        return None
    if not isinstance(pair, str) or not pair or not 0 <= local // 1000 < 253_402_300_800_000:
        return None
    return exchange, pair, local // 1000


def _bad_flat_records() -> list[bytes]:
    """Trades and quotes the writer must skip, each for another reason (and one it may store)."""
    enc = msgspec.msgpack.encode
    out = [b"T" + enc(_trade_fields(**change)) for change in (
        {"side": "hold"}, {"pair": ""}, {"trade_id": ""}, {"exchange": "../x"}, {"exchange": "a b"},
        {"local_time": -5_000}, {"local_time": 253_402_300_800_000_000}, {"price": None})]  # fmt: skip
    out += [b"Q" + enc(_quote_fields(**change)) for change in ({"pair": ""}, {"local_time": None})]
    out.append(b"T" + enc([*_trade_fields(), 1]))  # a field too many: stored, the field ignored
    out.append(b"T" + enc(_trade_fields()) + b"\xc0")  # something after it
    return out


def _fields_of_another_type() -> list[bytes]:
    """Records the bulk read cannot go through (it then decodes that dataset's one by one)."""
    enc = msgspec.msgpack.encode
    bad_utf8 = b"T" + enc(_trade_fields(pair="ZZ")).replace(b"\xa2ZZ", b"\xa2\xff\xfe")
    bad_utf8_id = b"T" + enc(_trade_fields(trade_id="ZZ")).replace(b"\xa2ZZ", b"\xa2\xc3\x28")
    return [
        bad_utf8,
        bad_utf8_id,
        b"T" + enc(_trade_fields(price="1.5")),
        b"T" + enc(_trade_fields(price=True)),
        b"T" + enc(_trade_fields(side=None)),
        b"Q" + enc(_quote_fields(update_id=2**64 - 1)),
        b"Q" + enc(_quote_fields()[:-1]),  # a field short: the read runs into the next record
        b"T" + enc(_trade_fields())[:-2],  # cut short (the last of the read: its field ends past the buffer)
    ]


@pytest.mark.parametrize("odd", [False, True], ids=["bulk", "one-by-one"])
def test_trades_and_quotes_taken_in_bulk_skip_and_key_as_an_independent_decode(odd: bool) -> None:
    rng = random.Random(4)
    good = [
        trade_record(Trade(rng.choice(["binance", "bybit"]), rng.choice(["A-B", "ÄÖ-EUR"]), str(i), 1.0 + i, 2.0,
                           rng.choice(["buy", "sell"]), None, _T0_US + 997 * i))
        for i in range(40)
    ]  # fmt: skip
    good += [quote_record(Quote("okx", f"P{i % 3}", None, None, 1.0, 2.0, None, _T0_US + i, i)) for i in range(40)]
    books = [ring_record(s) for s in _random_snapshots(5)]
    payloads = good + books + _bad_flat_records() + (_fields_of_another_type() if odd else [])
    rng.shuffle(payloads)
    took = take_records(payloads, bulk_min=0)
    if not odd:  # the bulk path ran: a good trade and quote of the read stay undecoded
        assert took.records.count(None) == len(good)
    for i, p in enumerate(payloads):
        if p in books:
            assert not isinstance(took.records[i], RECORD_ERRORS)
            continue
        expected = _independent_keys(p)
        if expected is None:
            assert isinstance(took.records[i], RECORD_ERRORS), p
        else:
            assert not isinstance(took.records[i], RECORD_ERRORS), p
            assert (took.exchange[i], took.pair[i], took.time_ms[i]) == expected
            assert took.specs[i].decode(took.stored[i]) is not None  # what JSONL and the stream decode
    assert sum(isinstance(r, RECORD_ERRORS) for r in took.records) >= len(_bad_flat_records()) - 1
    # With every struct (JSONL, the stream on): decoded one by one, the same records kept and keyed.
    each = take_records(payloads, structs=True)
    assert [isinstance(r, RECORD_ERRORS) for r in each.records] == [isinstance(r, RECORD_ERRORS) for r in took.records]
    assert (each.exchange, each.pair, each.time_ms.tolist()) == (took.exchange, took.pair, took.time_ms.tolist())
    for intake in (took, each):  # a usable record's group: its dataset, exchange and pair
        assert [intake.groups[g] if g >= 0 else None for g in intake.group.tolist()] == [
            None if isinstance(r, RECORD_ERRORS) else (s, e, p)
            for r, s, e, p in zip(intake.records, intake.specs, intake.exchange, intake.pair, strict=True)
        ]
        assert len(set(intake.groups)) == len(intake.groups)
    # Invalid UTF-8 alone in a read: skipped as msgspec would, the good record of it kept.
    for bad_utf8 in _fields_of_another_type()[:2]:  # in a pair, in a trade id
        only_utf8 = take_records([good[0], bad_utf8], bulk_min=0)
        assert not isinstance(only_utf8.records[0], RECORD_ERRORS) and isinstance(only_utf8.records[1], RECORD_ERRORS)


@pytest.mark.parametrize("odd_at", [None, 0, 1001, 2999], ids=["alike", "odd-first", "odd-within", "odd-last"])
def test_number_fields_read_together_hold_what_msgspec_decodes(odd_at: int | None) -> None:
    """A quote's number fields, one after the other, are read in one gather when every record
    encodes each alike (a nil, a float, an int of one width), else one by one: one record
    unlike the others (a nil side, smaller ints) anywhere, seen or not by the sample that
    decides, changes no value."""
    quotes = [Quote("okx", "ETH-USDT", 100.5 + i, 1.5, 101.5, 2.5, None, _T0_US + i, 2**40 + i) for i in range(3000)]
    if odd_at is not None:
        quotes[odd_at] = Quote("okx", "ETH-USDT", None, None, 101.5, 2.5, 5, _T0_US + odd_at, 7)
    payloads = [quote_record(q) for q in quotes]
    table = take_records(payloads, bulk_min=0).columns["quotes"]
    names = _FLAT_FIELDS["quotes"]
    expected = {name: [msgspec.msgpack.decode(p[1:])[k] for p in payloads] for k, name in enumerate(names)}
    for name in names:
        column = table.column(name)
        if pa.types.is_timestamp(column.type):
            column = column.cast(pa.int64())
        assert column.to_pylist() == expected[name], name


def test_a_files_record_order_is_pair_then_number_as_sorted_would() -> None:
    """Records numbered in order per pair (the radix sort alone) and not (the lexsort), pairs as
    strings and as dictionaries (the intake's)."""
    rng = random.Random(6)
    for _ in range(300):
        n = rng.randrange(0, 60)
        pairs = [rng.choice(["b", "a", "c", "ä", "B"]) for _ in range(n)]
        seqs = [rng.randrange(5) for _ in pairs]
        if rng.random() < 0.5:  # numbered in order per pair
            last: dict[str, int] = {}
            for i, p in enumerate(pairs):
                seqs[i] = last[p] = last.get(p, 0) + rng.randrange(3)
        column = pa.array(pairs, pa.string())
        column = column.dictionary_encode() if rng.random() < 0.5 else column
        expected = sorted(range(n), key=lambda i: (pairs[i].encode(), seqs[i]))
        assert record_order(column, pa.array(seqs, pa.int64())).tolist() == expected


def _odd_flat_records() -> list[bytes]:
    """Trades and quotes whose JSON text is unusual: every float edge, nulls, escapes, unicode."""
    enc = msgspec.msgpack.encode
    floats = [0.0, -0.0, 1e-9, 1e22, 5e-324, 1.7976931348623157e308, math.inf, -math.inf, math.nan, 2, -(2**63)]
    out = [b"T" + enc(_trade_fields(price=v, quantity=floats[-1 - i])) for i, v in enumerate(floats)]
    odd_strings = [('a"b', "X"), ("back\\slash", 'Q"P'), ("tab\there", "é-€"), ("\x00\x1f\x7f", "\U0001f600"),
                   ("Ü" * 40, "P" * 31)]  # fmt: skip
    out += [b"T" + enc(_trade_fields(trade_id=t, pair=p)) for t, p in odd_strings]
    update_ids = [None, 0, -1, 2**63 - 1, -(2**63), 127, -33, 65536, None, 1, 2]
    out += [b"Q" + enc(_quote_fields(bid_price=v, bid_qty=None if i % 2 else v, update_id=u))
            for i, (v, u) in enumerate(zip(floats, update_ids, strict=True))]  # fmt: skip
    out.append(b"Q" + enc(_quote_fields(exchange_time=None)))
    return out


@pytest.mark.parametrize("subset", [False, True])
def test_jsonl_lines_of_a_read_in_bulk_are_each_records_own(subset: bool) -> None:
    """Trades and quotes taken in bulk render their JSONL lines from the columns read of them:
    each byte for byte the line of the record's struct (the rendering the writer always had);
    books, bad and one-by-one records among them as before."""
    rng = random.Random(8)
    payloads = _flat_records("trades") + _flat_records("quotes") + _odd_flat_records() + _bad_flat_records()
    payloads += [ring_record(s) for s in _random_snapshots(20)]
    rng.shuffle(payloads)
    took = take_records(payloads, bulk_min=0)
    assert took.records.count(None) > 5000  # the bulk path ran
    at = np.flatnonzero(took.group >= 0)
    if subset:  # some of them, as a partition picks its records out of a read
        at = np.sort(rng.sample(at.tolist(), len(at) // 3))
    seqs = np.array([rng.randrange(2**40) for _ in at], np.int64)
    lines = read_lines(took, at, seqs, "s-1")
    expected = []
    for i, seq in zip(at.tolist(), seqs.tolist(), strict=True):
        spec = took.specs[i]
        expected.append(spec.jsonl(spec.decode(took.stored[i]), seq, "s-1"))
    assert lines.to_pylist() == expected
    assert bytes(lines_bytes(lines)) == b"".join(expected)
    picked = np.arange(0, len(at), 7)
    assert bytes(lines_bytes(lines, picked)) == b"".join(expected[k] for k in picked.tolist())
