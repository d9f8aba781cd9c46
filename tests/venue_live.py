"""Helpers for venue tests: recorded captures, capture configs (and ``VenueSim`` from conftest)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.conftest import VenueSim as VenueSim  # (re-exported: the venue tests import it from here)

RECORDINGS = Path(__file__).resolve().parents[2] / "shared" / "recordings"


_KIND = {"ws": "recv", "sent": "send", "http": "http", "connect": "connect"}


def read_jsonl_zst(path: Path) -> Iterator[dict[str, Any]]:
    """A capture read by ``recorder.replay.readers``, as dicts: t (recv/send/http/connect), conn, ts, data, addr."""
    from recorder.replay.readers import CaptureReader

    reader = CaptureReader(path, strict=True)
    for rec in reader:
        yield {
            "t": _KIND[rec.kind.value],
            "conn": rec.conn,
            "ts": rec.recv_ms / 1000.0,
            "data": rec.payload.decode(),
            "addr": rec.url,
        }


def write_venue_config(
    path: Path, venue: str, urls: dict[str, str], pairs: list[str], data_dir: Path, **top: Any
) -> Path:
    lines = [f'data_dir = "{data_dir}"']
    lines += [f"{k} = {json.dumps(v)}" for k, v in top.items()]
    lines += [
        "",
        f"[venues.{venue}]",
        f"pairs = {json.dumps(pairs)}",
        f'ws_url = "{urls["ws_url"]}"',
        f'rest_url = "{urls["rest_url"]}"',
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def levels(side: list[list[str]]) -> list[tuple[float, float]]:
    return [(float(p), float(q)) for p, q in side]


def stored_levels(side: list[dict[str, float]]) -> list[tuple[float, float]]:
    return [(lv["price"], lv["qty"]) for lv in side]
