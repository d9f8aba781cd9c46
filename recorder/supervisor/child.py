"""A child process of the supervisor (venue, writer, uploader): started through
``lifeline.child_main`` (it dies with the supervisor), restarted with a backoff when it dies,
given up on when it crash-loops."""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import signal
import time
from multiprocessing.process import BaseProcess
from typing import Any

from recorder.metrics import SharedCounters
from recorder.supervisor.lifeline import child_main

log = logging.getLogger("recorder.supervisor")

_ctx = mp.get_context("spawn")

# A child that dies this often this fast is not going to get better by itself.
CRASH_LOOP_RESTARTS = 10
CRASH_LOOP_WINDOW_S = 120.0


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


def wait_started(child: Child, counters: SharedCounters | None, timeout_s: float = 30.0) -> None:
    """Until the child has written its pid to its counters, i.e. installed its SIGTERM handler:
    a SIGTERM before that would kill it without a drain (a capture of a second stops a writer
    still importing pyarrow)."""
    deadline = time.monotonic() + timeout_s
    while counters is not None and counters.get("pid") != child.pid and child.alive:
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
