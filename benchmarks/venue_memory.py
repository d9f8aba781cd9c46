"""Memory of a venue process's Python side over simulated time, free of sockets and of the clock.

The simulator's own book generators (``recorder.sim``) produce P Binance books; every 100 ms of
*simulated* time each book's diff is framed as on the wire and given to ``BinanceFeed.on_frame``,
and the ``Sampler`` samples every book at depth 20 into a ring that accepts everything. Each
checkpoint prints the process's private resident memory (``RssAnon``) and, with ``--tracemalloc``,
the Python heap and its biggest growths by source line since the first checkpoint. Being
deterministic and unhurried, it tells structures that keep growing from allocator warm-up even
on a loaded machine, where the end-to-end run (``test_e2e.py``) falls behind.

    python benchmarks/venue_memory.py --pairs 1000 --seconds 600 --every 60 [--tracemalloc]
"""

from __future__ import annotations

import argparse
import gc
import random
import time
import tracemalloc

import msgspec

from recorder.metrics import SharedCounters
from recorder.sampler.sampler import SAMPLER_FIELDS, Sampler, sampler_pair_fields
from recorder.sim.binance_symbols import make_spec
from recorder.sim.binance_wire import levels as _levels
from recorder.sim.book import BookGenerator
from recorder.venues.base import CONNECTOR_FIELDS, pair_fields
from recorder.venues.binance import BinanceFeed, stream_for, symbol_for


class _Ring:
    """Takes every payload, keeps none (the writer's side is another process)."""

    def __init__(self) -> None:
        self.pushed = 0

    def push(self, payload: bytes) -> bool:
        self.pushed += 1
        return True

    def push_many(self, payloads: list[bytes]) -> int:
        self.pushed += len(payloads)
        return len(payloads)


class _Connector:
    def __init__(self, feed: BinanceFeed) -> None:
        self.feed = feed
        self.book = feed.book

    def request_resync(self, pair: str, reason: str) -> None:
        raise AssertionError(f"{pair}: {reason}")  # a generated book is never crossed


def _rss_anon_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pairs", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=600.0, help="simulated seconds")
    ap.add_argument("--every", type=float, default=60.0, help="simulated seconds between checkpoints")
    ap.add_argument("--tracemalloc", action="store_true")
    args = ap.parse_args()

    pairs = [f"B{i:04d}-USDT" for i in range(args.pairs)]
    gens = {}
    windows = {}
    for i, pair in enumerate(pairs):
        gens[pair] = BookGenerator(make_spec(symbol_for(pair)), random.Random(i), 0.1)
        windows[pair] = gens[pair].add_window()
    feed = BinanceFeed(pairs, snapshot_limit=100)
    fields = [*CONNECTOR_FIELDS, *SAMPLER_FIELDS]
    for pair in pairs:
        fields += pair_fields(pair) + sampler_pair_fields(pair)
    counters = SharedCounters.create(fields)
    ring = _Ring()
    sampler = Sampler("binance", pairs, 20, 100, _Connector(feed), ring, counters)  # type: ignore[arg-type]
    streams = {pair: stream_for(pair) for pair in pairs}
    encode = msgspec.json.encode

    t_ms = 1_800_000_000_000
    ticks = int(args.seconds * 10)
    every = max(1, int(args.every * 10))
    first: tracemalloc.Snapshot | None = None
    if args.tracemalloc:
        tracemalloc.start(1)
    wall = time.monotonic()
    unsynced = set(pairs)
    try:
        for tick in range(ticks + 1):
            t_ms += 100
            for pair in pairs:
                gen = gens[pair]
                gen.step()
                diff = windows[pair].take()
                if diff is None:
                    continue
                ev = {"e": "depthUpdate", "E": t_ms, "s": symbol_for(pair), "U": diff.first_id, "u": diff.last_id,
                      "b": _levels(diff.bids), "a": _levels(diff.asks)}  # fmt: skip
                feed.on_frame(encode({"stream": streams[pair], "data": ev}), t_ms)
                if pair in unsynced:  # the REST snapshot joins the first buffered diff, as live
                    unsynced.discard(pair)
                    bids, asks = gen.book.top(100)
                    body = {"lastUpdateId": gen.last_id, "bids": _levels(bids), "asks": _levels(asks)}
                    feed.on_rest_snapshot(pair, encode(body), t_ms)
            sampler.sample(t_ms, t_ms + 0.2)
            if tick % every == 0:
                gc.collect()
                line = f"t={tick / 10:7.0f}s rss_anon={_rss_anon_mb():7.1f} MB samples={ring.pushed}"
                if args.tracemalloc:
                    # The generators stand in for the exchange: their memory is not the venue process's.
                    snap = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, "*/recorder/sim/*")])
                    heap = sum(s.size for s in snap.statistics("filename"))
                    line += f" venue_py_heap={heap / 2**20:7.2f} MB"
                    if first is None:
                        first = snap
                    else:
                        top = snap.compare_to(first, "lineno")[:3]
                        line += "".join(f"\n    {s}" for s in top)
                levels = sum(len(feed.syncs[p].book) for p in pairs)
                line += f" book_levels={levels} wall={time.monotonic() - wall:.0f}s"
                print(line, flush=True)
        assert sum(s.synced for s in feed.syncs.values()) == len(pairs), "every book stays synced"
        assert feed.stats.gaps == 0
    finally:
        counters.close()


if __name__ == "__main__":
    main()
