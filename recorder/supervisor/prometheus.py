"""Prometheus text exposition of the supervisor's status (the figures of ``capture-status``),
served by a small stdlib HTTP server on a thread of the supervisor."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger("recorder.supervisor")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# status key -> (metric suffix, type, help)
_VENUE: dict[str, tuple[str, str, str]] = {
    "alive": ("process_alive", "gauge", "1 while the venue process runs"),
    "restarts": ("process_restarts_total", "counter", "venue process restarts by the supervisor"),
    "connected": ("connected", "gauge", "1 while the venue WebSocket is connected"),
    "messages": ("messages_total", "counter", "venue messages received"),
    "messages_per_s": ("messages_per_second", "gauge", "venue messages per second"),
    "bytes": ("received_bytes_total", "counter", "venue payload bytes received"),
    "malformed": ("malformed_total", "counter", "undecodable venue frames"),
    "resyncs": ("resyncs_total", "counter", "book (re)synchronisations"),
    "gaps": ("gaps_total", "counter", "sequence gaps detected"),
    "reconnects": ("reconnects_total", "counter", "unplanned reconnects and failed connects"),
    "planned_reconnects": ("planned_reconnects_total", "counter", "planned (overlapped) reconnects"),
    "stalls": ("stalls_total", "counter", "connections closed for silence"),
    "snapshots_fetched": ("snapshots_fetched_total", "counter", "REST book snapshots fetched"),
    "rest_errors": ("rest_errors_total", "counter", "failed REST snapshot requests"),
    "http_429": ("rate_limited_total", "counter", "HTTP 429/418 answers"),
    "lag_alerts": ("lag_alerts_total", "counter", "episodes of the feed falling behind"),
    "lagging": ("lagging", "gauge", "1 while the feed is behind"),
    "ticks": ("ticks_total", "counter", "grid ticks"),
    "samples": ("snapshots_total", "counter", "snapshots sampled into the ring"),
    "missed_ticks": ("missed_ticks_total", "counter", "pair ticks without a snapshot"),
    "warmup_ticks": ("warmup_ticks_total", "counter", "ticks before a pair first synced"),
    "depth_short": ("depth_short_total", "counter", "snapshots stored short of the depth (deeper levels unknown)"),
    "pairs_never_synced": ("pairs_never_synced", "gauge", "pairs not synced once since the capture started"),
    "ring_drops": ("ring_drops_total", "counter", "snapshots dropped: ring full"),
    "ring_used_bytes": ("ring_used_bytes", "gauge", "bytes held in the venue ring"),
    "archive_lost_frames": ("archive_lost_frames_total", "counter", "frames left out of the archive"),
    "archive_buffer_bytes": ("archive_buffer_bytes", "gauge", "archive records waiting to be written"),
    "rest_queue": ("rest_queue", "gauge", "REST requests waiting for weight budget"),
    "buffered_diffs": ("buffered_diffs", "gauge", "diffs held by books waiting for a snapshot"),
    "trades": ("trades_total", "counter", "trades stored (pushed to the ring)"),
    "trade_gaps": ("trade_gaps_total", "counter", "trades lost: missing venue trade ids"),
    "trade_drops": ("trade_drops_total", "counter", "trades dropped: ring full"),
    "trade_silent": ("trade_silent_pairs", "gauge", "pairs whose trade stream is silent while the book moves"),
    "trade_silences": ("trade_silences_total", "counter", "episodes of a silent trade stream"),
    "quotes": ("quotes_total", "counter", "best bid/ask changes stored"),
}
_PAIR: dict[str, tuple[str, str, str]] = {
    "synced": ("pair_synced", "gauge", "1 while the pair's book is synced"),
    "samples": ("pair_snapshots_total", "counter", "snapshots sampled for the pair"),
    "missed_ticks": ("pair_missed_ticks_total", "counter", "ticks missed for the pair"),
    "resyncs": ("pair_resyncs_total", "counter", "resyncs of the pair's book"),
    "gaps": ("pair_gaps_total", "counter", "gaps on the pair's feed"),
    "depth_short": ("pair_depth_short_total", "counter", "the pair's snapshots stored short of the depth"),
    "warmup_ticks": ("pair_warmup_ticks_total", "counter", "ticks before the pair first synced (not stored)"),
    "time_to_first_sync_s": ("pair_time_to_first_sync_seconds", "gauge", "venue process start to first sync"),
    "ring_drops": ("pair_ring_drops_total", "counter", "snapshots of the pair dropped: ring full"),
    "trades": ("pair_trades_total", "counter", "trades stored for the pair"),
    "trade_gaps": ("pair_trade_gaps_total", "counter", "trades lost for the pair (missing ids)"),
    "trade_silent": ("pair_trade_silent", "gauge", "1 while the pair's trade stream is silent and its book moves"),
    "quotes": ("pair_quotes_total", "counter", "best bid/ask changes stored for the pair"),
}


_WRITER_GAUGES = (
    "alive", "pending_snapshots", "writer_lag_ms", "ring_held_bytes", "ring_unread_bytes", "storage_failing",
    "stopping", "stream_connected",
)  # fmt: skip


def _labels(**kv: str) -> str:
    inner = ",".join(f'{k}="{v}"' for k, v in kv.items())
    return "{" + inner + "}" if inner else ""


def _with_fleet_labels(text: str, session: str, shard: str) -> str:
    """A shard's every sample also carries ``session`` and ``shard``: one Prometheus scraping a
    fleet tells the shards apart (and sums over them) by these labels."""
    extra = f'session="{session}",shard="{shard}"'
    out: list[str] = []
    for line in text.splitlines():
        if line.startswith("#") or not line:
            out.append(line)
            continue
        name, _, value = line.rpartition(" ")
        if name.endswith("}"):
            labels = name[name.index("{") + 1 : -1].split(",")
            kept = ",".join(part for part in labels if not part.startswith("session="))
            name = name[: name.index("{")] + "{" + (kept + "," if kept else "") + extra + "}"
        else:
            name = name + "{" + extra + "}"
        out.append(f"{name} {value}")
    return "\n".join(out) + "\n"


def _num(v: Any) -> str | None:
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, int | float):
        return repr(float(v)) if isinstance(v, float) else str(v)
    return None


class _Metrics:
    def __init__(self) -> None:
        self.families: dict[str, tuple[str, str, list[str]]] = {}

    def add(self, name: str, kind: str, help_: str, labels: str, value: Any) -> None:
        text = _num(value)
        if text is None:
            return
        fam = self.families.setdefault(name, (kind, help_, []))
        fam[2].append(f"{name}{labels} {text}")

    def render(self) -> str:
        out: list[str] = []
        for name, (kind, help_, samples) in self.families.items():
            out += [f"# HELP {name} {help_}", f"# TYPE {name} {kind}", *samples]
        return "\n".join(out) + "\n"


def exposition(status: dict[str, Any]) -> str:
    m = _Metrics()
    sess = status.get("session_id", "")
    m.add("recorder_up", "gauge", "1 while the capture runs", _labels(session=sess), status.get("state") == "running")
    m.add("recorder_uptime_seconds", "gauge", "seconds since the capture started", "", status.get("uptime_s"))
    for venue, v in status.get("venues", {}).items():
        lv = _labels(venue=venue)
        for key, (suffix, kind, help_) in _VENUE.items():
            m.add(f"recorder_venue_{suffix}", kind, help_, lv, v.get(key))
        for cause, n in v.get("missed_by_cause", {}).items():
            m.add(
                "recorder_venue_missed_ticks_by_cause_total", "counter", "missed ticks by cause",
                _labels(venue=venue, cause=cause), n,
            )  # fmt: skip
        for what in ("capture_latency_ms", "grid_jitter_ms"):
            for q, val in (v.get(what) or {}).items():
                quantile = {"p50": "0.5", "p99": "0.99", "max": "1"}.get(q, q)
                m.add(
                    f"recorder_venue_{what}",
                    "gauge",
                    what.replace("_", " "),
                    _labels(venue=venue, quantile=quantile),
                    val,
                )
        for pair, p in v.get("pairs", {}).items():
            lp = _labels(venue=venue, pair=pair)
            for key, (suffix, kind, help_) in _PAIR.items():
                m.add(f"recorder_{suffix}", kind, help_, lp, p.get(key))
            if "first_sync_ms" in p:  # 0 until the pair first syncs (never, for a broken one)
                m.add(
                    "recorder_pair_ever_synced",
                    "gauge",
                    "1 once the pair has synced",
                    lp,
                    p["first_sync_ms"] is not None,
                )
    for key, val in status.get("writer", {}).items():
        if key in ("pid", "started_ms", "heartbeat_ms", "last_commit_ts_ms"):
            continue
        kind = "gauge" if key in _WRITER_GAUGES else "counter"
        name = f"recorder_writer_{key}" + ("_total" if kind == "counter" and not key.endswith("_total") else "")
        m.add(name, kind, f"writer {key.replace('_', ' ')}", "", val)
    if status.get("shard"):
        return _with_fleet_labels(m.render(), sess, status["shard"])
    return m.render()


class MetricsServer:
    """``GET /metrics`` on ``host:port`` from a thread; ``port=0`` picks a free port."""

    def __init__(self, host: str, port: int, text: Callable[[], str]) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                if self.path.split("?")[0] not in ("/metrics", "/"):
                    self.send_error(404)
                    return
                body = text().encode()
                self.send_response(200)
                self.send_header("Content-Type", CONTENT_TYPE)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass  # one line per scrape would be spam

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="metrics", daemon=True)

    def start(self) -> None:
        self._thread.start()
        log.info("event=metrics_serving url=http://%s:%d/metrics", self.httpd.server_address[0], self.port)

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
