"""The report as a terminal table and as one self-contained HTML page (inline SVG, no scripts)."""

from __future__ import annotations

import html
from typing import Any

from recorder.dataset.timeutil import iso
from recorder.report.archive import archive_line
from recorder.report.quality import PairQuality, Report, SessionQuality
from recorder.report.records import RECORDS_HEADER, records_rows


def _num(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"
    return str(v)


def _bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def _duration(ms: int) -> str:
    s = ms / 1000
    if s < 120:
        return f"{s:g}s"
    if s < 7200:
        return f"{s / 60:.1f}m"
    return f"{s / 3600:.1f}h"


def _storage(p: PairQuality) -> tuple[str, str, str]:
    files = "/".join(f"{fmt[:4]} {st.files}" for fmt, st in sorted(p.storage.items(), reverse=True)) or "-"
    size = "/".join(_bytes(st.bytes) for _, st in sorted(p.storage.items(), reverse=True)) or "-"
    per = "/".join(_num(st.bytes_per_snapshot) for _, st in sorted(p.storage.items(), reverse=True)) or "-"
    return files, size, per


def _warmup(p: PairQuality) -> str:
    if p.warmup_ticks is None and p.time_to_first_sync_s is None:
        return "-"  # the capture did not record it (older capture, replay)
    sync = "never synced" if p.first_sync_ms is None and p.time_to_first_sync_s is None else None
    if sync is None and p.time_to_first_sync_s is not None:
        sync = f"{p.time_to_first_sync_s:.3g}s"
    return f"{_num(p.warmup_ticks)} ticks / {sync or '-'}"


def _depth(p: PairQuality) -> str:
    if p.depth_short is None:
        return "unknown"  # written before depth_complete existed
    return f"{p.depth_short} ({p.depth_unknown} unknown)" if p.depth_unknown else str(p.depth_short)


def _pair_row(p: PairQuality) -> list[str]:
    """Coverage and integrity of one pair (the first of its two table rows)."""
    seq = "ok" if p.seq_continuous else f"missing {p.seq_missing} dup {p.seq_duplicates} order {p.seq_out_of_order}"
    return [
        p.exchange,
        p.pair,
        f"{iso(p.first_ms)[:10]} {iso(p.first_ms)[11:19]} +{_duration(p.last_ms - p.first_ms)}",
        str(p.expected),
        str(p.stored),
        f"{p.coverage_pct:.2f}%",
        str(len(p.gaps)),
        str(p.missed_in_gaps),
        "-" if p.recorder_missed_ticks is None else str(p.recorder_missed_ticks),
        str(p.not_running_ticks),
        _warmup(p),
        _depth(p),
        seq,
        f"{p.crossed}/{p.empty}/{p.one_sided}",
        str(p.unverified),
    ]


PAIR_HEADER = [
    "exchange",
    "pair",
    "span (UTC)",
    "expected",
    "stored",
    "coverage",
    "gaps",
    "missed",
    "missed(rec)",
    "not running",
    "warm-up",
    "depth short",
    "sequence",
    "crossed/empty/1-sided",
    "unverified",
]


def _latency_row(p: PairQuality) -> list[str]:
    lat = p.latency_ms
    files, size, per = _storage(p)
    return [p.exchange, p.pair, *(_num(lat[k]) for k in ("p50", "p90", "p99", "max")), files, size, per]


LATENCY_HEADER = ["exchange", "pair", "latency p50 ms", "p90", "p99", "max", "files", "bytes", "B/snapshot"]
DEPTH_HEADER = ["exchange", "pair", "first short (UTC)", "last short (UTC)", "snapshots"]
GAP_HEADER = ["exchange", "pair", "start (UTC)", "end (UTC)", "ticks", "length", "cause"]


# Gap rows listed per session; the rest are summarised (all of them are in --json).
MAX_GAP_ROWS = 200


def _gap_rows(s: SessionQuality) -> list[list[str]]:
    rows = []
    for p in s.pairs:
        for g in p.gaps:
            rows.append([p.exchange, p.pair, g.start, g.end, str(g.ticks), _duration(g.duration_ms), g.cause])
    return rows


def _gap_more(total: int, what: str = "gaps") -> str:
    return f"... and {total - MAX_GAP_ROWS} more {what} (all of them in --json)" if total > MAX_GAP_ROWS else ""


def _depth_rows(s: SessionQuality) -> list[list[str]]:
    return [
        [p.exchange, p.pair, span.start, span.end, str(span.snapshots)] for p in s.pairs for span in p.depth_short_spans
    ]


def _runs_line(s: SessionQuality) -> str:
    if s.runs is None:
        return ""
    bits = []
    for r in s.runs:
        end = iso(r.stop_ms)[:19] if r.stop_recorded else f"{iso(r.stop_ms)[:19]} (no stop recorded: last data)"
        bits.append(f"{iso(r.start_ms)[:19]} .. {end}")
    return f"runs ({len(s.runs)}): " + "; ".join(bits)


def _unstored_line(s: SessionQuality) -> str:
    if not s.unstored_pairs:
        return ""
    bits = []
    for u in s.unstored_pairs:
        never = "first_sync_ms" in u and u["first_sync_ms"] is None
        what = "never synced" if never else "no stored snapshot"
        warm = f", {u['warmup_ticks']} warm-up ticks" if "warmup_ticks" in u else ""
        bits.append(f"{u['exchange']} {u['pair']} ({what}{warm})")
    return f"pairs with no stored snapshot ({len(bits)}): " + ", ".join(bits)


def _unreadable_text(report: Report) -> list[str]:
    if not report.unreadable:
        return []
    lines = [f"unreadable files ({len(report.unreadable)}), left out of this report:"]
    return lines + [f"  {u.path}: {u.error}" for u in report.unreadable]


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(header[i]), *(len(r[i]) for r in rows)) if rows else len(header[i]) for i in range(len(header))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def _session_line(s: SessionQuality) -> str:
    st = s.status
    bits = [f"session {s.session_id}", f"interval {s.interval_ms} ms ({s.interval_source})"]
    if st:
        bits.append(f"state {st.get('state')}")
        if st.get("stop_reason"):
            bits.append(f"stopped: {st['stop_reason']}")
    intervals = sorted({r.interval_s for r in s.runs or [] if r.interval_s})
    if len(intervals) > 1:  # the figures assume one grid: say so rather than mislead
        used = ", ".join(f"{i:g}s" for i in intervals)
        bits.append(f"WARNING: runs used different intervals ({used}); figures use {s.interval_ms} ms")
    return "  ".join(bits)


