"""Trades and quotes in the data-quality report: per session, exchange and pair, what is stored
(rows, sequence continuity, duplicate trade ids, first and last local time) beside what the capture
counted (trades pushed, trade gaps, silent episodes: status.json)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from recorder.dataset import DatasetError
from recorder.dataset.reader import Dataset


@dataclass
class RecordsQuality:
    exchange: str
    pair: str
    trades: int  # stored rows
    trade_seq_missing: int  # holes in the stored sequence numbers (0: none lost in storage)
    trade_id_duplicates: int  # a venue trade id stored more than once
    trade_gaps: int | None  # status.json: venue trade ids never received (None: not recorded)
    trades_counted: int | None  # status.json: trades the venue process pushed to the writer
    quotes: int
    quote_seq_missing: int
    first_trade_ms: int | None
    last_trade_ms: int | None


def records_quality(ds: Dataset, session_id: str, status: dict[str, Any] | None) -> list[RecordsQuality]:
    """One row per (exchange, pair) with trades or quotes in the session; [] when there are none."""
    try:
        trades = ds.trades(sessions=session_id)
        quotes = ds.quotes(sessions=session_id)
    except DatasetError:
        return []
    keys = sorted(_keys(trades) | _keys(quotes))
    out = []
    for exchange, pair in keys:
        t = _of(trades, exchange, pair)
        q = _of(quotes, exchange, pair)
        st = (((status or {}).get("venues") or {}).get(exchange) or {}).get("pairs", {}).get(pair, {})
        times = t["local_time"].cast(pa.int64()) if t.num_rows else None
        out.append(
            RecordsQuality(
                exchange=exchange,
                pair=pair,
                trades=t.num_rows,
                trade_seq_missing=_seq_missing(t),
                trade_id_duplicates=t.num_rows - len(pc.unique(t["trade_id"])) if t.num_rows else 0,
                trade_gaps=st.get("trade_gaps"),
                trades_counted=st.get("trades"),
                quotes=q.num_rows,
                quote_seq_missing=_seq_missing(q),
                first_trade_ms=pc.min(times).as_py() // 1000 if times is not None else None,
                last_trade_ms=pc.max(times).as_py() // 1000 if times is not None else None,
            )
        )
    return out


def _keys(t: pa.Table) -> set[tuple[str, str]]:
    return set(zip(t["exchange"].to_pylist(), t["pair"].to_pylist(), strict=True)) if t.num_rows else set()


def _of(t: pa.Table, exchange: str, pair: str) -> pa.Table:
    if not t.num_rows:
        return t
    return t.filter(pc.and_(pc.equal(t["exchange"], exchange), pc.equal(t["pair"], pair)))


def _seq_missing(t: pa.Table) -> int:
    """Sequence numbers absent between 0 and the highest stored (per session and pair: gap-free)."""
    if not t.num_rows:
        return 0
    return int(pc.max(t["sequence_number"]).as_py()) + 1 - len(pc.unique(t["sequence_number"]))


RECORDS_HEADER = ["exchange", "pair", "trades", "trade gaps", "seq holes", "dup ids", "quotes", "first", "last"]


def records_rows(rows: list[RecordsQuality]) -> list[list[str]]:
    from recorder.dataset.timeutil import iso

    return [
        [
            r.exchange,
            r.pair,
            str(r.trades),
            "-" if r.trade_gaps is None else str(r.trade_gaps),
            str(r.trade_seq_missing + r.quote_seq_missing),
            str(r.trade_id_duplicates),
            str(r.quotes),
            iso(r.first_trade_ms) if r.first_trade_ms is not None else "-",
            iso(r.last_trade_ms) if r.last_trade_ms is not None else "-",
        ]
        for r in rows
    ]
