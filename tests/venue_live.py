"""Helpers for venue tests: recorded captures, a simulator of any venue, capture configs."""

from __future__ import annotations

import json
import signal
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.conftest import CLI, ROOT

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


class VenueSim:
    """``python cli.py simulate --venue V`` as a real process."""

    def __init__(self, venue: str, *extra: str) -> None:
        self.venue = venue
        self.proc = subprocess.Popen(
            [*CLI, "simulate", "--venue", venue, "--port", "0", *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            cwd=ROOT,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{venue} simulator did not start")
        self.urls: dict[str, str] = json.loads(line)

    def get(self, path: str) -> tuple[int, Any]:
        try:
            with urllib.request.urlopen(f"{self.urls['sim_url']}{path}", timeout=10) as resp:
                return resp.status, json.load(resp)
        except urllib.error.HTTPError as exc:
            return exc.code, json.load(exc)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


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
