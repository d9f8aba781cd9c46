"""Kraken and OKX Feeds on their real recordings (parse + apply + truncate + CRC32 checksum of
every update), in messages/s, against a decode-only baseline of the same frames; and the cost of
keeping the original level text (``TextL2Book``) against the plain float ``L2Book``."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import msgspec
import pytest

from benchmarks.conftest import RECORDINGS
from recorder.book import L2Book, TextL2Book
from recorder.replay.readers import CaptureReader, Kind
from recorder.venues.kraken import KrakenFeed
from recorder.venues.okx import OkxFeed


def _frames(name: str) -> list[tuple[float, bytes]]:
    return [(r.recv_ms, r.payload) for r in CaptureReader(RECORDINGS / name) if r.kind is Kind.WS]


@pytest.fixture(scope="module")
def kraken_frames() -> list[tuple[float, bytes]]:
    return _frames("kraken/KRAKEN.ws.50.0")


@pytest.fixture(scope="module")
def okx_frames() -> list[tuple[float, bytes]]:
    return _frames("okx/OKX.ws.1.0")


_any = msgspec.json.Decoder()


def _per_s(benchmark, n: int) -> None:
    benchmark.extra_info["messages"] = n
    benchmark.extra_info["unit"] = "messages/s"


def _decode_only(benchmark, frames: list[tuple[float, bytes]]) -> None:
    """The group's baseline: msgspec's schema-free decode of every frame, nothing else."""
    payloads = [p for _, p in frames]
    benchmark(lambda: [_any.decode(p) for p in payloads])
    _per_s(benchmark, len(payloads))
    benchmark.extra_info["baseline"] = True


def _feed(benchmark, frames: list[tuple[float, bytes]], make_feed, checksums: int) -> None:
    """A fresh Feed given every frame; each round must verify all ``checksums`` of the capture."""

    def run() -> int:
        feed = make_feed()
        for ts, p in frames:
            feed.on_frame(p, ts)
        return feed.stats.checksums_ok

    assert benchmark(run) == checksums
    _per_s(benchmark, len(frames))


@pytest.mark.benchmark(group="kraken v1 feed (4,321 frames, 4,269 checksums)")
def test_kraken_decode_only(benchmark, kraken_frames) -> None:
    _decode_only(benchmark, kraken_frames)


@pytest.mark.benchmark(group="kraken v1 feed (4,321 frames, 4,269 checksums)")
def test_kraken_feed(benchmark, kraken_frames) -> None:
    _feed(benchmark, kraken_frames, KrakenFeed, 4269)


def _as_v2(frames: list[tuple[float, bytes]]) -> list[tuple[float, bytes]]:
    """The v1 book frames as Kraken's v2 (the live protocol): the same level texts, so the same
    checksums; snapshots without one (v2 then serves them at once), times as RFC 3339."""
    out = []
    for ts, payload in frames:
        msg = json.loads(payload)
        if not (isinstance(msg, list) and str(msg[-2]).startswith("book")):
            continue
        dicts = msg[1:-2]
        snapshot = any("as" in d or "bs" in d for d in dicts)
        bids = [lv for d in dicts for lv in d.get("bs" if snapshot else "b", [])]
        asks = [lv for d in dicts for lv in d.get("as" if snapshot else "a", [])]
        seconds, micros = max(lv[2] for lv in bids + asks).split(".")
        when = datetime.fromtimestamp(int(seconds), UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{micros}Z"
        crc = "" if snapshot else f',"checksum":{dicts[-1]["c"]}'

        def levels(side: list[list[str]]) -> str:
            return ",".join(f'{{"price":{lv[0]},"qty":{lv[1]}}}' for lv in side)

        item = f'{{"symbol":"{msg[-1]}","bids":[{levels(bids)}],"asks":[{levels(asks)}]{crc},"timestamp":"{when}"}}'
        kind = "snapshot" if snapshot else "update"
        out.append((ts, f'{{"channel":"book","type":"{kind}","data":[{item}]}}'.encode()))
    return out


@pytest.fixture(scope="module")
def kraken_v2_frames(kraken_frames) -> list[tuple[float, bytes]]:
    return _as_v2(kraken_frames)


@pytest.mark.benchmark(group="kraken v2 feed (the v1 recording as v2 frames: 4,279, 4,269 checksums)")
def test_kraken_v2_decode_only(benchmark, kraken_v2_frames) -> None:
    _decode_only(benchmark, kraken_v2_frames)


@pytest.mark.benchmark(group="kraken v2 feed (the v1 recording as v2 frames: 4,279, 4,269 checksums)")
def test_kraken_v2_feed(benchmark, kraken_v2_frames) -> None:
    _feed(benchmark, kraken_v2_frames, lambda: KrakenFeed(depth=1000), 4269)


@pytest.mark.benchmark(group="okx feed (410 frames, 290 checksums)")
def test_okx_decode_only(benchmark, okx_frames) -> None:
    _decode_only(benchmark, okx_frames)


@pytest.mark.benchmark(group="okx feed (410 frames, 290 checksums)")
def test_okx_feed(benchmark, okx_frames) -> None:
    _feed(benchmark, okx_frames, OkxFeed, 290)


def _okx_levels(okx_frames: list[tuple[float, bytes]]) -> list[tuple[list[list[str]], list[list[str]]]]:
    out = []
    for _, p in okx_frames:
        msg = json.loads(p)
        if msg.get("arg", {}).get("channel") == "books" and "data" in msg:
            d = msg["data"][0]
            out.append((d["bids"], d["asks"]))
    return out


@pytest.mark.benchmark(group="book apply (OKX levels)")
def test_l2book_apply(benchmark, okx_frames) -> None:
    levels = _okx_levels(okx_frames)

    def run() -> int:
        book = L2Book()
        for bids, asks in levels:
            book.apply([(float(b[0]), float(b[1])) for b in bids], [(float(a[0]), float(a[1])) for a in asks])
        return len(book)

    benchmark(run)
    benchmark.extra_info["baseline"] = True


@pytest.mark.benchmark(group="book apply (OKX levels)")
def test_textbook_apply(benchmark, okx_frames) -> None:
    levels = _okx_levels(okx_frames)

    def run() -> int:
        book = TextL2Book()
        for bids, asks in levels:
            book.apply(bids, asks)
        return len(book)

    benchmark(run)
