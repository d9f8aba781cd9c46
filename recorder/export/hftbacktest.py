"""hftbacktest: its ``.npz`` event arrays (key ``data``, ``hftbacktest.types.event_dtype``), one file per
pair and day, ``<exchange>_<PAIR>_<YYYY-MM-DD>.npz``, plus ``instruments.json`` (tick and lot size
inferred from the data, for ``BacktestAsset.tick_size`` / ``lot_size``).

Each stored snapshot becomes what hftbacktest's own snapshot handling produces (its tardis
converter, ``hftbacktest.data.utils.tardis``): a ``DEPTH_CLEAR_EVENT`` per side, then one
``DEPTH_SNAPSHOT_EVENT`` per level (both clears first: see :func:`book_events`). hftbacktest
clears a side from the clear event's price up to the best level, so the price is the deeper of
this snapshot's last level and the previous one's: no level of an earlier snapshot survives a
later one, and the backtester's book at any time is exactly the last stored snapshot. Trades
(when the dataset has them) are ``TRADE_EVENT`` s with the taker's side. Timestamps are ns:
``exch_ts`` the venue's time, ``local_ts`` the recorder's (the grid tick for snapshots, the
receive time for trades). Then, as hftbacktest's converters do, ``correct_local_timestamp`` (a
negative feed latency shifts the file's local times) and ``correct_event_order`` (events split
so both clocks are in order), checked by ``validate_event_order``.

Every book change as a ``DEPTH_EVENT`` needs the lossless archive: not from sampled snapshots.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from recorder.export.source import BookChunk, Source, Unit, decimals
from recorder.export.symbols import ExportError, safe_name


def _hbt():  # type: ignore[no-untyped-def]
    try:
        import hftbacktest as hbt
        from hftbacktest.data import correct_event_order, correct_local_timestamp, validate_event_order
    except ImportError:
        raise ExportError("--to hftbacktest needs the hftbacktest package: pip install 'recorder[export]'") from None
    return hbt, correct_local_timestamp, correct_event_order, validate_event_order


def file_name(unit: Unit) -> str:
    return f"{safe_name(unit.exchange, 'exchange')}_{safe_name(unit.pair, 'pair')}_{unit.day}.npz"


class PairState:
    """What the next snapshot's clear must reach: the deepest bid/ask price the book may hold."""

    def __init__(self) -> None:
        self.deepest_bid = np.nan
        self.deepest_ask = np.nan
        self.price_decimals = 0
        self.size_decimals = 0


def book_events(chunk: BookChunk, state: PairState) -> np.ndarray:
    """A chunk of snapshots -> per snapshot: bid clear, ask clear, bid levels, ask levels.

    Both clears come first: hftbacktest's depth moves its best-ask pointer past asks a new bid
    crosses (and back), and a clear walks from that pointer, so levels inserted while stale ones
    of the other side remain would hide those from the clear."""
    hbt, *_ = _hbt()
    n, depth = len(chunk), chunk.depth
    nb = np.sum(~np.isnan(chunk.bid_px), axis=1)
    na = np.sum(~np.isnan(chunk.ask_px), axis=1)
    # The deepest level each side had before each snapshot (carried across chunks and days).
    last_bid = _deepest(chunk.bid_px, nb)
    last_ask = _deepest(chunk.ask_px, na)
    prev_bid = np.concatenate([[state.deepest_bid], last_bid[:-1]])
    prev_ask = np.concatenate([[state.deepest_ask], last_ask[:-1]])
    prev_bid = _carry(prev_bid)
    prev_ask = _carry(prev_ask)
    clear_bid = np.fmin(last_bid, prev_bid)  # bids: clear down to the lower price
    clear_ask = np.fmax(last_ask, prev_ask)  # asks: up to the higher one
    if n:
        state.deepest_bid = _carry(np.concatenate([[state.deepest_bid], last_bid]))[-1]
        state.deepest_ask = _carry(np.concatenate([[state.deepest_ask], last_ask]))[-1]
    per_snap = 2 + 2 * depth
    ev = np.zeros(n * per_snap, hbt.event_dtype)
    ev["exch_ts"] = np.repeat(chunk.exch_ms * 1_000_000, per_snap)
    ev["local_ts"] = np.repeat(chunk.ts_ms * 1_000_000, per_snap)
    grid = ev.reshape(n, per_snap)
    # A side with nothing to clear has no clear event; levels beyond a side's depth are dropped.
    keep = np.ones((n, per_snap), bool)
    for clear_at, first, flag, clear, px, qty, count in (
        (0, 2, hbt.BUY_EVENT, clear_bid, chunk.bid_px, chunk.bid_qty, nb),
        (1, 2 + depth, hbt.SELL_EVENT, clear_ask, chunk.ask_px, chunk.ask_qty, na),
    ):
        levels = slice(first, first + depth)
        grid["ev"][:, clear_at] = hbt.DEPTH_CLEAR_EVENT | flag
        grid["px"][:, clear_at] = clear
        grid["ev"][:, levels] = hbt.DEPTH_SNAPSHOT_EVENT | flag
        grid["px"][:, levels] = px
        grid["qty"][:, levels] = qty
        keep[:, clear_at] = ~np.isnan(clear)
        keep[:, levels] = np.arange(depth)[None, :] < count[:, None]
    return ev[keep.reshape(-1)]


