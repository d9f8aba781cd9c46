"""Wire decode + book apply on real recorded Binance frames, in messages/s.

Baselines in the same run: decode only with msgspec (the ceiling for Python) and cryptofeed's
own Binance book path (PyPI cryptofeed, Decimal levels in its C `order_book`), a peer users
would pick instead.
"""

from __future__ import annotations

import asyncio

import pytest

from recorder.venues.binance import BinanceFeed, parse_frame

pytestmark = pytest.mark.benchmark(group="decode+apply binance")


def _messages_per_s(benchmark, n: int) -> None:
    benchmark.extra_info["messages"] = n
    benchmark.extra_info["unit"] = "messages/s"


def test_msgspec_decode_only(benchmark, binance_recording) -> None:
    frames, snaps = binance_recording
    frames = _depth_frames(frames, snaps)
    frames = frames[_synced_feed(frames, snaps)[1] :]  # the frames the other two time

    def run() -> int:
        n = 0
        for f in frames:
            if parse_frame(f) is not None:
                n += 1
        return n

    assert benchmark(run) == len(frames)
    _messages_per_s(benchmark, len(frames))
    benchmark.extra_info["baseline"] = True


def _depth_frames(frames: list[bytes], snaps: dict[str, bytes]) -> list[bytes]:
    """Diff frames of the symbols whose REST snapshot is in the recording (the ones a book is kept for)."""
    out = []
    for f in frames:
        parsed = parse_frame(f)
        if isinstance(parsed, tuple) and parsed[1].s in snaps:
            out.append(f)
    return out


def _pair(symbol: str) -> str:
    quote = next(q for q in ("USDT", "BTC", "ETH", "EUR") if symbol.endswith(q))
    return f"{symbol[: -len(quote)]}-{quote}"


def _synced_feed(frames: list[bytes], snaps: dict[str, bytes]) -> tuple[BinanceFeed, int]:
    """A feed whose books are joined to their snapshots, as a live capture has them (not timed).

    Returns the feed and the index of the first frame after every book is synced.
    """
    pairs = {_pair(s): s for s in snaps}
    feed = BinanceFeed(list(pairs))
    for i, f in enumerate(frames):
        feed.on_frame(f, 0.0)
        for pair in list(feed.wants_snapshot()):
            feed.on_rest_snapshot(pair, snaps[pairs[pair]], 0.0)
        if all(feed.book(p) is not None for p in pairs):
            return feed, i + 1
    raise AssertionError("the recording never syncs every book")


def test_recorder_decode_and_apply(benchmark, binance_recording) -> None:
    """The live path: BinanceFeed.on_frame (decode, sequence check, book apply) per frame."""
    frames, snaps = binance_recording
    frames = _depth_frames(frames, snaps)
    _, start = _synced_feed(frames, snaps)
    timed = frames[start:]

    def apply_all(feed: BinanceFeed) -> int:
        for f in timed:
            feed.on_frame(f, 0.0)
        return len(timed)

    def setup() -> tuple[tuple[BinanceFeed], dict[str, object]]:
        return (_synced_feed(frames, snaps)[0],), {}

    n = benchmark.pedantic(apply_all, setup=setup, rounds=300, iterations=1)
    feed = setup()[0][0]
    apply_all(feed)
    assert feed.stats.gaps == 0 and all(feed.book(_pair(s)) is not None for s in snaps)  # joins without a gap
    _messages_per_s(benchmark, n)


def test_cryptofeed_book_path(benchmark, binance_recording) -> None:
    pytest.importorskip("cryptofeed")
    from cryptofeed.defines import L2_BOOK
    from cryptofeed.exchanges import Binance
    from cryptofeed.symbols import Symbols

    frames, snaps = binance_recording
    frames = _depth_frames(frames, snaps)
    symbols = sorted(snaps)
    quotes = ("USDT", "BTC", "ETH", "EUR")
    info: dict[str, list[dict[str, object]]] = {"symbols": []}
    for s in symbols:
        quote = next(q for q in quotes if s.endswith(q))
        info["symbols"].append({"symbol": s, "baseAsset": s[: -len(quote)], "quoteAsset": quote,
                                "filters": [{"tickSize": "0.00000001"}]})  # fmt: skip
    # No internet: give cryptofeed the instrument list it would download.
    Symbols.set(Binance.id, *Binance._parse_symbol_data(info))
    std = {v: k for k, v in Symbols.get(Binance.id)[0].items()}

    async def noop(*_a: object, **_k: object) -> None:
        return None

    async def snapshot(url: str, *_a: object, **_k: object) -> bytes:
        return snaps[url.split("symbol=")[1].split("&")[0]]

    _, start = _synced_feed(frames, snaps)
    warmup = [f.decode() for f in frames[:start]]
    text = [f.decode() for f in frames[start:]]
    loop = asyncio.new_event_loop()

    def setup() -> tuple[tuple[object], dict[str, object]]:
        feed = Binance(symbols=[std[s] for s in symbols], channels=[L2_BOOK], callbacks={L2_BOOK: noop})
        feed.http_conn.read = snapshot  # the recorded REST snapshot instead of the network

        async def warm() -> None:  # synced before timing, as for the recorder
            for t in warmup:
                await feed.message_handler(t, None, 0.0)

        loop.run_until_complete(warm())
        return (feed,), {}

    def apply_all(feed: object) -> int:
        async def main() -> int:
            for t in text:
                await feed.message_handler(t, None, 0.0)  # type: ignore[attr-defined]
            return len(text)

        return loop.run_until_complete(main())

    try:
        n = benchmark.pedantic(apply_all, setup=setup, rounds=100, iterations=1)
    finally:
        loop.close()
    assert n == len(text)
    _messages_per_s(benchmark, n)
