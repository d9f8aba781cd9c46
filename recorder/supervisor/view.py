"""What ``start-capture`` shows while it runs: a live table on a terminal, a periodic one-line
summary per venue in the log otherwise (journald gets events, not a redrawn screen)."""

from __future__ import annotations

import logging
from collections import deque
from typing import Any, TextIO

log = logging.getLogger("recorder.supervisor")


def _ms(v: Any) -> str:
    return "-" if v is None else f"{v:.1f}"


def render(status: dict[str, Any], recent: list[str] | None = None) -> str:
    w = status.get("writer", {})
    lines = [
        f"recorder  session {status['session_id']}  {status['state']}  up {status['uptime_s']:.0f}s"
        f"  interval {status['interval_s']}s  depth {status['depth']}",
        "",
        f"{'venue/pair':<22}{'synced':>7}{'msgs/s':>9}{'snapshots':>11}{'missed':>8}{'lat p99 ms':>12}"
        f"{'drops':>7}{'resyncs':>9}{'reconn':>8}",
    ]
    for venue, v in status.get("venues", {}).items():
        pairs = v.get("pairs", {})
        synced = sum(1 for p in pairs.values() if p["synced"])
        state = "" if v.get("alive") else "  PROCESS DOWN"
        state += "" if v.get("connected") else "  DISCONNECTED"
        state += "  LAGGING" if v.get("lagging") else ""
        lines.append(
            f"{venue:<22}{f'{synced}/{len(pairs)}':>7}{v['messages_per_s']:>9.1f}{v['samples']:>11}"
            f"{v['missed_ticks']:>8}{_ms(v['capture_latency_ms']['p99']):>12}{v['ring_drops']:>7}"
            f"{v['resyncs']:>9}{v['reconnects']:>8}{state}"
        )
        for pair, p in pairs.items():
            lines.append(
                f"  {pair:<20}{'yes' if p['synced'] else 'NO':>7}{'':>9}{p['samples']:>11}{p['missed_ticks']:>8}"
                f"{'':>12}{'':>7}{p['resyncs']:>9}"
            )
    if w:
        storage = "  STORAGE FAILING" if w.get("storage_failing") else ""
        lines += [
            "",
            f"writer  {'up' if w.get('alive') else 'DOWN'}  snapshots {w.get('snapshots_written', 0)}"
            f"  files {w.get('files_written', 0)}  bytes {w.get('bytes_written', 0)}"
            f"  lag {w.get('writer_lag_ms', 0)} ms  errors {w.get('write_errors', 0)}{storage}",
        ]
    if recent:
        lines += ["", "recent events:", *(f"  {r}" for r in recent)]
    return "\n".join(lines)


def log_summary(status: dict[str, Any]) -> None:
    """One line per venue (and one for the writer): for logs that are not a terminal."""
    for venue, v in status.get("venues", {}).items():
        pairs = v.get("pairs", {})
        log.info(
            "event=status venue=%s synced=%d/%d msgs_per_s=%.1f snapshots=%d missed=%d lat_p99_ms=%s drops=%d"
            " resyncs=%d reconnects=%d",
            venue, sum(1 for p in pairs.values() if p["synced"]), len(pairs), v["messages_per_s"], v["samples"],
            v["missed_ticks"], v["capture_latency_ms"]["p99"], v["ring_drops"], v["resyncs"], v["reconnects"],
        )  # fmt: skip
    w = status.get("writer", {})
    if w:
        log.info(
            "event=status writer_snapshots=%d files=%d bytes=%d write_errors=%d storage_failing=%d",
            w.get("snapshots_written", 0), w.get("files_written", 0), w.get("bytes_written", 0),
            w.get("write_errors", 0), w.get("storage_failing", 0),
        )  # fmt: skip


class LiveView:
    """Redraws the table on a terminal; the event log goes to a file meanwhile (its tail is shown)."""

    def __init__(self, out: TextIO, log_path: str) -> None:
        self.out = out
        self.log_path = log_path
        self._pos = 0
        self.recent: deque[str] = deque(maxlen=8)

    def _tail(self) -> None:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as fh:
                fh.seek(self._pos)
                chunk = fh.read()
                self._pos = fh.tell()
        except OSError:
            return
        for line in chunk.splitlines():
            if "event=status " not in line:
                self.recent.append(line[:160])

    def update(self, status: dict[str, Any]) -> None:
        self._tail()
        self.out.write("\x1b[H\x1b[J" + render(status, list(self.recent)) + "\n")
        self.out.flush()
