"""Data-quality figures per session, exchange and pair, computed from the stored data itself plus
what the capture recorded beside it (``status.json`` and the sampler's missed-tick runs).

Gaps are holes in a pair's grid *between* its first and last stored snapshot: a run of ticks
with no stored snapshot while the session ran (``runs.py``: a pause between two runs is "not
running", not a gap). Their cause comes from the sampler's runs of missed ticks
(``missed-ticks-<venue>.jsonl``) that overlap them; ticks after a run's start before the pair's
first snapshot in it are ``warmup``; ticks nothing explains are ``unknown``.

Files that cannot be read are named in ``Report.unreadable`` and left out (``files.py``).
"""

from __future__ import annotations

import json
import os
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recorder.dataset import DatasetError, open_dataset
from recorder.dataset.timeutil import iso
from recorder.report.archive import archive_coverage
from recorder.report.files import Unreadable, read_stored
from recorder.report.records import RecordsQuality, records_quality
from recorder.report.runs import Run, read_runs, split_hole


@dataclass
class Gap:
    start_ms: int  # first missing tick
    end_ms: int  # last missing tick
    ticks: int
    duration_ms: int
    cause: str  # causes joined by '+', most ticks first; 'unknown' where nothing explains them
    causes: dict[str, int]  # cause -> missing ticks it explains

    @property
    def start(self) -> str:
        return iso(self.start_ms)

    @property
    def end(self) -> str:
        return iso(self.end_ms)


@dataclass
class Span:
    """A run of consecutive stored snapshots with ``depth_complete`` false."""

    start_ms: int
    end_ms: int
    snapshots: int

    @property
    def start(self) -> str:
        return iso(self.start_ms)

    @property
    def end(self) -> str:
        return iso(self.end_ms)


@dataclass
class Pause:
    """Ticks of a pair's grid while the session was not running (between two runs)."""

    start_ms: int  # first such tick
    end_ms: int  # last
    ticks: int


@dataclass
class FileStats:
    files: int = 0
    bytes: int = 0  # this pair's share of its files' bytes
    bytes_per_snapshot: float | None = None


@dataclass
class PairQuality:
    session_id: str
    exchange: str
    pair: str
    interval_ms: int
    first_ms: int
    last_ms: int
    expected: int  # grid ticks from the first to the last stored snapshot while the session ran
    stored: int
    coverage_pct: float
    missed_in_gaps: int
    recorder_missed_ticks: int | None  # what the capture itself counted (status.json)
    gaps: list[Gap]
    seq_first: int
    seq_last: int
    seq_missing: int
    seq_duplicates: int
    seq_out_of_order: int  # sequence order disagrees with time order
    seq_continuous: bool
    off_grid: int  # timestamps not on the interval's grid
    update_id_regressions: int
    crossed: int
    empty: int  # both sides empty
    one_sided: int
    unverified: int
    latency_ms: dict[str, float | None]  # p50 p90 p99 max
    not_running_ticks: int = 0  # grid ticks between first and last while the session did not run
    pauses: list[Pause] = field(default_factory=list)
    depth_short: int | None = None  # stored with depth_complete false; None: no file has the column
    depth_unknown: int = 0  # snapshots from files written before depth_complete existed
    depth_short_spans: list[Span] = field(default_factory=list)
    recorder_depth_short: int | None = None  # status.json
    warmup_ticks: int | None = None  # status.json: ticks before the pair's first sync in the last run
    time_to_first_sync_s: float | None = None  # status.json
    first_sync_ms: int | None = None  # status.json
    storage: dict[str, FileStats] = field(default_factory=dict)  # format -> stats

    @property
    def span_s(self) -> float:
        return (self.last_ms - self.first_ms) / 1000


@dataclass
class PairSeries:
    """Per-snapshot series for the plots (not part of the JSON output)."""

    timestamp_ms: np.ndarray
    spread_bps: np.ndarray
    latency_ms: np.ndarray


