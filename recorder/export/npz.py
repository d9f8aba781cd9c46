"""hftbacktest ``.npz`` files written in bounded memory: events stream in, chunk by chunk, in local
(receive) order; the file holds them corrected as hftbacktest's own converters correct theirs.

1. The chunks go to a spool file on disk (``<name>.events.tmp`` beside the output), while the
   smallest feed latency (``local_ts - exch_ts``) is noted.
2. ``correct_local_timestamp``: a negative latency shifts every local time by its size, in place
   in the spool (a memory map).
3. ``correct_event_order`` splits events whose exchange times are out of order into an exchange-side
   and a local-side copy. It is run on pieces of the stream cut where no exchange time crosses the
   cut (everything before it is at or before everything after it): there the order of the whole
   equals the pieces' orders one after the other. A piece is about a chunk (more only while the
   venue's times stay out of order across the chunk's end); a piece whose exchange times are
   already in order gets both flags, as the function would give it, without its copies.
4. The result goes into the zip member ``data.npy`` (its header first: the row count is known by
   then), then the temp files are removed and the ``.npz`` renamed into place.

Each step reads and writes chunks: a pair-day never sits in memory.
"""

from __future__ import annotations

import os
import sys
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from recorder.export.symbols import ExportError

CHUNK = 1 << 20  # events per step (64 MB of hftbacktest events)
_COPY = 16 << 20


def write_npz(path: Path, chunks: Iterable[np.ndarray], hbt: Any, chunk: int = CHUNK) -> tuple[int, int]:
    """Write ``chunks`` (hftbacktest ``event_dtype`` arrays in local-time order, no EXCH/LOCAL flag)
    to ``path`` corrected; (rows written, local shift in ns). Nothing is written for no events."""
    from hftbacktest.data import correct_event_order

    raw = path.with_name(f".{path.name}.events.tmp")
    ordered = path.with_name(f".{path.name}.ordered.tmp")
    tmp = path.with_name(f".{path.name}.tmp.npz")
    try:
        n, latency = _spool(raw, chunks)
        if not n:
            return 0, 0
        shift = -latency if latency < 0 else 0
        data = np.memmap(raw, dtype=hbt.event_dtype, mode="r+", shape=(n,))
        if shift:
            for i in range(0, n, chunk):
                data["local_ts"][i : i + chunk] += shift
        rows = 0
        both = hbt.EXCH_EVENT | hbt.LOCAL_EVENT
        with open(ordered, "wb") as out:
            for piece in _pieces(data, chunk):
                exch = piece["exch_ts"]
                if np.all(exch[1:] >= exch[:-1]):
                    piece["ev"] |= both
                    fixed = piece
                else:
                    fixed = correct_event_order(piece, np.argsort(exch, kind="mergesort"), np.arange(len(piece)))
                out.write(fixed.tobytes())
                rows += len(fixed)
        del data
        _zip_npy(tmp, ordered, rows, hbt.event_dtype)
        os.replace(tmp, path)
        return rows, shift
    finally:
        for p in (raw, ordered, tmp):
            p.unlink(missing_ok=True)


def _spool(raw: Path, chunks: Iterable[np.ndarray]) -> tuple[int, int]:
    n, latency, last_local = 0, sys.maxsize, None
    with open(raw, "wb") as fh:
        for c in chunks:
            if not len(c):
                continue
            local = c["local_ts"]
            if (last_local is not None and local[0] < last_local) or np.any(local[1:] < local[:-1]):
                raise ExportError("internal error: events out of local-time order")  # (never seen)
            last_local = int(local[-1])
            latency = min(latency, int((local - c["exch_ts"]).min()))
            fh.write(np.ascontiguousarray(c).tobytes())
            n += len(c)
    return n, latency


def _pieces(data: np.ndarray, chunk: int) -> Iterable[np.ndarray]:
    """``data`` in consecutive pieces, each cut where every exchange time before the cut is at or
    before every one after it (in memory: a chunk plus what could not be cut yet)."""
    n = len(data)
    starts = list(range(0, n, chunk))
    # The smallest exchange time after each chunk (a backward pass over the chunks' minima).
    mins = [int(data["exch_ts"][s : s + chunk].min()) for s in starts]
    after = [sys.maxsize] * len(starts)
    for k in range(len(starts) - 2, -1, -1):
        after[k] = min(mins[k + 1], after[k + 1])
    carry = np.zeros(0, data.dtype)
    for k, s in enumerate(starts):
        piece = np.concatenate([carry, np.array(data[s : s + chunk])]) if len(carry) else np.array(data[s : s + chunk])
        exch = piece["exch_ts"]
        before = np.maximum.accumulate(exch)
        later = np.minimum.accumulate(exch[::-1])[::-1]  # the smallest from each position on
        later = np.append(later[1:], after[k])
        clean = np.flatnonzero(before <= later)
        if not len(clean):
            carry = piece
            continue
        cut = int(clean[-1]) + 1
        yield piece[:cut]
        carry = piece[cut:]
    if len(carry):
        yield carry


def _zip_npy(tmp: Path, body: Path, rows: int, dtype: np.dtype) -> None:
    """``body`` (raw rows) as the member ``data.npy`` of a compressed zip, as ``np.savez_compressed``."""
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": (rows,)}
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as zf:
        with zf.open("data.npy", "w", force_zip64=True) as member, open(body, "rb") as src:
            np.lib.format.write_array_header_1_0(member, header)
            while block := src.read(_COPY):
                member.write(block)
