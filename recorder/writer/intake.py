"""What the writer takes in from a ring read: each record's dataset, checked (and decoded where
a struct is needed), with the exchange, pair and time that partition and number it.

Books are decoded and their level columns checked in bulk; trades and quotes are
read and checked all at once, field by field (see ``take_records``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import groupby
from operator import attrgetter, itemgetter
from typing import Any

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recorder.model import KIND_QUOTE, KIND_TRADE
from recorder.writer.codes import distinct
from recorder.writer.columns import RecordColumns, check_utf8, joined
from recorder.writer.datasets import (
    _MAX_TS_MS,
    _SIDES,
    BOOKS_SPEC,
    FEW_VALUED,
    QUOTES_SPEC,
    RECORD_ERRORS,
    TRADES_SPEC,
    DatasetSpec,
    _book_levels_ok,
    _book_the_slow_way,
    _decode_book,
    _usable_exchange,
)
from recorder.writer.groups import Group, GroupIds

# Records of a dataset a read must hold to be read in bulk: the bulk read costs ~1.5 ms a dataset
# and read whatever its size, and some µs per distinct pair; msgspec decodes a trade in ~1 µs. At
# the writer's usual reads (a 20 ms poll: some hundred trades of up to 1000 pairs) one by one is
# cheaper; a backlog of few pairs' records is not.
BULK_MIN_RECORDS = 2048
_EXCHANGE, _PAIR = attrgetter("exchange"), attrgetter("pair")
_AFTER_KIND = itemgetter(slice(1, None))


@dataclass
class Intake:
    """What the writer takes in from one ring read, per record, in order: its dataset; its
    decoded record, ``None`` for a trade or quote checked in bulk (``dataset.decode(stored)``
    gives its struct when one is needed: JSONL, the Redis stream), or the error (one of
    ``RECORD_ERRORS``) that makes it unusable; the bytes :func:`build_table` reads it from; and,
    for a usable record, the exchange, pair and time (ms) that partition and number it, and its
    group's id (``groups[group[i]]``, -1 for an unusable record) among ``ids``."""

    specs: list[DatasetSpec]
    records: list[Any]
    stored: list[bytes]
    time_ms: np.ndarray  # int64
    # Trades and quotes read in bulk: per dataset name, the read's records of it as Arrow
    # columns (``spec.fields``, the bad ones' rows too); per record, its row there (-1: none).
    # A file takes its rows from them rather than read its records' fields once more.
    columns: dict[str, pa.Table]
    row: np.ndarray  # int64
    group: np.ndarray  # int64
    groups: list[Group]  # ids.groups
    ids: GroupIds
    lens: np.ndarray  # int64: bytes of each stored record
    rows: np.ndarray  # int64: Parquet rows of each usable record (``spec.rows``)
    kind: np.ndarray  # each record's first byte (KIND_TRADE, KIND_QUOTE, else a book)
    base: dict[str, int]  # per dataset, the number of its first row in ``columns`` (``row_base``)

    @property
    def exchange(self) -> list[str | None]:
        """Each record's exchange (None: unusable)."""
        return self._of_group(1)

    @property
    def pair(self) -> list[str | None]:
        return self._of_group(2)

    def _of_group(self, field: int) -> list[str | None]:
        values = np.array([None, *(g[field] for g in self.groups)], object)
        return values[self.group + 1].tolist()


