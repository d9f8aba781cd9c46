"""hftbacktest ``.npz`` files written in bounded memory: events stream in, chunk by chunk, in local
(receive) order; the file holds them corrected as hftbacktest's own converters correct theirs.

1. The chunks go to a spool file on disk (``<name>.events.tmp`` beside the output), while the
   smallest feed latency (``local_ts - exch_ts``) is noted.
2. ``correct_local_timestamp``: a negative latency shifts every local time by its size (as the
   spool is read back).
3. ``correct_event_order`` splits events whose exchange times are out of order into an exchange-side
   and a local-side copy. It is run on pieces of the stream cut where no exchange time crosses the
   cut (everything before it is at or before everything after it): there the order of the whole
   equals the pieces' orders one after the other. A piece is about a chunk (more only while the
   venue's times stay out of order across the chunk's end); a piece whose exchange times are
   already in order gets both flags, as the function would give it, without its copies.
   Every piece is checked as ``validate_event_order`` checks a file.
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

CHUNK = 1 << 18  # events per step (16 MB of hftbacktest events)
_COPY = 16 << 20


def write_npz(path: Path, chunks: Iterable[np.ndarray], hbt: Any, chunk: int = CHUNK) -> tuple[int, int]:
    """Write ``chunks`` (hftbacktest ``event_dtype`` arrays in local-time order, no EXCH/LOCAL flag)
    to ``path`` corrected; (rows written, local shift in ns). Nothing is written for no events."""
    from hftbacktest.data import correct_event_order

    raw = path.with_name(f".{path.name}.events.tmp")
    ordered = path.with_name(f".{path.name}.ordered.tmp")
    tmp = path.with_name(f".{path.name}.tmp.npz")
    try:
        spool = _Spool(raw, chunk)
        for c in chunks:
            spool.append(c)
        spool.close()
        if not spool.n:
            return 0, 0
        shift = -spool.latency if spool.latency < 0 else 0
        rows = 0
        both = hbt.EXCH_EVENT | hbt.LOCAL_EVENT
        order = _OrderCheck(hbt)
        with open(ordered, "wb") as out:
            for piece in _pieces(spool, hbt.event_dtype, shift):
                exch = piece["exch_ts"]
                if np.all(exch[1:] >= exch[:-1]):
                    piece["ev"] |= both
                    fixed = piece
                else:
                    fixed = correct_event_order(piece, np.argsort(exch, kind="mergesort"), np.arange(len(piece)))
                order.check(fixed)
                out.write(fixed.tobytes())
                rows += len(fixed)
        _zip_npy(tmp, ordered, rows, hbt.event_dtype)
        os.replace(tmp, path)
        return rows, shift
    finally:
        for p in (raw, ordered, tmp):
            p.unlink(missing_ok=True)


class _OrderCheck:
    """hftbacktest's ``validate_event_order`` over the whole file, piece by piece: exchange-side
    events in exchange-time order, local-side ones in local-time order."""

    def __init__(self, hbt: Any) -> None:
        self.flags = ((hbt.EXCH_EVENT, "exch_ts"), (hbt.LOCAL_EVENT, "local_ts"))
        self.last = [-sys.maxsize, -sys.maxsize]

    def check(self, piece: np.ndarray) -> None:
        for i, (flag, column) in enumerate(self.flags):
            ts = piece[column][(piece["ev"] & flag) == flag]
            if len(ts):
                if ts[0] < self.last[i] or np.any(ts[1:] < ts[:-1]):
                    raise ExportError(f"internal error: {column} out of order after correction")  # (never seen)
                self.last[i] = int(ts[-1])


class _Spool:
    """The events on disk, with what the corrections need: the smallest feed latency, and the
    smallest exchange time of each block of ``block`` events."""

    def __init__(self, path: Path, block: int) -> None:
        self.path, self.block = path, block
        self._fh = open(path, "wb")  # noqa: SIM115 - closed by close()
        self.n, self.latency = 0, sys.maxsize
        self.mins: list[int] = []
        self._last_local: int | None = None

    def append(self, c: np.ndarray) -> None:
        if not len(c):
            return
        local = c["local_ts"]
        if (self._last_local is not None and local[0] < self._last_local) or np.any(local[1:] < local[:-1]):
            raise ExportError("internal error: events out of local-time order")  # (never seen)
        self._last_local = int(local[-1])
        self.latency = min(self.latency, int((local - c["exch_ts"]).min()))
        exch = c["exch_ts"]
        i = 0
        while i < len(c):  # the block minima, block by block of the whole stream
            k, at = divmod(self.n + i, self.block)
            j = min(len(c), i + self.block - at)
            low = int(exch[i:j].min())
            if k == len(self.mins):
                self.mins.append(low)
            else:
                self.mins[k] = min(self.mins[k], low)
            i = j
        self._fh.write(np.ascontiguousarray(c).tobytes())
        self.n += len(c)

    def close(self) -> None:
        self._fh.close()


def _pieces(spool: _Spool, dtype: np.dtype, shift: int) -> Iterable[np.ndarray]:
    """The spooled events (local times shifted by ``shift``, as ``correct_local_timestamp``) in
    consecutive pieces, each cut where every exchange time before the cut is at or before every
    one after it; read a block at a time (in memory: a block plus what could not be cut yet)."""
    after = [sys.maxsize] * len(spool.mins)  # the smallest exchange time after each block
    for k in range(len(spool.mins) - 2, -1, -1):
        after[k] = min(spool.mins[k + 1], after[k + 1])
    carry = np.zeros(0, dtype)
    with open(spool.path, "rb") as fh:
        for k in range(len(spool.mins)):
            block = np.fromfile(fh, dtype=dtype, count=spool.block)
            if shift:
                block["local_ts"] += shift
            piece = np.concatenate([carry, block]) if len(carry) else block
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
