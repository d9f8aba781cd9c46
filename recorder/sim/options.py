"""What a simulator serves: the venues it knows and the options of one run (``SimOptions``).

Light on purpose (no aiohttp): the command line reads the defaults here when it declares
``simulate``'s options, before any server code is imported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from recorder.sim.faults import Fault

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
