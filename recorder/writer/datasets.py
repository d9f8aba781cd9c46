"""One description per stored dataset: what the writer needs to store any kind of ring record.

The writer's rotation, journal, atomic publish, S3 upload and compaction are written once; what
differs between books, trades and quotes is only here: how a ring record is decoded and checked,
its time (which names the file and dates its partition), how many Parquet rows it makes, which
record field fills which column, and its JSONL line. Every dataset's file is built by one
function, :func:`build_table`, in bulk: one C-level pass per column, no Python per value.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import chain
from operator import attrgetter, itemgetter
from typing import Any

import msgspec
import numpy as np
import pyarrow as pa

from recorder.layout import BOOKS, QUOTES, TRADES, DatasetLayout
from recorder.model import (
    Quote,
    QuoteRow,
    SampledBook,
    Trade,
    TradeRow,
    json_encoder,
    quote_decoder,
    ring_decoder,
    ring_encoder,
    trade_decoder,
)
from recorder.writer.batches import BOOK_FIELDS, SCHEMA, long_form_batch, snapshot_jsonl
from recorder.writer.columns import RecordColumns, float64_arrays_ok, repeated
from recorder.writer.file_order import pieces_of, record_order

_MAX_TS_MS = 253_402_300_800_000  # year 10000: beyond it a UTC date isn't YYYY-MM-DD
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
_SIDES = ("buy", "sell")
_SIDE, _TRADE_ID = attrgetter("side"), attrgetter("trade_id")
_US = pa.timestamp("us", tz="UTC")
_WHOLE = 2**62  # rows per piece: all of them
# A trade's or quote's strings of a handful of distinct values a file (read as dictionary arrays).
FEW_VALUED = frozenset(("exchange", "pair", "side"))

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


_usable_exchanges: set[str] = set()  # names already checked: a record costs one set lookup


def _usable_exchange(exchange: str) -> bool:
    if exchange not in _usable_exchanges:
        if not _SAFE_NAME.match(exchange) or ".." in exchange:
            return False
        if len(_usable_exchanges) < 1024:  # bounded, whatever a producer sends
            _usable_exchanges.add(exchange)
    return True


def _check_common(exchange: str, time_ms: int) -> None:
    if not _usable_exchange(exchange):
        raise ValueError(f"unusable exchange {exchange[:40]!r}")
    if not 0 <= time_ms < _MAX_TS_MS:
        raise ValueError(f"time {time_ms} ms out of range")


def _common_pass(times: list[int], exchanges: list[str]) -> bool:
    """:func:`_check_common` of many records at once: whether every one passes."""
    return 0 <= min(times) and max(times) < _MAX_TS_MS and all(map(_usable_exchange, set(exchanges)))


@dataclass(frozen=True)
class DatasetSpec:
    layout: DatasetLayout
    schema: pa.Schema
    counter: str  # the writer counter of stored records
    decode: Callable[[bytes], Any]  # ring record -> checked record (msgspec/Value errors)
    # msgspec's decode of a ring record after its ``prefix`` (unchecked), and whether records so
    # decoded (with their times, exchanges and pairs) all pass ``decode``'s checks: the intake
    # decodes a read's records of a dataset in one C loop and checks them all at once.
    struct: Callable[[bytes], Any]
    all_pass: Callable[[list[Any], list[int], list[str], list[str]], bool]
    time_ms: Callable[[Any], int]
    rows: Callable[[Any], int]  # Parquet rows it becomes
    jsonl: Callable[[Any, int, str], bytes]  # record, number, session -> one line
    # The ring record's struct (its fields in wire order) and the bytes before its msgpack array.
    wire: type[msgspec.Struct]
    prefix: int
    # Column name -> record attribute, for every column but sequence_number and session_id.
    fields: tuple[tuple[str, str], ...]
    # Books: one row per level. Given the records' reader, their level arrays (field name ->
    # first value positions, lengths), per-record columns and the order to store them in, the
    # file's rows (the per-record columns repeated per level).
    expand: Callable[[RecordColumns, dict[str, Levels], dict[str, pa.Array], np.ndarray], pa.RecordBatch] | None = None
    # A file of this dataset holds up to ``rotate_snapshots`` x this many records: a trade is one
    # small row where a snapshot is ``depth`` level rows, and a busy venue prints hundreds of
    # trades a second; with the books' count, every segment would be cut after a second.
    rotate_factor: int = 1

    @property
    def name(self) -> str:
        return self.layout.name


Levels = tuple[np.ndarray, np.ndarray]  # per record: position of the first value, count


def build_table(spec: DatasetSpec, payloads: Sequence[bytes], seqs: Sequence[int], session_id: str) -> pa.Table:
    """One file's table of ring records (``payloads``, as :func:`decode_records` passed them)
    numbered ``seqs``, ordered by pair then sequence number: :func:`build_pieces` joined, of
    ``spec.schema`` (its strings plain)."""
    pieces = list(build_pieces(spec, payloads, seqs, session_id, _WHOLE))
    return pa.concat_tables(pieces).combine_chunks().cast(spec.schema) if pieces else spec.schema.empty_table()


def build_pieces(
    spec: DatasetSpec,
    payloads: Sequence[bytes],
    seqs: Sequence[int],
    session_id: str,
    rows_per_piece: int,
    read: pa.Table | None = None,
) -> Iterator[pa.Table]:
    """:func:`build_table`'s rows a piece of the ordered records at a time, each of about
    ``rows_per_piece`` rows (whole records: a book's levels stay together), so a file's whole
    table, several times the bytes of its ring records, never is in memory at once.

    Every column of a record is read from the joined records in bulk (``RecordColumns``), in
    arrival order, and the order is computed once over the file; each piece is then put in order
    by one Arrow ``take`` (the books' levels, the bulk of the rows, read only then). ``read``:
    trades' or quotes' columns (``spec.fields``) the intake already read of these records, in
    their order (``Partition.read_columns``): taken as they are.

    A trade's or quote's few-valued strings (``FEW_VALUED``, and the session id) come as
    dictionary arrays: put in order as ints, and written as Parquet writes the strings
    (``parquet_format.write_parquet_pieces``); the pieces' schema is ``spec.schema`` but for
    those types.
    """
    columns: dict[str, pa.Array] = {}
    levels: dict[str, Levels] = {}
    flat = spec.expand is None
    if read is not None and flat and read.num_rows == len(payloads):
        columns = {name: _one_chunk(read.column(name)) for name, _ in spec.fields}
    else:
        reader = RecordColumns(payloads, spec.prefix)
        column_of = {attr: name for name, attr in spec.fields}
        for f in msgspec.structs.fields(spec.wire):
            name = column_of.get(f.name)
            if name is None:
                levels[f.name] = reader.float_arrays()
                continue
            keyed = reader.keyed_strings() if flat and name in FEW_VALUED else None
            if keyed is not None and None in keyed[2]:
                raise ValueError("ring record string is not UTF-8")  # decode_records lets none through
            columns[name] = keyed[0] if keyed is not None else reader.column(spec.schema.field(name).type)
    columns["sequence_number"] = pa.array(np.asarray(seqs, np.int64))
    columns["session_id"] = repeated(session_id, len(payloads), as_dictionary=flat)
    order = record_order(columns["pair"], columns["sequence_number"])
    if flat:
        yield from _flat_pieces(spec, columns, order, rows_per_piece)
        return
    sizes = levels["bid_px"][1] + levels["ask_px"][1]
    for piece in pieces_of(order, np.maximum(sizes[order], 1), rows_per_piece):  # no level: one row
        yield pa.Table.from_batches([spec.expand(reader, levels, columns, piece)], schema=spec.schema)


def _flat_pieces(
    spec: DatasetSpec, columns: dict[str, pa.Array], order: np.ndarray, rows_per_piece: int
) -> Iterator[pa.Table]:
    """Trades' or quotes' ``columns`` in ``order``, ``rows_per_piece`` rows a piece; a column of
    one value (the session id, a file's exchange: a dictionary of one) sliced, not taken."""
    schema = pa.schema([f.with_type(columns[f.name].type) for f in spec.schema])
    one_value = {
        name
        for name, column in columns.items()
        if pa.types.is_dictionary(column.type) and len(column.dictionary) == 1 and not column.null_count
    }
    taken = pa.Table.from_arrays([columns[n] for n in schema.names if n not in one_value],
                                 names=[n for n in schema.names if n not in one_value])  # fmt: skip
    indices = order.astype(np.int32) if len(order) < 2**31 else order  # Arrow takes by int32 faster
    for at in range(0, len(order), rows_per_piece):
        piece = indices[at : at + rows_per_piece]
        rows = taken.take(piece)
        pieced = [columns[n].slice(0, len(piece)) if n in one_value else rows.column(n) for n in schema.names]
        yield pa.Table.from_arrays(pieced, schema=schema)


def _one_chunk(column: pa.ChunkedArray) -> pa.Array:
    return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()


# -- books -------------------------------------------------------------------------------------


class RingBook(msgspec.Struct, array_like=True):
    """A book's ring record (a ``SampledBook``) as the writer decodes it: the four level columns
    stay msgpack bytes (``msgspec.Raw``, no Python float each) until a file's Arrow columns are
    read out of them in bulk (``recorder.writer.columns``)."""

    exchange: str
    pair: str
    timestamp_ms: int
    bid_px: msgspec.Raw
    bid_qty: msgspec.Raw
    ask_px: msgspec.Raw
    ask_qty: msgspec.Raw
    capture_latency_ms: float | None
    exchange_time_ms: int | None
    update_id: int | None
    verified: bool
    depth_complete: bool | None
    # Not on the wire (msgspec leaves the default): the record's bytes, set when it is decoded,
    # so JSONL decodes them once more with float lists in one call rather than four.
    ring_bytes: bytes = b""

    def sampled(self) -> SampledBook:
        """The record with its levels as float lists (JSONL, the Redis stream)."""
        return ring_decoder.decode(self.ring_bytes)


_ring_book_decoder = msgspec.msgpack.Decoder(RingBook)
_LEVEL_RAWS = attrgetter("bid_px", "bid_qty", "ask_px", "ask_qty")
_FIRST_BYTE = itemgetter(0)


def _decode_book(payload: bytes) -> RingBook:
    rec = _ring_book_decoder.decode(payload)
    _check_common(rec.exchange, rec.timestamp_ms)
    rec.ring_bytes = payload
    return rec


def _books_pass(books: list[RingBook], times: list[int], exchanges: list[str], pairs: list[str]) -> bool:
    """:func:`_decode_book`'s checks of many books at once."""
    return bool(books) and _common_pass(times, exchanges)


def _book_the_slow_way(payload: bytes) -> bytes:
    """A book record whose level columns are not all float64 arrays (ints, or worse): decoded
    and checked as a SampledBook, and re-encoded, its levels as float64 arrays now
    (msgspec/Value errors for a record that is no book)."""
    rec = ring_decoder.decode(payload)
    rec.check()
    return ring_encoder.encode(rec)  # msgspec writes every float of a list[float] as a float64


def _book_levels_ok(books: Sequence[RingBook]) -> tuple[np.ndarray, np.ndarray]:
    """Per book, whether its level columns are float64 arrays, prices as long as quantities;
    and its Parquet rows where they are (``BOOKS_SPEC.rows``: its levels, at least one)."""
    ok, counts = float64_arrays_ok(list(chain.from_iterable(map(_LEVEL_RAWS, books))))
    counts = counts.reshape(-1, 4)
    ok = ok.reshape(-1, 4).all(axis=1) & (counts[:, 0] == counts[:, 1]) & (counts[:, 2] == counts[:, 3])
    return ok, np.maximum(counts[:, 0] + counts[:, 2], 1)


def _book_rows(
    reader: RecordColumns, levels: dict[str, Levels], per_book: dict[str, pa.Array], order: np.ndarray
) -> pa.RecordBatch:
    """The long form of the books, in ``order``: each book's bid levels then its ask levels."""

    def side_by_side(bid: str, ask: str) -> tuple[np.ndarray, np.ndarray]:
        (bid_first, bids), (ask_first, asks) = levels[bid], levels[ask]
        first = np.stack([bid_first[order], ask_first[order]], axis=1).ravel()
        count = np.stack([bids[order], asks[order]], axis=1).ravel()
        return reader.floats(first, count), count

    price, count = side_by_side("bid_px", "ask_px")
    quantity, qty_count = side_by_side("bid_qty", "ask_qty")
    if not np.array_equal(count, qty_count):  # decode_records lets no such book through
        raise ValueError("a book's prices and quantities differ in number")
    return long_form_batch(per_book, count[0::2], count[1::2], price, quantity, order)


def _book_jsonl(rec: RingBook, seq: int, session_id: str) -> bytes:
    return snapshot_jsonl(rec.sampled().to_snapshot(seq, session_id))


# -- trades and quotes -------------------------------------------------------------------------


# ``payload[1:]`` (the record after its kind byte): a copy of ~70 bytes costs less than a memoryview.
def _decode_trade(payload: bytes) -> Trade:
    rec = trade_decoder.decode(payload[1:])
    _check_common(rec.exchange, rec.local_time_us // 1000)
    if rec.side not in _SIDES:
        raise ValueError(f"trade side {rec.side[:10]!r} is neither buy nor sell")
    if not rec.pair or not rec.trade_id:
        raise ValueError("trade without pair or id")
    return rec


def _decode_quote(payload: bytes) -> Quote:
    rec = quote_decoder.decode(payload[1:])
    _check_common(rec.exchange, rec.local_time_us // 1000)
    if not rec.pair:
        raise ValueError("quote without pair")
    return rec


def _trades_pass(trades: list[Trade], times: list[int], exchanges: list[str], pairs: list[str]) -> bool:
    """:func:`_decode_trade`'s checks of many trades at once."""
    return (
        bool(trades)
        and _common_pass(times, exchanges)
        and set(map(_SIDE, trades)) <= set(_SIDES)
        and all(pairs)
        and all(map(_TRADE_ID, trades))
    )


def _quotes_pass(quotes: list[Quote], times: list[int], exchanges: list[str], pairs: list[str]) -> bool:
    """:func:`_decode_quote`'s checks of many quotes at once."""
    return bool(quotes) and _common_pass(times, exchanges) and all(pairs)


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


def _columns_named_as_fields(schema: pa.Schema, renamed: dict[str, str]) -> tuple[tuple[str, str], ...]:
    """Every column but the writer's two, each from the record field of its name (or renamed)."""
    return tuple((n, renamed.get(n, n)) for n in schema.names if n not in ("sequence_number", "session_id"))


_TIMES_US = {"exchange_time": "exchange_time_us", "local_time": "local_time_us"}

BOOKS_SPEC = DatasetSpec(
    layout=BOOKS,
    schema=SCHEMA,
    counter="snapshots_written",
    decode=_decode_book,
    struct=_ring_book_decoder.decode,
    all_pass=_books_pass,
    time_ms=lambda r: r.timestamp_ms,
    # The level columns are float64 arrays here (decode_records): 9 bytes a value.
    rows=lambda r: max(1, len(r.bid_px) // 9 + len(r.ask_px) // 9),
    jsonl=_book_jsonl,
    wire=SampledBook,
    prefix=0,
    fields=BOOK_FIELDS,
    expand=_book_rows,
)
TRADES_SPEC = DatasetSpec(
    layout=TRADES,
    schema=TRADES_SCHEMA,
    counter="trades_written",
    decode=_decode_trade,
    struct=trade_decoder.decode,
    all_pass=_trades_pass,
    time_ms=lambda r: r.local_time_us // 1000,
    rows=lambda r: 1,
    jsonl=lambda r, seq, sid: json_encoder.encode(trade_row(r, seq, sid)) + b"\n",
    wire=Trade,
    prefix=1,  # the kind byte
    fields=_columns_named_as_fields(TRADES_SCHEMA, _TIMES_US),
    rotate_factor=50,
)
QUOTES_SPEC = DatasetSpec(
    layout=QUOTES,
    schema=QUOTES_SCHEMA,
    counter="quotes_written",
    decode=_decode_quote,
    struct=quote_decoder.decode,
    all_pass=_quotes_pass,
    time_ms=lambda r: r.local_time_us // 1000,
    rows=lambda r: 1,
    jsonl=lambda r, seq, sid: json_encoder.encode(quote_row(r, seq, sid)) + b"\n",
    wire=Quote,
    prefix=1,
    fields=_columns_named_as_fields(QUOTES_SCHEMA, _TIMES_US),
    rotate_factor=50,
)
SPECS: dict[str, DatasetSpec] = {s.name: s for s in (BOOKS_SPEC, TRADES_SPEC, QUOTES_SPEC)}

# What stops a ring record from being stored: it is skipped and counted, never retried.
RECORD_ERRORS = (msgspec.DecodeError, msgspec.ValidationError, ValueError)


def decode_jsonl_rows(spec: DatasetSpec, data: bytes) -> list[Any]:
    """The rows of a trades/quotes JSONL file (msgspec.DecodeError on a malformed line)."""
    row_type = TradeRow if spec is TRADES_SPEC else QuoteRow
    lines = [line for line in data.split(b"\n") if line.strip()]
    if not lines:
        return []
    return msgspec.json.decode(b"[" + b",".join(lines) + b"]", type=list[row_type])  # type: ignore[valid-type]
