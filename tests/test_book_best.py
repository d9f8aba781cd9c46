"""``L2Book.best()`` (what a quote compares after every update) against a plain reference: the best
known level per side, never one past the floor of a truncated snapshot (deeper levels are unknown)."""

from __future__ import annotations

import random

from recorder.book import L2Book


def _reference(ref: dict[float, float], floor: float | None, bids: bool) -> tuple[float | None, float | None]:
    known = [p for p in ref if floor is None or (p >= floor if bids else p <= floor)]
    if not known:
        return None, None
    best = max(known) if bids else min(known)
    return best, ref[best]


def test_best_matches_a_reference_with_and_without_snapshot_floors() -> None:
    rng = random.Random(11)
    for truncated in (False, True):
        book, ref_b, ref_a = L2Book(), {}, {}
        snap_b = [(100 - 0.5 * i, 1.0) for i in range(4)]
        snap_a = [(101 + 0.5 * i, 2.0) for i in range(4)]
        book.load(snap_b, snap_a, 1)
        book.bound_to_snapshot(truncated, truncated)
        floor_b, floor_a = (snap_b[-1][0], snap_a[-1][0]) if truncated else (None, None)
        ref_b.update(snap_b)
        ref_a.update(snap_a)
        assert book.best() == (100.0, 1.0, 101.0, 2.0)
        emptied = 0
        for _ in range(4000):
            is_bid = rng.random() < 0.5
            # Deletions dominate near the touch so that sides empty above their floors now and then.
            price = (100 - rng.randint(0, 8) * 0.5) if is_bid else (101 + rng.randint(0, 8) * 0.5)
            qty = 0.0 if rng.random() < 0.7 else round(rng.uniform(0.1, 9), 3)
            book.apply([(price, qty)] if is_bid else [], [] if is_bid else [(price, qty)])
            ref = ref_b if is_bid else ref_a
            if qty:
                ref[price] = qty
            else:
                ref.pop(price, None)
            want = (*_reference(ref_b, floor_b, True), *_reference(ref_a, floor_a, False))
            assert book.best() == want
            emptied += want[0] is None or want[2] is None
        assert emptied  # the None sides were exercised
        if truncated:  # levels only below the floor: known, but never shown
            book.load([(90.0, 1.0)], [(110.0, 1.0)], 2)
            book.bound_to_snapshot(True, True)
            book.apply([(80.0, 1.0)], [(120.0, 1.0)])
            book.apply([(90.0, 0.0)], [(110.0, 0.0)])
            assert book.best() == (None, None, None, None)
            assert book.top_columns(1) == ([], [], [], [])