@dataclass
class SessionQuality:
    session_id: str
    interval_ms: int
    interval_source: str  # status.json | inferred
    status: dict[str, Any]
    pairs: list[PairQuality]
    series: dict[tuple[str, str], PairSeries] = field(default_factory=dict, repr=False)
    runs: list[Run] | None = None  # None: nothing recorded the runs (taken as one)
    # Pairs status.json lists with no stored snapshot (never synced, or every file unreadable).
    unstored_pairs: list[dict[str, Any]] = field(default_factory=list)
    # venue -> the session's archive coverage (report/archive.py): files, hours, bytes, frames.
    archive: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Trades and quotes per pair (``records.py``): empty when the session stored none.
    records: list[RecordsQuality] = field(default_factory=list)


@dataclass
class Report:
    location: str
    format: str
    generated_ms: int
    sessions: list[SessionQuality]
    unreadable: list[Unreadable] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        out = {"location": self.location, "format": self.format, "generated": iso(self.generated_ms), "sessions": []}
        for s in self.sessions:
            d = {k: v for k, v in asdict(s).items() if k != "series"}
            for p, pq in zip(d["pairs"], s.pairs, strict=True):
                p["first"], p["last"], p["span_s"] = iso(pq.first_ms), iso(pq.last_ms), pq.span_s
                for g, gap in zip(p["gaps"], pq.gaps, strict=True):
                    g["start"], g["end"] = gap.start, gap.end
                for g, span in zip(p["depth_short_spans"], pq.depth_short_spans, strict=True):
                    g["start"], g["end"] = span.start, span.end
                for g in p["pauses"]:
                    g["start"], g["end"] = iso(g["start_ms"]), iso(g["end_ms"])
            for r in d["runs"] or []:
                r["start"], r["stop"] = iso(r["start_ms"]), iso(r["stop_ms"])
            out["sessions"].append(d)
        out["unreadable"] = [asdict(u) for u in self.unreadable]
        return out


class _MissRun(msgspec.Struct):
    exchange: str
    pair: str
    first_tick_ms: int
    last_tick_ms: int
    ticks: int
    cause: str
    ended: bool = True


def build_report(data_dir: str, session_id: str | None = None, fmt: str = "auto") -> Report:
    """Everything the report shows, for one session or every session in ``data_dir``. Files
    that cannot be read are listed in ``unreadable``; DatasetError only when nothing is left."""
    ds = open_dataset(data_dir, format=fmt)
    sessions_filter = [session_id] if session_id else None
    stored = read_stored(ds, sessions_filter)
    w = stored.top
    if w.num_rows == 0:
        what = f" of session {session_id!r}" if session_id else ""
        if stored.unreadable:
            n = len(stored.unreadable)
            raise NoData(f"no readable snapshots{what} under {data_dir!r} ({n} unreadable file(s))", stored.unreadable)
        raise NoData(f"no stored snapshots{what} under {data_dir!r}", [])
    sessions: list[SessionQuality] = []
    w = w.sort_by([("session_id", "ascending"), ("exchange", "ascending"), ("pair", "ascending")])
    for sid in sorted(set(w["session_id"].to_pylist())):
        st = w.filter(pc.equal(w["session_id"], sid))
        status = _session_status(data_dir, sid)
        runs = _read_miss_runs(data_dir, sid)
        session_runs = read_runs(data_dir, sid, np.sort(st["timestamp_ms"].to_numpy()))
        interval_ms, source = _interval(status, st)
        pairs, series = [], {}
        keys = sorted(set(zip(st["exchange"].to_pylist(), st["pair"].to_pylist(), strict=True)))
        for exchange, pair in keys:
            t = st.filter(pc.and_(pc.equal(st["exchange"], exchange), pc.equal(st["pair"], pair)))
            t = t.sort_by([("timestamp_ms", "ascending"), ("sequence_number", "ascending")])
            miss = runs.get((exchange, pair), [])
            pq, ser = _pair_quality(sid, exchange, pair, t, interval_ms, miss, status, session_runs)
            for fmt_name, (nfiles, nbytes) in sorted(stored.shares.get((sid, exchange, pair), {}).items()):
                share = FileStats(files=nfiles, bytes=int(round(nbytes)))
                share.bytes_per_snapshot = round(share.bytes / pq.stored, 1) if pq.stored else None
                pq.storage[fmt_name] = share
            pairs.append(pq)
            series[(exchange, pair)] = ser
        quality = SessionQuality(sid, interval_ms, source, _status_summary(status), pairs, series, session_runs)
        quality.unstored_pairs = _unstored_pairs(status, set(keys))
        quality.archive = archive_coverage(data_dir, sid)
        quality.records = records_quality(ds, sid, status)
        sessions.append(quality)
    return Report(data_dir, ds.format, int(time.time() * 1000), sessions, stored.unreadable)


