"""Binance exchange info: the pair universe (``list_pairs``, ``check_pairs``) and the published
REST limits, read once at startup (blocking ``urllib``: the venue process is not running yet).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import msgspec

from recorder.config import VenueConfig
from recorder.venues.binance_wire import REST_URL, VENUE, log, symbol_for
from recorder.venues.limits import BINANCE as LIMITS
from recorder.venues.limits import VenueLimits


class _RateLimit(msgspec.Struct):
    rateLimitType: str
    interval: str
    intervalNum: int
    limit: int


class _LimitsInfo(msgspec.Struct):
    rateLimits: list[_RateLimit] = []


class SymbolInfo(msgspec.Struct):
    symbol: str
    status: str = "TRADING"
    baseAsset: str = ""
    quoteAsset: str = ""
    isSpotTradingAllowed: bool = True
    isMarginTradingAllowed: bool = False


class ExchangeInfo(msgspec.Struct):
    symbols: list[SymbolInfo] = []
    rateLimits: list[_RateLimit] = []


_limits_info = msgspec.json.Decoder(_LimitsInfo)
_exchange_info = msgspec.json.Decoder(ExchangeInfo)


def fetch_exchange_info(rest_url: str | None, timeout_s: float = 10.0) -> ExchangeInfo:
    """``GET /api/v3/exchangeInfo`` (blocking; the CLI/supervisor use it before anything starts)."""
    import urllib.request

    base = (rest_url or REST_URL).rstrip("/")
    with urllib.request.urlopen(f"{base}/api/v3/exchangeInfo", timeout=timeout_s) as resp:
        return _exchange_info.decode(resp.read())


def instrument_types(s: SymbolInfo) -> set[str]:
    types = set()
    if s.isSpotTradingAllowed:
        types.add("spot")
    if s.isMarginTradingAllowed:
        types.add("margin")
    return types


def list_pairs(
    rest_url: str | None,
    quotes: Iterable[str] = (),
    types: Iterable[str] = (),
    timeout_s: float = 10.0,
) -> list[str]:
    """Every trading instrument (``--pairs all``) whose quote asset / type pass the filters."""
    from recorder.names import NameError_, normalize_pair

    want_quotes = {q.upper() for q in quotes}
    want_types = {t.lower() for t in types}
    out: list[str] = []
    for s in fetch_exchange_info(rest_url, timeout_s).symbols:
        if s.status != "TRADING" or not s.baseAsset or s.baseAsset + s.quoteAsset != s.symbol:
            continue
        if want_quotes and s.quoteAsset.upper() not in want_quotes:
            continue
        if want_types and not (instrument_types(s) & want_types):
            continue
        try:
            out.append(normalize_pair(f"{s.baseAsset}-{s.quoteAsset}"))
        except NameError_:
            log.warning("event=pair_skipped venue=%s symbol=%s reason=unusable name", VENUE, s.symbol)
    return out


def check_config(cfg: VenueConfig, limits: VenueLimits = LIMITS) -> None:
    """Settings the venue would refuse (config validation calls it before anything starts)."""
    if cfg.snapshot_limit is not None:
        error = limits.snapshot_limit_error(cfg.snapshot_limit)
        if error is not None:
            raise ValueError(error)


def check_pairs(rest_url: str | None, pairs: Iterable[str], timeout_s: float = 10.0) -> list[str]:
    """Pairs the venue does not list (blocking; used by the CLI before anything starts)."""
    return unlisted_pairs(rest_url or REST_URL, "/api/v3/exchangeInfo", pairs, symbol_for, timeout_s)


def unlisted_pairs(
    rest_url: str, info_path: str, pairs: Iterable[str], to_symbol: Callable[[str], str], timeout_s: float
) -> list[str]:
    import json
    import urllib.request

    with urllib.request.urlopen(f"{rest_url.rstrip('/')}{info_path}", timeout=timeout_s) as resp:
        info = json.load(resp)
    listed = {s["symbol"] for s in info.get("symbols", [])}
    return [p for p in pairs if to_symbol(p) not in listed]