def take_records(
    payloads: Sequence[bytes],
    structs: bool = False,
    row_base: Callable[[dict[str, pa.Table]], dict[str, int]] | None = None,
    bulk_min: int = BULK_MIN_RECORDS,
    group_ids: GroupIds | None = None,
) -> Intake:
    """Decode and check a ring read (see :class:`Intake`); ``structs``: every usable record
    decoded (the Redis stream will want each one's struct); ``row_base``: given the read's
    columns, per dataset the number of its first row (default 0: ``Intake.row`` counts in
    ``Intake.columns``); ``bulk_min``: the records of a dataset a read holds at least for them to
    be read in bulk; ``group_ids``: the ids its groups get (the open segment's, which numbers
    the records by them; default: the read's own).

    Books are decoded (their level columns stay raw; see :func:`_decode_all`) and checked in
    bulk: their level columns must be float64 arrays of matching lengths (what the sampler
    sends); one that is not is decoded the slow way and re-encoded so. Trades and quotes are read and checked
    all at once, field by field (``RecordColumns``), unless ``structs`` or they are fewer than
    ``bulk_min`` (then decoded, as a record whose fields the bulk read cannot take: all of a
    dataset's in one msgspec loop, see :func:`_decode_all`); where that read meets a record it
    cannot take, that dataset's records of the read are decoded so. No Python object per trade
    or quote read in bulk: 200 k of them would make the garbage collector cost more than
    reading them.
    """
    n = len(payloads)
    buf, starts, ends = joined(payloads)  # books too: a copy costs less than a length each
    lens = ends - starts
    first = _first_bytes(buf, starts, lens)
    one = int(first[0]) if n and (first == first[0]).all() else None  # a backlog of trades, say
    if one is not None:  # one dataset: no lookup, no pick each
        specs: list[DatasetSpec] = [_specs_by_first_byte()[one]] * n
    else:
        specs = _specs_by_first_byte()[first].tolist()
    records: list[Any] = [None] * n
    keys = _Keys(n, GroupIds() if group_ids is None else group_ids)
    stored = payloads if isinstance(payloads, list) else list(payloads)  # copied if a book is re-encoded
    rows = np.ones(n, np.int64)  # a trade or quote is one row
    decoded: list[_Decoded] = []
    columns: dict[str, pa.Table] = {}
    good_at: list[tuple[str, np.ndarray, np.ndarray]] = []  # dataset, its records, the good ones
    for spec, kind in ((TRADES_SPEC, KIND_TRADE), (QUOTES_SPEC, KIND_QUOTE)):
        at = np.flatnonzero(first == kind) if one is None else np.arange(n if one == kind else 0)
        if len(at):
            bad = None
            if not structs and len(at) >= bulk_min:
                bounds = (starts, ends) if len(at) == n else (starts[at], ends[at])
                bad = _take_flat_in_bulk(spec, buf, *bounds, at, keys, columns)
                if bad is not None:
                    good_at.append((spec.name, at, np.flatnonzero(~bad)))
            todo = (at[bad] if bad is not None else at).tolist()
            if todo:
                decoded.append(_decode_all(spec, todo, payloads, records))
    if one is None:
        books = np.flatnonzero((first != KIND_TRADE) & (first != KIND_QUOTE)).tolist()
    else:  # one dataset: every record a book, or none
        books = [] if one in (KIND_TRADE, KIND_QUOTE) else list(range(n))
    if books:
        _, books, recs, got = _decode_all(BOOKS_SPEC, books, payloads, records)
        ok, book_rows = _book_levels_ok(recs) if books else (np.ones(0, bool), np.ones(0, np.int64))
        rows[books] = book_rows
        if not ok.all():
            for i in np.flatnonzero(~ok).tolist():
                j = books[i]
                try:
                    if stored is payloads:
                        stored = list(payloads)
                    stored[j] = _book_the_slow_way(payloads[j])
                    records[j] = _decode_book(stored[j])
                    lens[j], rows[j] = len(stored[j]), BOOKS_SPEC.rows(records[j])
                except RECORD_ERRORS as exc:
                    records[j] = exc
            books = [i for i in books if not isinstance(records[i], RECORD_ERRORS)]
            recs, got = [records[i] for i in books], None
        decoded.insert(0, (BOOKS_SPEC, books, recs, got))
    row = np.full(n, -1, np.int64)
    base = row_base(columns) if row_base is not None else {}
    for name, at, good in good_at:
        if len(good) == n:  # every record of the read
            row = good + base.get(name, 0)
        else:
            row[at[good] if len(good) < len(at) else at] = good + base.get(name, 0)
    for spec, usable, recs, got in decoded:
        keys.add_decoded(spec, usable, recs, got)
    return Intake(
        specs,
        records,
        stored,
        keys.time_ms,
        columns,
        row,
        keys.group,
        keys.ids.groups,
        keys.ids,
        lens,
        rows,
        first,
        base,
    )


