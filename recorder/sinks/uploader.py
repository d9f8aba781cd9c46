"""The uploader process: moves the spool to S3, one file at a time in segment order.

It runs beside the writer (a child of the supervisor, at lower CPU priority) and only reads
files the writer has finished, so capture never waits on S3. Failures back off (1 s doubling
to 30 s) and retry forever: while S3 is down or slow the spool simply grows, and it drains when
S3 returns. On stop it keeps uploading for ``drain_timeout_s`` (giving up at the first failure);
what is left stays spooled for the next start.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path
from types import FrameType
from typing import Any

import msgspec

from recorder.config import S3Config
from recorder.metrics import SharedCounters
from recorder.parent import parent_alive, spawning_parent_pid
from recorder.sinks.local import atomic_write_bytes
from recorder.sinks.s3 import S3Error, S3Store
from recorder.sinks.spool import Spool, SpoolFile

log = logging.getLogger("recorder.uploader")

UPLOADER_COUNTER_FIELDS: list[str] = [
    "spool_files",  # finished files not yet confirmed by S3
    "spool_bytes",
    "oldest_spooled_ms",  # mtime of the oldest spooled file (0: spool empty)
    "uploads",  # confirmed uploads (size + ETag checked)
    "upload_bytes",
    "upload_failures",  # failed upload attempts
    "upload_retries",  # attempts at a file that had already failed
    "deleted_files",  # local copies removed after a confirmed upload
    "last_upload_ms",
    "last_failure_ms",
    "consecutive_failures",
    "last_upload_delay_ms",  # file finished -> upload confirmed, for the latest upload
    "heartbeat_ms",
    "stopping",
    "pid",
    "started_ms",
]

ERROR_FILE = "s3-last-error.json"
_MAX_BACKOFF_S = 30.0
_SCAN_INTERVAL_S = 1.0


class UploaderSpec(msgspec.Struct, kw_only=True):
    session_id: str
    data_dir: str
    s3: S3Config
    counters_name: str
    log_level: str = "INFO"
    poll_interval_s: float = 0.2


class Uploader:
    def __init__(self, spec: UploaderSpec, store: S3Store, counters: SharedCounters) -> None:
        self.spec = spec
        self.store = store
        self.counters = counters
        self.data_dir = Path(spec.data_dir)
        self.spool = Spool(spec.data_dir, spec.session_id, store.url)
        self.queue: list[SpoolFile] = []
        self.to_delete: list[SpoolFile] = []
        self.failed_file: str | None = None  # the file whose last attempt failed
        self.failures = 0
        self.retry_at = 0.0
        self.next_scan = 0.0
        self.last_error = ""

    def start(self) -> None:
        try:
            (self.spool.session_dir / ERROR_FILE).unlink()  # a previous run's error is history
        except OSError:
            pass
        self.spool.load()
        self.rescan()
        log.info(
            "event=uploader_start dest=%s spooled_files=%d spooled_bytes=%d",
            self.store.url,
            len(self.queue),
            sum(f.size for f in self.queue),
        )

    def rescan(self) -> None:
        self.queue = self.spool.scan()
        self.next_scan = time.monotonic() + _SCAN_INTERVAL_S
        self._publish_depth()

    def _publish_depth(self) -> None:
        c = self.counters
        c.set("spool_files", len(self.queue))
        c.set("spool_bytes", sum(f.size for f in self.queue))
        c.set("oldest_spooled_ms", min((f.mtime for f in self.queue), default=0.0) * 1000)

    def step(self) -> bool:
        """Upload the oldest spooled file if it is time; True when it did work."""
        now = time.monotonic()
        self._retry_deletes()
        if now < self.retry_at:
            return False
        if not self.queue or now >= self.next_scan:
            self.rescan()
        if not self.queue:
            return False
        return self.upload_one(self.queue[0])

    def upload_one(self, f: SpoolFile) -> bool:
        key = self.store.key_for(f.rel)
        retry = self.failed_file == f.rel
        if retry:
            self.counters.incr("upload_retries")
        try:
            size, etag = self.store.upload(f.path(self.data_dir), key)
        except S3Error as exc:
            if exc.kind == "local" and not f.path(self.data_dir).exists():
                log.warning("event=spool_file_vanished path=%s", f.rel)  # e.g. deleted by hand
                self.queue.remove(f)
                self._publish_depth()
                return True
            self._failed(f, exc)
            return False
        try:
            self.spool.mark_uploaded(f, key, etag)
        except OSError as exc:
            # E.g. a full disk. The object is confirmed; without the ledger line the file would
            # only be uploaded again (same key). Deleting it (if configured) is what frees space.
            log.warning("event=ledger_write_failed path=%s error=%s", f.rel, exc.strerror or exc)
            if not self.spec.s3.delete_after_upload:
                self._failed(f, S3Error(f"cannot record the upload of {f.rel}: {exc.strerror or exc}", kind="local"))
                return False
        c = self.counters
        now_ms = _now_ms()
        c.incr("uploads")
        c.incr("upload_bytes", size)
        c.set("last_upload_ms", now_ms)
        c.set("last_upload_delay_ms", max(0.0, now_ms - f.mtime * 1000))
        c.set("consecutive_failures", 0)
        if self.failures:
            log.info("event=upload_recovered after_failures=%d", self.failures)
            self._set_error("")
        self.failures = 0
        self.failed_file = None
        self.retry_at = 0.0
        log.info("event=uploaded key=%s bytes=%d etag=%s", key, size, etag)
        self.queue.remove(f)
        if self.spec.s3.delete_after_upload:
            self.to_delete.append(f)
            self._retry_deletes()
        self._publish_depth()
        return True

    def _retry_deletes(self) -> None:
        waiting: list[SpoolFile] = []
        for f in self.to_delete:
            try:
                if self.spool.delete(f):
                    self.counters.incr("deleted_files")
                else:
                    waiting.append(f)
            except OSError as exc:
                log.warning("event=spool_delete_failed path=%s error=%s", f.rel, exc.strerror or exc)
        self.to_delete = waiting

    def _failed(self, f: SpoolFile, exc: S3Error) -> None:
        self.failures += 1
        self.failed_file = f.rel
        delay = min(_MAX_BACKOFF_S, 2.0 ** min(self.failures - 1, 5))
        self.retry_at = time.monotonic() + delay
        c = self.counters
        c.incr("upload_failures")
        c.set("consecutive_failures", self.failures)
        c.set("last_failure_ms", _now_ms())
        # Log the first failure, every change of reason, and then once a minute or so.
        message = str(exc)
        if message != self.last_error or self.failures % 8 == 0:
            log.error(
                "event=upload_failed kind=%s attempt=%d retry_in_s=%.0f spooled_files=%d error=%s",
                exc.kind,
                self.failures,
                delay,
                len(self.queue),
                message,
            )
        self._set_error(message)

    def _set_error(self, message: str) -> None:
        if message == self.last_error:
            return
        self.last_error = message
        body = {"error": message, "at_ms": _now_ms()} if message else {}
        try:
            atomic_write_bytes(self.spool.session_dir / ERROR_FILE, msgspec.json.encode(body))
        except OSError:
            pass  # status detail only

    def heartbeat(self) -> None:
        self.counters.set("heartbeat_ms", _now_ms())

    # -- loop ------------------------------------------------------------------------------

    def run(self, stop: _Stop, parent_pid: int) -> None:
        while not stop.flag:
            if not parent_alive(parent_pid):
                stop.why = "parent_exit"
                break
            try:
                busy = self.step()
            except Exception:  # noqa: BLE001 - a crash loop here would stop the capture
                log.exception("event=uploader_step_failed")
                self.retry_at = time.monotonic() + _MAX_BACKOFF_S
                busy = False
            self.heartbeat()
            if not busy:
                time.sleep(self.spec.poll_interval_s)
        self.drain(stop.why or "stop")

    def drain(self, why: str) -> int:
        """Upload what the writer left (it has stopped by now) until done, the first failure, or
        the deadline. Returns the number of files still spooled."""
        self.counters.set("stopping", 1)
        deadline = time.monotonic() + self.spec.s3.drain_timeout_s
        self.rescan()
        log.info("event=uploader_draining reason=%s spooled_files=%d", why, len(self.queue))
        while self.queue and time.monotonic() < deadline:
            if not self.upload_one(self.queue[0]) and self.failed_file is not None:
                break  # S3 is not taking files: leave the rest spooled, don't hold up the stop
            self.heartbeat()
        self._retry_deletes()
        self.rescan()
        left = len(self.queue)
        if left:
            log.warning(
                "event=spool_not_empty files=%d bytes=%d detail=uploads resume on the next start",
                left,
                sum(f.size for f in self.queue),
            )
        log.info("event=uploader_stopped reason=%s spooled_files=%d", why, left)
        return left


class _Stop:
    def __init__(self) -> None:
        self.flag = False
        self.why = ""

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.flag = True
        self.why = signal.Signals(signum).name


def _now_ms() -> int:
    return int(time.time() * 1000)


def run_uploader(spec: UploaderSpec) -> None:
    """Uploader process main: until SIGTERM/SIGINT or the parent's death, then drain."""
    from recorder.logs import setup_logging

    setup_logging("uploader", spec.log_level)
    parent_pid = spawning_parent_pid()
    stop = _Stop()
    signal.signal(signal.SIGTERM, stop)
    # Ctrl-C reaches the whole process group: the supervisor stops us (SIGTERM) only after the
    # writer has flushed, so the drain sees the last files.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        os.nice(5)  # the venue processes' sampling grid matters more than upload speed
    except OSError:
        pass
    counters = SharedCounters.attach(spec.counters_name, UPLOADER_COUNTER_FIELDS)
    try:
        counters.set("pid", os.getpid())
        counters.set("started_ms", _now_ms())
        counters.set("stopping", 0)
        store = _make_store(spec, stop, parent_pid)
        if store is None:
            return
        uploader = Uploader(spec, store, counters)
        uploader.start()
        uploader.heartbeat()
        uploader.run(stop, parent_pid)
    finally:
        counters.close()


