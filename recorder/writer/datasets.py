"""One description per stored dataset: what the writer needs to store any kind of ring record.

The writer's rotation, journal, atomic publish, S3 upload and compaction are written once; what
differs between books, trades and quotes is only here: how a ring record is decoded and checked,
its time (which names the file and dates its partition), how many Parquet rows it makes, how a
batch of them becomes Arrow and a JSONL line, and the table a file holds.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import msgspec
import pyarrow as pa

from recorder.layout import BOOKS, QUOTES, TRADES, DatasetLayout
from recorder.model import (
    KIND_QUOTE,
    KIND_TRADE,
    Quote,
    QuoteRow,
    SampledBook,
    Trade,
    TradeRow,
    json_encoder,
    quote_decoder,
    ring_decoder,
    trade_decoder,
)
from recorder.writer.batches import SCHEMA, batches_to_table, sampled_to_batch, snapshot_jsonl

_MAX_TS_MS = 253_402_300_800_000  # year 10000: beyond it a UTC date isn't YYYY-MM-DD
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
_SIDES = ("buy", "sell")
_US = pa.timestamp("us", tz="UTC")

TRADES_SCHEMA = pa.schema(
    [
        pa.field("exchange", pa.string(), nullable=False),
        pa.field("pair", pa.string(), nullable=False),
        pa.field("trade_id", pa.string(), nullable=False),
        pa.field("price", pa.float64(), nullable=False),
        pa.field("quantity", pa.float64(), nullable=False),
        pa.field("side", pa.string(), nullable=False),  # the taker's: buy | sell
        pa.field("exchange_time", _US),  # the venue's trade time
        pa.field("local_time", _US, nullable=False),  # receive time of the frame that carried it
        pa.field("session_id", pa.string(), nullable=False),
        pa.field("sequence_number", pa.int64(), nullable=False),
    ]
)

QUOTES_SCHEMA = pa.schema(
    [
        pa.field("exchange", pa.string(), nullable=False),
        pa.field("pair", pa.string(), nullable=False),
        pa.field("bid_price", pa.float64()),  # null: that side of the book is empty
        pa.field("bid_qty", pa.float64()),
        pa.field("ask_price", pa.float64()),
        pa.field("ask_qty", pa.float64()),
        pa.field("exchange_time", _US),
        pa.field("local_time", _US, nullable=False),
        pa.field("update_id", pa.int64()),
        pa.field("session_id", pa.string(), nullable=False),
        pa.field("sequence_number", pa.int64(), nullable=False),
    ]
)


def _check_common(exchange: str, time_ms: int) -> None:
    if not _SAFE_NAME.match(exchange) or ".." in exchange:
        raise ValueError(f"unusable exchange {exchange[:40]!r}")
    if not 0 <= time_ms < _MAX_TS_MS:
        raise ValueError(f"time {time_ms} ms out of range")


@dataclass(frozen=True)
class DatasetSpec:
    layout: DatasetLayout
    schema: pa.Schema
    counter: str  # the writer counter of stored records
    decode: Callable[[bytes], Any]  # ring record -> checked record (msgspec/Value errors)
    time_ms: Callable[[Any], int]
    rows: Callable[[Any], int]  # Parquet rows it becomes
    batch: Callable[[Sequence[Any], list[int], str], pa.RecordBatch]  # records, numbers, session
    jsonl: Callable[[Any, int, str], bytes]  # record, number, session -> one line
    table: Callable[[Sequence[pa.RecordBatch]], pa.Table]  # one file's content
    # A file of this dataset holds up to ``rotate_snapshots`` x this many records: a trade is one
    # small row where a snapshot is ``depth`` level rows, and a busy venue prints hundreds of
    # trades a second; with the books' count, every segment would be cut after a second.
    rotate_factor: int = 1

    @property
    def name(self) -> str:
        return self.layout.name


# -- books -------------------------------------------------------------------------------------


def _decode_book(payload: bytes) -> SampledBook:
    rec = ring_decoder.decode(payload)
    rec.check()
    _check_common(rec.exchange, rec.timestamp_ms)
    return rec


def _book_jsonl(rec: SampledBook, seq: int, session_id: str) -> bytes:
    return snapshot_jsonl(rec.to_snapshot(seq, session_id))


# -- trades and quotes -------------------------------------------------------------------------


def _decode_trade(payload: bytes) -> Trade:
    rec = trade_decoder.decode(memoryview(payload)[1:])
    _check_common(rec.exchange, rec.local_time_us // 1000)
    if rec.side not in _SIDES:
        raise ValueError(f"trade side {rec.side[:10]!r} is neither buy nor sell")
    if not rec.pair or not rec.trade_id:
        raise ValueError("trade without pair or id")
    return rec


def _decode_quote(payload: bytes) -> Quote:
    rec = quote_decoder.decode(memoryview(payload)[1:])
    _check_common(rec.exchange, rec.local_time_us // 1000)
    if not rec.pair:
        raise ValueError("quote without pair")
    return rec


def _column(values: list[Any], typ: pa.DataType) -> pa.Array:
    return pa.array(values, typ)


def _trades_batch(recs: Sequence[Trade], seqs: list[int], session_id: str) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays(
        [
            _column([r.exchange for r in recs], pa.string()),
            _column([r.pair for r in recs], pa.string()),
            _column([r.trade_id for r in recs], pa.string()),
            _column([r.price for r in recs], pa.float64()),
            _column([r.quantity for r in recs], pa.float64()),
            _column([r.side for r in recs], pa.string()),
            _column([r.exchange_time_us for r in recs], pa.int64()).cast(_US),
            _column([r.local_time_us for r in recs], pa.int64()).cast(_US),
            pa.array([session_id] * len(recs), pa.string()),
            pa.array(seqs, pa.int64()),
        ],
        schema=TRADES_SCHEMA,
    )


def _quotes_batch(recs: Sequence[Quote], seqs: list[int], session_id: str) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays(
        [
            _column([r.exchange for r in recs], pa.string()),
            _column([r.pair for r in recs], pa.string()),
            _column([r.bid_price for r in recs], pa.float64()),
            _column([r.bid_qty for r in recs], pa.float64()),
            _column([r.ask_price for r in recs], pa.float64()),
            _column([r.ask_qty for r in recs], pa.float64()),
            _column([r.exchange_time_us for r in recs], pa.int64()).cast(_US),
            _column([r.local_time_us for r in recs], pa.int64()).cast(_US),
            _column([r.update_id for r in recs], pa.int64()),
            pa.array([session_id] * len(recs), pa.string()),
            pa.array(seqs, pa.int64()),
        ],
        schema=QUOTES_SCHEMA,
    )


def trade_row(t: Trade, seq: int, session_id: str) -> TradeRow:
    return TradeRow(
        exchange=t.exchange,
        pair=t.pair,
        trade_id=t.trade_id,
        price=t.price,
        quantity=t.quantity,
        side=t.side,
        exchange_time=t.exchange_time_us,
        local_time=t.local_time_us,
        session_id=session_id,
        sequence_number=seq,
    )


def quote_row(q: Quote, seq: int, session_id: str) -> QuoteRow:
    return QuoteRow(
        exchange=q.exchange,
        pair=q.pair,
        bid_price=q.bid_price,
        bid_qty=q.bid_qty,
        ask_price=q.ask_price,
        ask_qty=q.ask_qty,
        exchange_time=q.exchange_time_us,
        local_time=q.local_time_us,
        update_id=q.update_id,
        session_id=session_id,
        sequence_number=seq,
    )


def _sorted_table(schema: pa.Schema) -> Callable[[Sequence[pa.RecordBatch]], pa.Table]:
    def table(batches: Sequence[pa.RecordBatch]) -> pa.Table:
        # Clustered by pair (row-group statistics on pair prune well), then in arrival order.
        t = pa.Table.from_batches(list(batches), schema=schema)
        return t.sort_by([("pair", "ascending"), ("sequence_number", "ascending")])

    return table


BOOKS_SPEC = DatasetSpec(
    layout=BOOKS,
    schema=SCHEMA,
    counter="snapshots_written",
    decode=_decode_book,
    time_ms=lambda r: r.timestamp_ms,
    rows=lambda r: max(1, len(r.bid_px) + len(r.ask_px)),
    batch=sampled_to_batch,
    jsonl=_book_jsonl,
    table=batches_to_table,
)
TRADES_SPEC = DatasetSpec(
    layout=TRADES,
    schema=TRADES_SCHEMA,
    counter="trades_written",
    decode=_decode_trade,
    time_ms=lambda r: r.local_time_us // 1000,
    rows=lambda r: 1,
    batch=_trades_batch,
    jsonl=lambda r, seq, sid: json_encoder.encode(trade_row(r, seq, sid)) + b"\n",
    table=_sorted_table(TRADES_SCHEMA),
    rotate_factor=50,
)
QUOTES_SPEC = DatasetSpec(
    layout=QUOTES,
    schema=QUOTES_SCHEMA,
    counter="quotes_written",
    decode=_decode_quote,
    time_ms=lambda r: r.local_time_us // 1000,
    rows=lambda r: 1,
    batch=_quotes_batch,
    jsonl=lambda r, seq, sid: json_encoder.encode(quote_row(r, seq, sid)) + b"\n",
    table=_sorted_table(QUOTES_SCHEMA),
    rotate_factor=50,
)
SPECS: dict[str, DatasetSpec] = {s.name: s for s in (BOOKS_SPEC, TRADES_SPEC, QUOTES_SPEC)}


@lru_cache(maxsize=1)
def spec_by_first_byte() -> tuple[DatasetSpec, ...]:
    """A ring record's dataset, indexed by its first byte (books: any msgpack array header)."""
    table = [BOOKS_SPEC] * 256
    table[KIND_TRADE] = TRADES_SPEC
    table[KIND_QUOTE] = QUOTES_SPEC
    return tuple(table)


def decode_jsonl_rows(spec: DatasetSpec, data: bytes) -> list[Any]:
    """The rows of a trades/quotes JSONL file (msgspec.DecodeError on a malformed line)."""
    row_type = TradeRow if spec is TRADES_SPEC else QuoteRow
    lines = [line for line in data.split(b"\n") if line.strip()]
    if not lines:
        return []
    return msgspec.json.decode(b"[" + b",".join(lines) + b"]", type=list[row_type])  # type: ignore[valid-type]
