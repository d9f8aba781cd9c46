"""Bybit and Coinbase Feeds (parse + sequence check + book apply) on their real recordings, in frames/s.

Baseline in each group: msgspec decoding the same frames into untyped objects (the ceiling for
any Python parser that looks at every field).
"""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from recorder.replay.readers import CaptureReader, Kind
from recorder.venues.bybit import BybitFeed, feed_for_url
from recorder.venues.coinbase import CoinbaseFeed

RECORDINGS = Path(__file__).resolve().parent.parent.parent / "shared" / "recordings"


def _records(path: Path) -> list[tuple[str, Kind, bytes, str | None]]:
    if not path.exists():
        pytest.skip("../shared/recordings not beside the checkout")
    return [(r.conn, r.kind, r.payload, r.url) for r in CaptureReader(path)]


@pytest.fixture(scope="module")
def bybit_frames() -> tuple[dict[str, str], list[tuple[str, bytes]]]:
    recs = _records(RECORDINGS / "bybit" / "BYBIT.jsonl.zst")
    urls = {conn: url for conn, kind, _, url in recs if kind is Kind.CONNECT and url}
    return urls, [(conn, payload) for conn, kind, payload, _ in recs if kind is Kind.WS]


@pytest.fixture(scope="module")
def coinbase_frames() -> list[bytes]:
    return [
        payload for _, kind, payload, _ in _records(RECORDINGS / "coinbase" / "COINBASE.jsonl.zst") if kind is Kind.WS
    ]


def _info(benchmark, n: int, baseline: bool = False) -> None:
    benchmark.extra_info["messages"] = n
    benchmark.extra_info["unit"] = "messages/s"
    if baseline:
        benchmark.extra_info["baseline"] = True


@pytest.mark.benchmark(group="feed bybit")
def test_bybit_msgspec_decode_only(benchmark, bybit_frames) -> None:
    _, frames = bybit_frames
    decode = msgspec.json.decode
    benchmark(lambda: [decode(f) for _, f in frames])
    _info(benchmark, len(frames), baseline=True)


@pytest.mark.benchmark(group="feed bybit")
def test_bybit_feed(benchmark, bybit_frames) -> None:
    urls, frames = bybit_frames

    def run() -> dict[str, BybitFeed]:
        feeds = {conn: feed_for_url(url) for conn, url in urls.items()}
        for conn, f in frames:
            feeds[conn].on_frame(f, 0.0)
        return feeds

    feeds = benchmark(run)
    assert sum(f.stats.gaps for f in feeds.values()) == 0
    _info(benchmark, len(frames))


@pytest.mark.benchmark(group="feed coinbase")
def test_coinbase_msgspec_decode_only(benchmark, coinbase_frames) -> None:
    decode = msgspec.json.decode
    benchmark(lambda: [decode(f) for f in coinbase_frames])
    _info(benchmark, len(coinbase_frames), baseline=True)


@pytest.mark.benchmark(group="feed coinbase")
def test_coinbase_feed(benchmark, coinbase_frames) -> None:
    def run() -> CoinbaseFeed:
        feed = CoinbaseFeed()
        for f in coinbase_frames:
            feed.on_frame(f, 0.0)
        return feed

    feed = benchmark(run)
    assert feed.stats.gaps == 0
    _info(benchmark, len(coinbase_frames))
