"""The report as a terminal table and as one self-contained HTML page (inline SVG, no scripts)."""

from __future__ import annotations

import html
from typing import Any

from recorder.dataset.timeutil import iso
from recorder.report.quality import PairQuality, Report, SessionQuality


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


def _pair_row(p: PairQuality) -> list[str]:
    lat = p.latency_ms
    files, size, per = _storage(p)
    seq = "ok" if p.seq_continuous else f"missing {p.seq_missing} dup {p.seq_duplicates} order {p.seq_out_of_order}"
    return [
        p.exchange,
        p.pair,
        f"{iso(p.first_ms)[:19]} +{_duration(p.last_ms - p.first_ms)}",
        str(p.expected),
        str(p.stored),
        f"{p.coverage_pct:.2f}%",
        str(len(p.gaps)),
        str(p.missed_in_gaps),
        "-" if p.recorder_missed_ticks is None else str(p.recorder_missed_ticks),
        seq,
        f"{p.crossed}/{p.empty}/{p.one_sided}",
        "/".join(_num(lat[k]) for k in ("p50", "p90", "p99", "max")),
        files,
        size,
        per,
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
    "sequence",
    "crossed/empty/1-sided",
    "latency p50/p90/p99/max ms",
    "files",
    "bytes",
    "B/snapshot",
]
GAP_HEADER = ["exchange", "pair", "start (UTC)", "end (UTC)", "ticks", "length", "cause"]


# Gap rows listed per session; the rest are summarised (all of them are in --json).
MAX_GAP_ROWS = 200


def _gap_rows(s: SessionQuality) -> list[list[str]]:
    rows = []
    for p in s.pairs:
        for g in p.gaps:
            rows.append([p.exchange, p.pair, g.start, g.end, str(g.ticks), _duration(g.duration_ms), g.cause])
    return rows


def _gap_more(total: int) -> str:
    return f"... and {total - MAX_GAP_ROWS} more gaps (all of them in --json)" if total > MAX_GAP_ROWS else ""


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
    return "  ".join(bits)


def render_text(report: Report) -> str:
    out = [f"data quality report: {report.location} ({report.format})"]
    for s in report.sessions:
        out += ["", _session_line(s), _table(PAIR_HEADER, [_pair_row(p) for p in s.pairs])]
        gaps = _gap_rows(s)
        if gaps:
            out += ["", f"gaps ({len(gaps)}):", _table(GAP_HEADER, gaps[:MAX_GAP_ROWS])]
            out += [more] if (more := _gap_more(len(gaps))) else []
        else:
            out += ["", "gaps: none"]
    return "\n".join(out)


_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; white-space: nowrap; }
th { background: #f2f2f2; }
td.bad { color: #b00; font-weight: bold; }
figure { margin: 1em 0; }
div.scroll { overflow-x: auto; }
figure svg { max-width: 100%; height: auto; }
"""


def _html_table(header: list[str], rows: list[list[str]], bad: set[tuple[int, int]] | None = None) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = []
    for i, r in enumerate(rows):
        cells = "".join(
            f'<td class="bad">{html.escape(c)}</td>' if bad and (i, j) in bad else f"<td>{html.escape(c)}</td>"
            for j, c in enumerate(r)
        )
        body.append(f"<tr>{cells}</tr>")
    table = f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    return f'<div class="scroll">{table}</div>'  # wide tables scroll instead of widening the page


def render_html(report: Report) -> str:
    from recorder.report import plots  # matplotlib only when an HTML page is asked for

    title = f"Data quality report - {report.location}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p>format read: {html.escape(report.format)}; generated {html.escape(iso(report.generated_ms))}</p>",
    ]
    for s in report.sessions:
        rows = [_pair_row(p) for p in s.pairs]
        bad = set()
        for i, p in enumerate(s.pairs):
            if p.gaps:
                bad.update({(i, 5), (i, 6)})
            if not p.seq_continuous:
                bad.add((i, 9))
            if p.crossed or p.empty or p.one_sided:
                bad.add((i, 10))
        gaps = _gap_rows(s)
        parts += [
            f'<section class="session" id="session-{html.escape(s.session_id)}">',
            f"<h2>{html.escape(_session_line(s))}</h2>",
            _html_table(PAIR_HEADER, rows, bad),
            f"<h3>Gaps ({len(gaps)})</h3>",
            _html_table(GAP_HEADER, gaps[:MAX_GAP_ROWS])
            if gaps
            else "<p>No gaps: every tick between first and last is stored.</p>",
            f"<p>{html.escape(_gap_more(len(gaps)))}</p>" if len(gaps) > MAX_GAP_ROWS else "",
            '<figure class="plot coverage">',
            plots.coverage_timeline(s),
            "<figcaption>Coverage timeline per pair</figcaption></figure>",
            '<figure class="plot latency">',
            plots.latency_histogram(s),
            "<figcaption>Capture latency histogram</figcaption></figure>",
            '<figure class="plot spread">',
            plots.spread_over_time(s),
            "<figcaption>Spread over time</figcaption></figure>",
            "</section>",
        ]
    parts.append("</body></html>")
    return "\n".join(parts)
