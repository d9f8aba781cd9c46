"""Where a book frame's CPU goes on the live path, per venue, on the frames of ``test_decode.py``.

    python benchmarks/decode_steps.py [venue ...]      # default: binance binance-futures bybit coinbase

µs per frame, CPU time (``time.process_time``), minimum over rounds, each step measured on its own:

* ``decode``: the msgspec decoders alone (the benchmark's baseline: the ceiling for Python);
* ``live``: the Feed's ``on_frame``, as ``test_recorder_decode_and_apply`` times it;
* ``apply``: the book apply inside the live path (live minus live with ``L2Book.apply`` /
  ``apply_sided`` made no-ops, so its call is included);
* ``sequence``: the hot path's sequence test (the next id of a live book), alone on the decoded frames;
* ``counters``: the per-frame counting (two slot adds), alone;
* ``handler``: the rest of ``live``: dispatch on the decoded frame, lookups, the book's stores, calls.

``floor`` = decode + apply + sequence + counters is what this design cannot go below in Python, and
``decode / floor`` the best share of the msgspec ceiling it could reach with a free handler.
"""

from __future__ import annotations

import gc
import sys
import time
from collections.abc import Callable
from typing import Any

from venue_cases import CASES, Recording

from recorder.book import L2Book
from recorder.venues.base import UpdateCount


def _min_us(run: Callable[[Any], object], setup: Callable[[], Any], frames: int, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        arg = setup()
        gc.collect()
        t0 = time.process_time()
        run(arg)
        best = min(best, time.process_time() - t0)
    return best / frames * 1e6


def _live(calls: tuple[Any, list[tuple[Callable[[Any, float], None], Any, float]]]) -> None:
    for fn, payload, recv_ms in calls[1]:
        fn(payload, recv_ms)


class _Book:
    __slots__ = ("update_id",)

    def __init__(self, update_id: int) -> None:
        self.update_id = update_id


def _sequence_test(venue: str, msgs: list[Any]) -> Callable[[Any], None]:
    """The hot path's test of the next id, as each Feed writes it, against a book it continues."""
    if venue.startswith("binance"):
        pu = venue == "binance-futures"
        pairs = [(m.data, _Book(m.data.pu if pu else m.data.U - 1)) for m in msgs]

        def run(_: Any) -> None:
            for ev, book in pairs:
                book_id = book.update_id
                _ = (ev.pu if pu else ev.U - 1) == book_id and ev.u > book_id

    elif venue == "bybit":
        pairs = [(m, _Book(m.data.u - 1)) for m in msgs]

        def run(_: Any) -> None:
            for m, book in pairs:
                u = m.data.u
                _ = u == book.update_id + 1 and u != 1 and m.type == "delta"

    else:  # coinbase: the connection's one counter
        pairs = [(m, None) for m in msgs]

        def run(_: Any) -> None:
            expected = 0
            for m, _book in pairs:
                seq = m.sequence_num
                if seq == expected or not expected:
                    expected = seq + 1

    return run


def _loop(items: list[Any]) -> Callable[[Any], None]:
    """The bare loop over the frames, taken off the steps timed alone (the live path has one loop)."""

    def run(_: Any) -> None:
        for _item in items:
            pass

    return run


def _counters(frames: list[bytes]) -> Callable[[Any], None]:
    count = UpdateCount("update", "pair", framed=True)

    def run(_: Any) -> None:
        for payload in frames:
            count.n += 1
            count.nbytes += len(payload)

    return run


def steps(rec: Recording, rounds: int) -> dict[str, float]:
    frames = rec.book_frames
    n = len(frames)
    pick = rec.case.decoder(rec.module)
    plan = [(pick(f), f) for f in frames]
    msgs = [decode(f) for decode, f in plan]

    def decode_all(_: Any) -> None:
        for decode, f in plan:
            decode(f)

    out = {"decode": _min_us(decode_all, lambda: None, n, rounds)}
    out["live"] = _min_us(_live, rec.timed_calls, n, rounds)
    apply, apply_sided = L2Book.apply, L2Book.apply_sided
    L2Book.apply = lambda self, bids, asks: None  # type: ignore[method-assign,assignment]
    L2Book.apply_sided = lambda self, levels, bid, asks: None  # type: ignore[method-assign,assignment]
    try:
        out["apply"] = out["live"] - _min_us(_live, rec.timed_calls, n, rounds)
    finally:
        L2Book.apply, L2Book.apply_sided = apply, apply_sided  # type: ignore[method-assign]
    loop = _min_us(_loop(frames), lambda: None, n, rounds)
    out["sequence"] = _min_us(_sequence_test(rec.case.venue, msgs), lambda: None, n, rounds) - loop
    out["counters"] = _min_us(_counters(frames), lambda: None, n, rounds) - loop
    out["handler"] = out["live"] - out["decode"] - out["apply"] - out["sequence"] - out["counters"]
    out["floor"] = out["decode"] + out["apply"] + out["sequence"] + out["counters"]
    return out


def main(argv: list[str]) -> None:
    venues = argv or ["binance", "binance-futures", "bybit", "coinbase"]
    cols = ("decode", "live", "apply", "sequence", "counters", "handler", "floor")
    print(f"{'venue':16s} {'frames':>6s} " + " ".join(f"{c:>8s}" for c in cols) + "  live/decode  decode/floor")
    for case in CASES:
        if case.venue not in venues:
            continue
        rec = case.load()
        s = steps(rec, max(30, min(200, 40_000 // len(rec.book_frames))))
        row = " ".join(f"{s[c]:8.3f}" for c in cols)
        shares = f"{s['decode'] / s['live']:10.1%}  {s['decode'] / s['floor']:11.1%}"
        print(f"{case.venue:16s} {len(rec.book_frames):6d} {row}  {shares}")


if __name__ == "__main__":
    main(sys.argv[1:])
