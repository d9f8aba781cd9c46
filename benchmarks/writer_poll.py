"""The writer's CPU per stored snapshot at a universe, in one process: what the end-to-end
benchmark's writer figure measures, without the simulator and venue that a 2-core machine
shared with other work cannot keep at 1000 pairs.

Per 20 ms (the writer's poll interval) 200 books of depth 20 are pushed to a real ring (1000
pairs at 100 ms) and, with ``FLAT=1``, 168 trades and 104 quotes (8 k trades/s and 5 k
quotes/s, the simulator's rates in the end-to-end run), shuffled among them; the real
:class:`~recorder.writer.process.Writer` then steps until it has read them all (``poll``, its
rotation, ``try_commit``), on a clock advanced 20 ms per poll, then drains. Reported: the
writer's CPU time (process time of its steps) per stored book snapshot.

    PYTHONPATH=. FLAT=1 FORMATS=parquet python benchmarks/writer_poll.py

``FORMATS``: ``parquet`` (the end-to-end run's), ``parquet,jsonl`` (the default capture);
``EVERY=k``: the writer steps every k polls' worth of records (reads k times larger); ``POLLS``:
how many 20 ms polls (default 1500: 30 s, a rotation by time or two).
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
import time
import types

from recorder.metrics import SharedCounters
from recorder.model import Quote, SampledBook, Trade, quote_record, ring_encoder, trade_record
from recorder.ring.shm_ring import ShmRing
from recorder.writer import process
from recorder.writer.spec import WRITER_COUNTER_FIELDS, WriterSpec

T0_MS = 1_780_000_000_000
BOOKS, TRADES, QUOTES = 200, 168, 104  # per 20 ms


def main() -> None:
    flat = os.environ.get("FLAT", "1") == "1"
    formats = os.environ.get("FORMATS", "parquet").split(",")
    polls = int(os.environ.get("POLLS", "1500"))
    every = int(os.environ.get("EVERY", "1"))
    clock = types.SimpleNamespace(now=1000.0)

    def sleep(s: float) -> None:
        clock.now += s

    process.time = types.SimpleNamespace(monotonic=lambda: clock.now, sleep=sleep)  # type: ignore[assignment]
    ring = ShmRing.create(256 << 20)
    counters = SharedCounters.create(WRITER_COUNTER_FIELDS)
    data = tempfile.mkdtemp()
    try:
        spec = WriterSpec(session_id="poll", data_dir=data, formats=formats, rotate_snapshots=None,
                          rotate_seconds=30.0, rotate_bytes=64 << 20, rings={"binance": ring.name},
                          counters_name=counters.name)  # fmt: skip
        writer = process.Writer(spec, {"binance": ring}, counters)
        writer.recover()
        rng = random.Random(1)
        names = [f"B{i:04d}-USDT" for i in range(1000)]
        cpu = 0.0
        for poll in range(polls):
            ts = T0_MS + poll * 20
            recs = [_book(rng, names[(poll * BOOKS + k) % 1000], ts, poll) for k in range(BOOKS)]
            if flat:
                recs += [_trade(rng, rng.choice(names), ts, poll * 1000 + k) for k in range(TRADES)]
                recs += [_quote(rng.choice(names), ts, poll * 1000 + k) for k in range(QUOTES)]
                rng.shuffle(recs)
            assert ring.push_many(recs) == len(recs)
            clock.now += 0.02
            if (poll + 1) % every:
                continue
            t = time.process_time()
            while writer.read_pos["binance"] != ring.write_pos or writer.sealed or writer.journal.pending:
                writer.step()
            cpu += time.process_time() - t
        t = time.process_time()
        assert writer.drain("stop") == 0
        cpu += time.process_time() - t
        print(
            f"flat={flat} formats={formats} every={every}: writer CPU {cpu / (polls * BOOKS) * 1e6:.2f} µs per snapshot"
        )
    finally:
        ring.close()
        counters.close()
        shutil.rmtree(data)


def _book(rng: random.Random, pair: str, ts: int, n: int) -> bytes:
    mid = 100 + rng.random()
    bids = [round(mid - 0.01 * j, 2) for j in range(1, 21)]
    asks = [round(mid + 0.01 * j, 2) for j in range(1, 21)]
    qty = [round(rng.random(), 4) for _ in range(40)]
    return ring_encoder.encode(
        SampledBook("binance", pair, ts, bids, qty[:20], asks, qty[20:], 1.5, ts - 3, n, True, True)
    )


def _trade(rng: random.Random, pair: str, ts: int, n: int) -> bytes:
    price, qty = round(100 + rng.random(), 2), round(rng.random(), 5)
    side = "buy" if n % 2 else "sell"
    return trade_record(Trade("binance", pair, str(n), price, qty, side, ts * 1000 - 700, ts * 1000))


def _quote(pair: str, ts: int, n: int) -> bytes:
    return quote_record(Quote("binance", pair, 99.9, 1.0, 100.1, 2.0, ts * 1000 - 5, ts * 1000, n))


if __name__ == "__main__":
    main()
