"""A session's status beside its data on S3 (``PREFIX/_status/<session>.json``), for ``fleet-status``.

Every shard of a fleet that uploads to one bucket keeps its status there, so one command on any
machine shows every shard. A thread of the supervisor puts the latest status every
``STATUS_EVERY_S``; a status object older than the reader's staleness bound means that shard is
down. S3 being slow or down delays only this thread: the capture never waits on it.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

from recorder.config import S3Config

log = logging.getLogger("recorder.supervisor")

STATUS_DIR = "_status"  # '_'-prefixed: dataset readers (pyarrow, Spark, Trino) skip it
STATUS_EVERY_S = 5.0


def status_key(prefix: str, session_id: str) -> str:
    prefix = prefix.strip("/")
    return f"{prefix}/{STATUS_DIR}/{session_id}.json" if prefix else f"{STATUS_DIR}/{session_id}.json"


class StatusPublisher:
    """Puts the latest status to S3 from its own thread; ``close(final)`` puts the last one."""

    def __init__(self, s3: S3Config, session_id: str, every_s: float = STATUS_EVERY_S) -> None:
        from recorder.sinks.s3 import S3Store

        self.store = S3Store(s3, quick=True)  # short timeouts: a dead endpoint must not pile up puts
        self.key = status_key(s3.prefix, session_id)
        self.every_s = every_s
        self._latest: dict[str, Any] | None = None
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = False
        self._failing = False
        self._thread = threading.Thread(target=self._run, name="s3-status", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def update(self, status: dict[str, Any]) -> None:
        with self._lock:
            self._latest = status

    def close(self, final: dict[str, Any] | None, timeout_s: float = 20.0) -> None:
        if final is not None:
            self.update(final)
        self._stop = True
        self._wake.set()
        self._thread.join(timeout_s)

    def _run(self) -> None:
        while True:
            self._wake.wait(self.every_s)
            stopping = self._stop
            self._put()
            if stopping:
                return

    def _put(self) -> None:
        with self._lock:
            status = self._latest
        if status is None:
            return
        body = json.dumps(status, sort_keys=True).encode()
        try:
            self.store.client.put_object(
                Bucket=self.store.bucket, Key=self.key, Body=body, ContentType="application/json"
            )
        except Exception as exc:  # noqa: BLE001 - reported once, retried on the next round
            if not self._failing:
                log.error(
                    "event=status_object_failing key=%s error=%s", self.key, self.store.error(exc, "putting status")
                )
            self._failing = True
            return
        if self._failing:
            log.info("event=status_object_recovered key=%s", self.key)
        self._failing = False
