"""Kraken's wire: the v2 and v1 ``book`` messages as msgspec types, symbol names, and the CRC32
checksum of the top levels' text (``kraken.py`` has the Feed and the connector)."""

from __future__ import annotations

import functools
import itertools
import zlib
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import msgspec

from recorder.book import TextL2Book

DEPTHS = (10, 25, 100, 500, 1000)  # subscription depths Kraken accepts
CHECKSUM_LEVELS = 10

# v1 (and Kraken's REST) spell some assets differently; v2 uses the common names.
_V1_ASSETS = {"BTC": "XBT", "DOGE": "XDG"}
_FROM_V1 = {v: k for k, v in _V1_ASSETS.items()}


# --- wire schema -------------------------------------------------------------------------------


class V2Level(msgspec.Struct):
    # Raw keeps the number's text exactly as sent (``0.10000000``), which the checksum needs.
    price: msgspec.Raw
    qty: msgspec.Raw


class V2Book(msgspec.Struct):
    symbol: str
    bids: list[V2Level] = []
    asks: list[V2Level] = []
    checksum: int | None = None
    timestamp: str | None = None


class Envelope(msgspec.Struct):
    """Any object frame: v2 channel data or method reply, or a v1 event."""

    channel: str | None = None
    type: str | None = None
    data: msgspec.Raw = msgspec.Raw()
    method: str | None = None
    success: bool | None = None
    error: str | None = None
    event: str | None = None
    status: str | None = None
    pair: str | None = None
    errorMessage: str | None = None


class V1Book(msgspec.Struct):
    """One dict of a v1 book array frame: a snapshot (as/bs) or an update (a/b, checksum c)."""

    as_: list[list[str]] = msgspec.field(default_factory=list, name="as")
    bs: list[list[str]] = []
    a: list[list[str]] = []
    b: list[list[str]] = []
    c: str | None = None


class V1Update(msgspec.Struct, forbid_unknown_fields=True):
    """The usual v1 book dict: an update of levels ``[price, qty, time]`` with its checksum (its
    decoder is lax: ``c`` is sent as text and decoded to int in C). Anything else (a snapshot, a
    republished level with its ``"r"``, no checksum) fails it and takes the ``V1Book`` path."""

    c: int
    a: list[tuple[str, str, str]] = []
    b: list[tuple[str, str, str]] = []


class V2Update(msgspec.Struct):
    """A v2 ``book`` update frame whole, decoded in one pass (no envelope pass first)."""

    channel: str
    type: str
    data: list[V2Book]


class _Symbol(msgspec.Struct):
    symbol: str


_envelope = msgspec.json.Decoder(Envelope)
_symbols = msgspec.json.Decoder(list[_Symbol])
_v2_books = msgspec.json.Decoder(list[V2Book])
_v2_update_frame = msgspec.json.Decoder(V2Update)
# How a v2 book update begins (Kraken's key order); any other frame takes the envelope path.
V2_BOOK_UPDATE = b'{"channel":"book","type":"update",'
_v1_array = msgspec.json.Decoder(list[msgspec.Raw])
_v1_int = msgspec.json.Decoder(int)
_v1_str = msgspec.json.Decoder(str)
_v1_book = msgspec.json.Decoder(V1Book)
# A v1 book frame in one pass: [channelID, {book}, ({book},) "book-N", "PAIR"].
_v1_book_frame = msgspec.json.Decoder(list[int | str | V1Book])
# The usual v1 book frame in one pass: [channelID, {update}, "book-N", "PAIR"].
_v1_update_frame = msgspec.json.Decoder(tuple[int, V1Update, str, str], strict=False)


def symbol_for(pair: str) -> str:
    """``BTC-USD`` -> v2 ``BTC/USD``."""
    return pair.replace("-", "/")


def v1_symbol_for(pair: str) -> str:
    """``BTC-USD`` -> v1 ``XBT/USD`` (also REST AssetPairs ``wsname``)."""
    return "/".join(_V1_ASSETS.get(a, a) for a in pair.split("-"))


def pair_for(symbol: str) -> str:
    """v2 ``BTC/USD`` or v1 ``XBT/USD`` -> ``BTC-USD``."""
    return "-".join(_FROM_V1.get(a, a) for a in symbol.split("/"))


