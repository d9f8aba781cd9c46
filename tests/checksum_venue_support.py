"""Helpers for the Kraken and OKX tests: the text capture format, the real sampler driven on a
recording's clock, and a venue simulator run as its own process."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from recorder.metrics import SharedCounters
from recorder.model import Snapshot, decode_ring_record
from recorder.replay.readers import CaptureReader, Kind
from recorder.sampler.sampler import Sampler
from recorder.supervisor.venue_worker import venue_counter_fields
from tests.conftest import VenueSim

RECORDINGS = Path(__file__).resolve().parent / "data" / "recordings"


def read_text_capture(path: Path) -> list[tuple[float, bytes]]:
    """Received frames of a capture as (local receive ms, payload), via the project's reader."""
    return [(r.recv_ms, r.payload) for r in CaptureReader(path, strict=True) if r.kind is Kind.WS]


class _ListRing:
    def __init__(self) -> None:
        self.items: list[Snapshot] = []

    def push(self, payload: bytes) -> bool:
        self.items.append(decode_ring_record(payload))
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
        self.sampler = Sampler(venue, pairs, depth, interval_ms, _FeedAsConnector(feed), self.ring, self.counters)
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


def assert_a_corrupted_level_costs_only_its_book(
    venue: str,
    new_feed: Callable[[], Any],
    frames: list[tuple[float, bytes]],
    pair: str,
    k: int,
    damaged: bytes,
    m: int,
    resync: tuple[float, bytes],
    resync_slack_ms: float,
) -> None:
    """Replay ``frames`` twice through the real sampler: clean, and with message ``k`` replaced by
    ``damaged`` (one level changed, its checksum of the true book kept); both get the venue's fresh
    snapshot ``resync`` before frame ``m``. The damage is caught at ``k``; only ``pair``'s book is
    dropped and resynced; everything sampled from the damaged stream equals the clean stream."""
    clean_frames = frames[:m] + [resync] + frames[m:]
    bad_frames = frames[:k] + [(frames[k][0], damaged)] + frames[k + 1 : m] + [resync] + frames[m:]
    reference = new_feed()
    for ts, payload in frames[:m]:
        reference.on_frame(payload, ts)
    pairs = sorted(reference.pairs())
    clean = RecordedSampling(venue, new_feed(), pairs)
    bad = RecordedSampling(venue, new_feed(), pairs)
    try:
        for ts, payload in clean_frames:
            clean.frame(ts, payload)
        detected_at = None
        for i, (ts, payload) in enumerate(bad_frames):
            bad.frame(ts, payload)
            if detected_at is None and bad.feed.stats.checksums_failed:
                detected_at = i
            if detected_at is not None and i < m:
                # From the fault until the resync snapshot: never served, resubscribe wanted.
                assert bad.feed.book(pair) is None and bad.feed.wants_snapshot() == {pair}
        assert detected_at == k
        assert clean.feed.stats.checksums_failed == 0
        s = bad.feed.stats
        assert s.checksums_failed == 1 and s.per_pair[pair]["checksums_failed"] == 1
        assert s.per_pair[pair]["resyncs"] == 2  # the first snapshot and the resync
        assert all(per["resyncs"] == 1 and "checksums_failed" not in per for p, per in s.per_pair.items() if p != pair)
        assert bad.feed.wants_snapshot() == set() and bad.feed.book(pair) is not None
        # Everything sampled from the damaged stream equals the clean stream at the same tick;
        # the damaged pair has no snapshot from the fault to its first verified update after resync.
        clean_snaps, bad_snaps = clean.by_key(), bad.by_key()
        t_fault, t_resync = frames[k][0], frames[m][0]
        missing = set(clean_snaps) - set(bad_snaps)
        assert missing and all(p == pair and t_fault <= t <= t_resync + resync_slack_ms for p, t in missing)
        for key, snap in bad_snaps.items():
            assert snap == clean_snaps[key], key
        assert any(p == pair and t > t_resync for p, t in bad_snaps)  # it came back
        assert bad.counters.get(f"missed:{pair}") > 0
        assert all(bad.counters.get(f"missed:{p}") == 0 for p in pairs if p != pair)
    finally:
        clean.close()
        bad.close()


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


def sim_fixture(venue: str, *extra: str) -> Iterator[VenueSim]:
    sim = VenueSim(venue, "--seed", "11", *extra)
    try:
        yield sim
    finally:
        sim.stop()
