"""Ring records -> Arrow columns in bulk: no Python work per level or per value.

A book's ring record carries its levels as four msgpack arrays of float64 (``SampledBook``);
the writer decodes those four fields as ``msgspec.Raw`` (the encoded bytes, not one Python float
each), joins the bytes of a whole file's books and reads every float out with numpy. A msgpack
float64 is the byte 0xcb then 8 big-endian bytes, so an array of ``n`` of them is a 1-byte header
(``n`` < 16) or a 3-byte one (0xdc, u16 ``n``) followed by ``9 n`` bytes: its length alone says
where every value sits, and one vectorised check of the header and of each 0xcb tag proves it.
An array that fails (an int where a float was expected, a corrupt record) is caught per record
when the writer takes the record (``datasets.decode_records``), and decoded the slow way.
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import attrgetter
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_FLOAT64 = 0xCB
_FIXARRAY = 0x90
_ARRAY16 = 0xDC
_BE_F64 = np.dtype(">f8")


class FloatArrays:
    """The float64 values of many msgpack float arrays, concatenated in order.

    ``counts[i]`` values belong to array ``i``; ``ok[i]`` is False when array ``i`` is not an
    array of msgpack float64 (its values are then not in ``values``, and ``counts[i]`` is 0).
    ``read_values=False`` only checks them (``values`` stays empty).
    """

    __slots__ = ("counts", "ok", "values")

    def __init__(self, raws: Sequence[Any], read_values: bool = True) -> None:
        n = len(raws)
        lens = np.fromiter(map(len, raws), np.int64, n)
        buf = np.frombuffer(b"".join(raws), np.uint8)
        count = lens // 9
        head = lens - 9 * count
        starts = np.cumsum(lens) - lens
        last = max(len(buf) - 1, 0)

        def byte(offset: int) -> np.ndarray:
            return buf[np.minimum(starts + offset, last)].astype(np.int64)

        first = byte(0)
        ok = ((head == 1) & (count < 16) & (first == _FIXARRAY + count)) | (
            (head == 3) & (first == _ARRAY16) & ((byte(1) << 8) + byte(2) == count)
        )
        while True:
            # The bytes of the arrays still deemed good, headers dropped: 9 bytes a value.
            values = buf[
                np.repeat(
                    np.tile(_DROP_KEEP, n),
                    np.stack([np.where(ok, head, lens), np.where(ok, 9 * count, 0)], axis=1).ravel(),
                )
            ]
            items = values.reshape(-1, 9)
            bad = items[:, 0] != _FLOAT64
            if not bad.any():
                break
            ok[np.repeat(np.arange(n), np.where(ok, count, 0))[bad]] = False
        self.values: np.ndarray = (
            np.ascontiguousarray(items[:, 1:]).view(_BE_F64).ravel().astype(np.float64) if read_values else np.zeros(0)
        )
        self.counts: np.ndarray = np.where(ok, count, 0)
        self.ok: np.ndarray = ok


_DROP_KEEP = np.array([False, True])


def record_order(pair: pa.Array, seq: pa.Array) -> np.ndarray:
    """Indices of the records ordered by pair, then sequence number (stable): a file's rows are
    clustered by pair so Parquet row-group statistics on ``pair`` prune well."""
    keys = pa.table({"pair": pair, "seq": seq})
    return pc.sort_indices(keys, sort_keys=[("pair", "ascending"), ("seq", "ascending")]).to_numpy()


def field_array(records: Sequence[Any], attr: str, typ: pa.DataType) -> pa.Array:
    """One column of the records' attribute ``attr`` (one C-level pass, no Python per value)."""
    return pa.array(list(map(attrgetter(attr), records)), typ)


# Records per slice when building columns: every column of a slice is read while its records
# are still in the CPU cache (column after column over 200 k records costs 1.3x as much).
_SLICE = 2048


def record_columns(records: Sequence[Any], fields: Sequence[tuple[str, pa.DataType]]) -> list[pa.ChunkedArray]:
    """The columns of the records' attributes, ``(attribute, type)`` each, built slice by slice."""
    chunks: list[list[pa.Array]] = [[] for _ in fields]
    for i in range(0, len(records), _SLICE):
        part = records[i : i + _SLICE]
        for out, (attr, typ) in zip(chunks, fields, strict=True):
            out.append(field_array(part, attr, typ))
    return [pa.chunked_array(c, typ) for c, (_, typ) in zip(chunks, fields, strict=True)]


def repeated(value: str, n: int) -> pa.Array:
    """A string column holding ``value`` ``n`` times (the writer's session id)."""
    return pa.array([value], pa.string()).take(pa.array(np.zeros(n, np.int32)))
