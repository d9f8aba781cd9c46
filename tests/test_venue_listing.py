"""``--pairs all`` for Coinbase, Kraken, OKX and Bybit (each against its real simulator process),
and every venue's declared limits table (``recorder/venues/limits.py``) holds together."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from recorder.venues import VENUES, venue_module
from recorder.venues.limits import LIMITS
from tests.conftest import Sim, read_jsonl, run_cli, status

# venue -> (every pair its default simulator lists, {filters: expected pairs})
EXPECTED: dict[str, tuple[set[str], list[tuple[dict[str, list[str]], set[str]]]]] = {
    "okx": (
        {"BTC-USDT", "ETH-USDT", "SOL-USDT", "XRP-USDT", "DOGE-USDT", "LTC-USDT", "ETH-BTC",
         "BTC-USDT-PERP", "ETH-USDT-PERP", "SOL-USDT-PERP"},
        [({"quotes": ["btc"]}, {"ETH-BTC"}),
         ({"types": ["SWAP"]}, {"BTC-USDT-PERP", "ETH-USDT-PERP", "SOL-USDT-PERP"}),
         ({"quotes": ["USDT"], "types": ["spot"]}, {"BTC-USDT", "ETH-USDT", "SOL-USDT", "XRP-USDT", "DOGE-USDT",
                                                   "LTC-USDT"}),
         ({"types": ["margin"]}, set())],
    ),
    "kraken": (
        {"BTC-USD", "ETH-USD", "SOL-USD", "XRP-USD", "ADA-USD", "DOGE-USD", "LTC-USD", "DOT-USD", "ETH-BTC",
         "BTC-EUR", "ETH-EUR", "BTC-USDT"},
        [({"quotes": ["eur"]}, {"BTC-EUR", "ETH-EUR"}), ({"types": ["swap"]}, set())],
    ),
    "coinbase": (
        {"BTC-USD", "ETH-USD", "SOL-USD", "BTC-USDT"},
        [({"quotes": ["USDT"]}, {"BTC-USDT"}), ({"types": ["spot"], "quotes": ["usd"]}, {"BTC-USD", "ETH-USD",
                                                                                         "SOL-USD"}),
         ({"types": ["future"]}, set())],
    ),
    "bybit": (
        {"BTC-USDT", "ETH-USDT", "SOL-USDT", "BTC-USDT-PERP", "ETH-USDT-PERP", "SOL-USDT-PERP", "DOGE-USDT-PERP"},
        [({"types": ["linear"]}, {"BTC-USDT-PERP", "ETH-USDT-PERP", "SOL-USDT-PERP", "DOGE-USDT-PERP"}),
         ({"types": ["spot"]}, {"BTC-USDT", "ETH-USDT", "SOL-USDT"}), ({"quotes": ["USDC"]}, set())],
    ),
}  # fmt: skip


@pytest.fixture(params=list(EXPECTED))
def venue_sim(request: pytest.FixtureRequest) -> Iterator[tuple[str, Sim]]:
    sim = Sim("--venue", request.param, "--seed", "3")
    yield request.param, sim
    sim.stop()


def test_list_pairs_reads_the_venue_instruments_endpoint_with_filters(venue_sim: tuple[str, Sim]) -> None:
    venue, sim = venue_sim
    module = venue_module(venue)
    rest = sim.urls["rest_url"]
    every, filtered = EXPECTED[venue]
    pairs = module.list_pairs(rest)
    assert set(pairs) == every and len(pairs) == len(every)
    # Each listed pair names an instrument the venue knows (the same endpoint check_pairs reads).
    assert module.check_pairs(rest, pairs) == []
    for filters, expected in filtered:
        assert set(module.list_pairs(rest, **filters)) == expected, filters


def test_every_venue_declares_consistent_limits() -> None:
    assert set(LIMITS) == set(VENUES)
    for venue, lim in LIMITS.items():
        bounds = [b for b, _ in lim.snapshot_weights]
        weights = [w for _, w in lim.snapshot_weights]
        assert bounds == sorted(set(bounds)), venue  # depth bounds strictly ascending
        assert weights == sorted(weights) and all(w > 0 for w in weights), venue  # deeper never cheaper
        if weights:
            assert lim.snapshot_weights[-1][1] <= lim.rest_weight_limit * lim.rest_safety, venue
            assert lim.snapshot_weight(bounds[-1] + 1) == weights[-1], venue
        else:  # books start from WS snapshots: asking for a REST snapshot weight is a bug
            with pytest.raises(ValueError, match="no REST snapshot"):
                lim.snapshot_weight(100)
        assert lim.rest_weight_limit > 0 and lim.rest_window_s > 0 and 0 < lim.rest_safety <= 1, venue
        assert 1 <= lim.subscriptions_per_message <= lim.streams_per_connection, venue
        for optional in (lim.messages_per_s, lim.connections_per_ip, lim.connection_attempts_per_5min):
            assert optional is None or optional > 0, venue
        assert lim.max_connection_age_s is None or lim.max_connection_age_s > 0, venue


def test_connectors_read_their_caps_from_the_limits_table() -> None:
    okx, kraken, bybit, coinbase = (venue_module(v) for v in ("okx", "kraken", "bybit", "coinbase"))
    assert okx.MAX_BOOKS_PER_CONNECTION == LIMITS["okx"].streams_per_connection == 29
    assert kraken.MAX_SYMBOLS_PER_CONNECTION == LIMITS["kraken"].streams_per_connection
    assert bybit.MAX_ARGS_PER_REQUEST == LIMITS["bybit"].subscriptions_per_message == 10
    assert coinbase.PRODUCTS_PER_CONNECTION == LIMITS["coinbase"].streams_per_connection
    assert coinbase.SEND_INTERVAL_S * LIMITS["coinbase"].messages_per_s < 2.5  # 2 frames per stagger, < 8/s


def test_okx_universe_beyond_one_connection_is_a_one_line_error(tmp_path: Path) -> None:
    # 31 spot instruments: more than the 29 books OKX allows on the connector's one connection.
    symbols = [f"C{i:02d}-USDT" for i in range(25)] + [f"C{i:02d}-BTC" for i in range(6)]
    sim = Sim("--venue", "okx", "--symbols", ",".join(symbols))
    try:
        cfg = tmp_path / "okx.toml"
        cfg.write_text(
            f'data_dir = "{tmp_path / "data"}"\n\n[venues.okx]\npairs = ["all"]\n'
            f'ws_url = "{sim.urls["ws_url"]}"\nrest_url = "{sim.urls["rest_url"]}"\n'
        )
        res = run_cli("start-capture", "--config", str(cfg), "--duration", "5s")
        assert res.returncode == 2, res.stderr
        assert "Traceback" not in res.stderr, res.stderr
        line = res.stderr.strip().splitlines()[-1]  # the error is one line (after the INFO log of the listing)
        assert line.startswith("Error:"), res.stderr
        assert "--pairs all lists 31 okx instruments" in line and "at most 29 pairs" in line, line
        assert "pairs by quote: USDT 25, BTC 6" in line, line
    finally:
        sim.stop()


def test_okx_pairs_all_captures_every_listed_instrument(tmp_path: Path) -> None:
    data = tmp_path / "data"
    args = ["--venue", "okx", "--pairs", "all", "--simulate", "--interval", "500ms", "--duration", "8s"]
    res = run_cli("start-capture", *args, "--data-dir", str(data), "--session-id", "okxall", "--format", "jsonl")
    assert res.returncode == 0, res.stderr[-3000:]
    final = status(data, "okxall")
    assert final is not None and final["flushed"] is True
    every = EXPECTED["okx"][0]
    assert set(final["venues"]["okx"]["pairs"]) == every
    stored: dict[str, int] = {}
    for s in read_jsonl(data):
        assert s["exchange"] == "okx" and s["bids"] and s["asks"]
        stored[s["pair"]] = stored.get(s["pair"], 0) + 1
    assert set(stored) == every, every - set(stored)
    assert min(stored.values()) >= 3, stored


def test_binance_futures_lists_trading_perpetuals_only(tmp_path: Path) -> None:
    """USD-M ``exchangeInfo`` rows carry ``contractType`` and the contract status (``status``): the
    simulator serves a delivery contract and a perpetual that is settling besides two trading
    perpetuals; ``--pairs all`` takes only the trading perpetuals, and a capture records exactly them."""
    import json
    import urllib.request

    module = venue_module("binance-futures")
    sim = Sim("--venue", "binance-futures", "--seed", "3", "--symbols", "BTCUSDT,ETHUSDT,BTCUSDT_260925,FOOUSDT",
              "--symbol-status", "FOOUSDT=SETTLING")  # fmt: skip
    rest = sim.urls["rest_url"]
    try:
        with urllib.request.urlopen(f"{rest}/fapi/v1/exchangeInfo", timeout=10) as resp:
            rows = {r["symbol"]: r for r in json.load(resp)["symbols"]}
        # The real shape (venue-protocols.md §2; Binance's USD-M exchangeInfo): no spot-only fields.
        assert {s: (r["contractType"], r["status"]) for s, r in rows.items()} == {
            "BTCUSDT": ("PERPETUAL", "TRADING"), "ETHUSDT": ("PERPETUAL", "TRADING"),
            "BTCUSDT_260925": ("CURRENT_QUARTER", "TRADING"), "FOOUSDT": ("PERPETUAL", "SETTLING"),
        }  # fmt: skip
        assert rows["BTCUSDT_260925"]["pair"] == "BTCUSDT" and rows["BTCUSDT_260925"]["deliveryDate"] == 1790323200000
        assert not any("isSpotTradingAllowed" in r or "permissionSets" in r for r in rows.values())
        every = {"BTC-USDT-PERP", "ETH-USDT-PERP"}
        pairs = module.list_pairs(rest)
        assert set(pairs) == every and len(pairs) == len(every)
        assert module.check_pairs(rest, pairs) == []
        assert set(module.list_pairs(rest, types=["perpetual"], quotes=["usdt"])) == every
        assert module.list_pairs(rest, types=["spot"]) == [] and module.list_pairs(rest, quotes=["BTC"]) == []
        data = tmp_path / "data"
        cfg = tmp_path / "f.toml"
        cfg.write_text(
            f'data_dir = "{data}"\n\n[venues.binance-futures]\npairs = ["all"]\n'
            f'ws_url = "{sim.urls["ws_url"]}"\nrest_url = "{rest}"\n'
        )
        args = ["--config", str(cfg), "--interval", "500ms", "--duration", "4s", "--session-id", "fall"]
        res = run_cli("start-capture", *args, "--format", "jsonl")
        assert res.returncode == 0, res.stderr[-3000:]
        final = status(data, "fall")
        assert final is not None and set(final["venues"]["binance-futures"]["pairs"]) == every
        assert {s["pair"] for s in read_jsonl(data)} == every
    finally:
        sim.stop()
