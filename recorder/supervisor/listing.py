"""The sessions of a data directory (``cli.py sessions``): state, venues, pairs, interval,
last start and update, and the files each has stored locally."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

from recorder.layout import format_dirs
from recorder.names import SESSION_RE
from recorder.supervisor.session import SessionDir, sessions_root

# Files the writer names <session>-<first tick ms>-<segment>.<ext> (compacted files belong to no session).
_WRITER_FILE_RE = re.compile(r"^(?P<session>.+)-\d+-\d+\.(?:parquet|jsonl)$")


class ListingError(ValueError):
    """The data directory cannot be listed (one line)."""


def list_sessions(data_dir: str | Path) -> list[dict[str, Any]]:
    """One dict per session under ``data_dir/.sessions``, sorted by id."""
    data = Path(data_dir)
    if not data.is_dir():
        raise ListingError(f"no data directory {data.resolve()}")
    root = sessions_root(data)
    try:
        names = sorted(e.name for e in os.scandir(root) if e.is_dir() and SESSION_RE.fullmatch(e.name))
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise ListingError(f"cannot list {root}: {exc.strerror or exc}") from None
    stored = _stored_files(data)
    return [_summary(SessionDir(data, name), stored.get(name, (0, 0))) for name in names]


def _summary(session: SessionDir, files: tuple[int, int]) -> dict[str, Any]:
    status = session.read_status() or {}
    try:
        running = session.is_running()
    except OSError:
        running = False
    state = status.get("state")
    if state is None and running:
        state = "starting"
    elif state is None:
        # A replay writes without a supervisor (no lock); a supervisor that left no status failed to start.
        state = "failed start" if (session.path / "lock").exists() else "replay"
    elif not running and state in ("running", "stopping", "starting"):
        state = "dead"  # the supervisor vanished without a final status
    venues = status.get("venues") if isinstance(status.get("venues"), dict) else {}
    return {
        "session_id": session.session_id,
        "state": state,
        "venues": {v: sorted(d.get("pairs", {})) if isinstance(d, dict) else [] for v, d in venues.items()},
        "interval_s": status.get("interval_s"),
        "depth": status.get("depth"),
        "started_at_ms": status.get("started_at_ms"),
        "updated_at_ms": status.get("updated_at_ms"),
        "files": files[0],
        "bytes": files[1],
    }


def render_sessions(found: list[dict[str, Any]]) -> str:
    def when(ms: Any) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(ms / 1000)) if isinstance(ms, int | float) else "-"

    header = ("SESSION", "STATE", "VENUES", "PAIRS", "INTERVAL", "STARTED", "UPDATED", "FILES", "BYTES")
    rows = [header]
    for f in found:
        pairs = [p for ps in f["venues"].values() for p in ps]
        interval = f["interval_s"]
        rows.append(
            (
                f["session_id"],
                f["state"],
                ",".join(f["venues"]) or "-",
                ",".join(pairs) if len(pairs) <= 3 else f"{len(pairs)} pairs",
                f"{interval:g}s" if isinstance(interval, int | float) else "-",
                when(f["started_at_ms"]),
                when(f["updated_at_ms"]),
                str(f["files"]),
                size_text(f["bytes"]),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def size_text(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    size, unit = n / 1024, "KiB"
    for bigger in ("MiB", "GiB"):
        if size < 1024:
            break
        size, unit = size / 1024, bigger
    return f"{size:.1f} {unit}"


def _stored_files(data: Path) -> dict[str, tuple[int, int]]:
    """Session -> (files, bytes) of the finished files of every dataset (books, trades, quotes;
    temporary dot-files skipped). Files already uploaded to S3 and deleted here are not counted."""
    out: dict[str, tuple[int, int]] = {}
    for _dataset, _fmt, directory in format_dirs():
        for dirpath, dirnames, filenames in os.walk(data / directory):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            for name in filenames:
                m = _WRITER_FILE_RE.match(name)
                if name.startswith(".") or m is None:
                    continue
                try:
                    size = os.stat(os.path.join(dirpath, name)).st_size
                except OSError:  # compacted away meanwhile
                    continue
                n, total = out.get(m["session"], (0, 0))
                out[m["session"]] = (n + 1, total + size)
    return out
