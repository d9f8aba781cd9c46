"""The order of a file's rows: its records by pair, then sequence number, and the pieces it is
built in (``datasets.build_pieces``)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def record_order(pair: pa.Array, seq: pa.Array) -> np.ndarray:
    """Indices of the records ordered by pair, then sequence number (stable): a file's rows are
    clustered by pair so Parquet row-group statistics on ``pair`` prune well."""
    # Pairs are few: each record's pair as the rank of its name among them. A pair's records
    # arrive numbered in order, so a stable sort by that rank alone (a radix sort of small ints)
    # is the order, when the numbers say so; else one integer lexsort (stable, like Arrow's).
    encoded = pair if pa.types.is_dictionary(pair.type) else pair.dictionary_encode()
    rank = pc.rank(encoded.dictionary, sort_keys="ascending", tiebreaker="dense").to_numpy() - 1
    rank = rank.astype(np.int16 if len(rank) < 2**15 else np.int64)  # small ints: a radix sort
    key = np.take(rank, encoded.indices.to_numpy(zero_copy_only=False))
    seqs = seq.to_numpy(zero_copy_only=False)
    order = np.argsort(key, kind="stable")
    in_order = seqs[order]
    rising = in_order[1:] >= in_order[:-1]
    pair_ends = np.cumsum(np.bincount(key))  # where each pair's records end in ``order``
    rising[pair_ends[(pair_ends > 0) & (pair_ends < len(key))] - 1] = True  # a new pair: numbers start over
    if rising.all():
        return order
    return np.lexsort((seqs, key))


def pieces_of(order: np.ndarray, rows: np.ndarray, per_piece: int) -> list[np.ndarray]:
    """``order`` cut into consecutive pieces of about ``per_piece`` rows, ``rows[i]`` being the
    rows of record ``order[i]``: a piece ends with the record that reaches a multiple of it."""
    ends = np.cumsum(rows)
    total = int(ends[-1]) if len(ends) else 0
    cuts = np.searchsorted(ends, np.arange(per_piece, total, per_piece), side="left") + 1
    return [piece for piece in np.split(order, np.unique(cuts)) if len(piece)]