def render_text(report: Report) -> str:
    out = [f"data quality report: {report.location} ({report.format})"]
    out += _unreadable_text(report)
    for s in report.sessions:
        out += ["", _session_line(s)]
        out += [line for line in (_runs_line(s), _unstored_line(s), archive_line(s.archive)) if line]
        out += [_table(PAIR_HEADER, [_pair_row(p) for p in s.pairs])]
        out += ["", _table(LATENCY_HEADER, [_latency_row(p) for p in s.pairs])]
        gaps = _gap_rows(s)
        if gaps:
            out += ["", f"gaps ({len(gaps)}):", _table(GAP_HEADER, gaps[:MAX_GAP_ROWS])]
            out += [more] if (more := _gap_more(len(gaps))) else []
        else:
            out += ["", "gaps: none"]
        spans = _depth_rows(s)
        if spans:
            out += ["", f"depth short ({len(spans)} spans):", _table(DEPTH_HEADER, spans[:MAX_GAP_ROWS])]
            out += [more] if (more := _gap_more(len(spans), "spans")) else []
        if s.records:
            out += ["", "trades and quotes:", _table(RECORDS_HEADER, records_rows(s.records))]
    return "\n".join(out)


_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.8em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: left; }
td span.w { white-space: nowrap; }  /* cells wrap between words only: a table shrinks to fit */
th { background: #f2f2f2; vertical-align: bottom; }
td.bad, li.bad { color: #b00; font-weight: bold; }
figure { margin: 1em 0; }
h1, li { overflow-wrap: anywhere; }  /* long paths break rather than widen the page */
div.scroll { overflow-x: auto; max-width: 100%; }
figure svg { max-width: 100%; height: auto; }
"""


def _html_table(header: list[str], rows: list[list[str]], bad: set[tuple[int, int]] | None = None) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = []
    for i, r in enumerate(rows):
        cells = "".join(
            f'<td class="bad">{_words(c)}</td>' if bad and (i, j) in bad else f"<td>{_words(c)}</td>"
            for j, c in enumerate(r)
        )
        body.append(f"<tr>{cells}</tr>")
    table = f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    return f'<div class="scroll">{table}</div>'  # a table still too wide scrolls, the page does not


def _words(text: str) -> str:
    """Each word unbreakable (never 'BTC-' / 'USDT' on two lines), the spaces between them free."""
    return " ".join(f'<span class="w">{html.escape(w)}</span>' for w in text.split(" "))


def _bad_cells(s: SessionQuality) -> set[tuple[int, int]]:
    col = {name: j for j, name in enumerate(PAIR_HEADER)}
    bad = set()
    for i, p in enumerate(s.pairs):
        if p.gaps:
            bad.update({(i, col["coverage"]), (i, col["gaps"])})
        if not p.seq_continuous:
            bad.add((i, col["sequence"]))
        if p.crossed or p.empty or p.one_sided:
            bad.add((i, col["crossed/empty/1-sided"]))
        if p.depth_short:
            bad.add((i, col["depth short"]))
        if p.unverified:
            bad.add((i, col["unverified"]))
    return bad


def _html_unreadable(report: Report) -> list[str]:
    if not report.unreadable:
        return []
    items = "".join(f'<li class="bad">{html.escape(u.path)}: {html.escape(u.error)}</li>' for u in report.unreadable)
    n = len(report.unreadable)
    return [f'<section class="unreadable"><h2>Unreadable files ({n}), left out of this report</h2><ul>{items}</ul>']


def _html_lines(*lines: str) -> str:
    return "".join(f"<p>{html.escape(line)}</p>" for line in lines if line)


def render_html(report: Report) -> str:
    from recorder.report import plots  # matplotlib only when an HTML page is asked for

    title = f"Data quality report - {report.location}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p>format read: {html.escape(report.format)}; generated {html.escape(iso(report.generated_ms))}</p>",
        *_html_unreadable(report),
    ]
    for s in report.sessions:
        gaps = _gap_rows(s)
        spans = _depth_rows(s)
        parts += [
            f'<section class="session" id="session-{html.escape(s.session_id)}">',
            f"<h2>{html.escape(_session_line(s))}</h2>",
            _html_lines(_runs_line(s), _unstored_line(s), archive_line(s.archive)),
            "<h3>Coverage and integrity</h3>",
            _html_table(PAIR_HEADER, [_pair_row(p) for p in s.pairs], _bad_cells(s)),
            "<h3>Latency and storage</h3>",
            _html_table(LATENCY_HEADER, [_latency_row(p) for p in s.pairs]),
            f"<h3>Gaps ({len(gaps)})</h3>",
            _html_table(GAP_HEADER, gaps[:MAX_GAP_ROWS])
            if gaps
            else "<p>No gaps: every tick between first and last is stored while the session ran.</p>",
            f"<p>{html.escape(_gap_more(len(gaps)))}</p>" if len(gaps) > MAX_GAP_ROWS else "",
            "<h3>Trades and quotes</h3>" if s.records else "",
            _html_table(RECORDS_HEADER, records_rows(s.records)) if s.records else "",
            f"<h3>Depth short ({len(spans)} spans)</h3>" if spans else "",
            _html_table(DEPTH_HEADER, spans[:MAX_GAP_ROWS]) if spans else "",
            f"<p>{html.escape(_gap_more(len(spans), 'spans'))}</p>" if len(spans) > MAX_GAP_ROWS else "",
            '<figure class="plot coverage">',
            plots.coverage_timeline(s),
            "<figcaption>Coverage timeline per pair</figcaption></figure>",
            '<figure class="plot latency">',
            plots.latency_histogram(s),
            "<figcaption>Capture latency histogram</figcaption></figure>",
            '<figure class="plot spread">',
            plots.spread_over_time(s),
            "<figcaption>Spread over time (the line breaks where no snapshot was stored)</figcaption></figure>",
            "</section>",
        ]
    parts.append("</body></html>")
    return "\n".join(parts)