class NoData(DatasetError):
    """Nothing readable to report on; ``unreadable`` names the files that could not be read."""

    def __init__(self, message: str, unreadable: list[Unreadable]) -> None:
        super().__init__(message)
        self.unreadable = unreadable


_WARMUP_KEYS = ("warmup_ticks", "time_to_first_sync_s", "first_sync_ms")


def _pair_status(status: dict[str, Any] | None, exchange: str, pair: str) -> dict[str, Any]:
    if not status:
        return {}
    return status.get("venues", {}).get(exchange, {}).get("pairs", {}).get(pair) or {}


def _unstored_pairs(status: dict[str, Any] | None, stored: set[tuple[str, str]]) -> list[dict[str, Any]]:
    """Pairs the capture was asked for that have no stored snapshot: a pair that never synced
    must show, or "0 missed" would hide it."""
    out = []
    for exchange, venue in sorted(((status or {}).get("venues") or {}).items()):
        for pair, p in sorted((venue.get("pairs") or {}).items()):
            if (exchange, pair) not in stored:
                row = {"exchange": exchange, "pair": pair}
                row.update({k: p[k] for k in (*_WARMUP_KEYS, "missed_ticks", "samples") if k in p})
                out.append(row)
    return out


def _local(location: str) -> bool:
    return "://" not in location


def _session_status(data_dir: str, sid: str) -> dict[str, Any] | None:
    """status.json of a capture, or a replay's summary (``replay.json``) in the same shape."""
    if not _local(data_dir):
        return None
    sdir = os.path.join(data_dir, ".sessions", sid)
    status = _read_json(os.path.join(sdir, "status.json"))
    if status is not None:
        return status
    summary = _read_json(os.path.join(sdir, "replay.json"))
    if not summary or not isinstance(summary.get("pairs"), dict) or "venue" not in summary:
        return None
    venue = {k: summary[k] for k in ("depth_short", "warmup_ticks", "pairs_never_synced") if k in summary}
    return {
        "state": "replayed",
        "interval_source": "replay.json",
        "interval_s": summary.get("interval_ms", 0) / 1000,
        "venues": {summary["venue"]: {**venue, "pairs": summary["pairs"]}},
    }


def _read_json(path: str) -> dict[str, Any] | None:
    try:
        with open(path, "rb") as fh:
            value = json.load(fh)
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _read_miss_runs(data_dir: str, session_id: str) -> dict[tuple[str, str], list[_MissRun]]:
    out: dict[tuple[str, str], list[_MissRun]] = defaultdict(list)
    if not _local(data_dir):
        return out
    sdir = os.path.join(data_dir, ".sessions", session_id)
    try:
        names = sorted(n for n in os.listdir(sdir) if n.startswith("missed-ticks-") and n.endswith(".jsonl"))
    except OSError:
        return out
    for name in names:
        with open(os.path.join(sdir, name), "rb") as fh:
            for line in fh:
                try:
                    run = msgspec.json.decode(line, type=_MissRun)
                except msgspec.DecodeError:
                    continue  # a line torn by a crash mid-write: skip it, keep the rest
                out[(run.exchange, run.pair)].append(run)
    return out


