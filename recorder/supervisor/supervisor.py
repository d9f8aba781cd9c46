"""The supervisor: owns the shared memory, spawns and restarts children, aggregates metrics.

Process shape: supervisor -> one venue process per venue (uvloop) + one writer process
(+ an embedded simulator process with ``--simulate``). Shared memory segments (rings and
counters) belong to the supervisor, so a child's death loses neither queued snapshots nor counts.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import signal
import time
from collections import Counter
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import msgspec

from recorder.config import ALL_PAIRS, CaptureConfig, VenueConfig
from recorder.metrics import SharedCounters, histogram_quantiles
from recorder.ring.shm_ring import ShmRing
from recorder.sampler.misslog import misslog_name
from recorder.sinks.uploader import UPLOADER_COUNTER_FIELDS, UploaderSpec, run_uploader, s3_status
from recorder.supervisor.lifeline import (
    child_main,
    reclaim_segments,
    segment_name,
    session_shm_key,
    wait_for_children,
)
from recorder.supervisor.prometheus import MetricsServer, exposition
from recorder.supervisor.sdnotify import SdNotify
from recorder.supervisor.session import SessionDir
from recorder.supervisor.venue_worker import VenueSpec, run_venue_process, venue_counter_fields
from recorder.venues import venue_module
from recorder.writer.process import WRITER_COUNTER_FIELDS, WriterSpec, run_writer

log = logging.getLogger("recorder.supervisor")

_ctx = mp.get_context("spawn")

# A child that dies this often this fast is not going to get better by itself.
CRASH_LOOP_RESTARTS = 10
CRASH_LOOP_WINDOW_S = 120.0
# How long a new start waits for the processes of a dead run of its session to finish stopping
# (an orphaned writer drains for at most twice its stop timeout).
PREVIOUS_RUN_WAIT_S = 60.0


class CaptureError(RuntimeError):
    """A problem that stops a capture from starting; shown to the user as one line."""


class Child:
    def __init__(self, name: str, target: Any, args: tuple[Any, ...], children_lock: str | None = None) -> None:
        self.name, self.target, self.args = name, target, args
        self.children_lock = children_lock
        self.process: BaseProcess | None = None
        self.restarts = 0
        self.exits: list[float] = []
        self.next_start = 0.0
        self.last_exitcode: int | None = None
        self.started_at = 0.0  # wall clock
        self.first_started_at = 0.0  # wall clock of the first start in this run (time to first sync)
        self.hangs = 0

    def start(self) -> None:
        # child_main: the child dies with the supervisor, however the supervisor dies.
        args = (self.children_lock, self.target, self.args)
        self.process = _ctx.Process(target=child_main, args=args, name=self.name, daemon=False)
        self.process.start()
        self.started_at = time.time()
        self.first_started_at = self.first_started_at or self.started_at
        log.info("event=child_started child=%s pid=%s", self.name, self.process.pid)

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.is_alive()

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def poll(self) -> bool:
        """Restart a dead child after a backoff. False when it is crash-looping."""
        now = time.monotonic()
        if self.process is not None and not self.process.is_alive():
            self.last_exitcode = self.process.exitcode
            self.process = None
            self.exits = [t for t in self.exits if now - t < CRASH_LOOP_WINDOW_S] + [now]
            delay = min(30.0, 0.25 * 2 ** max(0, len(self.exits) - 1))
            self.next_start = now + delay
            log.error("event=child_died child=%s exitcode=%s restart_in_s=%.2f", self.name, self.last_exitcode, delay)
            if len(self.exits) >= CRASH_LOOP_RESTARTS:
                return False
        if self.process is None and now >= self.next_start:
            self.restarts += 1
            self.start()
        return True

    def stop(self, timeout_s: float) -> int | None:
        if self.process is None:
            return self.last_exitcode
        if self.process.is_alive():
            os.kill(self.process.pid, signal.SIGTERM)  # type: ignore[arg-type]
        self.process.join(timeout_s)
        if self.process.is_alive():
            log.error("event=child_kill child=%s reason=stop_timeout", self.name)
            self.process.kill()
            self.process.join(5)
        self.last_exitcode = self.process.exitcode
        return self.last_exitcode


def _run_simulator(opts: Any, conn: Connection) -> None:
    from recorder.logs import setup_logging
    from recorder.sim.server import run_simulator

    setup_logging("simulator")
    # Out of the terminal's process group: Ctrl-C must not take the exchange away before the
    # venue processes have stopped (run_simulator stops on SIGINT). The supervisor terminates it
    # last, and it dies with the supervisor anyway (lifeline.child_main).
    os.setpgrp()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    run_simulator(opts, on_ready=conn.send)


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
        self._sims: list[BaseProcess] = []
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
        _check_writable(Path(self.cfg.data_dir))
        self.session.check_continues(interval_s=self.cfg.interval_s, depth=self.cfg.depth)
        self.session.acquire()
        try:
            self._reclaim_previous_run()
            if self.cfg.simulate:
                self._start_simulator()
            self._check_pairs()
            self._check_s3()
            self._start_status_object()
            self._create_shared_memory()
            self._start_metrics()
        except BaseException:
            self._release_shared_memory()
            self._stop_simulator()
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
                for sim in self._sims:
                    if not sim.is_alive():
                        log.error("event=simulator_died simulator=%s exitcode=%s", sim.name, sim.exitcode)
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
            self._stop_simulator()
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
        self.notify.status(_notify_line(status))
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
        _wait_started(self._writer, self._writer_counters)  # a short capture may stop it while it imports
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
        _wait_started(self._uploader, self._uploader_counters)
        s3 = self.cfg.s3
        self._uploader.stop(timeout_s=s3.drain_timeout_s + 2 * (s3.connect_timeout_s + s3.read_timeout_s) + 10)

    # setup -------------------------------------------------------------------------------

    def _start_simulator(self) -> None:
        """One embedded simulator process per venue, each on its own loopback port."""
        from recorder.sim.server import VENUES as SIM_VENUES
        from recorder.sim.server import SimOptions

        for venue in self.cfg.venues:
            if venue not in SIM_VENUES:
                raise CaptureError(f"--simulate does not serve venue {venue!r} yet (known: {', '.join(SIM_VENUES)})")
        for venue, vc in self.cfg.venues.items():
            parent, child = _ctx.Pipe(duplex=False)
            opts = SimOptions(venue=venue, host="127.0.0.1", port=0)
            args = (None, _run_simulator, (opts, child))
            proc = _ctx.Process(target=child_main, args=args, name=f"simulator-{venue}")
            proc.start()
            self._sims.append(proc)
            if not parent.poll(30):
                raise CaptureError(f"embedded {venue} simulator did not start within 30 s")
            urls = parent.recv()
            log.info("event=simulator_ready venue=%s ws_url=%s rest_url=%s", venue, urls["ws_url"], urls["rest_url"])
            vc.ws_url, vc.rest_url = urls["ws_url"], urls["rest_url"]

    def _stop_simulator(self) -> None:
        for proc in self._sims:
            proc.terminate()
        for proc in self._sims:
            proc.join(10)
        self._sims.clear()

    def _check_pairs(self) -> None:
        for venue, vc in self.cfg.venues.items():
            if vc.pairs == [ALL_PAIRS]:
                self._resolve_all_pairs(venue, vc)
            else:
                try:
                    unknown = venue_module(venue).check_pairs(vc.rest_url, vc.pairs)
                except OSError as exc:
                    raise CaptureError(f"cannot reach {venue} REST API to check pairs: {exc}") from None
                if unknown:
                    raise CaptureError(f"unknown pair(s) on {venue}: {', '.join(unknown)}")
            self._take_shard(venue, vc)
            self._check_connection_limits(venue, vc)

    def _take_shard(self, venue: str, vc: VenueConfig) -> None:
        """With ``--shard I/N``: keep only this shard's part of the venue's (whole) pair list."""
        if self.shard is None:
            return
        mine = self.shard.select(venue, vc.pairs)
        if not mine:
            raise CaptureError(f"shard {self.shard} gets none of the {len(vc.pairs)} {venue} pairs: use fewer shards")
        log.info("event=shard_pairs venue=%s shard=%s pairs=%d of=%d", venue, self.shard, len(mine), len(vc.pairs))
        vc.pairs = mine
        check = getattr(venue_module(venue), "check_config", None)
        try:
            if check is not None:
                check(vc)
        except ValueError as exc:
            raise CaptureError(f"shard {self.shard} of {venue}: {exc}") from None

    def _check_connection_limits(self, venue: str, vc: VenueConfig) -> None:
        """Pairs that would need more connections than the venue allows per IP: fail now, not in a
        crash-looping venue process."""
        declared = getattr(venue_module(venue).CONNECTOR, "declared_limits", None)
        if declared is None:
            return
        limits = declared()
        per_conn = vc.max_streams_per_connection or limits.streams_per_connection
        # A pair may take several streams (Binance: depth and, with "trades", its trade stream).
        per_pair = getattr(venue_module(venue).CONNECTOR, "streams_per_pair", lambda cfg: 1)(vc)
        needed = -(-len(vc.pairs) // max(1, per_conn // per_pair))
        if limits.connections_per_ip is not None and needed > limits.connections_per_ip:
            raise CaptureError(
                f"{len(vc.pairs)} {venue} pairs need {needed} connections at {per_conn} streams each;"
                f" the venue allows {limits.connections_per_ip} per IP"
            )

    def _resolve_all_pairs(self, venue: str, vc: VenueConfig) -> None:
        """``--pairs all``: every listed instrument passing the config's quote / type filters."""
        module = venue_module(venue)
        if not hasattr(module, "list_pairs"):
            raise CaptureError(f"--pairs all is not supported for {venue} yet")
        try:
            pairs = module.list_pairs(vc.rest_url, vc.quote, vc.types)
        except OSError as exc:
            raise CaptureError(f"cannot reach {venue} REST API to list its instruments: {exc}") from None
        if not pairs:
            raise CaptureError(f"no {venue} instrument matches quote={vc.quote or 'any'} types={vc.types or 'any'}")
        log.info("event=pairs_resolved venue=%s pairs=%d", venue, len(pairs))
        vc.pairs = pairs
        check = getattr(module, "check_config", None)
        try:
            if check is not None and self.shard is None:  # a shard checks its own part
                check(vc)  # e.g. OKX / Kraken: at most N pairs on their one connection
        except ValueError as exc:
            n = len(pairs)
            raise CaptureError(f"--pairs all lists {n} {venue} instruments ({exc}): {_narrowing(pairs)}") from None

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
        totals = {
            k: 0.0
            for k in (
                "messages",
                "resyncs",
                "reconnects",
                "gaps",
                "missed_ticks",
                "depth_short",
                "ring_drops",
                "samples",
                "warmup_ticks",
                "malformed",
                "stalls",
                "trades",
                "trade_gaps",
                "quotes",
            )
        }
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
            lat = histogram_quantiles(v, (0.5, 0.99), "lat")
            jit = histogram_quantiles(v, (0.5, 0.99), "jit")
            child = self._venues.get(venue)
            ring = self._rings[venue]
            venues[venue] = {
                "pid": child.pid if child else None,
                "alive": bool(child and child.alive),
                "restarts": child.restarts if child else 0,
                "hangs": child.hangs if child else 0,
                "connected": bool(v["connected"]),
                "messages": int(v["messages"]),
                "messages_per_s": round(rate, 1),
                "bytes": int(v["bytes"]),
                "malformed": int(v["malformed"]),
                "resyncs": int(v["resyncs"]),
                "gaps": int(v["gaps"]),
                "checksums_ok": int(v["checksums_ok"]),
                "checksums_failed": int(v["checksum_failures"]),
                "resubscribes": int(v["resubscribes"]),
                "reconnects": int(v["reconnects"]),
                "planned_reconnects": int(v["planned_reconnects"]),
                "stalls": int(v["stalls"]),
                "snapshots_fetched": int(v["snapshots_fetched"]),
                "http_429": int(v["http_429"]),
                "rest_errors": int(v["rest_errors"]),
                "lag_alerts": int(v["lag_alerts"]),
                "lagging": bool(v["lagging"]),
                "http_418": int(v["http_418"]),
                "connections": int(v["connections"]),
                "rest_weight_used": int(v["rest_weight_used"]),
                "rest_queue": int(v["rest_queue"]),
                "buffered_diffs": int(v["buffered_diffs"]),
                "ticks": int(v["ticks"]),
                "samples": int(v["samples"]),
                "missed_ticks": int(v["missed_ticks"]),
                "missed_by_cause": {
                    cause: int(v[f"missed_{cause}"]) for cause in ("not_synced", "restart", "late", "crossed")
                },
                "warmup_ticks": int(v["warmup_ticks"]),
                "depth_short": int(v["depth_short"]),
                "pairs_never_synced": sum(1 for pair in vc.pairs if not v[f"first_sync_ms:{pair}"]),
                "ring_drops": int(v["ring_drops"]),
                "ring_used_bytes": ring.used_bytes,
                "archive_lost_frames": int(v["archive_lost_frames"]),
                "archive_buffer_bytes": int(v["archive_buffer_bytes"]),
                "capture_latency_ms": {"p50": lat[0.5], "p99": lat[0.99], "max": v["lat_max"] or None},
                "grid_jitter_ms": {"p50": jit[0.5], "p99": jit[0.99], "max": v["jit_max"] or None},
                **_records_status(v, vc.channels),
                "pairs": {
                    pair: {
                        "synced": bool(v[f"synced:{pair}"]),
                        "samples": int(v[f"samples:{pair}"]),
                        "missed_ticks": int(v[f"missed:{pair}"]),
                        "resyncs": int(v[f"resyncs:{pair}"]),
                        "gaps": int(v[f"gaps:{pair}"]),
                        "checksums_failed": int(v[f"checksum_failures:{pair}"]),
                        "depth_short": int(v[f"depth_short:{pair}"]),
                        **_warmup_status(v, pair, child.first_started_at if child else 0.0),
                        "ring_drops": int(v[f"drops:{pair}"]),
                        **_pair_records_status(v, pair),
                    }
                    for pair in vc.pairs
                },
            }
            for key in totals:
                totals[key] += v[key]
        writer: dict[str, Any] = {}
        if self._writer_counters is not None:
            w = self._writer_counters.as_dict()
            writer = {k: (int(x) if float(x).is_integer() else round(x, 3)) for k, x in w.items()}
            writer["pid"] = self._writer.pid if self._writer else None
            writer["alive"] = bool(self._writer and self._writer.alive)
            writer["restarts"] = self._writer.restarts if self._writer else 0
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


