"""A capture's status, per venue and for the writer, from the counters its children keep in
shared memory (``status.json``, ``capture-status``, Prometheus and the live view read it); and
the one line ``systemctl status`` shows."""

from __future__ import annotations

from typing import Any

from recorder.config import VenueConfig
from recorder.metrics import SharedCounters, histogram_quantiles
from recorder.supervisor.child import Child

# Venue counters summed over the venues in the status' "totals".
TOTALS = (
    "messages",
    "resyncs",
    "reconnects",
    "gaps",
    "missed_ticks",
    "depth_short",
    "ring_drops",
    "samples",
    "warmup_ticks",
    "malformed",
    "stalls",
    "trades",
    "trade_gaps",
    "quotes",
)


def venue_status(
    v: dict[str, float], vc: VenueConfig, child: Child | None, ring_used_bytes: int, rate: float
) -> dict[str, Any]:
    """One venue's status from its counters ``v`` (its process ``child``, its messages a second ``rate``)."""
    lat = histogram_quantiles(v, (0.5, 0.99), "lat")
    jit = histogram_quantiles(v, (0.5, 0.99), "jit")
    return {
        "pid": child.pid if child else None,
        "alive": bool(child and child.alive),
        "restarts": child.restarts if child else 0,
        "hangs": child.hangs if child else 0,
        "connected": bool(v["connected"]),
        "messages": int(v["messages"]),
        "messages_per_s": round(rate, 1),
        "bytes": int(v["bytes"]),
        "malformed": int(v["malformed"]),
        "resyncs": int(v["resyncs"]),
        "gaps": int(v["gaps"]),
        "checksums_ok": int(v["checksums_ok"]),
        "checksums_failed": int(v["checksum_failures"]),
        "resubscribes": int(v["resubscribes"]),
        "reconnects": int(v["reconnects"]),
        "planned_reconnects": int(v["planned_reconnects"]),
        "stalls": int(v["stalls"]),
        "snapshots_fetched": int(v["snapshots_fetched"]),
        "http_429": int(v["http_429"]),
        "rest_errors": int(v["rest_errors"]),
        "lag_alerts": int(v["lag_alerts"]),
        "lagging": bool(v["lagging"]),
        "http_418": int(v["http_418"]),
        "connections": int(v["connections"]),
        "rest_weight_used": int(v["rest_weight_used"]),
        "rest_queue": int(v["rest_queue"]),
        "buffered_diffs": int(v["buffered_diffs"]),
        "ticks": int(v["ticks"]),
        "samples": int(v["samples"]),
        "missed_ticks": int(v["missed_ticks"]),
        "missed_by_cause": {cause: int(v[f"missed_{cause}"]) for cause in ("not_synced", "restart", "late", "crossed")},
        "warmup_ticks": int(v["warmup_ticks"]),
        "depth_short": int(v["depth_short"]),
        "pairs_never_synced": sum(1 for pair in vc.pairs if not v[f"first_sync_ms:{pair}"]),
        "ring_drops": int(v["ring_drops"]),
        "ring_used_bytes": ring_used_bytes,
        "archive_lost_frames": int(v["archive_lost_frames"]),
        "archive_buffer_bytes": int(v["archive_buffer_bytes"]),
        "capture_latency_ms": {"p50": lat[0.5], "p99": lat[0.99], "max": v["lat_max"] or None},
        "grid_jitter_ms": {"p50": jit[0.5], "p99": jit[0.99], "max": v["jit_max"] or None},
        **_records_status(v, vc.channels),
        "pairs": {
            pair: {
                "synced": bool(v[f"synced:{pair}"]),
                "samples": int(v[f"samples:{pair}"]),
                "missed_ticks": int(v[f"missed:{pair}"]),
                "resyncs": int(v[f"resyncs:{pair}"]),
                "gaps": int(v[f"gaps:{pair}"]),
                "checksums_failed": int(v[f"checksum_failures:{pair}"]),
                "depth_short": int(v[f"depth_short:{pair}"]),
                **_warmup_status(v, pair, child.first_started_at if child else 0.0),
                "ring_drops": int(v[f"drops:{pair}"]),
                **_pair_records_status(v, pair),
            }
            for pair in vc.pairs
        },
    }


def writer_status(counters: SharedCounters | None, child: Child | None) -> dict[str, Any]:
    """The writer's counters as they are (whole numbers as ints), and its process."""
    writer: dict[str, Any] = {}
    if counters is not None:
        w = counters.as_dict()
        writer = {k: (int(x) if float(x).is_integer() else round(x, 3)) for k, x in w.items()}
        writer["pid"] = child.pid if child else None
        writer["alive"] = bool(child and child.alive)
        writer["restarts"] = child.restarts if child else 0
    return writer


def _records_status(v: dict[str, float], channels: list[str]) -> dict[str, Any]:
    """A venue's trades and quotes (recorder/sampler/emitter.py): stored, lost, silent streams."""
    keys = ("trades", "trade_gaps", "trade_drops", "trade_silent", "trade_silences", "quotes", "quote_drops")
    return {"channels": list(channels), **{k: int(v[k]) for k in keys}}


def _pair_records_status(v: dict[str, float], pair: str) -> dict[str, Any]:
    return {
        "trades": int(v[f"trades:{pair}"]),
        "trade_gaps": int(v[f"trade_gaps:{pair}"]),
        "trade_silent": bool(v[f"trade_silent:{pair}"]),
        "quotes": int(v[f"quotes:{pair}"]),
    }


def _warmup_status(v: dict[str, float], pair: str, started_s: float) -> dict[str, Any]:
    """A pair's warm-up: ticks before its first sync, and when that was (null: never synced in this
    run), also as seconds from the venue process's first start."""
    first_ms = int(v[f"first_sync_ms:{pair}"]) or None
    since_start = round(first_ms / 1000.0 - started_s, 3) if first_ms is not None and started_s else None
    return {"warmup_ticks": int(v[f"warmup:{pair}"]), "first_sync_ms": first_ms, "time_to_first_sync_s": since_start}


def notify_line(status: dict[str, Any]) -> str:
    """systemctl status' one line: what runs and whether it is healthy."""
    parts = [status["state"]]
    for venue, v in status.get("venues", {}).items():
        pairs = v.get("pairs", {})
        synced = sum(1 for p in pairs.values() if p["synced"])
        parts.append(f"{venue} {synced}/{len(pairs)} synced, {v['samples']} snapshots, {v['missed_ticks']} missed")
    w = status.get("writer", {})
    if w:
        parts.append(
            f"{w.get('snapshots_written', 0)} written" + (", STORAGE FAILING" if w.get("storage_failing") else "")
        )
    return "; ".join(parts)
