"""Wire decode + book apply per venue on its real recording (``tests/data/recordings``), in messages/s.

Three benchmarks per venue, on the same book frames (those after every book of the capture is
synced; each round starts from fresh books synced on the frames before):

* ``msgspec_decode_only`` (baseline): the venue module's msgspec decoders alone, nothing else
  (each frame's decoder is picked before the timing); the ceiling for Python.
* ``recorder_decode_and_apply``: the live path, the venue's ``Feed.on_frame`` (decode, sequence
  and checksum rules, book apply, counters), wired as the live connector and ``replay`` wire it.
* ``cryptofeed_book_path``: cryptofeed's own feed class for the exchange (PyPI cryptofeed,
  Decimal levels in its C ``order_book``), given the same text frames; its symbol table is
  pre-filled (no internet) and Binance's REST snapshot read is answered from the recording.
"""

from __future__ import annotations

import asyncio

import pytest
from venue_cases import Recording, VenueCase, available_cases, run_cryptofeed

CASES = available_cases()
IDS = [c.venue for c in CASES]
_loaded: dict[str, Recording] = {}


@pytest.fixture(params=CASES, ids=IDS)
def recording(request: pytest.FixtureRequest) -> Recording:
    case: VenueCase = request.param
    if case.venue not in _loaded:
        _loaded[case.venue] = case.load()
    return _loaded[case.venue]


def _rounds(n_frames: int) -> int:
    return max(20, min(300, 60_000 // max(1, n_frames)))


def _group(benchmark, rec: Recording) -> None:
    benchmark.group = f"decode+apply {rec.case.venue}"


def _report(benchmark, rec: Recording, n: int) -> None:
    benchmark.extra_info.update(messages=n, unit="messages/s", venue=rec.case.venue)


def test_msgspec_decode_only(benchmark, recording: Recording) -> None:
    _group(benchmark, recording)
    pick = recording.case.decoder(recording.module)
    frames = recording.book_frames
    plan = [(pick(f), f) for f in frames]  # each frame's decoder chosen outside the timing

    def run() -> int:
        for decode, f in plan:
            decode(f)
        return len(frames)

    assert benchmark.pedantic(run, rounds=_rounds(len(frames)), iterations=1, warmup_rounds=1) == len(frames)
    _report(benchmark, recording, len(frames))
    benchmark.extra_info["baseline"] = True


def test_recorder_decode_and_apply(benchmark, recording: Recording) -> None:
    """The live path: the venue Feed's on_frame for every timed frame."""
    _group(benchmark, recording)

    def setup():
        return (recording.timed_calls(),), {}

    def run(feeds_calls) -> int:
        _, calls = feeds_calls
        for fn, payload, recv_ms in calls:
            fn(payload, recv_ms)
        return len(calls)

    benchmark.pedantic(run, setup=setup, rounds=_rounds(len(recording.book_frames)), iterations=1)
    feeds, calls = recording.timed_calls()
    run((feeds, calls))
    stats = [live.feed.stats for live in feeds.sockets]
    assert sum(s.malformed for s in stats) == 0 and sum(s.gaps for s in stats) == 0  # the path under test is clean
    _report(benchmark, recording, len(recording.book_frames))


def test_cryptofeed_book_path(benchmark, recording: Recording) -> None:
    _group(benchmark, recording)
    pytest.importorskip("cryptofeed")
    if recording.case.cryptofeed is None:
        pytest.skip(f"no cryptofeed adapter for {recording.case.venue} in benchmarks/venue_cases.py yet")
    cf = recording.case.cryptofeed(recording)
    loop = asyncio.new_event_loop()

    def setup():
        feed = cf.make()
        run_cryptofeed(feed, cf.warmup, loop)  # synced before timing, as for the recorder
        return (feed,), {}

    try:
        n = benchmark.pedantic(
            lambda feed: run_cryptofeed(feed, cf.timed, loop), setup=setup, rounds=_rounds(len(cf.timed)), iterations=1
        )
    finally:
        loop.close()
    assert n == len(recording.book_frames)
    _report(benchmark, recording, n)
