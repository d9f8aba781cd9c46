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
    session_id: str = ""


snapshot_encoder = msgspec.msgpack.Encoder()
snapshot_decoder = msgspec.msgpack.Decoder(Snapshot)
json_encoder = msgspec.json.Encoder()
