"""JSONL lines of a ring read in bulk: trades and quotes rendered from the Arrow columns the
intake read of them (``Intake.columns``), byte for byte what rendering each record does.

A trade's line is ``json_encoder.encode(trade_row(trade, seq, session))``: the row's fields in
order, each ``"name":value``. Here each field's values become one Arrow array of their JSON
texts, made by msgspec itself: the numbers of a column encoded as one JSON list (msgspec's own
float and int text) and cut at its commas; a string is its UTF-8 between quotes when it holds
nothing JSON escapes (``"``, ``\\``, control characters), else msgspec encodes each. One Arrow
join then lays the texts and the field names out as lines. No Python object per record but the
numbers' (a float or int each, not a struct and a line).
"""

from __future__ import annotations

from operator import itemgetter
from typing import Any

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recorder.model import KIND_QUOTE, KIND_TRADE, QuoteRow, TradeRow, json_encoder
from recorder.writer.datasets import FEW_VALUED, QUOTES_SPEC, TRADES_SPEC, DatasetSpec
from recorder.writer.intake import Intake

_ROW_TYPES: dict[str, type[msgspec.Struct]] = {"trades": TradeRow, "quotes": QuoteRow}
_COMMA, _QUOTE, _BACKSLASH = 0x2C, 0x22, 0x5C


def flat_lines(spec: DatasetSpec, columns: pa.Table, seqs: np.ndarray, session_id: str) -> pa.Array:
    """The JSONL lines (binary, each ending with a newline) of the trades or quotes whose
    columns (``spec.fields``) are ``columns``, numbered ``seqs``: each as ``spec.jsonl`` renders
    the record."""
    args: list[Any] = []
    literal = b"{"  # what comes before the next value: the field's name (and a constant)
    fields = [f.name for f in msgspec.structs.fields(_ROW_TYPES[spec.name])]
    for k, name in enumerate(fields):
        literal += json_encoder.encode(name) + b":"
        if name == "session_id":
            literal += json_encoder.encode(session_id) + b","
            continue
        after = b"}\n" if k == len(fields) - 1 else b","
        if name == "sequence_number":
            texts, after = _number_texts(pa.array(seqs, pa.int64()), without_comma=True), b"}\n"
        else:
            texts, after = _texts(name, columns[name], after)
        args += [pa.scalar(literal, pa.binary()), texts]
        literal = after
    if literal:
        args.append(pa.scalar(literal, pa.binary()))
    return pc.binary_join_element_wise(*args, b"")


def _texts(name: str, column: pa.ChunkedArray | pa.Array, after: bytes) -> tuple[pa.Array, bytes]:
    """Each value's JSON text, and what of ``after`` (the comma after a field) still is to follow it."""
    if isinstance(column, pa.ChunkedArray):
        column = column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
    if pa.types.is_string(column.type) or pa.types.is_dictionary(column.type):  # the intake's few-valued ones
        return _string_texts(column, after, name in FEW_VALUED), b""
    if pa.types.is_timestamp(column.type):
        column = column.cast(pa.int64())
    return _number_texts(column), after[1:]  # the number's text ends with its comma


def _string_texts(column: pa.Array, after: bytes, few: bool) -> pa.Array:
    """Each string's JSON text followed by ``after``."""
    if pa.types.is_dictionary(column.type) and (column.null_count or not few):
        column = column.cast(column.type.value_type)
    if few and not column.null_count:  # each distinct value's text once
        encoded = column if pa.types.is_dictionary(column.type) else column.dictionary_encode()
        texts = [json_encoder.encode(v) + after for v in encoded.dictionary.to_pylist()]
        return pa.array(texts, pa.binary()).take(encoded.indices)
    data = column.buffers()[2]
    raw = np.frombuffer(data, np.uint8) if data is not None else np.zeros(0, np.uint8)
    if column.null_count or ((raw == _QUOTE) | (raw == _BACKSLASH) | (raw < 0x20)).any():  # msgspec escapes
        return pa.array([json_encoder.encode(v) + after for v in column.to_pylist()], pa.binary())
    quote = pa.scalar(b'"', pa.binary())
    return pc.binary_join_element_wise(quote, column.cast(pa.binary()), pa.scalar(b'"' + after, pa.binary()), b"")