def _interval(status: dict[str, Any] | None, t: pa.Table) -> tuple[int, str]:
    if status and status.get("interval_s"):
        return int(round(float(status["interval_s"]) * 1000)), status.get("interval_source", "status.json")
    diffs: list[np.ndarray] = []
    for pair in set(t["pair"].to_pylist()):
        ts = np.sort(t.filter(pc.equal(t["pair"], pair))["timestamp_ms"].to_numpy())
        d = np.diff(ts)
        diffs.append(d[d > 0])
    d = np.concatenate(diffs) if diffs else np.array([], dtype=np.int64)
    if not len(d):
        return 1000, "default"
    values, counts = np.unique(d, return_counts=True)
    return int(values[np.argmax(counts)]), "inferred"


def _status_summary(status: dict[str, Any] | None) -> dict[str, Any]:
    if not status:
        return {}
    keep = ("state", "started_at_ms", "updated_at_ms", "uptime_s", "interval_s", "depth", "format", "stop_reason")
    out = {k: status[k] for k in keep if k in status}
    out["flushed"] = status.get("flushed")
    out["venues"] = {
        v: {
            **{
                k: d.get(k)
                for k in ("reconnects", "resyncs", "gaps", "missed_ticks", "missed_by_cause", "ring_drops", "restarts")
            },
            # Newer counters: shown where the capture recorded them, absent (not 0) otherwise.
            **{k: d[k] for k in ("depth_short", "warmup_ticks", "pairs_never_synced") if k in d},
        }
        for v, d in status.get("venues", {}).items()
    }
    w = status.get("writer", {})
    out["writer"] = {k: w.get(k) for k in ("snapshots_written", "files_written", "bytes_written", "restarts")}
    return out


def _gaps(
    ts: np.ndarray, interval: int, runs: list[_MissRun], session_runs: list[Run] | None
) -> tuple[list[Gap], list[Pause]]:
    """The pair's gaps while the session ran, and its grid ticks while it did not."""
    gaps: list[Gap] = []
    pauses: list[Pause] = []
    if len(ts) < 2:
        return gaps, pauses
    d = np.diff(ts)
    for i in np.flatnonzero(d > interval):
        start, end = int(ts[i]) + interval, int(ts[i + 1]) - interval
        ticks = int(round((ts[i + 1] - ts[i]) / interval)) - 1
        if ticks <= 0:
            continue  # off-grid jitter, counted separately
        for seg in split_hole(start, end, interval, session_runs):
            if not seg.running:
                pauses.append(Pause(seg.start_ms, seg.end_ms, seg.ticks))
                continue
            n = ticks if session_runs is None else seg.ticks
            gaps.append(_gap(seg.start_ms, seg.end_ms, n, interval, runs, seg.after_start))
    return gaps, pauses


def _gap(start: int, end: int, ticks: int, interval: int, runs: list[_MissRun], warmup: bool) -> Gap:
    causes: dict[str, int] = defaultdict(int)
    for r in runs:
        lo, hi = max(start, r.first_tick_ms), min(end, r.last_tick_ms)
        if lo <= hi:
            causes[r.cause] += (hi - lo) // interval + 1
    explained = sum(causes.values())
    if explained < ticks:
        causes["warmup" if warmup else "unknown"] += ticks - explained
    ordered = dict(sorted(causes.items(), key=lambda kv: -kv[1]))
    return Gap(start, end, ticks, ticks * interval, "+".join(ordered), ordered)


def _depth_spans(ts: np.ndarray, flag: pa.ChunkedArray) -> tuple[int | None, int, list[Span]]:
    """(snapshots stored short, snapshots with no depth_complete, spans of consecutive short ones)."""
    unknown = flag.null_count
    if unknown == len(ts):
        return None, unknown, []
    short = ~pc.fill_null(flag, True).to_numpy(zero_copy_only=False).astype(bool)
    spans: list[Span] = []
    if short.any():
        edges = np.diff(np.concatenate(([0], short.astype(np.int8), [0])))
        for a, b in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True):
            spans.append(Span(int(ts[a]), int(ts[b - 1]), int(b - a)))
    return int(short.sum()), unknown, spans


def _quantiles(values: np.ndarray) -> dict[str, float | None]:
    if not len(values):
        return {"p50": None, "p90": None, "p99": None, "max": None}
    q = np.percentile(values, [50, 90, 99])
    return {
        "p50": round(float(q[0]), 3),
        "p90": round(float(q[1]), 3),
        "p99": round(float(q[2]), 3),
        "max": round(float(values.max()), 3),
    }


