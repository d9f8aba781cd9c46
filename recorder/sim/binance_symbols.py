"""The Binance simulators' instruments: a realistic default universe, deterministic made-up
parameters for any other symbol, the generated tail (``--instruments``), and a symbol's spot
``exchangeInfo`` row."""

from __future__ import annotations

import math
import random
from typing import Any

from recorder.sim.book import InstrumentSpec, fmt_units, to_units

TAIL_QUOTES = ("USDT", "USDT", "USDT", "FDUSD", "BTC")

# symbol -> (base, quote, price, tickSize, stepSize, typical resting qty, events/s)
DEFAULT_SYMBOLS: dict[str, tuple[str, str, str, str, str, str, float]] = {
    "BTCUSDT": ("BTC", "USDT", "65000", "0.01", "0.00001", "0.05", 200.0),
    "ETHUSDT": ("ETH", "USDT", "3200", "0.01", "0.0001", "1", 150.0),
    "BNBUSDT": ("BNB", "USDT", "580", "0.01", "0.001", "3", 60.0),
    "SOLUSDT": ("SOL", "USDT", "150", "0.01", "0.001", "20", 100.0),
    "XRPUSDT": ("XRP", "USDT", "0.52", "0.0001", "0.1", "4000", 60.0),
    "ADAUSDT": ("ADA", "USDT", "0.45", "0.0001", "0.1", "5000", 40.0),
    "DOGEUSDT": ("DOGE", "USDT", "0.12", "0.00001", "1", "20000", 60.0),
    "LTCUSDT": ("LTC", "USDT", "75", "0.01", "0.001", "30", 30.0),
    "ETHBTC": ("ETH", "BTC", "0.05", "0.00001", "0.0001", "1", 20.0),
    "BNBBTC": ("BNB", "BTC", "0.009", "0.000001", "0.001", "3", 10.0),
    "TRXUSDT": ("TRX", "USDT", "0.12", "0.00001", "0.1", "20000", 20.0),
    "DOTUSDT": ("DOT", "USDT", "6.5", "0.001", "0.01", "200", 20.0),
}
QUOTE_ASSETS = ("FDUSD", "USDT", "USDC", "TUSD", "BUSD", "EUR", "TRY", "BRL", "BTC", "ETH", "BNB", "DAI")
_TYPICAL_NOTIONAL = {"BTC": 0.03, "ETH": 0.5, "BNB": 3.0}  # other quotes: ~2000 units


def quote_of(symbol: str) -> tuple[str, str]:
    for q in QUOTE_ASSETS:
        if symbol.endswith(q) and len(symbol) > len(q):
            return symbol[: -len(q)], q
    return symbol[:-3] or symbol, symbol[-3:]


def _pow10_units(exp: int) -> int:
    """10**exp in fixed-point units, clamped to the 1e-8 resolution."""
    return to_units(f"{10.0 ** max(exp, -8):.8f}")


def make_spec(symbol: str) -> InstrumentSpec:
    """Realistic parameters for a known symbol; deterministic made-up ones (from the name) otherwise."""
    if symbol in DEFAULT_SYMBOLS:
        base, quote, price, tick, lot, typ, rate = DEFAULT_SYMBOLS[symbol]
        lot_u = to_units(lot)
        return InstrumentSpec(
            symbol, base, quote, to_units(price), to_units(tick), lot_u, max(1, to_units(typ) // lot_u), rate
        )
    base, quote = quote_of(symbol)
    rng = random.Random("spec:" + symbol)
    lo, hi = (-5.0, -1.5) if quote in ("BTC", "ETH") else (-1.0, 3.0)
    price_f = 10.0 ** rng.uniform(lo, hi)
    tick = _pow10_units(math.floor(math.log10(price_f)) - 4)  # ~5 significant digits, like Binance
    price = max(tick * 10_000, round(price_f * 1e8 / tick) * tick)
    notional = _TYPICAL_NOTIONAL.get(quote, 2000.0)
    typ_qty = notional / (price / 1e8)
    lot = _pow10_units(min(3, math.floor(math.log10(max(typ_qty, 1e-8))) - 3))
    typical_lots = max(1, round(typ_qty * 1e8 / lot))
    return InstrumentSpec(symbol, base, quote, price, tick, lot, typical_lots, rng.uniform(10.0, 60.0))


def tail_symbols(n: int) -> list[str]:
    """``n`` generated symbols (``T0000USDT``, ``T0001BTC``...), mostly USDT-quoted like the real venue."""
    return [f"T{i:04d}{TAIL_QUOTES[i % len(TAIL_QUOTES)]}" for i in range(n)]


def symbol_info(spec: InstrumentSpec) -> dict[str, Any]:
    return {
        "symbol": spec.symbol,
        "status": "TRADING",
        "baseAsset": spec.base,
        "baseAssetPrecision": 8,
        "quoteAsset": spec.quote,
        "quotePrecision": 8,
        "quoteAssetPrecision": 8,
        "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"],
        "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": False,
        "filters": [
            {"filterType": "PRICE_FILTER", "minPrice": fmt_units(spec.tick),
             "maxPrice": fmt_units(spec.price * 100), "tickSize": fmt_units(spec.tick)},
            {"filterType": "LOT_SIZE", "minQty": fmt_units(spec.lot), "maxQty": "9000000.00000000",
             "stepSize": fmt_units(spec.lot)},
        ],
        "permissions": [],
        "permissionSets": [["SPOT"]],
    }  # fmt: skip