def _deepest(px: np.ndarray, count: np.ndarray) -> np.ndarray:
    rows = np.arange(len(px))
    out = px[rows, np.maximum(count - 1, 0)] if px.shape[1] else np.full(len(px), np.nan)
    return np.where(count > 0, out, np.nan)


def _carry(values: np.ndarray) -> np.ndarray:
    """NaN (a side that was empty) takes the last known value before it."""
    idx = np.where(~np.isnan(values), np.arange(len(values)), 0)
    np.maximum.accumulate(idx, out=idx)
    out = values[idx]
    if len(values) and np.isnan(values[0]):
        first = np.flatnonzero(~np.isnan(values))
        out[: first[0] if len(first) else len(values)] = np.nan
    return out


def trade_events(trades: object) -> np.ndarray:
    import pyarrow as pa

    hbt, *_ = _hbt()
    assert isinstance(trades, pa.Table)
    n = trades.num_rows
    ev = np.zeros(n, hbt.event_dtype)
    side = trades["side"].to_numpy(zero_copy_only=False)
    ev["ev"] = hbt.TRADE_EVENT | np.where(side == "buy", hbt.BUY_EVENT, np.where(side == "sell", hbt.SELL_EVENT, 0))
    local = trades["local_time"].cast(pa.int64()).to_numpy(zero_copy_only=False).astype(np.float64)
    exch = trades["exchange_time"].cast(pa.int64()).to_numpy(zero_copy_only=False).astype(np.float64)
    exch = np.where(np.isnan(exch), local, exch)
    ev["local_ts"] = local.astype(np.int64) * 1000
    ev["exch_ts"] = exch.astype(np.int64) * 1000
    ev["px"] = trades["price"].to_numpy()
    ev["qty"] = trades["quantity"].to_numpy()
    return ev


