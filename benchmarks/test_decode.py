"""Wire decode + book apply on real recorded Binance frames, in messages/s.

Baselines in the same run: decode only with msgspec (the ceiling for Python) and cryptofeed's
own Binance book path (PyPI cryptofeed, Decimal levels in its C `order_book`), a peer users
would pick instead.
"""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from recorder.venues.binance import BookSync, DepthSnapshot, parse_frame

pytestmark = pytest.mark.benchmark(group="decode+apply binance")
_snapshot = msgspec.json.Decoder(DepthSnapshot)


def _messages_per_s(benchmark, n: int) -> None:
    benchmark.extra_info["messages"] = n
    benchmark.extra_info["unit"] = "messages/s"


def test_msgspec_decode_only(benchmark, binance_recording) -> None:
    frames, snaps = binance_recording
    frames = _depth_frames(frames, snaps)

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


def _synced_books(frames: list[bytes], snaps: dict[str, bytes]) -> dict[str, BookSync]:
    """Books joined to their snapshots at the first diff, as a live capture has them (not timed)."""
    syncs: dict[str, BookSync] = {}
    for f in frames:
        _, ev = parse_frame(f)  # type: ignore[misc]
        if ev.s not in syncs:
            sync = syncs[ev.s] = BookSync(ev.s)
            sync.on_diff(ev, 0.0)
            sync.on_snapshot(_snapshot.decode(snaps[ev.s]))
    return syncs


def test_recorder_decode_and_apply(benchmark, binance_recording) -> None:
    frames, snaps = binance_recording
    frames = _depth_frames(frames, snaps)

    def apply_all(syncs: dict[str, BookSync]) -> int:
        n = 0
        for f in frames:
            parsed = parse_frame(f)
            if isinstance(parsed, tuple):
                syncs[parsed[1].s].on_diff(parsed[1], 0.0)
                n += 1
        return n

    def setup() -> tuple[tuple[dict[str, BookSync]], dict[str, object]]:
        return (_synced_books(frames, snaps),), {}

    n = benchmark.pedantic(apply_all, setup=setup, rounds=300, iterations=1)
    assert n == len(frames)
    books = _synced_books(frames, snaps)
    apply_all(books)
    assert all(s.synced for s in books.values())  # the recording joins without a gap
    _messages_per_s(benchmark, len(frames))


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

    text = [f.decode() for f in frames]
    loop = asyncio.new_event_loop()

    def setup() -> tuple[tuple[object], dict[str, object]]:
        feed = Binance(symbols=[std[s] for s in symbols], channels=[L2_BOOK], callbacks={L2_BOOK: noop})
        feed.http_conn.read = snapshot  # the recorded REST snapshot instead of the network
        for s in symbols:  # synced before timing, as for the recorder
            loop.run_until_complete(feed._snapshot(s))
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
    assert n == len(frames)
    _messages_per_s(benchmark, n)
