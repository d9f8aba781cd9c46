"""``[stream.redis]``: every stored snapshot (and trade or quote, with ``datasets``) also added to
a Redis stream per dataset, exchange and pair.

The writer offers each record it takes from the rings (the ones it stores) to a bounded queue;
a thread of the writer process sends them to Redis in pipelined ``XADD ... MAXLEN maxlen``
batches. Capture and files never wait on Redis: when the queue is full (Redis slow) or Redis is
down, records are dropped and counted (``stream_drops``), and the thread reconnects by itself
(every second) so publishing resumes when Redis is back.

An entry's fields are the JSONL file's fields, each value JSON-encoded (``bids`` / ``asks`` as
``[{"price": p, "qty": q}, ...]``); ``recorder.live`` turns book entries back into the reader's
objects.
"""

from __future__ import annotations

import logging
import queue
import re
import threading
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import msgspec

from recorder.config import RedisStreamConfig
from recorder.model import Snapshot

log = logging.getLogger("recorder.writer")

STREAM_COUNTER_FIELDS = ["stream_published", "stream_drops", "stream_connected"]
DATASETS = ("books", "trades", "quotes")  # the writer's datasets (recorder/writer/datasets.py)
_KEY_PART_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
_BATCH = 512
_RECONNECT_S = 1.0


def check_stream_config(cfg: RedisStreamConfig) -> None:
    """Raises ValueError with a one-line message (never echoing a password)."""
    url = urlsplit(cfg.url)
    if url.scheme not in ("redis", "rediss", "unix"):
        raise ValueError(f"invalid [stream.redis] url {redact_url(cfg.url)!r}: use redis://host:port/db")
    if url.scheme != "unix" and not url.hostname:
        raise ValueError(f"invalid [stream.redis] url {redact_url(cfg.url)!r}: no host")
    if cfg.maxlen < 1 or cfg.queue < 1 or cfg.timeout_s <= 0:
        raise ValueError("invalid [stream.redis]: maxlen, queue and timeout_s must be positive")
    unknown = [d for d in cfg.datasets if d not in DATASETS]
    if unknown or not cfg.datasets:
        raise ValueError(f"invalid [stream.redis] datasets {cfg.datasets!r}: known: {', '.join(DATASETS)}")
    if not _KEY_PART_RE.match(cfg.key_prefix):
        raise ValueError(f"invalid [stream.redis] key_prefix {cfg.key_prefix!r}: letters, digits, '_', '.', '-'")


def redact_url(url: str) -> str:
    """The URL with its password (and user) replaced: safe for logs and status."""
    try:
        parts = urlsplit(url)
        if parts.password is None and parts.username is None:
            return url
        host = parts.hostname or ""
        netloc = f"***@{host}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    except ValueError:
        return "<unparsable url>"


def stream_key(prefix: str, dataset: str, exchange: str, pair: str) -> str:
    return f"{prefix}:{dataset}:{exchange}:{pair}"


def entry_fields(jsonl_line: bytes) -> dict[str, bytes]:
    """A file's JSONL line as stream fields: each top-level value JSON-encoded."""
    enc = msgspec.json.encode
    return {name: enc(value) for name, value in msgspec.json.decode(jsonl_line).items()}


def snapshot_from_fields(fields: dict[Any, Any]) -> Snapshot:
    raw = {(k.decode() if isinstance(k, bytes) else k): msgspec.json.decode(v) for k, v in fields.items()}
    return msgspec.convert(raw, Snapshot)


