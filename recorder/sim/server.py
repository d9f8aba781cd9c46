"""Local exchange simulator: one aiohttp server (WebSocket + REST on one port) per venue.

Venue modules live beside this file and expose ``create_venue(opts) -> Venue``; ``VENUES``
(``recorder/sim/options.py``) maps a venue name to its module so more exchanges can be added without
touching the server code. The command line is ``python cli.py simulate`` (its options fill
:class:`SimOptions`).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import signal
from collections.abc import Callable
from typing import Any, Protocol

from aiohttp import web

from recorder.sim.faults import FaultInjector
from recorder.sim.options import VENUES, SimOptions

__all__ = ["VENUES", "SimOptions", "Simulator", "load_venue", "run_simulator"]


class Venue(Protocol):
    name: str

    def setup(self, app: web.Application) -> None: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def stats(self) -> dict[str, Any]: ...


def load_venue(opts: SimOptions) -> Venue:
    if opts.replay is not None:
        from recorder.sim.replay import ReplayVenue

        return ReplayVenue(opts, opts.replay)
    try:
        module = importlib.import_module(VENUES[opts.venue])
    except KeyError:
        raise ValueError(f"unknown venue {opts.venue!r}; known: {sorted(VENUES)}") from None
    venue: Venue = module.create_venue(opts)
    return venue


class Simulator:
    """In-process simulator; start()/stop() inside a running event loop."""

    def __init__(self, opts: SimOptions) -> None:
        self.opts = opts
        self.venue = load_venue(opts)
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._port = opts.port
        self.restarts = 0
        faults = getattr(self.venue, "faults", None)
        if isinstance(faults, FaultInjector):  # (a replayed recording has none)
            faults.restart_handler = self.restart

    async def start(self) -> None:
        app = web.Application()
        self.venue.setup(app)
        # Short shutdown timeout: stop() closes every socket first, so handlers finish quickly.
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=3.0)
        await self._runner.setup()
        await self.venue.start()
        self._site = web.TCPSite(self._runner, self.opts.host, self.opts.port, reuse_address=True)
        await self._site.start()
        self._port = self._runner.addresses[0][1]

    async def restart(self, down_s: float) -> None:
        """Like a restarted exchange front end: every socket dies, nothing listens for
        ``down_s``, then the same port serves again (the market itself keeps going)."""
        assert self._runner is not None and self._site is not None
        await self._site.stop()
        server = self._runner.server
        for handler in list(server.connections if server is not None else []):
            handler.force_close()
        await asyncio.sleep(down_s)
        self._site = web.TCPSite(self._runner, self.opts.host, self._port, reuse_address=True)
        await self._site.start()
        self.restarts += 1

    async def stop(self) -> None:
        await self.venue.stop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def port(self) -> int:
        return self._port

    @property
    def urls(self) -> dict[str, str]:
        host = f"[{self.opts.host}]" if ":" in self.opts.host else self.opts.host
        base = f"{host}:{self._port}"
        return {
            "venue": self.opts.venue,
            "ws_url": f"ws://{base}",
            "rest_url": f"http://{base}",
            "sim_url": f"http://{base}",
        }


def run_simulator(opts: SimOptions, on_ready: Callable[[dict[str, str]], None] | None = None) -> None:
    """Blocking: serve until SIGINT/SIGTERM (signal handling needs the main thread)."""

    async def main() -> None:
        sim = Simulator(opts)
        await sim.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, stop.set)
        try:
            if on_ready is not None:
                on_ready(sim.urls)
            await stop.wait()
        finally:
            await sim.stop()

    try:
        import uvloop
    except ImportError:
        asyncio.run(main())
    else:
        uvloop.run(main())
