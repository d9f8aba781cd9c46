"""``capture-status``'s text: the session's state, then a line per venue and per pair, the
writer and the S3 upload (``--json`` prints the status itself)."""

from __future__ import annotations

from typing import Any


def _trades_text(p: dict[str, Any]) -> str:
    if "trades" not in p:
        return ""
    silent = "  TRADES SILENT" if p["trade_silent"] else ""
    return f"  trades {p['trades']}  trade gaps {p['trade_gaps']}  quotes {p['quotes']}{silent}"


def render_status(s: dict[str, Any]) -> str:
    lines = [
        f"session {s['session_id']}: {s['state']}  uptime {s['uptime_s']}s  interval {s['interval_s']}s"
        f"  depth {s['depth']}  format {s['format']}",
    ]
    for venue, v in s.get("venues", {}).items():
        lines.append(
            f"  {venue}: {_connection(s['state'], v)}  msgs/s {v['messages_per_s']}"
            f"  samples {v['samples']}  missed {v['missed_ticks']}  depth short {v.get('depth_short', 0)}"
            f"  resyncs {v['resyncs']}  gaps {v['gaps']}"
            f"  reconnects {v['reconnects']}  drops {v['ring_drops']}  restarts {v['restarts']}"
            f"  latency p50/p99/max {_ms3(v.get('capture_latency_ms'))}"
            f"  grid jitter p50/p99/max {_ms3(v.get('grid_jitter_ms'))}"
        )
        if "connections" in v:
            lines.append(
                f"    connections {v['connections']}  REST weight used {v['rest_weight_used']}"
                f"  queued {v['rest_queue']}  http 429 {v['http_429']}  418 {v['http_418']}"
            )
        if "trades" in v:
            lines.append(
                f"    trades {v['trades']}  trade gaps {v['trade_gaps']}  silent streams {v['trade_silent']}"
                f"  quotes {v['quotes']}  drops {v['trade_drops'] + v['quote_drops']}"
            )
        lines += _never_synced_lines(venue, v, s["state"])
        for pair, p in v["pairs"].items():
            lines.append(
                f"    {pair:<14} {'synced' if p['synced'] else 'NOT SYNCED':<10} samples {p['samples']:<8}"
                f" missed {p['missed_ticks']:<6} resyncs {p['resyncs']}"
                f"  depth short {p.get('depth_short', 0)}" + _first_sync_text(p) + _trades_text(p)
            )
    w = s.get("writer", {})
    if w:
        lines.append(
            f"  writer: snapshots {w.get('snapshots_written', 0)}  files {w.get('files_written', 0)}"
            f"  bytes {w.get('bytes_written', 0)}  lag {w.get('writer_lag_ms', 0)} ms"
            f"  errors {w.get('write_errors', 0)}  restarts {w.get('restarts', 0)}"
        )
    s3 = s.get("s3")
    if s3:
        lines.append(_render_s3(s3))
    if "flushed" in s:
        lines.append(f"  flushed: {s['flushed']}  ({s.get('stop_reason')})")
    return "\n".join(lines)


def _connection(state: str, v: dict[str, Any]) -> str:
    """A venue's connection; once the capture is over, that (its sockets are closed by design,
    as the live view says too)."""
    if state in ("stopping", "stopped"):
        return state
    return "connected" if v["connected"] else "DISCONNECTED"


def _never_synced_lines(venue: str, v: dict[str, Any], state: str) -> list[str]:
    """One loud line when pairs have not synced once: their ticks are warm-up, not "missed", so
    the missed count alone would read 0 for a pair that stored nothing."""
    waiting = [pair for pair, p in v["pairs"].items() if "first_sync_ms" in p and p["first_sync_ms"] is None]
    if not waiting:
        return []
    ticks = sum(v["pairs"][pair]["warmup_ticks"] for pair in waiting)
    how = "still warming up, not synced yet" if state in ("running", "starting") else "NEVER SYNCED"
    names = ", ".join(waiting[:5]) + (f" and {len(waiting) - 5} more" if len(waiting) > 5 else "")
    return [
        f"  ! {venue}: {len(waiting)} of {len(v['pairs'])} pairs {how}, nothing stored for them"
        f" ({ticks} warm-up ticks, not counted as missed): {names}"
    ]


def _first_sync_text(p: dict[str, Any]) -> str:
    if "first_sync_ms" not in p:  # a status written before these counters existed
        return ""
    if p["first_sync_ms"] is None:
        return f"  warm-up {p['warmup_ticks']} (never synced)"
    return f"  warm-up {p['warmup_ticks']} (first sync {p['time_to_first_sync_s']} s after start)"


def _ms3(q: dict[str, Any] | None) -> str:
    """``{"p50": 2.7756, "p99": 4.977, "max": 4.977}`` -> ``2.78/4.98/4.98 ms``; unknown -> ``n/a``."""
    values = [(q or {}).get(k) for k in ("p50", "p99", "max")]
    if all(v is None for v in values):
        return "n/a"
    return "/".join(_ms(v) for v in values) + " ms"


def _ms(value: float | None) -> str:
    if value is None:
        return "n/a"
    digits = 2 if abs(value) < 10 else 1 if abs(value) < 100 else 0
    return f"{value:.{digits}f}"


def _render_s3(s3: dict[str, Any]) -> str:
    dest = f"s3://{s3['bucket']}/{s3['prefix']}".rstrip("/")
    line = (
        f"  s3 {dest}: spool {s3.get('spool_files', 0)} files / {s3.get('spool_bytes', 0)} bytes"
        f"  lag {s3.get('upload_lag_s', 0)} s  uploaded {s3.get('uploads', 0)}"
        f"  failures {s3.get('upload_failures', 0)}  retries {s3.get('upload_retries', 0)}"
    )
    if s3.get("last_error"):
        line += f"\n  s3 last error: {s3['last_error']}"
    return line
