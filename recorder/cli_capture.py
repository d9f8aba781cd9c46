"""``start-capture``'s options: one flag per capture setting, each named as the setting it
overrides in the config file (``recorder.config.build_config`` checks both the same way, so a
flag and a config line give the same message)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from recorder.cli_inputs import CONFIG_FILE, DATA_DIR, LOG_LEVEL, PORT, Duration, SessionId, Text
from recorder.venues import VENUES

F = TypeVar("F", bound=Callable[..., Any])

_OPTIONS = [
    click.option("--config", "config_path", type=CONFIG_FILE, help="TOML file under configs/."),
    click.option("--venue", help=f"Venue id: {', '.join(VENUES)}."),
    click.option("--pairs", help="Comma-separated pairs, e.g. BTC-USDT,ETH-USDT; or all."),
    click.option(
        "--interval",
        "interval_s",
        type=Duration("s", "interval"),
        help="Sampling interval in seconds (1.0) or with a unit (500ms).",
    ),
    click.option(
        "--duration",
        "duration_s",
        type=Duration("m", "duration"),
        help="How long to capture: minutes (10) or 30s, 10m, 2h; 1s to 366d. Default: until stopped.",
    ),
    click.option("--depth", type=int, help="Levels per side, 1-1000 (default 20)."),
    click.option("--format", "format", type=click.Choice(["jsonl", "parquet", "both"]), help="Output format."),
    click.option("--storage", type=click.Choice(["local", "s3"]), help="Storage backend (s3: see [storage.s3])."),
    click.option(
        "--s3-bucket", type=Text("bucket name"), help="S3 bucket for --storage s3 (overrides [storage.s3] bucket)."
    ),
    click.option("--s3-prefix", help="Key prefix in the bucket (default orderbook_data)."),
    click.option("--data-dir", type=DATA_DIR, help="Output directory (default data)."),
    click.option(
        "--session-id", type=SessionId(), help="Session id (default: venue and pairs, e.g. binance_BTC-USDT_ETH-USDT)."
    ),
    click.option("--simulate", is_flag=True, default=None, help="Capture from the embedded local exchange simulator."),
    click.option("--log-level", type=LOG_LEVEL, default="INFO", show_default=True),
    click.option(
        "--metrics-port", type=PORT, help="Serve Prometheus metrics on 127.0.0.1:PORT/metrics (0: a free port)."
    ),
    click.option("--shard", help="Record shard I of the pairs split N ways, e.g. 0/4 (one recorder per shard)."),
]


def capture_options(command: F) -> F:
    """Every option of ``start-capture``, in ``--help``'s order; ``--config`` and ``--log-level``
    by those names, the others by their config setting's (``interval_s``, ``format``, ...)."""
    for option in reversed(_OPTIONS):
        command = option(command)
    return command
