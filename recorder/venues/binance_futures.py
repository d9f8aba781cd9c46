"""Binance USD-M futures: ``<symbol>@depth@100ms`` diffs joined to ``GET /fapi/v1/depth`` snapshots.

Everything but the chain rule and the endpoints is the spot module's (``binance.py``). Sync
(venue-protocols.md section 2): futures ids are not contiguous per symbol, so continuity is
``pu == previous u`` (never ``U == previous u + 1``); the first diff after a snapshot must cover
it (``U <= lastUpdateId <= u``) or start right after it (``pu == lastUpdateId``, ``U`` may then be
greater than ``lastUpdateId``). Pairs are perpetuals: ``BTC-USDT-PERP`` <-> ``BTCUSDT``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import msgspec

from recorder.config import VenueConfig
from recorder.venues import binance
from recorder.venues.binance import BinanceConnector, BinanceFeed, unlisted_pairs
from recorder.venues.binance_sync import futures_prev_id
from recorder.venues.limits import BINANCE_FUTURES

VENUE = "binance-futures"
# Depth streams live on the /public route since the 2026 URL split (see venue-protocols.md).
WS_URL = "wss://fstream.binance.com/public"
REST_URL = "https://fapi.binance.com"
REST_WEIGHT_PER_MIN = 2400
MAX_STREAMS_PER_CONNECTION = 1024
PERP_SUFFIX = "-PERP"

log = logging.getLogger("recorder.venues.binance_futures")


def symbol_for(pair: str) -> str:
    """``BTC-USDT-PERP`` -> ``BTCUSDT``; USD-M lists perpetuals only under this venue id."""
    if not pair.endswith(PERP_SUFFIX):
        raise ValueError(f"{pair!r} is not a perpetual: binance-futures pairs look like BTC-USDT-PERP")
    return binance.symbol_for(pair.removesuffix(PERP_SUFFIX))


def pair_for(symbol: str) -> str:
    return binance.pair_for(symbol) + PERP_SUFFIX


def stream_for(pair: str) -> str:
    return f"{symbol_for(pair).lower()}@depth@100ms"


def snapshot_pair(url: str) -> str | None:
    pair = binance.snapshot_pair(url)
    return pair + PERP_SUFFIX if pair is not None else None


def snapshot_limit_of(url: str) -> int | None:
    return binance.snapshot_limit_of(url, BINANCE_FUTURES)


def capture_pairs(frames: Iterable[bytes], url: str | None = None) -> list[str]:
    return binance.pairs_in_frames(frames, pair_for, url)


def snapshot_weight(limit: int) -> int:
    if limit <= 50:
        return 2
    if limit <= 100:
        return 5
    if limit <= 500:
        return 10
    return 20


class BinanceFuturesFeed(BinanceFeed):
    venue = VENUE
    log = log
    prev_id = staticmethod(futures_prev_id)
    symbol_for = staticmethod(symbol_for)
    stream_for = staticmethod(stream_for)


class BinanceFuturesConnector(BinanceConnector):
    venue = VENUE
    feed_class = BinanceFuturesFeed
    default_ws_url = WS_URL
    default_rest_url = REST_URL
    depth_path = "/fapi/v1/depth"
    rest_weight_per_min = REST_WEIGHT_PER_MIN
    max_streams = MAX_STREAMS_PER_CONNECTION
    snapshot_weight = staticmethod(snapshot_weight)


def check_config(cfg: VenueConfig) -> None:
    binance.check_config(cfg, BINANCE_FUTURES)


def check_pairs(rest_url: str | None, pairs: Iterable[str], timeout_s: float = 10.0) -> list[str]:
    """Pairs the venue does not list (blocking; used by the CLI before anything starts)."""
    pairs = list(pairs)
    perps = [p for p in pairs if p.endswith(PERP_SUFFIX)]
    missing = unlisted_pairs(rest_url or REST_URL, "/fapi/v1/exchangeInfo", perps, symbol_for, timeout_s)
    listed_ok = set(perps) - set(missing)
    return [p for p in pairs if p not in listed_ok]


# ``contractType`` values that are perpetuals (cryptofeed also takes TradFi perpetuals as such);
# CURRENT_QUARTER / NEXT_QUARTER delivery contracts are not pairs of this venue id.
PERPETUAL_TYPES = ("PERPETUAL", "TRADIFI_PERPETUAL")
LIST_TYPE = "perpetual"  # the one ``types`` name ``--pairs all`` knows here


class FuturesSymbolInfo(msgspec.Struct):
    """One USD-M ``exchangeInfo`` row: the contract status is in ``status`` (COIN-M rows call it
    ``contractStatus``; read too, so a row carrying both must pass both)."""

    symbol: str
    contractType: str = ""
    status: str = ""
    contractStatus: str | None = None
    baseAsset: str = ""
    quoteAsset: str = ""


class FuturesExchangeInfo(msgspec.Struct):
    symbols: list[FuturesSymbolInfo] = []


def tradable_perpetual(s: FuturesSymbolInfo) -> bool:
    """A perpetual that is TRADING and whose name round-trips ``BTC-USDT-PERP`` <-> ``BTCUSDT``: a row
    without ``contractType`` is not taken for one (it cannot be told from a delivery contract)."""
    if s.contractType not in PERPETUAL_TYPES or s.status != "TRADING":
        return False
    if s.contractStatus is not None and s.contractStatus != "TRADING":
        return False
    return bool(s.baseAsset and s.quoteAsset) and s.baseAsset + s.quoteAsset == s.symbol


def list_pairs(
    rest_url: str | None, quotes: Iterable[str] = (), types: Iterable[str] = (), timeout_s: float = 10.0
) -> list[str]:
    """Every trading perpetual (``--pairs all``) of ``/fapi/v1/exchangeInfo`` as ``BASE-QUOTE-PERP``,
    filtered by quote asset and type (``perpetual``: the only kind this venue id records)."""
    from recorder.venues.listing import fetch_json, select_pairs

    base = (rest_url or REST_URL).rstrip("/")
    try:
        info = msgspec.convert(fetch_json(f"{base}/fapi/v1/exchangeInfo", timeout_s), FuturesExchangeInfo)
    except msgspec.ValidationError as exc:
        raise OSError(f"exchangeInfo is not in the expected shape: {exc}") from None
    candidates = [
        (f"{s.baseAsset}-{s.quoteAsset}{PERP_SUFFIX}", s.quoteAsset, LIST_TYPE)
        for s in info.symbols
        if tradable_perpetual(s)
    ]
    return select_pairs(VENUE, candidates, quotes, types)


Feed = BinanceFuturesFeed
CONNECTOR = BinanceFuturesConnector