def _records_status(v: dict[str, float], channels: list[str]) -> dict[str, Any]:
    """A venue's trades and quotes (recorder/sampler/emitter.py): stored, lost, silent streams."""
    keys = ("trades", "trade_gaps", "trade_drops", "trade_silent", "trade_silences", "quotes", "quote_drops")
    return {"channels": list(channels), **{k: int(v[k]) for k in keys}}


def _pair_records_status(v: dict[str, float], pair: str) -> dict[str, Any]:
    return {
        "trades": int(v[f"trades:{pair}"]),
        "trade_gaps": int(v[f"trade_gaps:{pair}"]),
        "trade_silent": bool(v[f"trade_silent:{pair}"]),
        "quotes": int(v[f"quotes:{pair}"]),
    }


def _warmup_status(v: dict[str, float], pair: str, started_s: float) -> dict[str, Any]:
    """A pair's warm-up: ticks before its first sync, and when that was (null: never synced in this
    run), also as seconds from the venue process's first start."""
    first_ms = int(v[f"first_sync_ms:{pair}"]) or None
    since_start = round(first_ms / 1000.0 - started_s, 3) if first_ms is not None and started_s else None
    return {"warmup_ticks": int(v[f"warmup:{pair}"]), "first_sync_ms": first_ms, "time_to_first_sync_s": since_start}


