"""``fleet-status``: every session (shard) writing to one data dir or S3 prefix, in one table.

Each supervisor keeps its status fresh beside its data: ``.sessions/<id>/status.json`` locally
(every second), ``PREFIX/_status/<id>.json`` on S3 (every few seconds). A status older than the
staleness bound, or one whose supervisor no longer holds its session lock (local), is shown down:
a killed host cannot say it died, so silence is what tells.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

from recorder.dataset.source import DatasetError, resolve
from recorder.supervisor.session import SessionDir, sessions_root
from recorder.supervisor.status_object import STATUS_DIR


@dataclass
class ShardRow:
    session: str
    shard: str | None
    alive: bool
    state: str  # the status' own state, or "down" / "dead" when silent
    pairs: int
    synced: int
    missed_ticks: int
    lag_ms: int | None  # writer lag
    upload_lag_s: float | None
    age_s: float | None  # since the status was written


def fleet_status(location: str, stale_after_s: float, now_s: float | None = None) -> list[ShardRow]:
    """Rows for every session under ``location`` (a data dir or ``s3://bucket/prefix``)."""
    now_s = time.time() if now_s is None else now_s
    if location.startswith("s3://"):
        statuses = [(s, None) for s in _s3_statuses(location)]
    else:
        statuses = _local_statuses(Path(location))
    rows = [_row(status, running, stale_after_s, now_s) for status, running in statuses]
    return sorted(rows, key=_order)


def _order(row: ShardRow) -> tuple[str, int, str]:
    if row.shard and row.session.endswith(f"-s{row.shard.replace('/', 'of')}"):
        base = row.session[: -len(row.shard) - 3]
        return base, int(row.shard.split("/")[0]), row.session
    return row.session, -1, row.session


def _local_statuses(data_dir: Path) -> list[tuple[dict[str, Any], bool | None]]:
    root = sessions_root(data_dir)
    if not data_dir.is_dir():
        raise DatasetError(f"no data directory {str(data_dir)!r}")
    out: list[tuple[dict[str, Any], bool | None]] = []
    for path in sorted(root.glob("*/status.json")) if root.is_dir() else []:
        try:
            status = json.loads(path.read_text())
            session = SessionDir(data_dir, path.parent.name)
        except (OSError, ValueError):
            continue  # mid-rewrite or not a session dir: the next look sees it
        if isinstance(status, dict) and "venues" in status:  # (replays leave no status.json)
            out.append((status, session.is_running()))
    return out


def _s3_statuses(location: str) -> list[dict[str, Any]]:
    fs, root = resolve(location)
    folder = f"{root}/{STATUS_DIR}"
    try:
        infos = fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True, recursive=False))
    except OSError as exc:
        raise DatasetError(f"cannot list {location.rstrip('/')}/{STATUS_DIR}: {' '.join(str(exc).split())}") from None
    out: list[dict[str, Any]] = []
    for info in infos:
        if info.type != pafs.FileType.File or not info.base_name.endswith(".json"):
            continue
        try:
            with fs.open_input_stream(info.path) as fh:
                status = json.loads(fh.read())
        except (OSError, ValueError):
            continue
        if isinstance(status, dict) and "venues" in status:
            out.append(status)
    return out


def _row(status: dict[str, Any], running: bool | None, stale_after_s: float, now_s: float) -> ShardRow:
    updated = status.get("updated_at_ms")
    age = round(now_s - updated / 1000.0, 1) if isinstance(updated, int | float) else None
    state = str(status.get("state", "?"))
    fresh = age is not None and age <= stale_after_s
    live_state = state in ("running", "starting", "stopping")
    alive = live_state and fresh and running is not False
    if live_state and not alive:
        state = "dead" if running is False else "down"  # dead: lock free; down: status stale
    pairs = [p for v in status.get("venues", {}).values() for p in v.get("pairs", {}).values()]
    writer = status.get("writer") or {}
    s3 = status.get("s3") or {}
    return ShardRow(
        session=str(status.get("session_id", "?")),
        shard=status.get("shard"),
        alive=alive,
        state=state,
        pairs=len(pairs),
        synced=sum(1 for p in pairs if p.get("synced")),
        missed_ticks=int((status.get("totals") or {}).get("missed_ticks", 0)),
        lag_ms=writer.get("writer_lag_ms"),
        upload_lag_s=s3.get("upload_lag_s"),
        age_s=age,
    )


def render(rows: list[ShardRow], location: str) -> str:
    if not rows:
        return f"no sessions under {location}"
    lines = [
        f"{'SESSION':<32} {'SHARD':<7} {'ALIVE':<5} {'STATE':<8} {'PAIRS':>6} {'SYNCED':>6} {'MISSED':>8}"
        f" {'LAG ms':>7} {'UPLOAD s':>8} {'AGE s':>7}"
    ]
    for r in rows:
        lines.append(
            f"{r.session:<32} {r.shard or '-':<7} {'yes' if r.alive else 'NO':<5} {r.state:<8} {r.pairs:>6}"
            f" {r.synced:>6} {r.missed_ticks:>8} {_opt(r.lag_ms):>7} {_opt(r.upload_lag_s):>8} {_opt(r.age_s):>7}"
        )
    up = [r for r in rows if r.alive]
    lines.append(f"{len(up)} of {len(rows)} up, recording {sum(r.pairs for r in up)} pairs")
    return "\n".join(lines)


def _opt(v: Any) -> str:
    return "-" if v is None else str(v)


def as_json(rows: list[ShardRow]) -> list[dict[str, Any]]:
    return [asdict(r) for r in rows]
