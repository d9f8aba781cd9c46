"""Long form (one row per level, as stored) -> snapshots: book objects, wide top-N rows, metrics.

Everything is vectorised with numpy over a table sorted by snapshot then side (bids first) then
level, so a snapshot is a contiguous run of rows and one pass finds every run.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recorder.dataset.timeutil import iso

# Columns that are the same on every row of a snapshot.
SNAPSHOT_COLUMNS = (
    "exchange",
    "pair",
    "timestamp_ms",
    "session_id",
    "sequence_number",
    "capture_latency_ms",
    "exchange_time_ms",
    "update_id",
    "verified",
    "depth_complete",
)
SORT_KEYS = [
    ("timestamp_ms", "ascending"),
    ("exchange", "ascending"),
    ("pair", "ascending"),
    ("session_id", "ascending"),
    ("sequence_number", "ascending"),
    ("side", "descending"),  # 'bid' before 'ask'
    ("level", "ascending"),
]


@dataclass(slots=True)
class BookSnapshot:
    """One stored order-book snapshot. ``bids`` / ``asks`` are float64 arrays of shape (n, 2):
    column 0 price, column 1 quantity, best level first."""

    exchange: str
    pair: str
    timestamp_ms: int
    bids: np.ndarray
    asks: np.ndarray
    capture_latency_ms: float | None
    sequence_number: int
    exchange_time_ms: int | None
    update_id: int | None
    verified: bool
    # None for snapshots stored before the field existed.
    depth_complete: bool | None
    session_id: str

    @property
    def timestamp(self) -> str:
        """The grid tick as ISO-8601 UTC text."""
        return iso(self.timestamp_ms)

    @property
    def best_bid(self) -> float | None:
        return float(self.bids[0, 0]) if len(self.bids) else None

    @property
    def best_ask(self) -> float | None:
        return float(self.asks[0, 0]) if len(self.asks) else None

    @property
    def is_crossed(self) -> bool:
        return bool(len(self.bids) and len(self.asks) and self.bids[0, 0] >= self.asks[0, 0])

    @property
    def is_valid(self) -> bool:
        """Verified by the venue's sequence rules, both sides present and not crossed."""
        return bool(self.verified and len(self.bids) and len(self.asks) and not self.is_crossed)

    @property
    def mid(self) -> float | None:
        if not (len(self.bids) and len(self.asks)):
            return None
        return float((self.bids[0, 0] + self.asks[0, 0]) / 2)

    @property
    def spread(self) -> float | None:
        if not (len(self.bids) and len(self.asks)):
            return None
        return float(self.asks[0, 0] - self.bids[0, 0])

    @property
    def microprice(self) -> float | None:
        """Top-of-book price weighted by the opposite side's size: (Pb*Qa + Pa*Qb) / (Qb + Qa)."""
        if not (len(self.bids) and len(self.asks)):
            return None
        (pb, qb), (pa_, qa) = self.bids[0], self.asks[0]
        total = qb + qa
        return float((pb * qa + pa_ * qb) / total) if total > 0 else None


@dataclass
class _Runs:
    """Row layout of a sorted long table: where each snapshot starts, side and level per row."""

    starts: np.ndarray  # row index of each snapshot's first row
    snap_of_row: np.ndarray
    is_bid: np.ndarray
    is_ask: np.ndarray
    level: np.ndarray  # -1 where null
    price: np.ndarray
    qty: np.ndarray


def sort_long(table: pa.Table) -> pa.Table:
    return table.sort_by(SORT_KEYS) if table.num_rows else table


def _codes(col: pa.ChunkedArray) -> np.ndarray:
    enc = pc.dictionary_encode(col).combine_chunks()
    return enc.indices.to_numpy(zero_copy_only=False)


def _runs(table: pa.Table) -> _Runs:
    """``table`` must be sorted with :data:`SORT_KEYS`."""
    n = table.num_rows
    change = np.zeros(n, dtype=bool)
    if n:
        change[0] = True
        for name in ("timestamp_ms", "sequence_number"):
            v = table[name].to_numpy()
            change[1:] |= v[1:] != v[:-1]
        for name in ("exchange", "pair", "session_id"):
            v = _codes(table[name])
            change[1:] |= v[1:] != v[:-1]
    starts = np.flatnonzero(change)
    side = table["side"]
    return _Runs(
        starts=starts,
        snap_of_row=np.cumsum(change) - 1,
        is_bid=pc.fill_null(pc.equal(side, "bid"), False).to_numpy(),
        is_ask=pc.fill_null(pc.equal(side, "ask"), False).to_numpy(),
        level=pc.fill_null(table["level"], -1).to_numpy().astype(np.int64),
        price=pc.fill_null(table["price"], np.nan).to_numpy(),
        qty=pc.fill_null(table["quantity"], np.nan).to_numpy(),
    )


