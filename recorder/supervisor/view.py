"""What ``start-capture`` shows while it runs: a live table on a terminal, a periodic one-line
summary per venue in the log otherwise (journald gets events, not a redrawn screen).

The table always fits the terminal: rows are never wrapped, and rows past its height are summed
up in one "+N more" line, so the header never scrolls away.
"""

from __future__ import annotations

import atexit
import io
import logging
import os
import sys
import time
from collections import deque
from typing import Any, TextIO

from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

log = logging.getLogger("recorder.supervisor")

# The capture's state in the title, and what the venue and writer rows say once it is over.
_OVER = ("stopping", "stopped")


def _ms(v: Any) -> str:
    return "-" if v is None else f"{v:.1f}"


def _n(v: float) -> str:
    """A count in at most 5 characters (1234, 98765, 123k, 4567k, 12M), so columns stay narrow."""
    v = int(v)
    if v < 100_000:
        return str(v)
    if v < 10_000_000:
        return f"{v // 1000}k"
    return f"{v // 1_000_000}M" if v < 100_000_000_000 else f"{v // 1_000_000_000}G"


def _rate(v: float) -> str:
    return f"{v:.1f}" if v < 1000 else _n(v)


def _table(*columns: str) -> Table:
    """A borderless table of one-line rows (two spaces between columns, a rule under the
    header): the first column left, the numbers right."""
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 0, 0, 1), expand=False)
    for i, name in enumerate(columns):
        table.add_column(name, justify="left" if i == 0 else "right", no_wrap=True, overflow="ellipsis")
    return table


def _venue_flags(state: str, venue: str, v: dict[str, Any]) -> Text | None:
    """One line for a venue in trouble; none while it is fine, or once the capture is over
    (a stopped capture's processes are down and disconnected by design)."""
    if state in _OVER:
        return None
    flags = [] if v.get("alive") else ["PROCESS DOWN"]
    flags += [] if v.get("connected") else ["DISCONNECTED"]
    flags += ["LAGGING"] if v.get("lagging") else []
    if not flags:
        return None
    return Text(f"{venue}: {', '.join(flags)}", style="bold red", no_wrap=True, overflow="ellipsis")


def _title(status: dict[str, Any]) -> Text:
    state = status["state"]
    if state == "stopped":
        why = status.get("stop_reason")
        state = f"stopped ({why})" if why else "stopped"
        if "flushed" in status:
            state += ", flushed" if status["flushed"] else ", NOT FLUSHED"
    return Text(
        f"session {status['session_id']}  {state}  up {status['uptime_s']:.0f}s"
        f"  interval {status['interval_s']}s  depth {status['depth']}",
        no_wrap=True,
        overflow="ellipsis",
    )


def _writer_line(status: dict[str, Any]) -> Text | None:
    w = status.get("writer", {})
    if not w:
        return None
    if status["state"] == "stopped":
        state = "stopped"
    else:
        state = "up" if w.get("alive") else "DOWN"
    line = (
        f"writer  {state}  snapshots {w.get('snapshots_written', 0)}  files {w.get('files_written', 0)}"
        f"  bytes {w.get('bytes_written', 0)}  lag {w.get('writer_lag_ms', 0)} ms  errors {w.get('write_errors', 0)}"
    )
    text = Text(line, no_wrap=True, overflow="ellipsis")
    if w.get("storage_failing"):
        text.append("  STORAGE FAILING", style="bold red")
    return text


def _pair_rows(status: dict[str, Any]) -> list[tuple[bool, list[str]]]:
    """(synced, cells) per pair of every venue; the venue named only when there are several."""
    venues = status.get("venues", {})
    rows = []
    for venue, v in venues.items():
        for pair, p in v.get("pairs", {}).items():
            name = f"{venue} {pair}" if len(venues) > 1 else pair
            cells = [
                name,
                "yes" if p["synced"] else "NO",
                _n(p["samples"]),
                _n(p["missed_ticks"]),
                _n(p.get("ring_drops", 0)),
                _n(p["resyncs"]),
                _n(p.get("gaps", 0)),
            ]
            rows.append((bool(p["synced"]), cells))
    return rows


