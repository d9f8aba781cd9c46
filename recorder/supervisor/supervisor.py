"""The supervisor: owns the shared memory, spawns and restarts children, aggregates metrics.

Process shape: supervisor -> one venue process per venue (uvloop) + one writer process
(+ an embedded simulator process with ``--simulate``). Shared memory segments (rings and
counters) belong to the supervisor, so a child's death loses neither queued snapshots nor counts.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from recorder.config import CaptureConfig
from recorder.metrics import SharedCounters
from recorder.ring.shm_ring import ShmRing
from recorder.sampler.misslog import misslog_name
from recorder.sinks.uploader import UPLOADER_COUNTER_FIELDS, UploaderSpec, run_uploader, s3_status
from recorder.supervisor.checks import CaptureError, check_pairs, check_writable
from recorder.supervisor.child import Child, wait_started
from recorder.supervisor.embedded_sim import EmbeddedSimulators
from recorder.supervisor.lifeline import reclaim_segments, segment_name, session_shm_key, wait_for_children
from recorder.supervisor.prometheus import MetricsServer, exposition
from recorder.supervisor.sdnotify import SdNotify
from recorder.supervisor.session import SessionDir
from recorder.supervisor.venue_status import TOTALS, notify_line, venue_status, writer_status
from recorder.supervisor.venue_worker import VenueSpec, run_venue_process, venue_counter_fields
from recorder.writer.process import WRITER_COUNTER_FIELDS, WriterSpec, run_writer

__all__ = ["CaptureError", "Supervisor"]  # CaptureError: importable from here as before

log = logging.getLogger("recorder.supervisor")

# How long a new start waits for the processes of a dead run of its session to finish stopping
# (an orphaned writer drains for at most twice its stop timeout).
PREVIOUS_RUN_WAIT_S = 60.0


class Supervisor:
    def __init__(self, cfg: CaptureConfig, log_level: str = "INFO") -> None:
        self.cfg = cfg
        self.session_id = cfg.resolved_session_id()
        # Frozen before a shard narrows the pairs: every shard shares the base of its id.
        cfg.session_id = cfg.base_session_id()
        self.shard = cfg.shard_spec()
        self.session = SessionDir(cfg.data_dir, self.session_id)
        self._shm_key = session_shm_key(cfg.data_dir, self.session_id)
        self.log_level = log_level
        self._stop_reason: str | None = None
        self._sims = EmbeddedSimulators()
        self._rings: dict[str, ShmRing] = {}
        self._counters: dict[str, SharedCounters] = {}
        self._writer_counters: SharedCounters | None = None
        self._venues: dict[str, Child] = {}
        self._writer: Child | None = None
        self._uploader: Child | None = None  # with --storage s3
        self._uploader_counters: SharedCounters | None = None
        self._started = time.time()
        self._last_status: dict[str, Any] = {}
        self._prev_rates: dict[str, tuple[float, float]] = {}
        self._storage_failing = False
        self._status_failing = False
        self.notify = SdNotify()
        self.metrics: MetricsServer | None = None
        self._status_object: Any = None  # StatusPublisher with --storage s3 (fleet-status reads it)
        # Called with every status (about once a second): the CLI's live view or log summary.
        self.on_status: Callable[[dict[str, Any]], None] | None = None

    # lifecycle ----------------------------------------------------------------------------

    def prepare(self) -> None:
        """Everything that can fail with a clear message, before any child starts."""
        check_writable(Path(self.cfg.data_dir))
        self.session.check_continues(interval_s=self.cfg.interval_s, depth=self.cfg.depth)
        self.session.acquire()
        try:
            self._reclaim_previous_run()
            if self.cfg.simulate:
                self._sims.start(self.cfg)
            self._check_pairs()
            self._check_s3()
            self._start_status_object()
            self._create_shared_memory()
            self._start_metrics()
        except BaseException:
            self._release_shared_memory()
            self._sims.stop()
            self.session.release(failed_start=True)
            raise

    def _reclaim_previous_run(self) -> None:
        """A run that died without stopping (kill -9, OOM) may leave children still draining and
        shared memory behind: wait for the former, unlink the latter."""
        if not wait_for_children(self.session.children_lock, PREVIOUS_RUN_WAIT_S):
            raise CaptureError(
                f"processes of a previous run of session {self.session_id!r} are still running"
                f" after {PREVIOUS_RUN_WAIT_S:.0f} s (they hold {self.session.children_lock})"
            )
        reclaim_segments(self._shm_key)

    def run(self) -> int:
        """Run until the duration ends or a stop is requested; returns the exit code."""
        cfg = self.cfg
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGHUP, self._on_signal)  # the terminal went away (ssh dropped): stop cleanly
        exit_code = 0
        try:
            self.session.record_run("start", interval_s=cfg.interval_s)
            self._spawn_children()
            self.notify.ready(f"capturing {self.session_id}")
            # The duration is capture time: it starts now, not before the simulators and pair
            # checks (slow on a loaded machine, which once left an 8 s capture nothing to capture).
            deadline = time.time() + cfg.duration_s if cfg.duration_s else None
            last_status = 0.0
            while self._stop_reason is None:
                time.sleep(0.1)
                self.notify.watchdog()
                for child in [*self._venues.values(), self._writer, *self._uploaders()]:
                    assert child is not None
                    if not child.poll():
                        log.error("event=crash_loop child=%s restarts=%d", child.name, child.restarts)
                        self._stop_reason = f"crash loop in {child.name}"
                        exit_code = 3
                self._kill_hung_children()
                self._sims.check_alive()
                if deadline is not None and time.time() >= deadline:
                    self._stop_reason = "duration reached"
                now = time.monotonic()
                if now - last_status >= 1.0:
                    last_status = now
                    self._publish_status(self.status("running"))
            log.info("event=stopping reason=%r", self._stop_reason)
            self.session.record_run("stop", reason=self._stop_reason)
            self.notify.stopping(f"stopping: {self._stop_reason}; flushing")
            self._publish_status(self.status("stopping"))
            flushed = self._shutdown()
            if not flushed:
                exit_code = exit_code or 4
            final = self.status("stopped")
            final["flushed"] = flushed
            final["stop_reason"] = self._stop_reason
            self._publish_status(final)
            log.info(
                "event=stopped flushed=%s snapshots_written=%d", flushed, final["writer"].get("snapshots_written", 0)
            )
            return exit_code
        finally:
            if self._status_object is not None:
                self._status_object.close(self._last_status or None)
            if self.metrics is not None:
                self.metrics.stop()
            self.notify.close()
            self._release_shared_memory()
            self._sims.stop()
            self.session.release()

    def _kill_hung_children(self) -> None:
        """Alive is not enough: a child must also keep its heartbeat fresh (poll() restarts it)."""
        now = time.time()
        beats = [(c, self._counters[v].get("heartbeat_ms")) for v, c in self._venues.items()]
        if self._writer is not None and self._writer_counters is not None:
            beats.append((self._writer, self._writer_counters.get("heartbeat_ms")))
        for child, beat_ms in beats:
            last = max(beat_ms / 1000.0, child.started_at)
            if child.alive and now - last > self.cfg.hang_timeout_s:
                child.hangs += 1
                log.error(
                    "event=child_hung child=%s pid=%s silent_s=%.1f action=kill", child.name, child.pid, now - last
                )
                assert child.process is not None
                child.process.kill()
                child.process.join(5)

    def _start_metrics(self) -> None:
        if self.cfg.metrics_port is None:
            return
        try:
            self.metrics = MetricsServer(self.cfg.metrics_host, self.cfg.metrics_port, self._metrics_text)
        except OSError as exc:
            raise CaptureError(f"cannot serve metrics on port {self.cfg.metrics_port}: {exc.strerror or exc}") from None
        self.metrics.start()

    def _metrics_text(self) -> str:
        # Only the last published status: status() itself is not for other threads.
        return exposition(self._last_status or {"session_id": self.session_id, "state": "starting"})

    def _publish_status(self, status: dict[str, Any]) -> None:
        """status.json, plus one loud line when storage starts or stops failing. A full disk
        must not kill the supervisor: the status file is then simply not refreshed."""
        self._last_status = status
        if self._status_object is not None:
            self._status_object.update(status)
        if self.on_status is not None:
            try:
                self.on_status(status)
            except Exception as exc:  # a display problem must never stop a capture
                log.warning("event=status_view_failed error=%r", exc)
        self.notify.status(notify_line(status))
        failing = bool(status.get("writer", {}).get("storage_failing"))
        if failing != self._storage_failing:
            self._storage_failing = failing
            if failing:
                log.error(
                    "event=storage_failing data_dir=%s detail=snapshots wait in the rings; overflow is counted",
                    status["data_dir"],
                )
            else:
                log.info("event=storage_recovered data_dir=%s", status["data_dir"])
        try:
            self.session.write_status(status)
        except OSError as exc:
            if not self._status_failing:
                log.error("event=status_write_failed error=%s", exc)
            self._status_failing = True
        else:
            self._status_failing = False

    def _on_signal(self, signum: int, _frame: object) -> None:
        if self._stop_reason is None:
            self._stop_reason = signal.Signals(signum).name

    def _shutdown(self) -> bool:
        # Producers first, so the writer's final drain sees every snapshot they pushed.
        for child in self._venues.values():
            child.stop(timeout_s=15)
        assert self._writer is not None
        if not self._writer.alive:
            # A writer that died just before the stop still owes us the ring's tail.
            self._writer.start()
        wait_started(self._writer, self._writer_counters)  # a short capture may stop it while it imports
        code = self._writer.stop(timeout_s=120)
        self._stop_uploader()
        return code == 0

    # S3 uploads (recorder/sinks/uploader.py) ---------------------------------------------

    def _uploaders(self) -> list[Child]:
        return [self._uploader] if self._uploader is not None else []

    def _check_s3(self) -> None:
        """Bucket reachable and writable, else one clear line (or a warning with start_anyway)."""
        s3 = self.cfg.s3
        if self.cfg.storage != "s3" or s3 is None:
            return
        from recorder.sinks.s3 import S3Error, S3Store

        try:
            S3Store(s3, quick=True).check(f"{self.session_id}-{os.getpid()}")
        except S3Error as exc:
            if not s3.start_anyway:
                raise CaptureError(str(exc)) from None
            log.warning("event=s3_check_failed start_anyway=true detail=files spool locally error=%s", exc)

    def _start_status_object(self) -> None:
        """``PREFIX/_status/<session>.json``, kept fresh for ``fleet-status`` on any machine."""
        s3 = self.cfg.s3
        if self.cfg.storage != "s3" or s3 is None:
            return
        from recorder.sinks.s3 import S3Error
        from recorder.supervisor.status_object import StatusPublisher

        try:
            self._status_object = StatusPublisher(s3, self.session_id)
        except S3Error as exc:  # (start_anyway: the capture runs; its shard shows down)
            log.error("event=status_object_off error=%s", exc)
            return
        self._status_object.start()

    def _start_uploader(self) -> None:
        s3 = self.cfg.s3
        if self.cfg.storage != "s3" or s3 is None:
            return
        name = segment_name(self._shm_key, "u")
        self._uploader_counters = SharedCounters.create(UPLOADER_COUNTER_FIELDS, name=name)
        spec = UploaderSpec(
            session_id=self.session_id,
            data_dir=self.cfg.data_dir,
            s3=s3,
            counters_name=self._uploader_counters.name,
            log_level=self.log_level,
        )
        self._uploader = Child("uploader", run_uploader, (spec,), str(self.session.children_lock))
        self._uploader.start()

    def _stop_uploader(self) -> None:
        """After the writer: the uploader drains what it left (bounded; the rest stays spooled)."""
        if self._uploader is None or self.cfg.s3 is None:
            return
        if not self._uploader.alive:
            self._uploader.start()
        wait_started(self._uploader, self._uploader_counters)
        s3 = self.cfg.s3
        self._uploader.stop(timeout_s=s3.drain_timeout_s + 2 * (s3.connect_timeout_s + s3.read_timeout_s) + 10)

    # setup -------------------------------------------------------------------------------

    def _check_pairs(self) -> None:
        check_pairs(self.cfg, self.shard)

    def _create_shared_memory(self) -> None:
        """Named per session (lifeline.py), so a start after a kill -9 finds what that run left."""
        ring_bytes = int(self.cfg.writer.ring_mb * 1024 * 1024)
        key = self._shm_key
        try:
            for i, (venue, vc) in enumerate(self.cfg.venues.items()):
                self._rings[venue] = ShmRing.create(ring_bytes, name=segment_name(key, f"r{i}"))
                fields = venue_counter_fields(vc.pairs)
                self._counters[venue] = SharedCounters.create(fields, name=segment_name(key, f"c{i}"))
            self._writer_counters = SharedCounters.create(WRITER_COUNTER_FIELDS, name=segment_name(key, "w"))
        except OSError as exc:
            need = len(self.cfg.venues) * ring_bytes / 2**20
            raise CaptureError(
                f"cannot allocate shared memory ({need:.0f} MiB of rings): {exc.strerror or exc}"
            ) from None

    def _release_shared_memory(self) -> None:
        for ring in self._rings.values():
            ring.close()
        for counters in self._counters.values():
            counters.close()
        if self._writer_counters is not None:
            self._writer_counters.close()
        if self._uploader_counters is not None:
            self._uploader_counters.close()
        self._rings.clear()
        self._counters.clear()
        self._writer_counters = self._uploader_counters = None

    def _spawn_children(self) -> None:
        cfg = self.cfg
        w = cfg.writer
        formats = ["jsonl", "parquet"] if cfg.format == "both" else [cfg.format]
        assert self._writer_counters is not None
        wspec = WriterSpec(
            session_id=self.session_id,
            data_dir=cfg.data_dir,
            formats=formats,
            rotate_snapshots=w.rotate_snapshots,
            rotate_seconds=w.rotate_seconds,
            rotate_bytes=int(w.rotate_mb * 1024 * 1024),
            rings={venue: ring.name for venue, ring in self._rings.items()},
            counters_name=self._writer_counters.name,
            compact_older_than_s=w.compact_older_than_s if w.compact else None,
            compact_target_mb=w.compact_target_mb,
            compact_every_s=w.compact_every_s,
            stream_redis=cfg.stream.redis if cfg.stream is not None else None,
        )
        self._writer = Child("writer", run_writer, (wspec,), str(self.session.children_lock))
        self._writer.start()
        for venue, vc in cfg.venues.items():
            spec = VenueSpec(
                venue=venue,
                pairs=vc.pairs,
                depth=cfg.depth,
                interval_ms=round(cfg.interval_s * 1000),
                session_id=self.session_id,
                venue_config=vc,
                ring_name=self._rings[venue].name,
                counters_name=self._counters[venue].name,
                log_level=self.log_level,
                misslog_path=str(self.session.path / misslog_name(venue)),
                data_dir=cfg.data_dir if cfg.archive.enabled else "",
                archive=cfg.archive,
            )
            spec_bytes = msgspec.msgpack.encode(spec)
            child = Child(f"venue-{venue}", run_venue_process, (spec_bytes,), str(self.session.children_lock))
            child.start()
            self._venues[venue] = child
        self._start_uploader()

    # metrics -----------------------------------------------------------------------------

    def status(self, state: str) -> dict[str, Any]:
        now = time.time()
        venues: dict[str, Any] = {}
        totals = dict.fromkeys(TOTALS, 0.0)
        for venue, vc in self.cfg.venues.items():
            counters = self._counters.get(venue)
            if counters is None:
                continue
            v = counters.as_dict()
            prev = self._prev_rates.get(venue)
            rate = 0.0
            if prev is not None and now > prev[0]:
                rate = (v["messages"] - prev[1]) / (now - prev[0])
            self._prev_rates[venue] = (now, v["messages"])
            child = self._venues.get(venue)
            ring = self._rings[venue]
            venues[venue] = venue_status(v, vc, child, ring.used_bytes, rate)
            for key in totals:
                totals[key] += v[key]
        writer = writer_status(self._writer_counters, self._writer)
        return {
            "session_id": self.session_id,
            "shard": str(self.shard) if self.shard is not None else None,
            "state": state,
            "supervisor_pid": os.getpid(),
            "started_at_ms": int(self._started * 1000),
            "updated_at_ms": int(now * 1000),
            "uptime_s": round(now - self._started, 1),
            "interval_s": self.cfg.interval_s,
            "depth": self.cfg.depth,
            "format": self.cfg.format,
            "data_dir": str(Path(self.cfg.data_dir).resolve()),
            "simulate": self.cfg.simulate,
            "venues": venues,
            "writer": writer,
            "totals": {k: int(x) for k, x in totals.items()},
            **self._storage_status(),
        }

    def _storage_status(self) -> dict[str, Any]:
        out: dict[str, Any] = {"storage": self.cfg.storage}
        if self.cfg.storage == "s3" and self.cfg.s3 is not None:
            s3 = s3_status(self._uploader_counters, self.cfg.s3, self.session.path)
            if self._uploader is not None:
                s3.update(alive=self._uploader.alive, restarts=self._uploader.restarts)
            out["s3"] = s3
        return out
