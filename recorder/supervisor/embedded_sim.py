"""``--simulate``: one embedded simulator process per venue, each on its own loopback port, its
URLs written into the venue's config before the pairs are checked."""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import signal
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from recorder.config import CaptureConfig
from recorder.supervisor.checks import CaptureError
from recorder.supervisor.lifeline import child_main

log = logging.getLogger("recorder.supervisor")

_ctx = mp.get_context("spawn")


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


class EmbeddedSimulators:
    def __init__(self) -> None:
        self.processes: list[BaseProcess] = []

    def start(self, cfg: CaptureConfig) -> None:
        """A simulator for every venue of ``cfg``, ready, its URLs in the venue's config."""
        from recorder.sim.options import VENUES as SIM_VENUES
        from recorder.sim.options import SimOptions

        for venue in cfg.venues:
            if venue not in SIM_VENUES:
                raise CaptureError(f"--simulate does not serve venue {venue!r} yet (known: {', '.join(SIM_VENUES)})")
        for venue, vc in cfg.venues.items():
            parent, child = _ctx.Pipe(duplex=False)
            opts = SimOptions(venue=venue, host="127.0.0.1", port=0)
            args = (None, _run_simulator, (opts, child))
            proc = _ctx.Process(target=child_main, args=args, name=f"simulator-{venue}")
            proc.start()
            self.processes.append(proc)
            if not parent.poll(30):
                raise CaptureError(f"embedded {venue} simulator did not start within 30 s")
            urls = parent.recv()
            log.info("event=simulator_ready venue=%s ws_url=%s rest_url=%s", venue, urls["ws_url"], urls["rest_url"])
            vc.ws_url, vc.rest_url = urls["ws_url"], urls["rest_url"]

    def check_alive(self) -> None:
        for sim in self.processes:
            if not sim.is_alive():
                log.error("event=simulator_died simulator=%s exitcode=%s", sim.name, sim.exitcode)

    def stop(self) -> None:
        for proc in self.processes:
            proc.terminate()
        for proc in self.processes:
            proc.join(10)
        self.processes.clear()