def _first_bytes(buf: np.ndarray, starts: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """Each record's first byte (its dataset's kind); 0 for an empty record (it goes to the
    books, and fails there)."""
    if not len(buf):
        return np.zeros(len(starts), np.uint8)
    if (lens > 0).all():
        return buf[starts]
    return np.where(lens > 0, buf[np.minimum(starts, len(buf) - 1)], 0).astype(np.uint8)


# Records' times (ms), exchanges and pairs, read once from their structs.
_Got = tuple[list[int], list[str], list[str]]
# A dataset's usable records of a read: their indices, structs, and what was got of them.
_Decoded = tuple[DatasetSpec, list[int], list[Any], _Got | None]


class _Keys:
    """Per record of a ring read: time (ms), group id (among ``ids``)."""

    def __init__(self, n: int, ids: GroupIds) -> None:
        self.time_ms = np.zeros(n, np.int64)
        self.group = np.full(n, -1, np.int64)
        self.ids = ids

    def code(self, group: Group) -> int:
        return self.ids.code(group)

    def add_decoded(self, spec: DatasetSpec, at: list[int], records: list[Any], got: _Got | None) -> None:
        """The keys of records ``at`` of ``spec``, decoded and usable: ``records``; ``got``:
        their times, exchanges and pairs (None: read from them)."""
        if at:
            times, exchanges, pairs = _got(spec, records) if got is None else got
            where = np.array(at, np.int64)
            self.time_ms[where] = times
            self.group[where] = self.ids.ids(spec, exchanges, pairs)


def _got(spec: DatasetSpec, records: list[Any]) -> _Got:
    return list(map(spec.time_ms, records)), list(map(_EXCHANGE, records)), list(map(_PAIR, records))


def _decode_all(spec: DatasetSpec, at: list[int], payloads: Sequence[bytes], records: list[Any]) -> _Decoded:
    """Decode records ``at`` of the read, all of ``spec``, into ``records`` (each its struct, or
    the error that makes it unusable, as ``spec.decode`` gives it); returns ``spec``, the usable
    ones, their structs and, when none failed, their times, exchanges and pairs.

    msgspec decodes each alone, but all in one C loop (``map``), and the dataset's checks run
    over all at once; when any fails, each is decoded again by ``spec.decode``, its error
    worded as ever."""
    mine = [payloads[i] for i in at]
    try:
        structs = list(map(spec.struct, map(_AFTER_KIND, mine) if spec.prefix else mine))
        got = _got(spec, structs)
        if spec.all_pass(structs, *got):
            if spec is BOOKS_SPEC:
                for book, payload in zip(structs, mine, strict=True):
                    book.ring_bytes = payload  # as _decode_book keeps it
            for i, rec in zip(at, structs, strict=True):
                records[i] = rec
            return spec, at, structs, got
    except RECORD_ERRORS:
        pass
    for i, payload in zip(at, mine, strict=True):
        records[i] = _decode_one(spec, payload)
    usable = [i for i in at if not isinstance(records[i], RECORD_ERRORS)]
    return spec, usable, [records[i] for i in usable], None


def _decode_one(spec: DatasetSpec, payload: bytes) -> Any:
    try:
        return spec.decode(payload)
    except RECORD_ERRORS as exc:
        return exc


def _keyed(reader: RecordColumns) -> tuple[pa.DictionaryArray, np.ndarray, list[str | None]]:
    """The next string field: its column (a dictionary array), each record's index into its
    distinct values, and those (None: not UTF-8); by keys (``keyed_strings``) where it can
    (ArrowInvalid: not UTF-8)."""
    keyed = reader.keyed_strings()
    if keyed is not None:
        return keyed
    column = reader.column(pa.string())
    check_utf8(column)
    encoded = column.dictionary_encode()
    return encoded, encoded.indices.to_numpy(zero_copy_only=False), encoded.dictionary.to_pylist()


def _field_kind(spec: DatasetSpec, name: str) -> str:
    if name in FEW_VALUED:
        return "few"
    return "string" if spec.schema.field(name).type == pa.string() else "numbers"


def _per_value(values: list[str | None], ok: Callable[[str], bool]) -> np.ndarray:
    return np.array([v is not None and ok(v) for v in values], bool)


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
    keyed: dict[str, tuple[np.ndarray, list[str | None]]] = {}
    columns: dict[str, pa.Array] = {}
    try:
        reader = RecordColumns.some_of(buf, starts, ends, spec.prefix)
        for kind, run in groupby(spec.fields, lambda f: _field_kind(spec, f[0])):
            names = [name for name, _ in run]
            if kind == "numbers":  # fields one after the other: read together
                columns.update(zip(names, reader.numbers([spec.schema.field(n).type for n in names]), strict=True))
                continue
            for name in names:
                if kind == "few":
                    columns[name], indices, values = _keyed(reader)
                    keyed[name] = (indices, values)
                else:
                    columns[name] = reader.column(spec.schema.field(name).type)
                    check_utf8(columns[name])
    except (ValueError, IndexError, pa.ArrowInvalid):
        return None
    good = (reader.header == 0x90 + len(msgspec.structs.fields(spec.wire))) & (reader.pos == reader.ends)
    for name, column in columns.items():
        if not spec.schema.field(name).nullable and column.null_count:
            good &= ~column.is_null().to_numpy(zero_copy_only=False)
    ms = columns["local_time"].cast(pa.int64()).fill_null(0).to_numpy() // 1000
    good &= (ms >= 0) & (ms < _MAX_TS_MS)
    exchanges, exchange_names = keyed["exchange"]
    pairs, pair_names = keyed["pair"]
    good &= np.take(_per_value(exchange_names, _usable_exchange), exchanges)
    good &= np.take(_per_value(pair_names, bool), pairs)
    if spec is TRADES_SPEC:
        good &= pc.binary_length(columns["trade_id"]).to_numpy(zero_copy_only=False) > 0
        sides, side_names = keyed["side"]
        good &= np.take(_per_value(side_names, _SIDES.__contains__), sides)
    if good.all():  # the usual case: no record picked out
        rows: np.ndarray | slice = slice(at[0], at[-1] + 1) if at[-1] - at[0] + 1 == len(at) else at
        keys.time_ms[rows] = ms
        keys.group[rows] = _group_codes(keys, spec, exchanges, pairs, exchange_names, pair_names)
    else:
        rows = at[good]
        keys.time_ms[rows] = ms[good]
        keys.group[rows] = _group_codes(keys, spec, exchanges[good], pairs[good], exchange_names, pair_names)
    tables[spec.name] = pa.Table.from_pydict(columns)
    return ~good


def _group_codes(
    keys: _Keys, spec: DatasetSpec, exchanges: np.ndarray, pairs: np.ndarray, exchange_names: list, pair_names: list
) -> np.ndarray:
    """Each record's group, from its exchange's and pair's index: one lookup per distinct
    (exchange, pair)."""
    width = len(pair_names)
    present, inverse = distinct(exchanges.astype(np.int64) * width + pairs)
    groups = [(spec, exchange_names[c // width], pair_names[c % width]) for c in present.tolist()]
    return np.take(np.array([keys.code(g) for g in groups], np.int64), inverse)


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
