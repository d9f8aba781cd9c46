"""Kraken and OKX Feeds on their real recordings (parse + apply + truncate + CRC32 checksum of
every update), in messages/s, against a decode-only baseline of the same frames; and the cost of
keeping the original level text (``TextL2Book``) against the plain float ``L2Book``."""

from __future__ import annotations

import json

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


def _per_s(benchmark, n: int) -> None:
    benchmark.extra_info["messages"] = n
    benchmark.extra_info["unit"] = "messages/s"


_any = msgspec.json.Decoder()


@pytest.mark.benchmark(group="kraken v1 feed (4,321 frames, 4,269 checksums)")
def test_kraken_decode_only(benchmark, kraken_frames) -> None:
    payloads = [p for _, p in kraken_frames]
    benchmark(lambda: [_any.decode(p) for p in payloads])
    _per_s(benchmark, len(payloads))
    benchmark.extra_info["baseline"] = True


@pytest.mark.benchmark(group="kraken v1 feed (4,321 frames, 4,269 checksums)")
def test_kraken_feed(benchmark, kraken_frames) -> None:
    def run() -> int:
        feed = KrakenFeed()
        for ts, p in kraken_frames:
            feed.on_frame(p, ts)
        return feed.stats.checksums_ok

    assert benchmark(run) == 4269
    _per_s(benchmark, len(kraken_frames))


@pytest.mark.benchmark(group="okx feed (410 frames, 290 checksums)")
def test_okx_decode_only(benchmark, okx_frames) -> None:
    payloads = [p for _, p in okx_frames]
    benchmark(lambda: [_any.decode(p) for p in payloads])
    _per_s(benchmark, len(payloads))
    benchmark.extra_info["baseline"] = True


@pytest.mark.benchmark(group="okx feed (410 frames, 290 checksums)")
def test_okx_feed(benchmark, okx_frames) -> None:
    def run() -> int:
        feed = OkxFeed()
        for ts, p in okx_frames:
            feed.on_frame(p, ts)
        return feed.stats.checksums_ok

    assert benchmark(run) == 290
    _per_s(benchmark, len(okx_frames))


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
