"""Local exchange simulator: one aiohttp server (WebSocket + REST on one port) per venue.

Venue modules live beside this file and expose ``create_venue(opts) -> Venue``; ``VENUES`` maps a venue
name to its module so more exchanges can be added without touching the server code.

    python -m recorder.sim.server --venue binance --port 8765 --seed 1
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web

from recorder.sim.faults import Fault, FaultInjector

VENUES: dict[str, str] = {
    "binance": "recorder.sim.binance",
    "binance-futures": "recorder.sim.binance_futures",
    "kraken": "recorder.sim.kraken",
    "okx": "recorder.sim.okx",
    "bybit": "recorder.sim.bybit",
    "coinbase": "recorder.sim.coinbase",
}


@dataclass
class SimOptions:
    venue: str = "binance"
    host: str = "127.0.0.1"
    port: int = 0  # 0 = ephemeral
    symbols: list[str] | None = None  # None = the venue's default universe
    seed: int | None = None  # None = random
    update_interval_ms: int = 100  # diff cadence of the fast stream (`@depth@100ms`)
    ping_interval_s: float = 20.0
    pong_timeout_s: float = 60.0
    max_connection_age_s: float = 86400.0
    weight_limit_per_min: int = 6000
    max_incoming_per_s: int = 5  # 0 = unlimited
    history_s: float = 900.0  # how long /sim/book can look back
    ban_after_ignored_429s: int = 5  # requests sent while told to back off before a 418 ban; 0 = never
    faults: list[Fault] | None = None  # fault schedule (see recorder/sim/faults.py)
    weight_window_s: float = 60.0  # REQUEST_WEIGHT window (Binance: 1 minute); shorter makes tests fast
    instruments: int = 0  # extra generated instruments (the "tail"), e.g. 1000 for a whole-universe test
    tail_update_ms: int = 1000  # diff cadence of the generated tail: cheap enough for thousands
    replay: str | None = None  # serve this recorded capture instead of a generated market
    speed: float = 1.0  # replay pace: 1 = as recorded, 10 = ten times faster
    okx_checksum: str = "zero"  # OKX: "zero" as the venue sends today, "crc" the documented CRC32
    idle_timeout_s: float = 600.0  # Bybit: a connection with no ping and no data this long is cut
    # Binance (spot, USD-M): listing status of some symbols in exchangeInfo (others: TRADING)
    symbol_status: dict[str, str] | None = None


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


def main(argv: list[str] | None = None) -> None:
    d = SimOptions()
    p = argparse.ArgumentParser(description="Local exchange simulator (prints its URLs as JSON when ready)")
    p.add_argument("--venue", default=d.venue, choices=sorted(VENUES))
    p.add_argument("--host", default=d.host)
    p.add_argument("--port", type=int, default=d.port)
    p.add_argument("--symbols", default=None, help="comma-separated, e.g. BTCUSDT,ETHUSDT,FOOUSDT")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--update-interval-ms", type=int, default=d.update_interval_ms)
    p.add_argument("--ping-interval-s", type=float, default=d.ping_interval_s)
    p.add_argument("--pong-timeout-s", type=float, default=d.pong_timeout_s)
    p.add_argument("--max-connection-age-s", type=float, default=d.max_connection_age_s)
    p.add_argument("--weight-limit-per-min", type=int, default=d.weight_limit_per_min)
    p.add_argument("--max-incoming-per-s", type=int, default=d.max_incoming_per_s)
    p.add_argument("--history-s", type=float, default=d.history_s)
    p.add_argument("--ban-after-ignored-429s", type=int, default=d.ban_after_ignored_429s)
    p.add_argument("--weight-window-s", type=float, default=d.weight_window_s)
    p.add_argument("--instruments", type=int, default=d.instruments)
    p.add_argument("--tail-update-ms", type=int, default=d.tail_update_ms)
    p.add_argument("--okx-checksum", choices=("zero", "crc"), default=d.okx_checksum)
    p.add_argument("--idle-timeout-s", type=float, default=d.idle_timeout_s)
    a = p.parse_args(argv)
    opts = SimOptions(
        venue=a.venue, host=a.host, port=a.port,
        symbols=[s.strip() for s in a.symbols.split(",") if s.strip()] if a.symbols else None,
        seed=a.seed, update_interval_ms=a.update_interval_ms, ping_interval_s=a.ping_interval_s,
        pong_timeout_s=a.pong_timeout_s, max_connection_age_s=a.max_connection_age_s,
        weight_limit_per_min=a.weight_limit_per_min, max_incoming_per_s=a.max_incoming_per_s,
        history_s=a.history_s, ban_after_ignored_429s=a.ban_after_ignored_429s,
        weight_window_s=a.weight_window_s, instruments=a.instruments, tail_update_ms=a.tail_update_ms,
        okx_checksum=a.okx_checksum, idle_timeout_s=a.idle_timeout_s,
    )  # fmt: skip

    def ready(urls: dict[str, str]) -> None:
        print(json.dumps(urls), flush=True)

    run_simulator(opts, ready)


if __name__ == "__main__":
    main(sys.argv[1:])