def _make_store(spec: UploaderSpec, stop: _Stop, parent_pid: int) -> S3Store | None:
    """The client, retried while it cannot be set up (e.g. a profile not there yet, with
    ``start_anyway``): crashing instead would read as a crash loop and stop the capture."""
    delay = 1.0
    while not stop.flag and parent_alive(parent_pid):
        try:
            return S3Store(spec.s3)
        except S3Error as exc:
            log.error("event=s3_client_failed retry_in_s=%.0f error=%s", delay, exc)
            deadline = time.monotonic() + delay
            while time.monotonic() < deadline and not stop.flag:
                time.sleep(0.2)
            delay = min(_MAX_BACKOFF_S, delay * 2)
    return None


def s3_status(counters: SharedCounters | None, s3: S3Config, session_dir: Path) -> dict[str, Any]:
    """The ``s3`` section of status.json (no credentials: bucket, prefix and endpoint only)."""
    out: dict[str, Any] = {
        "bucket": s3.bucket,
        "prefix": s3.prefix,
        "endpoint_url": s3.endpoint_url,
        "delete_after_upload": s3.delete_after_upload,
    }
    if counters is not None:
        v = counters.as_dict()
        now_ms = _now_ms()
        out.update({k: int(x) for k, x in v.items()})
        out["upload_lag_s"] = round((now_ms - v["oldest_spooled_ms"]) / 1000, 1) if v["oldest_spooled_ms"] else 0.0
    try:
        err = msgspec.json.decode((session_dir / ERROR_FILE).read_bytes())
    except (OSError, msgspec.DecodeError):
        err = {}
    out["last_error"] = err.get("error") or None
    out["last_error_ms"] = err.get("at_ms")
    return out