def render(status: dict[str, Any], recent: list[str] | None = None, height: int = 24) -> RenderableType:
    """One frame, at most ``height - 1`` lines (the last line of the terminal stays free, so
    drawing never scrolls). Every line is cut to the console's width, never wrapped."""
    state = status["state"]
    venues = status.get("venues", {})
    # Per venue: what the connection and the sampler see; latency p99 and msgs/s are per venue
    # (messages arrive per connection, several pairs to a frame on some venues).
    vt = _table("venue", "synced", "msgs/s", "snaps", "missed", "p99 ms", "drops", "resync", "reconn")
    flags = []
    for venue, v in venues.items():
        pairs = v.get("pairs", {})
        synced = sum(1 for p in pairs.values() if p["synced"])
        vt.add_row(
            venue,
            f"{synced}/{len(pairs)}",
            _rate(v["messages_per_s"]),
            _n(v["samples"]),
            _n(v["missed_ticks"]),
            _ms(v["capture_latency_ms"]["p99"]),
            _n(v["ring_drops"]),
            _n(v["resyncs"]),
            _n(v["reconnects"]),
        )
        flag = _venue_flags(state, venue, v)
        if flag is not None:
            flags.append(flag)
    writer = _writer_line(status)
    # Lines: title, blank, venue table (header, rule, rows), its flags, blank, pair table
    # (header, rule), blank, writer. What is left goes to pair rows first, then to the tail of
    # the event log.
    fixed = 1 + 1 + 2 + len(venues) + len(flags) + 1 + 2 + (2 if writer is not None else 0)
    budget = height - 1 - fixed
    pairs = _pair_rows(status)
    shown, hidden = pairs, []
    if len(pairs) > max(budget, 1):
        # Cut short with one "+N more" line; unsynced pairs first, so none of them is hidden
        # behind healthy ones (sorted() is stable: otherwise in the config's order).
        chosen = set(sorted(range(len(pairs)), key=lambda i: pairs[i][0])[: max(budget - 1, 0)])
        shown = [row for i, row in enumerate(pairs) if i in chosen]
        hidden = [row for i, row in enumerate(pairs) if i not in chosen]
    pt = _table("pair", "synced", "snaps", "missed", "drops", "resync", "gaps")
    for _, cells in shown:
        pt.add_row(*cells)
    parts: list[RenderableType] = [_title(status), Text(""), vt, *flags, Text(""), pt]
    if hidden:
        unsynced = sum(1 for synced, _ in hidden if not synced)
        more = f"+{len(hidden)} more pairs ({unsynced} not synced; capture-status lists every pair)"
        parts.append(Text(more, no_wrap=True, overflow="ellipsis"))
    left = budget - len(shown) - (1 if hidden else 0)
    if writer is not None:
        parts += [Text(""), writer]
    if recent and left >= 3:
        tail = recent[-(left - 2) :]
        parts += [Text(""), Text("recent events:")]
        parts += [Text(f"  {line}", no_wrap=True, overflow="ellipsis") for line in tail]
    return Group(*parts)


def render_text(status: dict[str, Any], recent: list[str] | None, width: int, height: int) -> str:
    """The frame as plain text at ``width`` x ``height`` (what the terminal shows, minus colours)."""
    out = io.StringIO()
    console = Console(file=out, width=width, height=height, color_system=None, force_terminal=False)
    console.print(render(status, recent, height))
    return out.getvalue()


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
    """Redraws the table on a terminal; the event log goes to a file meanwhile (its tail is shown).
    The last frame (the final status) stays on the screen when the capture ends."""

    def __init__(self, out: TextIO, log_path: str) -> None:
        self.console = Console(file=out)
        self.log_path = log_path
        self._pos = 0
        self.recent: deque[str] = deque(maxlen=20)
        self._live: Live | None = None

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
                self.recent.append(line[:300])

    def update(self, status: dict[str, Any]) -> None:
        self._tail()
        if self._live is None:
            self._live = Live(
                console=self.console,
                auto_refresh=False,  # redrawn on each status (about once a second), no thread
                redirect_stdout=False,
                redirect_stderr=False,
                vertical_overflow="crop",
            )
            self._live.start()
            atexit.register(self.close)  # an exit without a final status must not leave the cursor hidden
        self._live.update(render(status, list(self.recent), self.console.size.height), refresh=True)
        if status.get("state") == "stopped":
            self.close()

    def close(self) -> None:
        """Leave the last frame on the screen and give the cursor back."""
        if self._live is not None:
            self._live.stop()
            self._live = None


def attach_status_view(supervisor: Any) -> int:
    """A terminal gets a live table (the event log goes to the session's recorder.log, whose
    tail the table shows); anything else gets plain log lines, a status summary a minute.
    Returns a descriptor of the user's stderr, for the last word."""
    if sys.stdout.isatty() and sys.stderr.isatty():
        log_path = supervisor.session.path / "recorder.log"
        print(f"live status below; event log: {log_path}", file=sys.stderr, flush=True)
        terminal = os.dup(2)
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 2)  # children inherit it: their log lines must not scroll the table away
        os.close(fd)
        supervisor.on_status = LiveView(sys.stdout, str(log_path)).update
        return terminal
    last = [0.0]

    def summary(status: dict[str, Any]) -> None:
        if time.monotonic() - last[0] >= 60.0 or status.get("state") != "running":
            last[0] = time.monotonic()
            log_summary(status)

    supervisor.on_status = summary
    return 2
