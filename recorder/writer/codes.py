"""Small non-negative int codes (a read's groups, partitions): their distinct values, a stable
order by code and each item's rank among its code's, in numpy."""

from __future__ import annotations

import numpy as np


def distinct(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct values of an int array (ascending) and each value's index among them: by a
    table when they are small non-negative ints (a read's codes, the usual case), else a sort."""
    if len(values) and int(values.min()) >= 0 and int(values.max()) <= 4 * len(values) + 4096:
        seen = np.bincount(values)
        present = np.flatnonzero(seen)
        table = np.zeros(len(seen), np.int64)
        table[present] = np.arange(len(present))
        return present, np.take(table, values)
    present, inverse = np.unique(values, return_inverse=True)
    return present, inverse.reshape(-1)


def stable_order(codes: np.ndarray, count: int) -> np.ndarray:
    """``argsort(codes, kind="stable")`` of codes in ``range(count)``: a radix sort when they fit
    16 bits (a read's group ids and partitions)."""
    return np.argsort(codes.astype(np.int16) if count <= 1 << 15 else codes, kind="stable")


def rank_within(codes: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For codes in ``range(count)``: each item's rank among the items of its code (0, 1, ... in
    order), the items' indices ordered by code (stable), and how many items each code has.

    The ranks come from the runs of the sorted codes, not from a count per code, so they cost
    the items' number whatever ``count`` is (a segment's group ids: many more than a read's)."""
    order = stable_order(codes, count)
    ordered = codes[order]
    new = np.ones(len(codes), bool)
    new[1:] = ordered[1:] != ordered[:-1]
    at = np.arange(len(codes))
    rank = np.empty(len(codes), np.int64)
    rank[order] = at - np.maximum.accumulate(np.where(new, at, 0))
    return rank, order, np.bincount(codes, minlength=count)