def unit_events(source: Source, unit: Unit, state: PairState) -> tuple[np.ndarray, int, int, int]:
    """The pair-day's corrected events; (events, snapshots, trades, local shift in ns)."""
    hbt, correct_local_timestamp, correct_event_order, validate_event_order = _hbt()
    parts: list[np.ndarray] = []
    snapshots = 0
    for chunk in source.books(unit):
        parts.append(book_events(chunk, state))
        snapshots += len(chunk)
        state.price_decimals = max(state.price_decimals, decimals(np.concatenate([chunk.bid_px, chunk.ask_px], 1)))
        state.size_decimals = max(state.size_decimals, decimals(np.concatenate([chunk.bid_qty, chunk.ask_qty], 1)))
    trades = source.trades(unit)
    n_trades = 0
    if trades is not None:
        parts.append(trade_events(trades))
        n_trades = trades.num_rows
        state.price_decimals = max(state.price_decimals, decimals(trades["price"].to_numpy()))
        state.size_decimals = max(state.size_decimals, decimals(trades["quantity"].to_numpy()))
    if not parts:
        return np.zeros(0, hbt.event_dtype), 0, 0, 0
    data = np.concatenate(parts) if len(parts) > 1 else parts[0]
    del parts, trades  # a pair-day of events is the one large thing held from here on
    if not np.all(np.diff(data["local_ts"]) >= 0):  # trades among the snapshots
        # Stable: for equal times a snapshot's clears stay before its levels.
        data = data[np.argsort(data["local_ts"], kind="mergesort")]
    shift = 0
    latency = int((data["local_ts"] - data["exch_ts"]).min()) if len(data) else 0
    if latency < 0:
        with _quiet_stdout():  # it prints the shift; we report it ourselves
            data = correct_local_timestamp(data, 0)
        shift = -latency
    if len(data) and np.all(np.diff(data["exch_ts"]) >= 0):
        # Both clocks already agree on the order (snapshots without trades, as a rule): exactly
        # what correct_event_order returns then, without its two sorts and double-size copy.
        data["ev"] |= hbt.EXCH_EVENT | hbt.LOCAL_EVENT
    else:
        data = correct_event_order(
            data, np.argsort(data["exch_ts"], kind="mergesort"), np.argsort(data["local_ts"], kind="mergesort")
        )
    validate_event_order(data)
    return data, snapshots, n_trades, shift


class _quiet_stdout:
    """Silence fd 1 (numba's print bypasses sys.stdout) for the progress bar's sake."""

    def __enter__(self) -> None:
        import sys

        sys.stdout.flush()
        self._saved = os.dup(1)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.close(devnull)

    def __exit__(self, *exc: object) -> None:
        os.dup2(self._saved, 1)
        os.close(self._saved)


def export_units(
    source: Source, units: list[Unit], out: Path, advance: Callable[[], None]
) -> tuple[list[str], dict[str, int]]:
    """Write every unit's ``.npz`` (pairs in order, days in order: the clear state carries over)."""
    states: dict[tuple[str, str], PairState] = {}
    written: list[str] = []
    totals = {"snapshots": 0, "trades": 0, "events": 0}
    shifts: dict[str, int] = {}
    for unit in units:
        state = states.setdefault((unit.exchange, unit.pair), PairState())
        data, snaps, trades, shift = unit_events(source, unit, state)
        advance()
        if not len(data):
            continue
        path = out / file_name(unit)
        tmp = path.with_name(f".{path.name}.tmp.npz")
        np.savez_compressed(tmp, data=data)
        os.replace(tmp, path)
        written.append(path.name)
        totals["snapshots"] += snaps
        totals["trades"] += trades
        totals["events"] += len(data)
        if shift:
            shifts[path.name] = shift
    _write_instruments(out, states, shifts)
    return written, totals


def _write_instruments(out: Path, states: dict[tuple[str, str], PairState], shifts: dict[str, int]) -> None:
    path = out / "instruments.json"
    doc: dict[str, object] = {}
    if path.exists():  # an earlier export into the same directory: keep its pairs
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError):
            doc = {}
    for (exchange, pair), st in states.items():
        doc[f"{exchange}:{pair}"] = {
            "exchange": exchange,
            "pair": pair,
            "tick_size": float(f"1e-{st.price_decimals}"),
            "lot_size": float(f"1e-{st.size_decimals}"),
            "price_decimals": st.price_decimals,
            "size_decimals": st.size_decimals,
            "note": "tick and lot size inferred from the decimals stored: the venue's may be coarser",
        }
    if shifts:
        doc["local_ts_shift_ns"] = {**doc.get("local_ts_shift_ns", {}), **shifts}  # type: ignore[dict-item]
    tmp = out / ".instruments.json.tmp"
    tmp.write_text(json.dumps(doc, indent=1, sort_keys=True))
    os.replace(tmp, path)
