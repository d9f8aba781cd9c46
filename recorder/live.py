"""Live snapshots from the ``[stream.redis]`` sink, through a Redis consumer group.

    from recorder.live import LiveReader
    live = LiveReader("redis://localhost:6379/0", group="strategy-a", exchange="binance", pairs=["BTC-USDT"])
    for snap in live:              # recorder.dataset.BookSnapshot, as Dataset.snapshots() yields
        print(snap.pair, snap.mid)

Each group gets every entry once; several consumers of one group share the work. An entry is
acknowledged (XACK) once the next batch is asked for: a consumer that dies in between leaves its
batch pending, as Redis consumer groups do. A writer that restarted may publish a snapshot again:
the reader skips a sequence number it has already yielded for that stream.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from recorder.dataset.frames import BookSnapshot
from recorder.model import Snapshot
from recorder.names import check_venue_id, normalize_pair
from recorder.sinks.redis_stream import redact_url, snapshot_from_fields, stream_key


class LiveError(RuntimeError):
    """The stream cannot be read (one line; the URL redacted)."""


def book_snapshot(s: Snapshot) -> BookSnapshot:
    def side(levels: list[Any]) -> np.ndarray:
        return np.array([(lv.price, lv.qty) for lv in levels], dtype=np.float64).reshape(-1, 2)

    return BookSnapshot(
        exchange=s.exchange,
        pair=s.pair,
        timestamp_ms=s.timestamp_ms,
        bids=side(s.bids),
        asks=side(s.asks),
        capture_latency_ms=s.capture_latency_ms,
        sequence_number=s.sequence_number,
        exchange_time_ms=s.exchange_time_ms,
        update_id=s.update_id,
        verified=s.verified,
        depth_complete=s.depth_complete,
        session_id=s.session_id,
    )


class LiveReader:
    def __init__(
        self,
        url: str,
        *,
        group: str,
        exchange: str,
        pairs: Iterable[str],
        consumer: str = "consumer-1",
        key_prefix: str = "recorder",
        start: str = "0",
        client: Any = None,
    ) -> None:
        """``start``: where a new group begins: ``"0"`` (the oldest entry kept) or ``"$"`` (new only)."""
        import redis

        self.safe_url = redact_url(url)
        self.group, self.consumer = group, consumer
        venue = check_venue_id(exchange)
        self.keys = [stream_key(key_prefix, "books", venue, normalize_pair(p)) for p in pairs]
        if not self.keys:
            raise LiveError("no pairs to read")
        self.client = client or redis.Redis.from_url(url, socket_connect_timeout=5.0)
        self._unacked: dict[str, list[bytes]] = {}
        self._last_seq: dict[tuple[str, str], int] = {}
        try:
            for key in self.keys:
                try:
                    self.client.xgroup_create(key, group, id=start, mkstream=True)
                except redis.ResponseError as exc:
                    if "BUSYGROUP" not in str(exc):
                        raise
        except redis.RedisError as exc:
            raise LiveError(f"cannot read streams at {self.safe_url}: {type(exc).__name__}: {exc}") from None

    def read(self, count: int = 500, block_ms: int | None = 1000) -> list[BookSnapshot]:
        """The next entries for this consumer (possibly none after ``block_ms``), oldest first per
        stream; acknowledges what the previous call returned."""
        import redis

        try:
            self._ack()
            answer = self.client.xreadgroup(
                self.group, self.consumer, {k: ">" for k in self.keys}, count=count, block=block_ms
            )
        except redis.RedisError as exc:
            raise LiveError(f"cannot read streams at {self.safe_url}: {type(exc).__name__}: {exc}") from None
        out: list[BookSnapshot] = []
        for key, entries in answer or []:
            name = key.decode() if isinstance(key, bytes) else key
            ids = self._unacked.setdefault(name, [])
            for entry_id, fields in entries:
                ids.append(entry_id)
                snap = snapshot_from_fields(fields)
                stream = (snap.session_id, name)
                if snap.sequence_number <= self._last_seq.get(stream, -1):
                    continue  # published again by a restarted writer
                self._last_seq[stream] = snap.sequence_number
                out.append(book_snapshot(snap))
        return out

    def _ack(self) -> None:
        for key, ids in self._unacked.items():
            if ids:
                self.client.xack(key, self.group, *ids)
        self._unacked.clear()

    def __iter__(self) -> Iterator[BookSnapshot]:
        while True:
            yield from self.read()

    def close(self) -> None:
        try:
            self._ack()
        finally:
            self.client.close()