def snapshot_table(table: pa.Table) -> tuple[pa.Table, _Runs]:
    """Per-snapshot columns (one row per snapshot) of a sorted long table, and its row layout."""
    runs = _runs(table)
    idx = pa.array(runs.starts, pa.int64())
    cols = [c for c in SNAPSHOT_COLUMNS if c in table.column_names]
    return table.select(cols).take(idx), runs


def wide(table: pa.Table, depth: int) -> pa.Table:
    """One row per snapshot: the snapshot columns, then per level ``bid_px_i, bid_qty_i,
    ask_px_i, ask_qty_i`` (null beyond the book's depth), then ``mid, spread, microprice``."""
    table = sort_long(table)
    snaps, runs = snapshot_table(table)
    m = len(runs.starts)
    out = {name: snaps[name] for name in snaps.column_names}
    grids = {}
    for side, mask in (("bid", runs.is_bid), ("ask", runs.is_ask)):
        sel = mask & (runs.level >= 0) & (runs.level < depth)
        rows, lv = runs.snap_of_row[sel], runs.level[sel]
        px = np.full((m, depth), np.nan)
        qty = np.full((m, depth), np.nan)
        px[rows, lv] = runs.price[sel]
        qty[rows, lv] = runs.qty[sel]
        grids[side] = (px, qty)
    for i in range(depth):
        for side in ("bid", "ask"):
            px, qty = grids[side]
            out[f"{side}_px_{i}"] = pa.array(px[:, i], pa.float64(), from_pandas=True)
            out[f"{side}_qty_{i}"] = pa.array(qty[:, i], pa.float64(), from_pandas=True)
    if depth >= 1:
        (bp, bq), (ap, aq) = grids["bid"], grids["ask"]
        out.update(book_metrics(bp[:, 0], bq[:, 0], ap[:, 0], aq[:, 0]))
    return pa.table(out)


def book_metrics(bp: np.ndarray, bq: np.ndarray, ap: np.ndarray, aq: np.ndarray) -> dict[str, pa.Array]:
    """mid, spread and microprice from top-of-book arrays (NaN where a side is missing -> null)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        mid = (bp + ap) / 2
        spread = ap - bp
        total = bq + aq
        micro = np.where(total > 0, (bp * aq + ap * bq) / total, np.nan)
    return {
        "mid": pa.array(mid, pa.float64(), from_pandas=True),
        "spread": pa.array(spread, pa.float64(), from_pandas=True),
        "microprice": pa.array(micro, pa.float64(), from_pandas=True),
    }


def iter_snapshots(table: pa.Table) -> Iterator[BookSnapshot]:
    """Book objects in (timestamp, exchange, pair, session) order from a long table."""
    table = sort_long(table)
    if not table.num_rows:
        return
    snaps, runs = snapshot_table(table)
    ends = np.append(runs.starts[1:], table.num_rows)
    book = np.column_stack((runs.price, runs.qty))
    cols = {name: snaps[name].to_pylist() for name in snaps.column_names}
    for i, (a, b) in enumerate(zip(runs.starts.tolist(), ends.tolist(), strict=True)):
        nb = int(runs.is_bid[a:b].sum())
        na = int(runs.is_ask[a:b].sum())
        yield BookSnapshot(
            exchange=cols["exchange"][i],
            pair=cols["pair"][i],
            timestamp_ms=cols["timestamp_ms"][i],
            bids=book[a : a + nb],
            asks=book[a + nb : a + nb + na],
            capture_latency_ms=cols["capture_latency_ms"][i],
            sequence_number=cols["sequence_number"][i],
            exchange_time_ms=cols["exchange_time_ms"][i],
            update_id=cols["update_id"][i],
            verified=cols["verified"][i],
            depth_complete=cols["depth_complete"][i] if "depth_complete" in cols else None,
            session_id=cols["session_id"][i],
        )