def subscription_depth(wanted: int) -> int:
    """The smallest depth Kraken accepts that covers ``wanted`` levels."""
    for d in DEPTHS:
        if d >= wanted:
            return d
    return DEPTHS[-1]


def fragment(price: str, qty: str) -> bytes:
    """One level's part of the checksum text: price then qty, each without ``.`` and leading zeros."""
    return (price.replace(".", "").lstrip("0") + qty.replace(".", "").lstrip("0")).encode()


def checksum(bids: Iterable[tuple[str, str]], asks: Iterable[tuple[str, str]]) -> int:
    """Kraken's book checksum (v1 and v2): CRC32 of the top 10 asks (ascending) then the top 10
    bids (descending), each level as price then qty text with ``.`` and leading zeros removed."""
    parts = [fragment(p, q) for p, q in itertools.islice(asks, CHECKSUM_LEVELS)]
    parts += [fragment(p, q) for p, q in itertools.islice(bids, CHECKSUM_LEVELS)]
    return zlib.crc32(b"".join(parts))


class KrakenBook(TextL2Book):
    """A ``TextL2Book`` keeping Kraken's fragments of its top 10 levels per side, and the checksum
    of them: ``crc()`` recomputes it only when the book's bytes of a side are a new object (the
    book makes a new one exactly when a change reached that side's top 10), else returns the
    one computed from these very bytes."""

    __slots__ = ("_crc_bids", "_crc_asks", "_crc")

    def __init__(self) -> None:
        super().__init__(fragment, CHECKSUM_LEVELS)
        self._crc_bids: bytes | None = None
        self._crc_asks: bytes | None = None
        self._crc = 0

    def crc(self) -> int:
        """``checksum()`` of the book's top 10 levels per side."""
        bids, asks = self.checksum_bytes()
        if bids is not self._crc_bids or asks is not self._crc_asks:
            # CRC32 of asks then bids, the second continued from the first's value.
            self._crc = zlib.crc32(bids, zlib.crc32(asks))
            self._crc_bids, self._crc_asks = bids, asks
        return self._crc


def _unquoted(raw: msgspec.Raw) -> str:
    """A v2 number's wire text (Kraken may send a number as a string: its quotes removed)."""
    text = bytes(raw).decode()
    return text.strip('"') if text[:1] == '"' else text


def _raw_text(raw: msgspec.Raw) -> str:
    text = _unquoted(raw)
    float(text)  # reject anything that is not a number before it reaches the book
    return text


def _rfc3339_us(ts: str) -> int:
    if len(ts) == 27 and ts[26] == "Z" and ts[19] == "." and ts[16] == ":":
        # Kraken's own form "2026-11-25T10:00:00.123456Z": its minute parsed once (a feed is in
        # one or two minutes at a time), seconds and microseconds as integers.
        seconds, micros = ts[17:19], ts[20:26]
        if seconds.isdigit() and micros.isdigit():
            return (_minute_s(ts[:16]) + int(seconds)) * 1_000_000 + int(micros)
    dt = datetime.fromisoformat(ts)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return (dt - _EPOCH) // _ONE_US


@functools.lru_cache(maxsize=8)
def _minute_s(minute: str) -> int:
    """Epoch seconds of ``YYYY-MM-DDTHH:MM`` in UTC."""
    return (datetime.fromisoformat(minute).replace(tzinfo=UTC) - _EPOCH) // timedelta(seconds=1)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=UTC) - _EPOCH


def _v1_time_us(text: str) -> int:
    if text[-7:-6] == ".":  # Kraken's own form, "1618678133.365913": the same result, faster
        return int(text.replace(".", "", 1))
    whole, _, frac = text.partition(".")
    return int(whole) * 1_000_000 + int((frac + "000000")[:6])


def _v1_time(bids: list[list[str]], asks: list[list[str]]) -> int | None:
    """The latest level time of a v1 message, in microseconds (None: no level has one)."""
    times = [_v1_time_us(lv[2]) for lv in itertools.chain(bids, asks) if len(lv) > 2]
    return max(times) if times else None


# --- sans-I/O frame handling -------------------------------------------------------------------
