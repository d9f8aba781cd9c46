"""The stored snapshot schema, shared by every layer (the bottom of the import graph).

``capture_latency_ms`` is the delivery delay of the data in the snapshot: the local wall-clock
time at which the recorder *received* the last venue message applied to this book, minus that
message's exchange event time (Binance ``E``). It includes any clock offset between the venue
and this host, so it can be negative. How precisely the sample itself hit the grid tick is a
separate metric (``grid_jitter``), not stored per snapshot.
"""

from __future__ import annotations

import msgspec


class Level(msgspec.Struct, frozen=True):
    price: float
    qty: float


class Snapshot(msgspec.Struct, kw_only=True):
    exchange: str
    pair: str
    # The grid tick this sample belongs to, UTC epoch milliseconds.
    timestamp_ms: int
    bids: list[Level]
    asks: list[Level]
    capture_latency_ms: float | None
    # Assigned by the writer when the snapshot is stored: per session and pair, gap-free.
    sequence_number: int = 0
    # Exchange event time (ms) of the last venue message applied to the book.
    exchange_time_ms: int | None = None
    # The venue's id of the last update applied (Binance ``u``).
    update_id: int | None = None
    # True when the book was proven continuous (sequence) and, where the venue has one,
    # checksum-verified at the time of sampling.
    verified: bool = True
    # True when both sides are shown to the requested depth, or the venue's book is thinner;
    # False when a side stops short because deeper levels are unknown to the recorder (a REST
    # snapshot's range outrun, a depth-limited feed). None: stored before the field existed.
    depth_complete: bool | None = None
    session_id: str = ""


class SampledBook(msgspec.Struct, array_like=True):
    """One sampled book as the sampler hands it to the writer through the ring.

    Levels travel as parallel float columns: no per-level object is built, encoded or decoded
    on the venue's side of the ring, where the whole tick is sampled in one go. The writer
    numbers the record and turns it into a :class:`Snapshot` (:meth:`to_snapshot`).
    """

    exchange: str
    pair: str
    timestamp_ms: int
    bid_px: list[float]
    bid_qty: list[float]
    ask_px: list[float]
    ask_qty: list[float]
    capture_latency_ms: float | None
    exchange_time_ms: int | None
    update_id: int | None
    verified: bool
    depth_complete: bool | None  # the sampler always knows; None only for a Snapshot that did not

    def check(self) -> None:
        """ValueError for a record that is no book (its columns differ in length)."""
        if len(self.bid_px) != len(self.bid_qty) or len(self.ask_px) != len(self.ask_qty):
            raise ValueError(f"{self.pair[:40]!r}: price and quantity columns differ in length")

    def to_snapshot(self, sequence_number: int = 0, session_id: str = "") -> Snapshot:
        return Snapshot(
            exchange=self.exchange,
            pair=self.pair,
            timestamp_ms=self.timestamp_ms,
            bids=list(map(Level, self.bid_px, self.bid_qty)),
            asks=list(map(Level, self.ask_px, self.ask_qty)),
            capture_latency_ms=self.capture_latency_ms,
            exchange_time_ms=self.exchange_time_ms,
            update_id=self.update_id,
            verified=self.verified,
            depth_complete=self.depth_complete,
            sequence_number=sequence_number,
            session_id=session_id,
        )


ring_encoder = msgspec.msgpack.Encoder()
ring_decoder = msgspec.msgpack.Decoder(SampledBook)
json_encoder = msgspec.json.Encoder()


def ring_record(snap: Snapshot) -> bytes:
    """The ring record of a snapshot (what the sampler would have pushed for it)."""
    return ring_encoder.encode(
        SampledBook(
            snap.exchange,
            snap.pair,
            snap.timestamp_ms,
            [lv.price for lv in snap.bids],
            [lv.qty for lv in snap.bids],
            [lv.price for lv in snap.asks],
            [lv.qty for lv in snap.asks],
            snap.capture_latency_ms,
            snap.exchange_time_ms,
            snap.update_id,
            snap.verified,
            snap.depth_complete,
        )
    )


def decode_ring_record(payload: bytes) -> Snapshot:
    """A ring record as the writer reads it (msgspec.DecodeError / ValidationError / ValueError)."""
    record = ring_decoder.decode(payload)
    record.check()
    return record.to_snapshot()


class Trade(msgspec.Struct, array_like=True, frozen=True):
    """One public trade, normalized by the venue's Feed (the ``trades`` dataset's row, less the
    ``session_id`` and ``sequence_number`` the writer assigns when it stores it).

    Times are UTC epoch microseconds: venues stamp trades in ms or µs and µs keeps both exact.
    """

    exchange: str
    pair: str
    trade_id: str  # the venue's id as text: Bybit linear ids are UUIDs, Coinbase/OKX send strings
    price: float
    quantity: float
    side: str  # the taker's side, "buy" or "sell" (Coinbase reports the maker's: inverted)
    exchange_time_us: int | None  # the venue's trade time (not its envelope/event time)
    local_time_us: int  # local receive time of the frame that carried it


class Quote(msgspec.Struct, array_like=True, frozen=True):
    """A change of the best bid or ask (price or size) of a verified local book (``quotes``)."""

    exchange: str
    pair: str
    bid_price: float | None
    bid_qty: float | None
    ask_price: float | None
    ask_qty: float | None
    exchange_time_us: int | None
    local_time_us: int
    update_id: int | None


class TradeRow(msgspec.Struct, kw_only=True):
    """A stored trade as a JSONL line (and a Parquet row): times in UTC epoch microseconds."""

    exchange: str
    pair: str
    trade_id: str
    price: float
    quantity: float
    side: str
    exchange_time: int | None
    local_time: int
    session_id: str = ""
    sequence_number: int = 0


class QuoteRow(msgspec.Struct, kw_only=True):
    """A stored quote (best bid/ask change) as a JSONL line (and a Parquet row), times in µs."""

    exchange: str
    pair: str
    bid_price: float | None
    bid_qty: float | None
    ask_price: float | None
    ask_qty: float | None
    exchange_time: int | None
    local_time: int
    update_id: int | None
    session_id: str = ""
    sequence_number: int = 0


# Ring record kinds: one ring per venue carries books, trades and quotes. A book record is the
# msgpack array of a SampledBook as ever (its first byte a msgpack array header, 0x90-0x9f or
# 0xdc); a trade or quote record is one kind byte followed by the msgpack array of the record.
# Neither kind byte can start a msgpack array, so the writer tells them apart by the first byte.
KIND_TRADE = ord("T")
KIND_QUOTE = ord("Q")
_TRADE_PREFIX = bytes([KIND_TRADE])
_QUOTE_PREFIX = bytes([KIND_QUOTE])
trade_decoder = msgspec.msgpack.Decoder(Trade)
quote_decoder = msgspec.msgpack.Decoder(Quote)


def trade_record(trade: Trade) -> bytes:
    """The ring record of a trade."""
    return _TRADE_PREFIX + ring_encoder.encode(trade)


def quote_record(quote: Quote) -> bytes:
    """The ring record of a quote."""
    return _QUOTE_PREFIX + ring_encoder.encode(quote)
