"""Binance spot wire: the frame and REST snapshot structs, one-pass frame decoding, and the
venue's names for pairs, streams and snapshot requests (shared by spot and USD-M futures).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

import msgspec

from recorder.venues.base import (
    FloatLevel,
)
from recorder.venues.limits import BINANCE as LIMITS
from recorder.venues.limits import VenueLimits

VENUE = "binance"
WS_URL = "wss://stream.binance.com:9443"
REST_URL = "https://api.binance.com"

log = logging.getLogger("recorder.venues.binance")  # one logger for every binance_* module


# --- wire schema -------------------------------------------------------------------------


class DepthEvent(msgspec.Struct):
    e: str
    E: int = 0
    s: str = ""
    U: int = 0
    u: int = 0
    pu: int = 0  # futures only: ``u`` of this symbol's previous event
    b: list[FloatLevel] = []
    a: list[FloatLevel] = []


class StreamDepth(msgspec.Struct):
    """A combined-stream frame carrying an event: nearly every frame, decoded in one pass."""

    stream: str
    data: DepthEvent


class Envelope(msgspec.Struct):
    """Any text frame: a combined-stream wrapper, a method reply, or a raw event."""

    stream: str | None = None
    data: msgspec.Raw = msgspec.Raw()
    id: int | str | None = None
    result: Any = None
    error: Any = None
    e: str | None = None


class DepthSnapshot(msgspec.Struct):
    lastUpdateId: int
    bids: list[FloatLevel]
    asks: list[FloatLevel]


class _Kind(msgspec.Struct):
    e: str | None = None


# strict=False: prices and quantities arrive as text and are decoded to float in C.
_stream_depth = msgspec.json.Decoder(StreamDepth, strict=False)
_kind = msgspec.json.Decoder(_Kind)
_envelope = msgspec.json.Decoder(Envelope)
_event = msgspec.json.Decoder(DepthEvent, strict=False)
_snapshot = msgspec.json.Decoder(DepthSnapshot, strict=False)
_DECODE_ERRORS = (msgspec.DecodeError, msgspec.ValidationError)


def parse_frame(payload: bytes) -> tuple[str, DepthEvent] | Envelope | None:
    """A text frame -> (stream name or "", event), the Envelope of a method reply, or None
    for a stream that is not a depth stream (trades, tickers: not ours to parse)."""
    try:
        msg = _stream_depth.decode(payload)
    except _DECODE_ERRORS:
        return _parse_other(payload)  # raises for a malformed frame
    if "@depth" in msg.stream or msg.data.e == "serverShutdown":
        return msg.stream, msg.data
    return None


def _parse_other(payload: bytes) -> tuple[str, DepthEvent] | Envelope | None:
    """Frames that are not a combined-stream event: replies, raw events, foreign streams, junk."""
    env = _envelope.decode(payload)
    if len(env.data):
        stream = env.stream or ""
        if "@depth" not in stream and _kind.decode(env.data).e != "serverShutdown":
            return None
        return stream, _event.decode(env.data)
    if env.e is not None:
        return "", _event.decode(payload)
    return env


def symbol_for(pair: str) -> str:
    """``BTC-USDT`` -> ``BTCUSDT`` (the supervisor checks it against exchangeInfo first)."""
    return pair.replace("-", "")


# Quote assets, longest first where one ends another (``FDUSD`` before ``USD``).
QUOTE_ASSETS = ("FDUSD", "USDT", "USDC", "TUSD", "BUSD", "EUR", "TRY", "BRL", "BTC", "ETH", "BNB", "DAI", "USD")


def pair_for(symbol: str) -> str:
    """``BTCUSDT`` -> ``BTC-USDT`` (by the known quote assets; exchangeInfo is the authority)."""
    for quote in QUOTE_ASSETS:
        if symbol.endswith(quote) and len(symbol) > len(quote):
            return f"{symbol[: -len(quote)]}-{quote}"
    raise ValueError(f"cannot split Binance symbol {symbol!r} into base and quote")


def snapshot_pair(url: str) -> str | None:
    """The pair a recorded REST depth snapshot is for, from its URL's ``symbol=`` (replay)."""
    from urllib.parse import parse_qs, urlsplit

    symbols = parse_qs(urlsplit(url).query).get("symbol")
    try:
        return pair_for(symbols[0]) if symbols else None
    except ValueError:
        return None


def snapshot_limit_of(url: str, limits: VenueLimits = LIMITS) -> int | None:
    """The depth a recorded REST depth snapshot was asked for, from its URL's ``limit=`` (replay):
    a side holding fewer levels is the venue's whole side, one that filled it was cut. None (every
    side counts as cut) when the URL has no ``limit=`` or one the venue would not serve as asked
    (capped or refused: ``limits.snapshot_limit_error``)."""
    from urllib.parse import parse_qs, urlsplit

    values = parse_qs(urlsplit(url).query).get("limit")
    if not values or not values[0].isdigit() or len(values[0]) > 9:
        return None
    limit = int(values[0])
    return limit if limits.snapshot_limit_error(limit) is None else None


def capture_pairs(frames: Iterable[bytes], url: str | None = None) -> list[str]:
    """The pairs whose depth diffs a recorded socket (connected to ``url``) carries, for replay."""
    return pairs_in_frames(frames, pair_for, url)


# COIN-M futures (``dstream`` / ``dapi``, symbols like ``BTCUSD_PERP`` or ``BTCUSD_240628``) have
# their own book semantics (contracts, not coins) and no venue id here.
COIN_M_HOSTS = ("dstream.binance.com", "dapi.binance.com")


def pairs_in_frames(frames: Iterable[bytes], to_pair: Callable[[str], str], url: str | None = None) -> list[str]:
    """Raises ValueError (one line for the user) for a COIN-M capture, which no venue id replays."""
    seen: dict[str, None] = {}
    coin_m = {host for host in COIN_M_HOSTS if url and host in url}
    for payload in frames:
        try:
            frame = parse_frame(payload)
        except (msgspec.DecodeError, msgspec.ValidationError):
            continue
        if isinstance(frame, tuple) and frame[1].e == "depthUpdate" and frame[1].s:
            if "_" in frame[1].s:
                coin_m.add(frame[1].s)
                continue
            try:
                seen[to_pair(frame[1].s)] = None
            except ValueError:
                continue
    if coin_m:
        raise ValueError(
            f"the capture is Binance COIN-M futures ({', '.join(sorted(coin_m)[:3])}): COIN-M (dstream / dapi) "
            "is not supported; binance replays spot, binance-futures USD-M perpetuals (fstream / fapi)"
        )
    return list(seen)


def stream_for(pair: str) -> str:
    return f"{symbol_for(pair).lower()}@depth@100ms"


def snapshot_weight(limit: int) -> int:
    return LIMITS.snapshot_weight(limit)
