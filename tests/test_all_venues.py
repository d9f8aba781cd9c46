"""All six venues captured at once against their simulators: one venue process each, one writer."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from recorder.dataset import open_dataset
from tests.conftest import every_pair_sampled, read_jsonl, read_parquet_rows, running_cli, status, stop_cli, wait_for

VENUE_PAIRS = {
    "binance": ["BTC-USDT", "ETH-USDT"],
    "binance-futures": ["BTC-USDT-PERP"],
    "coinbase": ["BTC-USD"],
    "kraken": ["BTC-USD"],
    "okx": ["BTC-USDT"],
    "bybit": ["BTC-USDT", "BTC-USDT-PERP"],
}


def test_six_venues_at_once_one_process_each(tmp_path: Path) -> None:
    data = tmp_path / "data"
    lines = [f'data_dir = "{data}"', 'session_id = "six"', "simulate = true", 'interval = "500ms"', "depth = 10"]
    for venue, pairs in VENUE_PAIRS.items():
        lines += ["", f'[venues."{venue}"]', "pairs = [" + ", ".join(f'"{p}"' for p in pairs) + "]"]
        lines += ['channels = ["book", "trades", "quotes"]']
    cfg = tmp_path / "six.toml"
    cfg.write_text("\n".join(lines) + "\n")
    # Until every pair has 10 samples, not for a fixed time: twelve processes start slowly on a
    # loaded machine.
    with running_cli("start-capture", "--config", str(cfg)) as proc:
        wait_for(lambda: every_pair_sampled(data, "six", 10), 150, "10 samples of every pair of six venues")
        wait_for(lambda: _every_pair_traded(data, 3), 120, "3 trades and 3 quotes of every pair of six venues")
        stop_cli(proc)
    final = status(data, "six")
    assert final is not None and final["state"] == "stopped" and final["flushed"] is True
    venues = final["venues"]
    assert set(venues) == set(VENUE_PAIRS)
    pids = {v["pid"] for v in venues.values()}
    assert len(pids) == len(VENUE_PAIRS) and final["writer"]["pid"] not in pids  # one process per venue

    jsonl = read_jsonl(data)
    rows = read_parquet_rows(data)
    assert len(jsonl) == final["writer"]["snapshots_written"]
    by_key: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for s in jsonl:
        by_key[(s["exchange"], s["pair"])].append(s)
    expected = {(v, p) for v, pairs in VENUE_PAIRS.items() for p in pairs}
    assert set(by_key) == expected, f"missing: {expected - set(by_key)}"
    for (venue, pair), items in by_key.items():
        v = venues[venue]
        assert v["gaps"] == 0 and v["malformed"] == 0, (venue, v)
        assert v["pairs"][pair]["missed_ticks"] == 0, (venue, pair, v["pairs"][pair])
        ts = [s["timestamp_ms"] for s in items]
        assert all(t % 500 == 0 for t in ts) and ts == list(range(ts[0], ts[-1] + 1, 500)), (venue, pair)
        assert len(items) >= 10, (venue, pair, len(items))
        for s in items:
            assert s["verified"] and 0 < len(s["bids"]) <= 10 and 0 < len(s["asks"]) <= 10
            assert s["bids"][0]["price"] < s["asks"][0]["price"], (venue, pair, s["timestamp_ms"])
    # Parquet holds the same snapshots (one row per level) as JSONL.
    parquet_snaps = {(r["exchange"], r["pair"], r["sequence_number"]) for r in rows}
    assert parquet_snaps == {(s["exchange"], s["pair"], s["sequence_number"]) for s in jsonl}

    _check_trades_and_quotes(data, final, expected)


def _every_pair_traded(data: Path, n: int) -> bool:
    st = status(data, "six")
    pairs = [p for v in (st or {}).get("venues", {}).values() for p in v["pairs"].values()]
    return len(pairs) == sum(map(len, VENUE_PAIRS.values())) and all(
        p.get("trades", 0) >= n and p.get("quotes", 0) >= n for p in pairs
    )


def _check_trades_and_quotes(data: Path, final: dict, expected: set[tuple[str, str]]) -> None:
    """Every pair of every venue stored trades and quotes, each row once, numbered without a gap,
    the same in both formats, and as many as the venue process counted."""
    ds = open_dataset(str(data))
    for fmt in ("parquet", "jsonl"):
        trades = ds.trades(format=fmt).to_pylist()
        quotes = ds.quotes(format=fmt).to_pylist()
        by_pair: dict[tuple[str, str], list[dict]] = defaultdict(list)
        for t in trades:
            by_pair[(t["exchange"], t["pair"])].append(t)
        assert set(by_pair) == expected, (fmt, expected - set(by_pair))
        for (venue, pair), rows in by_pair.items():
            st = final["venues"][venue]["pairs"][pair]
            assert len(rows) == st["trades"], (fmt, venue, pair, len(rows), st)
            assert sorted(r["sequence_number"] for r in rows) == list(range(len(rows))), (venue, pair)
            assert len({r["trade_id"] for r in rows}) == len(rows), (venue, pair)  # no trade twice
            assert all(r["side"] in ("buy", "sell") and r["price"] > 0 and r["quantity"] > 0 for r in rows)
            assert st["trade_gaps"] == 0 and not st["trade_silent"], (venue, pair, st)
        quotes_by_pair: dict[tuple[str, str], list[dict]] = defaultdict(list)
        for q in quotes:
            quotes_by_pair[(q["exchange"], q["pair"])].append(q)
        assert set(quotes_by_pair) == expected, (fmt, expected - set(quotes_by_pair))
        for (venue, pair), rows in quotes_by_pair.items():
            assert len(rows) == final["venues"][venue]["pairs"][pair]["quotes"], (fmt, venue, pair)
            rows.sort(key=lambda q: q["sequence_number"])
            tops = [(q["bid_price"], q["bid_qty"], q["ask_price"], q["ask_qty"]) for q in rows]
            # A quote is a change of the top: never crossed, never the same top twice in a row.
            assert all(b < a for b, _, a, _ in tops if b is not None and a is not None), (venue, pair)
            assert all(x != y for x, y in zip(tops, tops[1:], strict=False)), (venue, pair)
        assert final["writer"]["trades_written"] == len(trades), fmt
