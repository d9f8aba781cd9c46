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
so both clocks are in order; ``recorder.export.npz``).

From the lossless archive (``archive_chunks``, events of ``recorder.export.events``): every book
change as a ``DEPTH_EVENT``, each snapshot load as a ``DEPTH_CLEAR_EVENT`` without a side flag
(hftbacktest then clears both sides whole) and its levels as ``DEPTH_SNAPSHOT_EVENT`` s, trades as
``TRADE_EVENT`` s. Either way the file is written by ``recorder.export.npz`` in bounded memory.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np

from recorder.export.event_units import SpooledUnit
from recorder.export.events import CLEAR, SNAPSHOT, TRADE, UPDATE
from recorder.export.npz import write_npz
from recorder.export.source import BookChunk, Source, Unit, decimals
from recorder.export.symbols import ExportError, safe_name


def _hbt():  # type: ignore[no-untyped-def]
    try:
        import hftbacktest as hbt
        import hftbacktest.data  # noqa: F401 - the corrections recorder.export.npz runs
    except ImportError:
        raise ExportError("--to hftbacktest needs the hftbacktest package: pip install 'recorder[export]'") from None
    return hbt


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
    hbt = _hbt()
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

    hbt = _hbt()
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


def unit_chunks(source: Source, unit: Unit, state: PairState, counts: dict[str, int]) -> Iterator[np.ndarray]:
    """The pair-day's events from its stored snapshots and trades, in local-time order, a book
    chunk (an hour) at a time with the trades received within it; ``counts`` gets the snapshots
    and trades."""
    trades = source.trades(unit)
    tr = np.zeros(0, _hbt().event_dtype)
    if trades is not None:
        tr = trade_events(trades)
        tr = tr[np.argsort(tr["local_ts"], kind="mergesort")]
        counts["trades"] += trades.num_rows
        state.price_decimals = max(state.price_decimals, decimals(trades["price"].to_numpy()))
        state.size_decimals = max(state.size_decimals, decimals(trades["quantity"].to_numpy()))
        del trades
    taken = 0
    for chunk in source.books(unit):
        counts["snapshots"] += len(chunk)
        state.price_decimals = max(state.price_decimals, decimals(np.concatenate([chunk.bid_px, chunk.ask_px], 1)))
        state.size_decimals = max(state.size_decimals, decimals(np.concatenate([chunk.bid_qty, chunk.ask_qty], 1)))
        ev = book_events(chunk, state)
        if len(ev):
            upto = int(np.searchsorted(tr["local_ts"], ev["local_ts"][-1], side="right"))
            if upto > taken:
                # Stable: for equal times a snapshot's clears and levels stay first, in their order.
                ev = np.concatenate([ev, tr[taken:upto]])
                ev = ev[np.argsort(ev["local_ts"], kind="mergesort")]
                taken = upto
        yield ev
    yield tr[taken:]


def archive_chunks(spooled: SpooledUnit, state: PairState, counts: dict[str, int]) -> Iterator[np.ndarray]:
    """A unit's archive events as hftbacktest events: a clear (both sides) and the snapshot's
    levels at each snapshot load, every level change, every trade; receive order."""
    hbt = _hbt()
    for ev in spooled.chunks():
        out = np.zeros(len(ev), hbt.event_dtype)
        kind, side = ev["kind"], ev["side"]
        flag = np.where(side > 0, hbt.BUY_EVENT, np.where(side < 0, hbt.SELL_EVENT, 0))
        code = np.select(
            [kind == CLEAR, kind == SNAPSHOT, kind == UPDATE],
            [hbt.DEPTH_CLEAR_EVENT, hbt.DEPTH_SNAPSHOT_EVENT, hbt.DEPTH_EVENT],
            hbt.TRADE_EVENT,
        )
        out["ev"] = code | np.where(kind == CLEAR, 0, flag)
        out["exch_ts"], out["local_ts"] = ev["exch_ns"], ev["local_ns"]
        out["px"], out["qty"] = ev["price"], ev["qty"]
        levels = ev[kind != CLEAR]
        state.price_decimals = max(state.price_decimals, decimals(np.unique(levels["price"])))
        state.size_decimals = max(state.size_decimals, decimals(np.unique(levels["qty"])))
        counts["depth_events"] += int(np.count_nonzero(kind != TRADE))
        counts["trades"] += int(np.count_nonzero(kind == TRADE))
        yield out


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


class Writer:
    """Writes units' ``.npz`` files (pairs in order, days in order: a pair's state carries over)
    and, at the end, ``instruments.json``."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.states: dict[tuple[str, str], PairState] = {}
        self.written: list[str] = []
        self.counts = {"snapshots": 0, "depth_events": 0, "trades": 0, "events": 0}
        self.shifts: dict[str, int] = {}

    def state(self, unit: Unit) -> PairState:
        return self.states.setdefault((unit.exchange, unit.pair), PairState())

    def write(self, unit: Unit, chunks: Iterable[np.ndarray]) -> None:
        hbt = _hbt()
        path = self.out / file_name(unit)
        with _quiet_stdout():  # numba may print while compiling
            rows, shift = write_npz(path, chunks, hbt)
        if not rows:
            return
        self.written.append(path.name)
        self.counts["events"] += rows
        if shift:
            self.shifts[path.name] = shift

    def finish(self) -> tuple[list[str], dict[str, int]]:
        _write_instruments(self.out, self.states, self.shifts)
        return self.written, {k: v for k, v in self.counts.items() if v or k == "events"}


def export_units(
    source: Source, units: list[Unit], out: Path, advance: Callable[[], None]
) -> tuple[list[str], dict[str, int]]:
    """Write every unit's ``.npz`` from the stored snapshots and trades."""
    writer = Writer(out)
    for unit in units:
        writer.write(unit, unit_chunks(source, unit, writer.state(unit), writer.counts))
        advance()
    return writer.finish()


def export_archive_units(spooled: Iterable[SpooledUnit], writer: Writer, advance: Callable[[Unit], None]) -> None:
    """Write each archived unit's ``.npz`` as its events come off the archive replay."""
    for su in spooled:
        try:
            writer.write(su.unit, archive_chunks(su, writer.state(su.unit), writer.counts))
        finally:
            su.release()
        advance(su.unit)


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
