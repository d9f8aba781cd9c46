"""Turn pytest-benchmark JSON into docs/benchmarks.md: every figure beside its same-run baseline.

pytest benchmarks/ -n 0 --benchmark-json=.benchmarks/run.json
python benchmarks/report.py .benchmarks/run.json > docs/benchmarks.md
"""

from __future__ import annotations

import json
import platform
import sys
from typing import Any

import psutil


def _machine() -> str:
    freq = psutil.cpu_freq()
    clock = f" @ {freq.max:.0f} MHz" if freq and freq.max else ""
    ram = psutil.virtual_memory().total / 2**30
    return (
        f"{platform.processor() or platform.machine()}, {psutil.cpu_count(logical=True)} logical cores{clock}, "
        f"{ram:.0f} GiB RAM, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}"
    )


def _fmt(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:,.2f}"


def render(data: dict[str, Any]) -> str:
    groups: dict[str, list[dict[str, Any]]] = {}
    for b in data["benchmarks"]:
        groups.setdefault(b["group"] or b["name"], []).append(b)
    out = ["# Benchmarks", "", f"Machine: {_machine()}.", f"Run: {data.get('datetime', '?')}.", ""]
    out.append("Ratios are against the baseline of the same group, measured in the same run.")
    for group, items in groups.items():
        base = next((b for b in items if b["extra_info"].get("baseline")), items[0])
        out += ["", f"## {group}", "", "| benchmark | mean | min | vs baseline | figures |", "|---|---|---|---|---|"]
        for b in items:
            mean = b["stats"]["mean"]
            ratio = base["stats"]["mean"] / mean if mean else 0.0
            extra = {k: v for k, v in b["extra_info"].items() if k != "baseline"}
            if "messages" in extra:
                extra["messages_per_s"] = round(extra["messages"] / mean)
            figures = ", ".join(f"{k}={v}" for k, v in extra.items())
            tag = " (baseline)" if b is base else ""
            least = _fmt(b["stats"]["min"] * 1e3)
            out.append(f"| {b['name']}{tag} | {_fmt(mean * 1e3)} ms | {least} ms | {ratio:.2f}x speed | {figures} |")
    out += _decode_summary(groups)
    return "\n".join(out) + "\n"


def _decode_summary(groups: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Per venue: the live path as a share of the decode-only ceiling, and its speed vs cryptofeed,
    by mean and by min (the min is what a loaded machine disturbs least)."""
    rows = []
    for group, items in groups.items():
        if not group.startswith("decode+apply "):
            continue
        figures = []
        for stat in ("mean", "min"):
            t = {b["name"].split("[")[0]: b["stats"][stat] for b in items}
            ours, ceiling = t.get("test_recorder_decode_and_apply"), t.get("test_msgspec_decode_only")
            peer = t.get("test_cryptofeed_book_path")
            if not ours or not ceiling:
                break
            figures += [f"{100 * ceiling / ours:.0f} %", f"{peer / ours:.2f}x" if peer else "n/a"]
        if len(figures) == 4:
            rows.append(f"| {group.removeprefix('decode+apply ')} | {' | '.join(figures)} |")
    if not rows:
        return []
    head = [
        "",
        "## decode+apply summary",
        "",
        "| venue | live / ceiling (mean) | vs cryptofeed (mean) | live / ceiling (min) | vs cryptofeed (min) |",
    ]
    return head + ["|---|---|---|---|---|"] + rows


if __name__ == "__main__":
    with open(sys.argv[1]) as fh:
        sys.stdout.write(render(json.load(fh)))