def _number_texts(column: pa.Array, without_comma: bool = False) -> pa.Array:
    """Each number's JSON text (``null`` for a null) as msgspec writes it in a row, followed by
    a comma (``without_comma``: not): msgspec encodes the column as one list, with one more
    number at its end so that every item is followed by a comma, cut after each comma (no
    number's text holds one)."""
    n = len(column)
    if not n:
        return pa.array([], pa.binary())
    values: list[Any] = column.fill_null(0).to_numpy(zero_copy_only=False).tolist()
    values.append(0)
    encoded = json_encoder.encode(values)
    commas = np.flatnonzero(np.frombuffer(encoded, np.uint8) == _COMMA)
    if len(commas) != n:
        raise ValueError("a number's JSON text holds a comma")
    offsets = np.empty(n + 1, np.int32)
    offsets[0], offsets[1:] = 1, commas + 1
    texts = pa.Array.from_buffers(pa.binary(), n, [None, pa.py_buffer(offsets), pa.py_buffer(encoded)])
    if column.null_count:
        texts = pc.if_else(column.is_null(), pa.scalar(b"null,", pa.binary()), texts)
    return pc.binary_slice(texts, 0, -1) if without_comma else texts


def read_lines(took: Intake, at: np.ndarray, seqs: np.ndarray, session_id: str) -> pa.Array | list[bytes]:
    """The JSONL lines of records ``at`` of a ring read, numbered ``seqs``: the trades and
    quotes read in bulk from their columns (:func:`flat_lines`), every other (a book, a record
    decoded one by one) as its dataset renders its struct; in the order of ``at``. A list of
    the lines when none was read in bulk (no Arrow copy of them), else one binary array."""
    rows, kind = took.row[at], took.kind[at]
    pieces: list[pa.Array] = []
    positions: list[np.ndarray] = []
    done = np.zeros(len(at), bool)
    for spec, code in ((TRADES_SPEC, KIND_TRADE), (QUOTES_SPEC, KIND_QUOTE)):
        of_spec = np.flatnonzero((kind == code) & (rows >= 0))
        if len(of_spec):
            table = took.columns[spec.name]
            local = rows[of_spec] - took.base.get(spec.name, 0)
            if len(local) != table.num_rows or (len(local) and (local != np.arange(len(local))).any()):
                table = table.take(pa.array(local))
            pieces.append(flat_lines(spec, table, seqs[of_spec], session_id))
            positions.append(of_spec)
            done[of_spec] = True
    rest = np.flatnonzero(~done)
    if len(rest):
        specs, records = took.specs, took.records
        numbered = zip(at[rest].tolist(), seqs[rest].tolist(), strict=True)
        lines = [specs[i].jsonl(records[i], s, session_id) for i, s in numbered]
        if not pieces:
            return lines
        pieces.append(pa.array(lines, pa.binary()))
        positions.append(rest)
    if len(pieces) == 1:
        return pieces[0]  # positions[0] is every one of ``at``, in order
    if not pieces:
        return pa.array([], pa.binary())
    where = np.empty(len(at), np.int64)
    where[np.concatenate(positions)] = np.arange(len(at))
    return pa.concat_arrays(pieces).take(pa.array(where))


def line_lengths(lines: pa.Array | list[bytes]) -> np.ndarray:
    if isinstance(lines, list):
        return np.fromiter(map(len, lines), np.int64, len(lines))
    return pc.binary_length(lines).to_numpy(zero_copy_only=False).astype(np.int64)


def lines_bytes(lines: pa.Array | list[bytes], at: np.ndarray | None = None) -> bytes | memoryview:
    """The lines ``at`` (None: all) one after the other, as the bytes of a JSONL file."""
    if isinstance(lines, list):
        if at is None:
            return b"".join(lines)
        return b"".join(itemgetter(*at.tolist())(lines)) if len(at) > 1 else b"".join(lines[i] for i in at.tolist())
    if at is not None and (len(at) != len(lines) or (at != np.arange(len(at))).any()):
        lines = lines.take(pa.array(at))
    if not len(lines):
        return memoryview(b"")
    offsets = np.frombuffer(lines.buffers()[1], np.int32)
    start, end = int(offsets[lines.offset]), int(offsets[lines.offset + len(lines)])
    return memoryview(lines.buffers()[2])[start:end]