def _num(col: pa.ChunkedArray) -> np.ndarray:
    return pc.fill_null(col.cast(pa.float64()), np.nan).to_numpy()


def _pair_quality(
    sid: str,
    exchange: str,
    pair: str,
    t: pa.Table,
    interval: int,
    runs: list[_MissRun],
    status: dict[str, Any] | None,
    session_runs: list[Run] | None,
) -> tuple[PairQuality, PairSeries]:
    ts = t["timestamp_ms"].to_numpy()
    seq = t["sequence_number"].to_numpy()
    first, last = int(ts[0]), int(ts[-1])
    expected = (last - first) // interval + 1
    stored = len(ts)
    uniq = np.unique(seq)
    seq_missing = int(uniq[-1] - uniq[0] + 1 - len(uniq))
    seq_dups = int(len(seq) - len(uniq))
    by_seq = np.argsort(seq, kind="stable")
    out_of_order = int(np.sum(np.diff(ts[by_seq]) < 0))
    upd = t["update_id"].drop_null().to_numpy() if t["update_id"].null_count < t.num_rows else np.array([])
    if t["update_id"].null_count == 0:
        upd = upd[by_seq]  # in sequence order (nulls, if any, are rare: keep time order then)
    bp, ap = _num(t["bid_px_0"]), _num(t["ask_px_0"])
    bid_ok, ask_ok = ~np.isnan(bp), ~np.isnan(ap)
    with np.errstate(invalid="ignore"):
        crossed = int(np.sum(bid_ok & ask_ok & (bp >= ap)))
    lat = _num(t["capture_latency_ms"])
    lat = lat[~np.isnan(lat)]
    mid, spread = _num(t["mid"]), _num(t["spread"])
    with np.errstate(invalid="ignore", divide="ignore"):
        spread_bps = spread / mid * 1e4
    gaps, pauses = _gaps(ts, interval, runs, session_runs)
    not_running = sum(pause.ticks for pause in pauses)
    expected -= not_running
    p = _pair_status(status, exchange, pair)
    recorder_missed = int(p["missed_ticks"]) if "missed_ticks" in p else None
    depth_short, depth_unknown, spans = _depth_spans(ts, t["depth_complete"])
    verified = t["verified"].to_numpy(zero_copy_only=False)
    pq = PairQuality(
        session_id=sid,
        exchange=exchange,
        pair=pair,
        interval_ms=interval,
        first_ms=first,
        last_ms=last,
        expected=int(expected),
        stored=stored,
        coverage_pct=round(100.0 * min(stored, expected) / expected, 3) if expected else 0.0,
        missed_in_gaps=sum(g.ticks for g in gaps),
        recorder_missed_ticks=recorder_missed,
        gaps=gaps,
        seq_first=int(uniq[0]),
        seq_last=int(uniq[-1]),
        seq_missing=seq_missing,
        seq_duplicates=seq_dups,
        seq_out_of_order=out_of_order,
        seq_continuous=seq_missing == 0 and seq_dups == 0 and out_of_order == 0,
        off_grid=int(np.sum(ts % interval != 0)),
        update_id_regressions=int(np.sum(np.diff(upd) < 0)) if len(upd) > 1 else 0,
        crossed=crossed,
        empty=int(np.sum(~bid_ok & ~ask_ok)),
        one_sided=int(np.sum(bid_ok ^ ask_ok)),
        unverified=int(np.sum(~verified.astype(bool))),
        latency_ms=_quantiles(lat),
        not_running_ticks=not_running,
        pauses=pauses,
        depth_short=depth_short,
        depth_unknown=depth_unknown,
        depth_short_spans=spans,
        recorder_depth_short=p.get("depth_short"),
        warmup_ticks=p.get("warmup_ticks"),
        time_to_first_sync_s=p.get("time_to_first_sync_s"),
        first_sync_ms=p.get("first_sync_ms"),
    )
    return pq, PairSeries(ts, spread_bps, lat)
