"""Helpers for the Kraken and OKX tests: the text capture format, the real sampler driven on a
recording's clock, and a venue simulator run as its own process."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from recorder.metrics import SharedCounters
from recorder.model import Snapshot, snapshot_decoder
from recorder.replay.readers import CaptureReader, Kind
from recorder.sampler.sampler import Sampler
from recorder.supervisor.venue_worker import venue_counter_fields
from tests.conftest import VenueSim

RECORDINGS = Path(__file__).resolve().parents[2] / "shared" / "recordings"


def read_text_capture(path: Path) -> list[tuple[float, bytes]]:
    """Received frames of a capture as (local receive ms, payload), via the project's reader."""
    return [(r.recv_ms, r.payload) for r in CaptureReader(path, strict=True) if r.kind is Kind.WS]


class _ListRing:
    def __init__(self) -> None:
        self.items: list[Snapshot] = []

    def push(self, payload: bytes) -> bool:
        self.items.append(snapshot_decoder.decode(payload))
        return True


class _FeedAsConnector:
    """What the sampler needs from a connector, served by a sans-I/O Feed."""

    def __init__(self, feed: Any) -> None:
        self.feed = feed

    def book(self, pair: str) -> Any:
        return self.feed.book(pair)

    def request_resync(self, pair: str, reason: str) -> None:
        self.feed.invalidate(pair)


class RecordedSampling:
    """Feeds recorded frames through a Feed and samples every book with the real ``Sampler`` on the
    recording's own clock (a grid tick is sampled as soon as a frame at or after it arrives)."""

    def __init__(self, venue: str, feed: Any, pairs: list[str], interval_ms: int = 100, depth: int = 10) -> None:
        self.feed = feed
        self.ring = _ListRing()
        self.counters = SharedCounters.create(venue_counter_fields(pairs))
        self.sampler = Sampler(venue, pairs, depth, interval_ms, _FeedAsConnector(feed), self.ring, self.counters, "t")
        self.interval_ms = interval_ms
        self.next_tick: int | None = None

    def frame(self, recv_ms: float, payload: bytes) -> None:
        if self.next_tick is None:
            self.next_tick = (int(recv_ms) // self.interval_ms + 1) * self.interval_ms
        while self.next_tick <= recv_ms:
            self.sampler.sample(self.next_tick, float(self.next_tick))
            self.next_tick += self.interval_ms
        self.feed.on_frame(payload, recv_ms)

    def close(self) -> None:
        self.counters.close()

    def by_key(self) -> dict[tuple[str, int], Snapshot]:
        return {(s.pair, s.timestamp_ms): s for s in self.ring.items}


def venue_config(path: Path, venue: str, urls: dict[str, str], pairs: list[str], data_dir: Path, **extra: Any) -> Path:
    lines = [
        f'data_dir = "{data_dir}"',
        "",
        f"[venues.{venue}]",
        f"pairs = {json.dumps(pairs)}",
        f'ws_url = "{urls["ws_url"]}"',
        f'rest_url = "{urls["rest_url"]}"',
        *(f"{k} = {json.dumps(v)}" for k, v in extra.items()),
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def sim_fixture(venue: str) -> Iterator[VenueSim]:
    sim = VenueSim(venue, "--seed", "11")
    try:
        yield sim
    finally:
        sim.stop()
