"""The archive's on-disk format: zstd-compressed JSON lines, one record per line (README: "Archive").

Every line is an object with ``t`` (the record type), ``conn`` (the connection it belongs to:
``<pid>.<n>``, unique within a session; "" for records of the process), and ``ns`` (local wall
clock, epoch nanoseconds, never decreasing within a process). In file order, records are the
order in which the venue process's event loop saw them.

* ``header``: first line of each file: ``venue``, ``session``, ``pid``, ``pairs``, ``depth``,
  ``interval_ms``, ``file_seq`` (files of a session sort by it), ``format`` (1).
* ``feed``: a connection's Feed was built: ``cls`` (``module:Class``), ``args``, ``kw``.
* ``connect`` (``url``), ``close``: the WebSocket opened / closed.
* ``recv``: a text frame received (``data``: the frame as text, or ``b64``: base64 when it is
  not UTF-8); ``send``: a frame sent (same fields).
* ``http``: a REST response: ``url`` (with its query), ``status``, ``data``/``b64`` (the body),
  ``seq`` (its number in the process, for ``ref``).
* ``call``: the connector changed a Feed's state besides a frame: ``m`` (method), ``a`` (args;
  ``{"ref": n}`` stands for the decoded body of ``http`` record ``seq`` n).
* ``tick``: the sampler sampled every book at grid tick ``tick`` (epoch ms); ``src``: for each pair
  whose source changed since the previous tick, the ``conn`` whose book it stored (null: none).
  The ``call`` records the sampling caused (e.g. a crossed book's resync) follow it.
* ``lost``: records are missing here (the venue process's archive buffer was full, ``why``:
  ``buffer_full``, or a write failed, ``write_failed``): ``records``, ``frames`` and ``bytes`` left
  out, ``from_ns`` the time of the first of them (``ns``: of the last). Every Feed's state is
  unknown after it; a replay resets them (README: Archive).
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from recorder.replay.readers import ZSTD_MAGIC, open_decompressed

FORMAT_VERSION = 1
SUFFIX = ".jsonl.zst"
PART_SUFFIX = ".part"
ARCHIVE_DIR = "archive"

_enc = msgspec.json.Encoder()


class ArchiveIndexEntry(msgspec.Struct, kw_only=True):
    """A line of ``.sessions/<session>/archive-index.jsonl``: a published file and what it holds
    (kept when the file itself is uploaded and deleted)."""

    path: str  # relative to the data dir, '/'-separated
    venue: str
    first_ns: int
    last_ns: int
    frames: int
    records: int
    bytes: int
    raw_bytes: int = 0  # the JSON lines before compression (0: not known)
    lost_frames: int = 0  # frames the file's ``lost`` records say are missing


def venue_archive_dir(data_dir: str | Path, venue: str) -> Path:
    return Path(data_dir) / ARCHIVE_DIR / f"exchange={venue}"


def archive_file_name(session_id: str, first_ms: int, seq: int) -> str:
    return f"{session_id}-{first_ms}-{seq}{SUFFIX}"


def file_name_re(session_id: str) -> re.Pattern[str]:
    return re.compile(rf"^{re.escape(session_id)}-(\d+)-(\d+){re.escape(SUFFIX)}$")


def part_name_re(session_id: str) -> re.Pattern[str]:
    return re.compile(rf"^\.{re.escape(session_id)}-(\d+)-(\d+){re.escape(SUFFIX + PART_SUFFIX)}$")


def index_path(data_dir: str | Path, session_id: str) -> Path:
    return Path(data_dir) / ".sessions" / session_id / "archive-index.jsonl"


# -- writing -----------------------------------------------------------------------------------


def _data(payload: bytes) -> dict[str, str]:
    try:
        return {"data": payload.decode()}
    except UnicodeDecodeError:
        return {"b64": base64.b64encode(payload).decode()}


def encode_records(batch: list[tuple]) -> bytes:
    """Records as the event loop queued them (tuples, see ``tap.py``) -> JSON lines."""
    out = bytearray()
    encode = _enc.encode
    for r in batch:
        kind, conn, ns = r[0], r[1], r[2]
        if kind == "recv":
            payload = r[3]
            try:
                text = encode(payload.decode())
            except UnicodeDecodeError:
                out += encode({"t": kind, "conn": conn, "ns": ns, **_data(payload)}) + b"\n"
                continue
            out += b'{"t":"recv","conn":"%s","ns":%d,"data":%s}\n' % (conn.encode(), ns, text)
            continue
        obj: dict[str, Any] = {"t": kind, "conn": conn, "ns": ns}
        if kind == "send":
            obj.update(_data(r[3]))
        elif kind == "connect":
            obj["url"] = r[3]
        elif kind == "feed":
            obj.update(r[3])
        elif kind == "http":
            obj.update(url=r[3], status=r[4], seq=r[6], **_data(r[5]))
        elif kind == "call":
            obj.update(m=r[3], a=r[4])
        elif kind == "lost":
            obj.update(r[3])
        elif kind == "tick":
            obj["tick"] = r[3]
            if r[4]:
                obj["src"] = r[4]
        try:
            out += encode(obj) + b"\n"
        except (TypeError, ValueError):  # never lose the batch for one record no JSON can hold
            out += encode({"t": "unarchivable", "conn": conn, "ns": ns, "kind": str(kind)}) + b"\n"
    return bytes(out)


# -- reading -----------------------------------------------------------------------------------


def payload_of(obj: dict[str, Any]) -> bytes:
    data = obj.get("data")
    if isinstance(data, str):
        return data.encode()
    b64 = obj.get("b64")
    return base64.b64decode(b64) if isinstance(b64, str) else b""


@dataclass
class ArchiveFile:
    path: Path
    header: dict[str, Any]


def read_header(path: Path) -> dict[str, Any] | None:
    """The header of an archive file; None for any other file (a capture of another format)."""
    try:
        with open(path, "rb") as fh:
            if fh.read(4) != ZSTD_MAGIC:
                return None
        with open_decompressed(path) as fh:
            line = fh.readline(1 << 20)
    except OSError:
        return None
    if not line.startswith(b'{"t":"header"'):
        return None
    try:
        obj = msgspec.json.decode(line)
    except msgspec.DecodeError:
        return None
    return obj if isinstance(obj, dict) and obj.get("format") == FORMAT_VERSION else None


class LineStats(msgspec.Struct):
    first_ns: int = 0
    last_ns: int = 0
    frames: int = 0
    records: int = 0
    lost_frames: int = 0
    bad_lines: int = 0
    truncated: bool = False


def iter_records(path: Path, stats: LineStats | None = None) -> Any:
    """The records of one archive file in file order (dicts); a cut file ends at its last whole
    line (counted in ``stats``)."""
    stats = stats if stats is not None else LineStats()
    decode = msgspec.json.decode
    with open_decompressed(path) as fh:
        for raw in fh:
            if not raw.endswith(b"\n"):
                stats.bad_lines += 1  # the partial line a cut left
                break
            try:
                obj = decode(raw)
            except msgspec.DecodeError:
                stats.bad_lines += 1
                continue
            if not isinstance(obj, dict) or "t" not in obj:
                stats.bad_lines += 1
                continue
            ns = obj.get("ns")
            if isinstance(ns, int):
                if not stats.first_ns:
                    stats.first_ns = ns
                stats.last_ns = max(stats.last_ns, ns)
            stats.records += 1
            t = obj["t"]
            if t == "recv":
                stats.frames += 1
            elif t == "lost" and isinstance(obj.get("frames"), int):
                stats.lost_frames += obj["frames"]
            yield obj
        stats.truncated = bool(getattr(fh, "cut", False))


def scan_archive_file(path: Path) -> LineStats:
    stats = LineStats()
    for _ in iter_records(path, stats):
        pass
    return stats