def _wait_started(child: Child, counters: SharedCounters | None, timeout_s: float = 30.0) -> None:
    """Until the child has written its pid to its counters, i.e. installed its SIGTERM handler:
    a SIGTERM before that would kill it without a drain (a capture of a second stops a writer
    still importing pyarrow)."""
    deadline = time.monotonic() + timeout_s
    while counters is not None and counters.get("pid") != child.pid and child.alive:
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)


def _notify_line(status: dict[str, Any]) -> str:
    """systemctl status' one line: what runs and whether it is healthy."""
    parts = [status["state"]]
    for venue, v in status.get("venues", {}).items():
        pairs = v.get("pairs", {})
        synced = sum(1 for p in pairs.values() if p["synced"])
        parts.append(f"{venue} {synced}/{len(pairs)} synced, {v['samples']} snapshots, {v['missed_ticks']} missed")
    w = status.get("writer", {})
    if w:
        parts.append(
            f"{w.get('snapshots_written', 0)} written" + (", STORAGE FAILING" if w.get("storage_failing") else "")
        )
    return "; ".join(parts)


def _check_writable(data_dir: Path) -> None:
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        probe = data_dir / f".write-probe-{os.getpid()}"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        raise CaptureError(f"data dir {data_dir} is not writable: {exc.strerror or exc}") from None


def _narrowing(pairs: list[str]) -> str:
    """Filter guidance for a universe too big for the venue: how many pairs each quote would keep."""
    by_quote = Counter(p.split("-")[1] for p in pairs if "-" in p)
    counts = ", ".join(f"{q} {n}" for q, n in by_quote.most_common(6))
    return f"narrow it with the venue's quote / types filters (pairs by quote: {counts}) or list pairs"
