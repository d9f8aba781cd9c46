"""Ring records -> Arrow columns in bulk: no Python work per value.

A ring record is the msgpack array of a flat struct (``SampledBook``, ``Trade``, ``Quote``), so a
file's records, joined into one buffer, can be read field by field *for all records at once*
with numpy: :class:`RecordColumns` keeps one read position per record, reads every record's tag
byte of the next field, and from the tags the values (big-endian ints and floats, UTF-8 strings)
and where the following field starts. Strings become Arrow string arrays from an offsets buffer
and the gathered bytes; a book's levels, msgpack float64 arrays (byte 0xcb then 8 big-endian
bytes each, 9 bytes a value), are read straight from their positions.

The writer decodes every record with msgspec when it takes it from the ring, so what reaches
these readers is valid msgpack of the right struct; the readers still refuse (ValueError) what
they do not expect rather than store a wrong value.
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import attrgetter
from typing import Any

import numpy as np
import pyarrow as pa

_NIL, _FALSE, _TRUE = 0xC0, 0xC2, 0xC3
_FLOAT32, _FLOAT64 = 0xCA, 0xCB
_STR8, _STR16, _STR32 = 0xD9, 0xDA, 0xDB
_FIXARRAY, _ARRAY16, _ARRAY32 = 0x90, 0xDC, 0xDD

# Tag -> (byte width of the value after the tag, numpy big-endian type) of msgpack numbers.
_NUMBERS: dict[int, tuple[int, str]] = {
    0xCA: (4, ">f4"),
    0xCB: (8, ">f8"),
    0xCC: (1, ">u1"),
    0xCD: (2, ">u2"),
    0xCE: (4, ">u4"),
    0xCF: (8, ">u8"),
    0xD0: (1, ">i1"),
    0xD1: (2, ">i2"),
    0xD2: (4, ">i4"),
    0xD3: (8, ">i8"),
}
_INT64_MAX = np.iinfo(np.int64).max
# Mean bytes of a record up to which a read is joined by Arrow (see ``joined``).
_ARROW_JOINED_BYTES = 128


# [words][length]: a fixstr of ``length`` bytes read as ``words`` 8-byte little-endian words from
# its tag on: the bits of each word that are its tag and bytes (the rest is the next field's).
_KEY_MASKS = [
    np.array(
        [[(1 << (8 * min(max(1 + length - 8 * w, 0), 8))) - 1 for w in range(words)] for length in range(32)], "<u8"
    )
    for words in range(4)
]


def joined(records: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The records one after the other as one byte array, and where each starts and ends in it.
    No bytes after the last one: a reader that would read past it refuses.

    Small records (trades, quotes: ~70 bytes) are copied by Arrow, which measures them as it
    copies (half of ``b"".join`` and a length each); larger ones (books) by ``b"".join``, which
    sizes its buffer once (Arrow grows its own: 1.5-6x slower on a writer's mixed reads)."""
    n = len(records)
    if not n:
        return np.zeros(0, np.uint8), np.zeros(0, np.int64), np.zeros(0, np.int64)
    sample = records[:: max(1, n // 32)]
    if sum(map(len, sample)) <= _ARROW_JOINED_BYTES * len(sample):
        array = pa.array(records, pa.large_binary())
        _, offsets, data = array.buffers()
        bounds = np.frombuffer(offsets, np.int64, n + 1)
        return np.frombuffer(data, np.uint8) if data is not None else np.zeros(0, np.uint8), bounds[:-1], bounds[1:]
    lens = np.fromiter(map(len, records), np.int64, n)
    ends = np.cumsum(lens)
    return np.frombuffer(b"".join(records), np.uint8), ends - lens, ends


def _gather(buf: np.ndarray, at: np.ndarray, width: int, dtype: str) -> np.ndarray:
    """The big-endian values of ``width`` bytes starting at each of ``at``: one gather from a
    view of the buffer in which item ``i`` is the ``width`` bytes starting at byte ``i``."""
    every_offset = np.ndarray((max(len(buf) - width + 1, 0),), np.dtype(dtype), buf, 0, (1,))
    return every_offset[at]


def _byte_slices(buf: np.ndarray, start: np.ndarray, length: np.ndarray) -> pa.Buffer:
    """The bytes ``buf[start[i] : start[i] + length[i]]`` of every i, concatenated, copied by
    Arrow: the buffer is seen as a binary array whose even elements are the slices and odd ones
    the gaps between them (``start`` must increase), and the even ones are taken."""
    n = len(start)
    offsets = np.empty(2 * n + 1, np.int64)
    offsets[0 : 2 * n : 2] = start
    offsets[1 : 2 * n : 2] = start + length
    offsets[2 * n] = start[-1] + length[-1] if n else 0
    whole = pa.Array.from_buffers(pa.large_binary(), 2 * n, [None, pa.py_buffer(offsets), pa.py_buffer(buf)])
    return whole.take(pa.array(np.arange(0, 2 * n, 2))).buffers()[2] or pa.py_buffer(b"")


def _one_or_two(keys: np.ndarray) -> tuple[np.ndarray, list[int]] | None:
    """Each key's index (int32) among the distinct ones, and those, when they are at most two;
    else None."""
    is_first = keys == keys[0]
    if is_first.all():
        return np.zeros(len(keys), np.int32), [int(keys[0])]
    second = keys[int(np.argmin(is_first))]
    if not (is_first | (keys == second)).all():
        return None
    return (~is_first).astype(np.int32), [int(keys[0]), int(second)]


def check_utf8(strings: pa.Array) -> None:
    """ArrowInvalid unless every string is valid UTF-8 (as msgspec checks it): all ASCII (ids,
    names: one look at the bytes) or checked by Arrow."""
    data = strings.buffers()[2]
    if data is not None and len(data) and np.frombuffer(data, np.uint8).max() >= 0x80:
        strings.validate(full=True)


def _number_array(values: np.ndarray, null: np.ndarray | None, typ: pa.DataType) -> pa.Array:
    """A field's values (ints, floats or bools) as an Arrow array of ``typ``, null where ``null``
    (a timestamp from its int64 µs)."""
    if pa.types.is_timestamp(typ):
        return pa.array(values, pa.int64(), mask=null).cast(typ)
    return pa.array(values, typ, mask=null)


def _runs(first: np.ndarray, count: np.ndarray, step: int = 1) -> np.ndarray:
    """``first[i], first[i] + step, ...`` (``count[i]`` of them) for every i, concatenated."""
    ends = np.cumsum(count)
    index = np.arange(int(ends[-1]) if len(ends) else 0, dtype=np.int64) - np.repeat(ends - count, count)
    return np.repeat(first, count) + step * index


class RecordColumns:
    """Many ring records of one struct type, read field after field as Arrow columns."""

    def __init__(self, payloads: Sequence[bytes], prefix: int) -> None:
        """``prefix``: bytes before each record's msgpack array (a trade's kind byte)."""
        self._begin(*joined(payloads), prefix)

    @classmethod
    def some_of(cls, buf: np.ndarray, starts: np.ndarray, ends: np.ndarray, prefix: int) -> RecordColumns:
        """The records ``buf[starts[i] : ends[i]]`` of a buffer already joined (a ring read's,
        by :func:`joined`)."""
        self = cls.__new__(cls)
        self._begin(buf, starts, ends, prefix)
        return self

    def _begin(self, buf: np.ndarray, starts: np.ndarray, ends: np.ndarray, prefix: int) -> None:
        # ``pos`` is the reader's own array (moved in place): no caller's array is ever it.
        self.n = len(starts)
        self.buf = buf
        self.ends = ends  # where each record ends in the buffer
        self.pos = starts + prefix
        try:
            self.header = buf[self.pos]  # each record's array header
        except IndexError:
            raise ValueError("ring record ends early") from None
        if ((self.header & 0xF0) != _FIXARRAY).any():
            raise ValueError("ring record is not a msgpack array of at most 15 fields")
        self.pos += 1

    def _tags(self) -> np.ndarray:
        try:
            return self.buf[self.pos].astype(np.int64)
        except IndexError:
            raise ValueError("ring record ends early") from None

    def _at_pos(self, width: int) -> np.ndarray:
        """The ``width`` bytes from each record's read position on (n x ``width``, zeros past the
        buffer's end): one gather of them all, the tag and the value after it at once."""
        buf, pos = self.buf, self.pos
        limit = len(buf) - width
        if self.n and int(pos.max()) > limit:  # a record at the end: its last bytes read apart
            over = np.flatnonzero(pos > limit)
            out = self._at(buf, np.where(pos > limit, 0, pos), width, max(limit, 0)) if limit >= 0 else None
            if out is None:
                out = np.zeros((self.n, width), np.uint8)
            for i, p in zip(over.tolist(), pos[over].tolist(), strict=True):
                tail = buf[p : p + width]
                out[i] = 0
                out[i, : len(tail)] = tail
            return out
        return self._at(buf, pos, width, limit)

    @staticmethod
    def _at(buf: np.ndarray, pos: np.ndarray, width: int, limit: int) -> np.ndarray:
        every_offset = np.ndarray((limit + 1,), np.dtype(f"V{width}"), buf, 0, (1,))
        return every_offset[pos].view(np.uint8).reshape(-1, width)

    def column(self, typ: pa.DataType) -> pa.Array:
        """The next field of every record as one Arrow array of ``typ``."""
        if typ == pa.string():
            return self._strings()
        if not self.n:
            return pa.array([], typ)
        if pa.types.is_boolean(typ):
            tags = self._tags()
            if not np.isin(tags, (_NIL, _FALSE, _TRUE)).all():
                raise ValueError("ring record field is not a bool")
            values: np.ndarray = tags == _TRUE
            null = tags == _NIL
            self.pos += 1  # the reader's own array: moved in place
        else:
            head = self._at_pos(9)  # each record's tag and the value after it
            uniform = self._uniform_number(head, pa.types.is_floating(typ))
            if uniform is not None:  # every value of one msgpack type (the usual case)
                return _number_array(*uniform, typ)
            values, null = self._numbers(head, pa.types.is_floating(typ))
        return _number_array(values, null if null.any() else None, typ)

    def numbers(self, types: Sequence[pa.DataType]) -> list[pa.Array]:
        """The next fields, numbers of ``types`` (not bool), as :meth:`column` reads each: all in
        one gather when every record has each as the msgpack type the first record has it (the
        usual case: a producer encodes a field the same way each time), else one by one."""
        run = self._number_run(types) if len(types) > 1 and self.n else None
        return run if run is not None else [self.column(typ) for typ in types]

    def _number_run(self, types: Sequence[pa.DataType]) -> list[pa.Array] | None:
        layout: list[tuple[int, int, int, str]] = []  # per field: offset, tag, value width and type
        start, size = int(self.pos[0]), 0
        for typ in types:
            if start + size >= len(self.buf):
                return None
            tag = int(self.buf[start + size])
            floating = pa.types.is_floating(typ)
            if tag == _NIL:
                width, dtype = 0, ""
            elif tag in _NUMBERS and (floating or tag not in (_FLOAT32, _FLOAT64)):
                width, dtype = _NUMBERS[tag]
            else:
                return None
            layout.append((size, tag, width, dtype))
            size += 1 + width
        # A few records first, spread over the read: a field that varies seldom costs no gather.
        sample = self.pos[:: max(1, self.n // 64)]
        last = len(self.buf) - 1
        if not all((self.buf[np.minimum(sample + at, last)] == tag).all() for at, tag, _, _ in layout):
            return None
        head = self._at_pos(size)
        if not all((head[:, at] == tag).all() for at, tag, _, _ in layout):
            return None
        out = []
        for (at, tag, width, dtype), typ in zip(layout, types, strict=True):
            floating = pa.types.is_floating(typ)
            if width:
                read = np.ndarray((self.n,), np.dtype(dtype), head, at + 1, (size,))
                if tag == 0xCF and not floating and head[:, at + 1].max() >= 0x80:  # its top bit: one byte read
                    raise ValueError("ring record integer beyond int64")
                values, null = read.astype(np.float64 if floating else np.int64), None
            else:
                values, null = np.zeros(self.n, np.float64 if floating else np.int64), np.ones(self.n, bool)
            out.append(_number_array(values, null, typ))
        self.pos += size
        return out

    def _numbers(self, head: np.ndarray, floating: bool) -> tuple[np.ndarray, np.ndarray]:
        """The next field's values and null mask, read from ``head`` tag by tag."""
        tags = head[:, 0].astype(np.int64)
        null = tags == _NIL
        size = np.ones(self.n, np.int64)
        values = np.zeros(self.n, np.float64 if floating else np.int64)
        fixint = (tags < 0x80) | (tags >= 0xE0)
        values[fixint] = np.where(tags[fixint] >= 0xE0, tags[fixint] - 0x100, tags[fixint])
        known = fixint | null
        for tag in np.flatnonzero(np.bincount(tags[~known], minlength=256)).tolist():  # no sort
            if tag not in _NUMBERS or (tag in (_FLOAT32, _FLOAT64) and not floating):
                raise ValueError(f"ring record field is not a number (msgpack tag {tag:#x})")
            width, dtype = _NUMBERS[tag]
            at = np.flatnonzero(tags == tag)
            read = np.ndarray((self.n,), np.dtype(dtype), head, 1, (9,))[at]
            if tag == 0xCF and not floating and (read > _INT64_MAX).any():
                raise ValueError("ring record integer beyond int64")
            values[at] = read
            size[at] = 1 + width
        self.pos += size
        return values, null

    def _uniform_number(self, head: np.ndarray, floating: bool) -> tuple[np.ndarray, np.ndarray | None] | None:
        """The next field's values and null mask when every record has it as one msgpack number
        type or nil, read from ``head`` (each record's 9 bytes from the field on), else None
        (read tag by tag)."""
        tags = head[:, 0]
        tag = int(tags[0])
        null: np.ndarray | None = None
        if tag == _NIL:
            null = tags == _NIL
            if null.all():
                return None
            tag = int(tags[np.argmin(null)])
        spec = _NUMBERS.get(tag)
        if spec is None or (tag in (_FLOAT32, _FLOAT64) and not floating):
            return None
        same = tags == tag
        if not same.all():
            null = tags == _NIL
            if not (same | null).all():
                return None
        width, dtype = spec
        if null is not None and not null.any():
            null = None
        # Where a value is nil, its bytes are the next field's: masked, never stored.
        read = np.ndarray((self.n,), np.dtype(dtype), head, 1, (9,))
        if tag == 0xCF and not floating and (read[same] if null is not None else read).max() > _INT64_MAX:
            raise ValueError("ring record integer beyond int64")
        self.pos += (1 + width) if null is None else np.where(null, 1, 1 + width)
        values = read.astype(np.float64 if floating else np.int64)
        if null is not None:
            values[null] = 0
        return values, null

    def _strings(self) -> pa.Array:
        try:
            tags = self.buf[self.pos]
        except IndexError:
            raise ValueError("ring record ends early") from None
        fix = (tags & 0xE0) == 0xA0
        if fix.all():  # every string under 32 bytes (the usual case): its tag is its length
            length = (tags & 0x1F).astype(np.int64)
            start = self.pos + 1
        else:
            length = np.where(fix, tags & 0x1F, 0).astype(np.int64)
            head = np.ones(self.n, np.int64)
            for tag, width, dtype in ((_STR8, 1, ">u1"), (_STR16, 2, ">u2"), (_STR32, 4, ">u4")):
                at = np.flatnonzero(tags == tag)
                if len(at):
                    length[at] = _gather(self.buf, self.pos[at] + 1, width, dtype)
                    head[at] = 1 + width
                    fix[at] = True
            if not fix.all():
                raise ValueError("ring record field is not a string")
            start = self.pos + head
        self.pos = start + length
        if self.n and int(self.pos.max()) > len(self.buf):
            raise ValueError("ring record string runs past the records")
        large = len(self.buf) > np.iinfo(np.int32).max  # int32 offsets (a string array) hold less
        offset_type = np.int64 if large else np.int32
        size = int(length[0]) if self.n else 0
        if 0 < size <= 64 and (length == size).all():  # ids of one length (the usual case): one gather
            offsets = np.arange(0, size * (self.n + 1), size, dtype=offset_type)
            data = pa.py_buffer(self._at(self.buf, start, size, len(self.buf) - size))
        else:
            offsets = np.zeros(self.n + 1, offset_type)
            np.cumsum(length, out=offsets[1:])
            data = _byte_slices(self.buf, start, length)
        # msgspec checked each string's UTF-8 when the writer decoded the record.
        typ = pa.large_string() if large else pa.string()
        return pa.Array.from_buffers(typ, self.n, [None, pa.py_buffer(offsets), data]).cast(pa.string())

    def keyed_strings(self) -> tuple[pa.DictionaryArray, np.ndarray, list[str | None]] | None:
        """The next field of every record, a string of few distinct short values (an exchange,
        a pair, a side): its Arrow dictionary array, each record's index into the distinct values,
        and those values (None where one is not UTF-8: its records' strings are empty in the
        array). None, nothing read, when one is not a fixstr or longer than 23 bytes (read it
        with :meth:`column`).

        Each string becomes a key of fixed width: its tag (its length) and bytes as up to three
        8-byte words, one gather of them all; Arrow hashes the keys, and the column is a
        dictionary array of the distinct values: no string per record is built (a file stores a
        dictionary column as it stores strings, and writes it faster). No per-record string is
        checked for UTF-8: the few distinct ones are decoded."""
        if not self.n:
            return None
        head = self._at_pos(8)
        tags = head[:, 0]
        if ((tags & 0xE0) != 0xA0).any():
            return None
        length = tags & 0x1F
        words = (int(length.max()) + 8) // 8
        if words > 3:
            return None
        if words > 1:
            head = self._at_pos(8 * words)
        key = head.view("<u8")  # n x words, the bytes past each string masked off below
        if (length == length[0]).all():  # names of one length (a read's exchange): one mask
            key &= _KEY_MASKS[words][length[0]]
        else:
            key &= np.take(_KEY_MASKS[words], length, axis=0)  # take: a fancy index of rows is slower
        self.pos += length
        self.pos += 1
        few = _one_or_two(key[:, 0]) if words == 1 else None
        if few is not None:  # a read's exchange, a trade's side: compared, not hashed
            indices, distinct_keys = few
            found = [k.to_bytes(8, "little") for k in distinct_keys]
        elif words == 1:  # an int64 hashes faster than 8 bytes
            encoded = pa.array(key.view(np.int64).reshape(-1)).dictionary_encode()
            indices = encoded.indices.to_numpy()
            found = [k.to_bytes(8, "little", signed=True) for k in encoded.dictionary.to_pylist()]
        else:
            keys = pa.Array.from_buffers(pa.binary(8 * words), self.n, [None, pa.py_buffer(key)])
            encoded = keys.dictionary_encode()
            indices = encoded.indices.to_numpy()
            found = encoded.dictionary.to_pylist()
        values: list[str | None] = []
        for k in found:
            try:
                values.append(k[1 : 1 + (k[0] & 0x1F)].decode("utf-8"))
            except UnicodeDecodeError:
                values.append(None)
        dictionary = pa.array([v or "" for v in values], pa.string())
        strings = pa.DictionaryArray.from_arrays(pa.array(indices), dictionary, safe=False)  # indices of it
        return strings, indices, values

    def float_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """The next field of every record, a msgpack array of float64: the position of each
        array's first value tag, and its length (read the values with :meth:`floats`)."""
        tags = self._tags()
        count = np.where((tags & 0xF0) == _FIXARRAY, tags & 0x0F, 0)
        head = np.ones(self.n, np.int64)
        for tag, width, dtype in ((_ARRAY16, 2, ">u2"), (_ARRAY32, 4, ">u4")):
            at = np.flatnonzero(tags == tag)
            if len(at):
                count[at] = _gather(self.buf, self.pos[at] + 1, width, dtype)
                head[at] = 1 + width
        if not (((tags & 0xF0) == _FIXARRAY) | (tags == _ARRAY16) | (tags == _ARRAY32)).all():
            raise ValueError("ring record field is not an array")
        first = self.pos + head
        self.pos = first + 9 * count
        return first, count

    def floats(self, first: np.ndarray, count: np.ndarray) -> np.ndarray:
        """The float64 values of the arrays starting at ``first`` with ``count`` values each,
        concatenated in the order given (ValueError if one is not a float64)."""
        tags = _runs(first, count, 9)
        if len(tags) and (self.buf[tags] != _FLOAT64).any():
            raise ValueError("ring record level is not a float64")
        return _gather(self.buf, tags + 1, 8, ">f8").astype(np.float64)


def float64_arrays_ok(raws: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    """Per msgpack-encoded value in ``raws``: whether it is an array of float64 (what
    :meth:`RecordColumns.floats` reads), and its length (0 where it is not). Values all of one
    size (a read's books of one depth) are seen in one 2-D view."""
    lens = np.fromiter(map(len, raws), np.int64, len(raws))
    if len(raws) and (lens == lens[0]).all():
        return _float64_arrays_one_size(np.frombuffer(b"".join(raws), np.uint8).reshape(len(raws), -1))
    return _float64_arrays_any_size(raws, lens)


def _float64_arrays_any_size(raws: Sequence[Any], lens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``float64_arrays_ok`` of values of any sizes (``lens``)."""
    n = len(raws)
    buf = np.frombuffer(b"".join(raws), np.uint8)
    count = lens // 9  # an array of float64: a 1-, 3- or 5-byte header, then 9 bytes a value
    head = lens - 9 * count
    starts = np.cumsum(lens) - lens
    last = max(len(buf) - 1, 0)

    def byte(offset: int) -> np.ndarray:
        return buf[np.minimum(starts + offset, last)].astype(np.int64)

    first = byte(0)
    ok = (
        ((head == 1) & (count < 16) & (first == _FIXARRAY + count))
        | ((head == 3) & (first == _ARRAY16) & ((byte(1) << 8) + byte(2) == count))
        | ((head == 5) & (first == _ARRAY32) & ((byte(1) << 24) + (byte(2) << 16) + (byte(3) << 8) + byte(4) == count))
    )
    count = np.where(ok, count, 0)
    tags = _runs(starts + head, count, 9)
    bad = buf[tags] != _FLOAT64
    if bad.any():
        ok[np.repeat(np.arange(n), count)[bad]] = False
    return ok, np.where(ok, count, 0)


def _float64_arrays_one_size(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``float64_arrays_ok`` of msgpack values all of one size (a row of ``values`` each): the
    one header an array of float64 of that size can have, then a float64 tag every 9 bytes."""
    count, head = divmod(values.shape[1], 9)
    header = _array_header(count, head)
    if header is None:
        ok = np.zeros(len(values), bool)
    else:
        heads, tags = values[:, :head] == np.frombuffer(header, np.uint8), values[:, head::9] == _FLOAT64
        ok = np.ones(len(values), bool) if heads.all() and tags.all() else heads.all(axis=1) & tags.all(axis=1)
    return ok, np.where(ok, count, 0)


def _array_header(count: int, size: int) -> bytes | None:
    """The msgpack header of ``size`` bytes of an array of ``count`` items (None: there is none)."""
    if size == 1 and count < 16:
        return bytes([_FIXARRAY + count])
    if size == 3 and count < 1 << 16:
        return bytes([_ARRAY16]) + count.to_bytes(2, "big")
    if size == 5 and count < 1 << 32:
        return bytes([_ARRAY32]) + count.to_bytes(4, "big")
    return None


def field_array(records: Sequence[Any], attr: str, typ: pa.DataType) -> pa.Array:
    """One column of the records' attribute ``attr`` (tools: Snapshot structs)."""
    return pa.array(list(map(attrgetter(attr), records)), typ)


def repeated(value: str, n: int, as_dictionary: bool = False) -> pa.Array:
    """A string column holding ``value`` ``n`` times (the writer's session id); a dictionary
    array of it if ``as_dictionary``."""
    single = pa.array([value], pa.string())
    zeros = pa.array(np.zeros(n, np.int32))
    return pa.DictionaryArray.from_arrays(zeros, single) if as_dictionary else single.take(zeros)
