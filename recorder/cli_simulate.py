"""``simulate``'s options, declared once: each one a line of the table below, its default the
simulator's own (``recorder/sim/options.py``), and what it fills in :class:`SimOptions`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from recorder.cli_inputs import PORT, FiniteFloat, Text, UserError, parse_symbols
from recorder.sim.options import VENUES, SimOptions

F = TypeVar("F", bound=Callable[..., Any])

_DEFAULTS = SimOptions()


def _shown(flag: str, field: str, type_: Any = None, help_: str | None = None) -> Any:
    """An option filling ``SimOptions.<field>``, its default the simulator's own (``--help`` shows it)."""
    return click.option(flag, field, default=getattr(_DEFAULTS, field), show_default=True, type=type_, help=help_)


def _seconds(most: float) -> FiniteFloat:
    return FiniteFloat(0, most, min_open=True)


# Each option's destination is the SimOptions field it fills.
_OPTIONS = [
    _shown("--venue", "venue", help_=f"Venue id: {', '.join(VENUES)}."),
    _shown("--host", "host", Text("host")),
    _shown("--port", "port", PORT, "0 picks a free port."),
    click.option("--symbols", help="Comma-separated venue symbols (default: a built-in universe)."),
    click.option("--seed", type=int, help="Seed for a reproducible market."),
    _shown("--ping-interval", "ping_interval_s", _seconds(86400)),
    _shown(
        "--max-connection-age",
        "max_connection_age_s",
        _seconds(30 * 86400),
        "Seconds before the server closes a connection (the venue's 24 h limit).",
    ),
    click.option(
        "--faults",
        help="Fault schedule: a .json/.toml file or e.g. 'drop@5,stall@10+4,gap@15:BTCUSDT,close@20#4000'.",
    ),
    _shown(
        "--instruments", "instruments", click.IntRange(0, 10000), "Extra generated instruments (tail), up to 10000."
    ),
    _shown("--weight-limit", "weight_limit_per_min", click.IntRange(1), "REST weight budget per window."),
    _shown("--weight-window", "weight_window_s", _seconds(86400), "REST weight window in seconds."),
    click.option(
        "--replay",
        type=click.Path(dir_okay=False),
        help="Serve this recorded raw capture (and its REST snapshots) instead of a generated market.",
    ),
    _shown("--speed", "speed", FiniteFloat(0, 1e6, min_open=True), "Replay pace: 1 as recorded, 10 faster."),
    _shown(
        "--okx-checksum",
        "okx_checksum",
        click.Choice(["zero", "crc"]),
        "OKX book checksum: 0 as OKX sends today, or the documented CRC32 (older captures).",
    ),
    _shown(
        "--idle-timeout",
        "idle_timeout_s",
        _seconds(86400),
        "Bybit: seconds without a ping and without data before a connection is cut.",
    ),
    click.option(
        "--symbol-status",
        help="Binance: exchangeInfo status of some symbols, e.g. FOOUSDT=SETTLING (the others: TRADING).",
    ),
]


def simulator_options(command: F) -> F:
    """Every option of ``simulate``, in ``--help``'s order."""
    for option in reversed(_OPTIONS):
        command = option(command)
    return command


def parse_symbol_status(raw: str | None) -> dict[str, str] | None:
    """``--symbol-status FOOUSDT=SETTLING,BARUSDT=BREAK``: symbol -> status, both upper case."""
    statuses: dict[str, str] = {}
    for item in filter(None, (s.strip() for s in (raw or "").split(","))):
        sym, _, state = item.partition("=")
        if not sym.strip() or not state.strip().isalpha():
            raise UserError(f"invalid --symbol-status item {item!r}: use SYMBOL=STATUS, e.g. FOOUSDT=SETTLING")
        statuses[sym.strip().upper()] = state.strip().upper()
    return statuses or None


def sim_options(given: dict[str, Any]) -> SimOptions:
    """The options ``simulate`` was given (by SimOptions field), checked: a bad one is a
    :class:`UserError`. ``--faults``, ``--symbols`` and ``--symbol-status`` arrive as text."""
    from recorder.sim.faults import FaultError, parse_faults

    if given["venue"] not in VENUES:
        raise UserError(f"the simulator does not serve venue {given['venue']!r} yet (known: {', '.join(VENUES)})")
    try:
        faults = parse_faults(given["faults"]) if given["faults"] else None
    except FaultError as exc:
        raise UserError(str(exc)) from None
    statuses = parse_symbol_status(given["symbol_status"])
    symbols = parse_symbols(given["symbols"]) if given["symbols"] is not None else None
    return SimOptions(**{**given, "faults": faults, "symbol_status": statuses, "symbols": symbols})