class StreamPublisher:
    """Owned by the writer process: ``offer`` never blocks; a thread talks to Redis."""

    def __init__(self, cfg: RedisStreamConfig, session_id: str, counters: Any) -> None:
        self.cfg = cfg
        self.session_id = session_id
        self.counters = counters
        self.safe_url = redact_url(cfg.url)
        self.datasets = frozenset(cfg.datasets)
        # (dataset spec, record, sequence number): the spec renders the record as its JSONL line.
        self._queue: queue.Queue[tuple[Any, Any, int] | None] = queue.Queue(maxsize=cfg.queue)
        self._client: Any = None
        self._next_connect = 0.0
        self._down_logged = False
        self._thread = threading.Thread(target=self._run, name="redis-stream", daemon=True)

    def start(self) -> None:
        log.info("event=stream_start url=%s maxlen=%d", self.safe_url, self.cfg.maxlen)
        self._thread.start()

    def offer(self, dataset: Any, rec: Any, seq: int) -> None:
        """``dataset``: the writer's DatasetSpec of ``rec`` (its ``name`` and ``jsonl``)."""
        if dataset.name not in self.datasets:
            return
        try:
            self._queue.put_nowait((dataset, rec, seq))
        except queue.Full:
            self.counters.incr("stream_drops")

    def close(self, timeout_s: float = 5.0) -> None:
        """Send what is queued (bounded), then stop; what is left is counted as dropped."""
        deadline = time.monotonic() + timeout_s
        while not self._queue.empty() and time.monotonic() < deadline and self._thread.is_alive():
            time.sleep(0.02)
        try:
            self._queue.put(None, timeout=max(0.1, deadline - time.monotonic()))
        except queue.Full:
            pass
        self._thread.join(max(0.1, deadline - time.monotonic()) + self.cfg.timeout_s)
        left = 0
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            left += item is not None
        if left:
            self.counters.incr("stream_drops", left)

    # -- the thread ----------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            batch, done = self._take()
            if batch:
                self._send(batch)
            if done:
                return

    def _take(self) -> tuple[list[tuple[Any, Any, int]], bool]:
        batch: list[tuple[Any, Any, int]] = []
        try:
            item = self._queue.get(timeout=0.2)
        except queue.Empty:
            return batch, False
        while item is not None:
            batch.append(item)
            if len(batch) >= _BATCH:
                return batch, False
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return batch, False
        return batch, True

    def _send(self, batch: list[tuple[Any, Any, int]]) -> None:
        client = self._connect()
        if client is None:
            self.counters.incr("stream_drops", len(batch))
            return
        try:
            pipe = client.pipeline(transaction=False)
            for dataset, rec, seq in batch:
                key = stream_key(self.cfg.key_prefix, dataset.name, rec.exchange, rec.pair)
                fields = entry_fields(dataset.jsonl(rec, seq, self.session_id))
                pipe.xadd(key, fields, maxlen=self.cfg.maxlen, approximate=False)
            pipe.execute()
        except Exception as exc:  # noqa: BLE001 - any Redis or socket failure: drop, count, reconnect
            self.counters.incr("stream_drops", len(batch))
            self._lost(exc)
            return
        self.counters.incr("stream_published", len(batch))

    def _connect(self) -> Any:
        if self._client is not None:
            return self._client
        now = time.monotonic()
        if now < self._next_connect:
            return None
        self._next_connect = now + _RECONNECT_S
        import redis

        try:
            client = redis.Redis.from_url(
                self.cfg.url,
                socket_timeout=self.cfg.timeout_s,
                socket_connect_timeout=self.cfg.timeout_s,
                retry_on_timeout=False,
            )
            client.ping()
        except Exception as exc:  # noqa: BLE001
            self._lost(exc)
            return None
        self._client = client
        self.counters.set("stream_connected", 1)
        log.info("event=stream_connected url=%s", self.safe_url)
        self._down_logged = False
        return client

    def _lost(self, exc: BaseException) -> None:
        if self._client is not None:
            try:
                self._client.close()
            except Exception:  # noqa: BLE001
                pass
        self._client = None
        self.counters.set("stream_connected", 0)
        if not self._down_logged:
            # The exception text names host and port at most; the URL is logged redacted.
            reason = type(exc).__name__
            log.error(
                "event=stream_down url=%s error=%s detail=stream records dropped and counted", self.safe_url, reason
            )
            self._down_logged = True
