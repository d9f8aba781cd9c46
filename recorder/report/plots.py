"""The report's figures, drawn by matplotlib and embedded as inline SVG (no scripts, no files)."""

from __future__ import annotations

import datetime as dt
import io

import matplotlib

matplotlib.use("Agg")  # headless: never needs a display

import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from recorder.report.quality import SessionQuality  # noqa: E402

matplotlib.rcParams["svg.fonttype"] = "none"  # text stays text: smaller, selectable
matplotlib.rcParams["svg.hashsalt"] = "recorder-report"  # stable ids between runs

CAUSE_COLORS = {
    "restart": "#d62728",
    "disconnect": "#ff7f0e",
    "checksum": "#9467bd",
    "sequence_gap": "#8c564b",
    "crossed": "#e377c2",
    "drop": "#7f7f7f",
    "late": "#bcbd22",
    "resync": "#17becf",
    "not_synced": "#1f77b4",
    "warmup": "#aec7e8",
    "unknown": "#000000",
}
NOT_RUNNING_COLOR = "#d9d9d9"
_MAX_POINTS = 2000


def _dates(ms: np.ndarray) -> np.ndarray:
    return mdates.date2num(ms.astype("datetime64[ms]"))


def _svg(fig: Figure) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg") :]


def _time_axis(ax: plt.Axes) -> None:
    loc = mdates.AutoDateLocator()
    ax.xaxis.set_major_locator(loc)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(loc, tz=dt.UTC))
    ax.set_xlabel("UTC")


def coverage_timeline(s: SessionQuality) -> str:
    """One row per pair: stored span in green, each gap coloured by its main cause."""
    pairs = s.pairs
    fig, ax = plt.subplots(figsize=(10, 0.6 + 0.45 * len(pairs)))
    lo = min(p.first_ms for p in pairs)
    hi = max(p.last_ms for p in pairs)
    min_w = max(1, hi - lo) * 0.002  # a gap stays visible however long the session
    causes_seen: set[str] = set()
    paused = False
    for y, p in enumerate(pairs):
        first, last = _dates(np.array([p.first_ms, p.last_ms + p.interval_ms]))
        ax.broken_barh([(first, last - first)], (y - 0.3, 0.6), facecolors="#2ca02c")
        by_cause: dict[str, list[tuple[float, float]]] = {}
        for g in p.gaps:
            main = next(iter(g.causes), "unknown")
            start = _dates(np.array([g.start_ms]))[0]
            width = max(g.duration_ms, min_w) / 86_400_000  # matplotlib dates are days
            by_cause.setdefault(main, []).append((start, width))
        for cause, bars in by_cause.items():  # one artist per cause: thousands of gaps stay cheap
            causes_seen.add(cause)
            ax.broken_barh(bars, (y - 0.3, 0.6), facecolors=CAUSE_COLORS.get(cause, "#000000"))
        # Ticks between two runs of the session: not running, not a gap.
        pauses = [(_dates(np.array([g.start_ms]))[0], g.ticks * p.interval_ms / 86_400_000) for g in p.pauses]
        if pauses:
            paused = True
            ax.broken_barh(pauses, (y - 0.3, 0.6), facecolors=NOT_RUNNING_COLOR)
    ax.set_yticks(range(len(pairs)), [f"{p.exchange} {p.pair}" for p in pairs])
    ax.set_ylim(-0.6, len(pairs) - 0.4)
    ax.invert_yaxis()
    _time_axis(ax)
    handles = [Patch(color="#2ca02c", label="stored")]
    handles += [Patch(color=CAUSE_COLORS.get(c, "#000000"), label=f"gap: {c}") for c in sorted(causes_seen)]
    if paused:
        handles.append(Patch(color=NOT_RUNNING_COLOR, label="not running"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    ax.set_title(f"Coverage timeline - session {s.session_id}")
    return _svg(fig)


def latency_histogram(s: SessionQuality) -> str:
    fig, ax = plt.subplots(figsize=(10, 3.5))
    drawn = False
    for p in s.pairs:
        lat = s.series[(p.exchange, p.pair)].latency_ms
        if len(lat):
            ax.hist(lat, bins=50, histtype="step", linewidth=1.2, label=f"{p.exchange} {p.pair}")
            drawn = True
    ax.set_xlabel("capture latency (ms): local receive time - exchange event time")
    ax.set_ylabel("snapshots")
    if drawn:
        ax.legend(fontsize="small")
    else:
        ax.text(0.5, 0.5, "no latency recorded", ha="center", va="center", transform=ax.transAxes)
    ax.set_title("Capture latency")
    return _svg(fig)


def spread_over_time(s: SessionQuality) -> str:
    fig, ax = plt.subplots(figsize=(10, 3.5))
    for p in s.pairs:
        ser = s.series[(p.exchange, p.pair)]
        x, y = _broken_at_gaps(ser.timestamp_ms, ser.spread_bps, s.interval_ms)
        ax.plot(x, y, linewidth=0.9, label=f"{p.exchange} {p.pair}")
    ax.set_ylabel("spread (bps of mid)")
    _time_axis(ax)
    ax.legend(fontsize="small")
    ax.set_title("Top-of-book spread over time")
    return _svg(fig)


def _broken_at_gaps(ts: np.ndarray, y: np.ndarray, interval: int) -> tuple[np.ndarray, np.ndarray]:
    """Plot dates of the series thinned to at most ~_MAX_POINTS, with a NaN point (matplotlib lifts the pen)
    wherever a tick or more has no snapshot: the line never bridges a gap or a pause."""
    segment = np.concatenate(([0], np.cumsum(np.diff(ts) > 1.5 * interval))) if len(ts) else ts
    if len(ts) > _MAX_POINTS:  # keep the SVG small: every k-th point, plus each segment's ends
        step = int(np.ceil(len(ts) / _MAX_POINTS))
        keep = np.zeros(len(ts), dtype=bool)
        keep[::step] = True
        edges = np.flatnonzero(np.diff(segment))
        keep[edges] = keep[edges + 1] = True
        keep[-1] = True
        ts, y, segment = ts[keep], y[keep], segment[keep]
    breaks = np.flatnonzero(np.diff(segment)) + 1
    return np.insert(_dates(ts), breaks, np.nan), np.insert(y.astype(np.float64), breaks, np.nan)
