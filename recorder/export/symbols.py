"""Names the exported files and instruments carry: the venue's own symbol, tardis' exchange ids,
instrument kinds. Every name that becomes a path is checked here."""

from __future__ import annotations

import re
from dataclasses import dataclass

from recorder.names import PAIR_RE

_SAFE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
_DATED_RE = re.compile(r"^[A-Z0-9]+-[A-Z0-9]+-([0-9]{6})$")


class ExportError(ValueError):
    """An export cannot run as asked (one-line message)."""


@dataclass(frozen=True)
class Instrument:
    exchange: str  # ours: binance, binance-futures, okx, ...
    pair: str  # ours: BTC-USDT, BTC-USDT-PERP, BTC-USD-220527
    kind: str  # spot | perpetual | future
    base: str
    quote: str
    symbol: str  # the venue's own symbol (what tardis names files after)
    tardis_exchange: str  # tardis' exchange id
    inverse: bool = False  # settled in the base asset (Bybit BTC-USD-PERP)

    @property
    def expiry(self) -> str | None:
        m = _DATED_RE.match(self.pair)
        return m.group(1) if m else None


def instrument(exchange: str, pair: str) -> Instrument:
    if not PAIR_RE.fullmatch(pair):
        raise ExportError(f"invalid pair {pair!r} in the data: expected BASE-QUOTE like BTC-USDT")
    safe_name(exchange, "exchange")
    parts = pair.split("-")
    base, quote = parts[0], parts[1]
    kind = "perpetual" if pair.endswith("-PERP") else "future" if len(parts) == 3 else "spot"
    spot = f"{base}{quote}"
    inverse = False
    if exchange == "binance":
        symbol, tardis = spot, "binance"
    elif exchange == "binance-futures":
        symbol, tardis = spot, "binance-futures"
    elif exchange == "bybit":
        if kind == "spot":
            symbol, tardis = spot, "bybit-spot"
        else:
            inverse = quote == "USD"
            symbol = f"{base}PERP" if quote == "USDC" else spot
            tardis = "bybit"
    elif exchange == "okx":
        if kind == "perpetual":
            symbol, tardis = f"{base}-{quote}-SWAP", "okex-swap"
        elif kind == "future":
            symbol, tardis = pair, "okex-futures"
        else:
            symbol, tardis = pair, "okex"
    elif exchange == "kraken":
        v1 = {"BTC": "XBT", "DOGE": "XDG"}
        symbol, tardis = f"{v1.get(base, base)}/{v1.get(quote, quote)}", "kraken"
    elif exchange == "coinbase":
        symbol, tardis = f"{base}-{quote}", "coinbase"
    else:  # a venue added later: its own name and the pair as written
        symbol, tardis = pair, exchange
    return Instrument(exchange, pair, kind, base, quote, symbol, tardis, inverse)


def file_symbol(symbol: str) -> str:
    """A venue symbol as tardis writes it in a file name (``XBT/USD`` -> ``XBT-USD``)."""
    return safe_name(symbol.replace("/", "-").replace(":", "-"), "symbol")


def safe_name(name: str, what: str) -> str:
    """``name`` when it can be one path component (letters, digits, ``_.-``), else ExportError."""
    if not _SAFE_RE.fullmatch(name) or ".." in name:
        raise ExportError(f"invalid {what} {name!r}: it would not make a safe file name")
    return name
