"""What the writer takes in from a ring read: each record's dataset, checked (and decoded where
a struct is needed), with the exchange, pair and time that partition and number it.

Books are decoded one by one and their level columns checked in bulk; trades and quotes are
read and checked all at once, field by field (see ``take_records``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from operator import itemgetter
from typing import Any

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recorder.model import KIND_QUOTE, KIND_TRADE
from recorder.writer.columns import RecordColumns
from recorder.writer.datasets import (
    _MAX_TS_MS,
    _SIDES,
    BOOKS_SPEC,
    QUOTES_SPEC,
    RECORD_ERRORS,
    TRADES_SPEC,
    DatasetSpec,
    _book_levels_ok,
    _book_the_slow_way,
    _decode_book,
    _usable_exchange,
)

_FIRST_BYTE = itemgetter(0)


@dataclass
class Intake:
    """What the writer takes in from one ring read, per record, in order: its dataset; its
    decoded record, ``None`` for a trade or quote checked in bulk (``dataset.decode(stored)``
    gives its struct when one is needed: JSONL, the Redis stream), or the error (one of
    ``RECORD_ERRORS``) that makes it unusable; the bytes :func:`build_table` reads it from; and,
    for a usable record, the exchange, pair and time (ms) that partition and number it."""

    specs: list[DatasetSpec]
    records: list[Any]
    stored: list[bytes]
    exchange: list[str]
    pair: list[str]
    time_ms: list[int]
    # Trades and quotes read in bulk: per dataset name, the read's records of it as Arrow
    # columns (``spec.fields``, the bad ones' rows too); per record, its row there (-1: none).
    # A file takes its rows from them rather than read its records' fields once more.
    columns: dict[str, pa.Table]
    row: list[int]


def take_records(
    payloads: Sequence[bytes],
    structs: bool = False,
    row_base: Callable[[dict[str, pa.Table]], dict[str, int]] | None = None,
) -> Intake:
    """Decode and check a ring read (see :class:`Intake`); ``structs``: every usable record
    decoded (JSONL or the Redis stream will want each one's struct); ``row_base``: given the
    read's columns, per dataset the number of its first row (default 0: ``Intake.row``
    counts in ``Intake.columns``).

    Books are decoded one by one (their level columns stay raw) and checked in bulk: their
    level columns must be float64 arrays of matching lengths (what the sampler sends); one that
    is not is decoded the slow way and re-encoded so. Trades and quotes are read and checked
    all at once, field by field (``RecordColumns``), unless ``structs``; where that read meets
    a record it cannot take, that dataset's records of the read are decoded one by one as
    before. Flat lists, not a tuple per record: 200 k tuples would make the garbage collector
    cost more than decoding.
    """
    n = len(payloads)
    try:
        first = np.fromiter(map(_FIRST_BYTE, payloads), np.int64, n)
    except IndexError:  # an empty record: it goes to the books (and fails there)
        first = np.fromiter((p[0] if p else 0 for p in payloads), np.int64, n)
    specs: list[DatasetSpec] = _specs_by_first_byte()[first].tolist()
    records: list[Any] = [None] * n
    keys = _Keys(np.empty(n, object), np.empty(n, object), np.zeros(n, np.int64))
    stored = list(payloads)
    one_by_one: list[int] = []  # records decoded as structs: their keys are read from those
    columns: dict[str, pa.Table] = {}
    good_at: list[tuple[str, np.ndarray, np.ndarray]] = []  # dataset, its records, the good ones
    flat = (first == KIND_TRADE) | (first == KIND_QUOTE)
    flat_at = np.flatnonzero(flat)
    if len(flat_at) and not structs:  # the read's trades and quotes joined into one buffer
        joined = payloads if len(flat_at) == n else [payloads[i] for i in flat_at.tolist()]
        lens = np.fromiter(map(len, joined), np.int64, len(joined))
        ends = np.cumsum(lens)
        buf = np.frombuffer(b"".join(joined), np.uint8)
    for spec, kind in ((TRADES_SPEC, KIND_TRADE), (QUOTES_SPEC, KIND_QUOTE)):
        of_kind = first[flat_at] == kind
        at = flat_at[of_kind]
        if len(at):
            bad = None
            if not structs:
                bad = _take_flat_in_bulk(spec, buf, (ends - lens)[of_kind], ends[of_kind], at, keys, columns)
                if bad is not None:
                    good_at.append((spec.name, at, np.flatnonzero(~bad)))
            for i in at[bad].tolist() if bad is not None else at.tolist():
                records[i] = _decode_one(spec, payloads[i])
                one_by_one.append(i)
    books = np.flatnonzero(~flat).tolist()
    for i in books:
        records[i] = _decode_one(BOOKS_SPEC, payloads[i])
    books = [i for i in books if not isinstance(records[i], RECORD_ERRORS)]
    if books:
        ok = _book_levels_ok([records[i] for i in books])
        for i in np.flatnonzero(~ok).tolist():
            j = books[i]
            try:
                stored[j] = _book_the_slow_way(payloads[j])
                records[j] = _decode_book(stored[j])
            except RECORD_ERRORS as exc:
                records[j] = exc
    exchange, pair, time_ms = keys.exchange.tolist(), keys.pair.tolist(), keys.time_ms.tolist()
    row = np.full(n, -1, np.int64)
    base = row_base(columns) if row_base is not None else {}
    for name, at, good in good_at:
        row[at[good]] = good + base.get(name, 0)
    for i in books + one_by_one:  # lists: an item set costs far less than in a numpy array
        rec = records[i]
        if not isinstance(rec, RECORD_ERRORS):
            exchange[i], pair[i], time_ms[i] = rec.exchange, rec.pair, specs[i].time_ms(rec)
    return Intake(specs, records, stored, exchange, pair, time_ms, columns, row.tolist())


@dataclass
class _Keys:
    """Per record of a ring read: exchange, pair, time (ms)."""

    exchange: np.ndarray
    pair: np.ndarray
    time_ms: np.ndarray


def _decode_one(spec: DatasetSpec, payload: bytes) -> Any:
    try:
        return spec.decode(payload)
    except RECORD_ERRORS as exc:
        return exc


def _take_flat_in_bulk(
    spec: DatasetSpec,
    buf: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    at: np.ndarray,
    keys: _Keys,
    tables: dict[str, pa.Table],
) -> np.ndarray | None:
    """Check a read's trades (or quotes), records ``at`` of it (``buf[starts[i] : ends[i]]``
    of the read's joined records), all at once as ``spec.decode``
    checks one: the msgpack array of exactly the struct's fields, each of its type (null only
    where the struct allows it, valid UTF-8), nothing after it, and the dataset's own checks.
    Fills ``keys`` of the good ones and ``tables[spec.name]`` with the columns read; returns
    where the bad ones are in ``at`` (to decode one by one: their error, worded as ever), or
    None when the bulk read cannot go on (a field of another type): then all of them."""
    try:
        reader = RecordColumns.some_of(buf, starts, ends, spec.prefix)
        header = reader.buf[reader.pos - 1]
        columns = {name: reader.column(spec.schema.field(name).type) for name, _ in spec.fields}
        for column in columns.values():
            if column.type == pa.string():
                column.validate(full=True)  # UTF-8, as msgspec checks it
    except (ValueError, IndexError, pa.ArrowInvalid):
        return None
    good = (header == 0x90 + len(msgspec.structs.fields(spec.wire))) & (reader.pos == reader.ends)
    for name, column in columns.items():
        if not spec.schema.field(name).nullable and column.null_count:
            good &= ~column.is_null().to_numpy(zero_copy_only=False)
    ms = columns["local_time"].cast(pa.int64()).fill_null(0).to_numpy() // 1000
    good &= (ms >= 0) & (ms < _MAX_TS_MS)
    exchanges, names = _dictionary(columns["exchange"])
    good &= np.array([_usable_exchange(e) for e in names.tolist()], bool)[exchanges]
    good &= pc.binary_length(columns["pair"]).to_numpy(zero_copy_only=False) > 0
    if spec is TRADES_SPEC:
        good &= pc.binary_length(columns["trade_id"]).to_numpy(zero_copy_only=False) > 0
        good &= pc.is_in(columns["side"], value_set=pa.array(_SIDES)).to_numpy(zero_copy_only=False)
    pairs, pair_names = _dictionary(columns["pair"])
    rows = at[good]
    keys.exchange[rows] = names[exchanges[good]]
    keys.pair[rows] = pair_names[pairs[good]]
    keys.time_ms[rows] = ms[good]
    tables[spec.name] = pa.Table.from_pydict(columns)
    return ~good


def _dictionary(strings: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Per value its index into the distinct values, and those values (Python strings)."""
    encoded = strings.dictionary_encode()
    names = np.empty(len(encoded.dictionary), object)
    names[:] = encoded.dictionary.to_pylist()
    return encoded.indices.to_numpy(zero_copy_only=False), names


def decode_records(payloads: Sequence[bytes]) -> tuple[list[DatasetSpec], list[Any], list[bytes]]:
    """Each ring record's dataset; its decoded record, or the error that makes it unusable; and
    the bytes :func:`build_table` reads it from (:func:`take_records` with every struct)."""
    intake = take_records(payloads, structs=True)
    return intake.specs, intake.records, intake.stored


@lru_cache(maxsize=1)
def _specs_by_first_byte() -> np.ndarray:
    """A ring record's dataset, indexed by its first byte (books: any msgpack array header); an
    object array, so a whole read's datasets come out of one take."""
    table = np.empty(256, object)
    table[:] = [BOOKS_SPEC] * 256
    table[KIND_TRADE] = TRADES_SPEC
    table[KIND_QUOTE] = QUOTES_SPEC
    return table
