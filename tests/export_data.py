"""Data the export tests share: a capture on the simulator (through recorder.api) and real
recordings replayed (``python cli.py replay``); the export CLI; our snapshots per pair, read with
recorder.dataset (the reference, never the exporter).

A test module takes these fixtures by importing them (``from tests.export_data import replayed``)
and asking for them by name (``request.getfixturevalue``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from recorder.dataset import iso, open_dataset
from tests.conftest import ROOT, run_cli, wait_for

REC = ROOT / "tests" / "data" / "recordings" / "binance"


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Binance spot and USD-M recordings replayed through the live code path."""
    data = tmp_path_factory.mktemp("replayed") / "data"
    for name, venue in (("BINANCE.ws.1.0", "binance"), ("BINANCE_FUTURES.ws.1.0", "binance-futures")):
        res = run_cli("replay", "--venue", venue, "--input", str(REC / name), "--data-dir", str(data))
        assert res.returncode == 0, res.stderr[-2000:]
    return data


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A short capture of two pairs on the simulator (JSONL and Parquet)."""
    from recorder.api import Capture

    data = tmp_path_factory.mktemp("simulated") / "data"
    pairs = ["BTC-USDT", "ETH-USDT"]
    with Capture(venue="binance", pairs=pairs, interval="200ms", data_dir=data, session_id="sim", simulate=True) as cap:

        def enough() -> bool:
            venues = cap.status().get("venues") or {}
            counts = [p["samples"] for v in venues.values() for p in v["pairs"].values()]
            return len(counts) == 2 and min(counts) >= 15

        wait_for(enough, 120, "15 samples per pair")
    return data


def export_cli(data: Path, to: str, out: Path, *extra: str) -> None:
    res = run_cli("export", "--to", to, "--data-dir", str(data), "--out", str(out), *extra, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.startswith("exported "), res.stdout


def ours(data: Path) -> dict[tuple[str, str], list]:
    books: dict[tuple[str, str], list] = {}
    for s in open_dataset(data).snapshots():
        books.setdefault((s.exchange, s.pair), []).append(s)
    return books


def records(data: Path, kind: str) -> dict[tuple[str, str], Any]:
    """Our trades or quotes per (exchange, pair), as pyarrow tables in stored order."""
    table = getattr(open_dataset(data), kind)()
    out: dict[tuple[str, str], Any] = {}
    for exchange, pair in {
        (e, p) for e, p in zip(table["exchange"].to_pylist(), table["pair"].to_pylist(), strict=True)
    }:
        mask = [
            e == exchange and p == pair
            for e, p in zip(table["exchange"].to_pylist(), table["pair"].to_pylist(), strict=True)
        ]
        out[(exchange, pair)] = table.filter(mask)
    return out


def tops_changes(snaps: list) -> list:
    """Our snapshots whose top of book (either side, price or size) differs from the one before."""
    out, last = [], None
    for s in snaps:
        top = (s.best_ask, s.asks[0, 1] if len(s.asks) else None, s.best_bid, s.bids[0, 1] if len(s.bids) else None)
        if top != last:
            out.append(s)
        last = top
    return out


def expected_quotes(data: Path, exchange: str, pair: str) -> list[tuple]:
    """The quotes an export writes for a pair, by the documented rule, per UTC day: the quotes
    dataset's rows of that day if it has any, else each change of our snapshots' top of book.
    Rows: (local µs, venue µs or None, ask price, ask size, bid price, bid size), None for a side
    that is missing."""
    stored = records(data, "quotes").get((exchange, pair))
    by_day: dict[str, list[tuple]] = {}
    if stored is not None:
        cols = [stored[c].to_pylist() for c in ("ask_price", "ask_qty", "bid_price", "bid_qty")]
        local = stored["local_time"].cast("int64").to_pylist()
        venue = stored["exchange_time"].cast("int64").to_pylist()
        for i, us in enumerate(local):
            day = iso(us // 1000)[:10]
            by_day.setdefault(day, []).append((us, venue[i], *(c[i] for c in cols)))
    derived: dict[str, list[tuple]] = {}
    for s in tops_changes(ours(data).get((exchange, pair), [])):
        top = (s.best_ask, s.asks[0, 1] if len(s.asks) else None, s.best_bid, s.bids[0, 1] if len(s.bids) else None)
        venue = s.exchange_time_ms if s.exchange_time_ms is not None else s.timestamp_ms
        derived.setdefault(s.timestamp[:10], []).append((s.timestamp_ms * 1000, venue * 1000, *top))
    days = sorted(set(by_day) | set(derived))
    return [row for day in days for row in by_day.get(day, derived.get(day, []))]


def nautilus_engine(instruments: list[Any]) -> Any:
    """A nautilus ``BacktestEngine`` with a venue per instrument's venue (an L2 book each, a USDT
    margin account) and the instruments added: ready for ``add_data``."""
    from nautilus_trader.backtest.engine import BacktestEngine, BacktestEngineConfig
    from nautilus_trader.config import LoggingConfig
    from nautilus_trader.model.currencies import USDT
    from nautilus_trader.model.enums import AccountType, BookType, OmsType
    from nautilus_trader.model.identifiers import Venue
    from nautilus_trader.model.objects import Money

    engine = BacktestEngine(BacktestEngineConfig(logging=LoggingConfig(bypass_logging=True)))
    for venue in {i.id.venue for i in instruments}:
        engine.add_venue(
            venue=Venue(str(venue)),
            oms_type=OmsType.NETTING,
            account_type=AccountType.MARGIN,
            starting_balances=[Money(1_000_000, USDT)],
            book_type=BookType.L2_MBP,
        )
    for inst in instruments:
        engine.add_instrument(inst)
    return engine


def hftbacktest_of(paths: Path | list[str], tick_size: float, lot_size: float) -> Any:
    """hftbacktest's own ``HashMapMarketDepthBacktest`` over the exported ``.npz`` at ``paths``
    (one file, or several days in order; no latency, no fees: the book is what the tests read)."""
    import hftbacktest as hbt

    asset = (
        hbt.BacktestAsset()
        .data([str(paths)] if isinstance(paths, Path) else paths)
        .linear_asset(1.0)
        .constant_order_latency(0, 0)
        .risk_adverse_queue_model()
        .no_partial_fill_exchange()
        .trading_value_fee_model(0.0, 0.0)
        .tick_size(tick_size)
        .lot_size(lot_size)
        .last_trades_capacity(0)
    )
    return hbt.HashMapMarketDepthBacktest([asset])
