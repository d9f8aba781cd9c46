"""The report's archive coverage: per venue, what the session's archive holds (its index)."""

from __future__ import annotations

from typing import Any

import msgspec

from recorder.archive.format import ArchiveIndexEntry, index_path


def archive_coverage(data_dir: str, session_id: str) -> dict[str, dict[str, Any]]:
    """venue -> files, hours, bytes, frames (and the JSON lines' size before zstd) of the
    session's published archive files, from ``archive-index.jsonl`` (kept when files are
    uploaded and deleted). Local data dirs only; {} when the session has no archive."""
    if "://" in data_dir:
        return {}
    try:
        raw = index_path(data_dir, session_id).read_bytes()
    except OSError:
        return {}
    dec = msgspec.json.Decoder(ArchiveIndexEntry)
    out: dict[str, dict[str, Any]] = {}
    seen: set[str] = set()
    for line in raw.splitlines():
        try:
            e = dec.decode(line)
        except (msgspec.DecodeError, msgspec.ValidationError):
            continue  # a line torn by a crash
        if e.path in seen:
            continue
        seen.add(e.path)
        v = out.setdefault(
            e.venue, {"files": 0, "hours": 0.0, "bytes": 0, "frames": 0, "raw_bytes": 0, "lost_frames": 0}
        )
        v["files"] += 1
        v["hours"] += max(0, e.last_ns - e.first_ns) / 3.6e12
        v["bytes"] += e.bytes
        v["frames"] += e.frames
        v["raw_bytes"] += e.raw_bytes
        v["lost_frames"] += e.lost_frames
    for v in out.values():
        v["hours"] = round(v["hours"], 4)
        v["bytes_per_frame"] = round(v["bytes"] / v["frames"], 1) if v["frames"] else None
    return dict(sorted(out.items()))


def archive_line(coverage: dict[str, dict[str, Any]]) -> str:
    if not coverage:
        return ""
    parts = [
        f"{venue} {_span(v['hours'])}, {v['files']} files, {_size(v['bytes'])}, {v['frames']:,} frames"
        + (f" ({v['lost_frames']:,} left out)" if v.get("lost_frames") else "")
        for venue, v in coverage.items()
    ]
    return "archive: " + "; ".join(parts)


def _span(hours: float) -> str:
    return f"{hours:.2f} h" if hours >= 1 else f"{hours * 60:.1f} min"


def _size(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"
