#!/usr/bin/env python3
"""Command line: start-capture, capture-status, stop-capture, sessions, simulate, replay, report, compact,
export."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import click

from recorder.cli_inputs import (
    EXIT_CRASH_LOOP,
    EXIT_NOT_FLUSHED,
    LOG_LEVELS,
    PORT,
    Duration,
    FiniteFloat,
    SessionId,
    Text,
    UserError,
    parse_symbols,
    run,
)
from recorder.config import MAX_INTERVAL_S, MIN_INTERVAL_S, ConfigError, build_config, load_toml
from recorder.names import NameError_, check_session_id
from recorder.venues import VENUES

DEFAULT_DATA_DIR = "data"
DATA_DIR = Text("data directory")
LOG_LEVEL = click.Choice(LOG_LEVELS, case_sensitive=False)
CONFIG_FILE = click.Path(dir_okay=False)


@click.group()
def main() -> None:
    """Order-book recorder for backtesting."""


@main.command("start-capture")
@click.option("--config", "config_path", type=CONFIG_FILE, help="TOML file under configs/.")
@click.option("--venue", help=f"Venue id: {', '.join(VENUES)}.")
@click.option("--pairs", help="Comma-separated pairs, e.g. BTC-USDT,ETH-USDT; or all.")
@click.option(
    "--interval", type=Duration("s", "interval"), help="Sampling interval in seconds (1.0) or with a unit (500ms)."
)
@click.option(
    "--duration",
    type=Duration("m", "duration"),
    help="How long to capture: minutes (10) or 30s, 10m, 2h; 1s to 366d. Default: until stopped.",
)
@click.option("--depth", type=int, help="Levels per side, 1-1000 (default 20).")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "parquet", "both"]), help="Output format.")
@click.option("--storage", type=click.Choice(["local", "s3"]), help="Storage backend (s3: see [storage.s3]).")
@click.option(
    "--s3-bucket", type=Text("bucket name"), help="S3 bucket for --storage s3 (overrides [storage.s3] bucket)."
)
@click.option("--s3-prefix", help="Key prefix in the bucket (default orderbook_data).")
@click.option("--data-dir", type=DATA_DIR, help="Output directory (default data).")
@click.option(
    "--session-id", type=SessionId(), help="Session id (default: venue and pairs, e.g. binance_BTC-USDT_ETH-USDT)."
)
@click.option("--simulate", is_flag=True, default=None, help="Capture from the embedded local exchange simulator.")
@click.option("--log-level", type=LOG_LEVEL, default="INFO", show_default=True)
@click.option("--metrics-port", type=PORT, help="Serve Prometheus metrics on 127.0.0.1:PORT/metrics (0: a free port).")
@click.option("--shard", help="Record shard I of the pairs split N ways, e.g. 0/4 (one recorder per shard).")
def start_capture(
    config_path: str | None,
    venue: str | None,
    pairs: str | None,
    interval: float | None,
    duration: float | None,
    depth: int | None,
    fmt: str | None,
    storage: str | None,
    s3_bucket: str | None,
    s3_prefix: str | None,
    data_dir: str | None,
    session_id: str | None,
    simulate: bool | None,
    log_level: str,
    metrics_port: int | None,
    shard: str | None,
) -> None:
    """Capture order books until the duration ends, stop-capture, SIGTERM or Ctrl-C."""
    try:
        overrides: dict[str, Any] = {
            "venue": venue,
            "pairs": [p for p in pairs.split(",") if p.strip()] if pairs is not None else None,
            "interval_s": interval,
            "duration_s": duration,
            "depth": depth,
            "format": fmt,
            "storage": storage,
            "s3_bucket": s3_bucket,
            "s3_prefix": s3_prefix,
            "data_dir": data_dir,
            "session_id": session_id,
            "simulate": simulate,
            "metrics_port": metrics_port,
            "shard": shard,
        }
        cfg = build_config(load_toml(config_path) if config_path else None, overrides)
    except ConfigError as exc:
        raise UserError(str(exc)) from None
    from recorder.logs import setup_logging
    from recorder.supervisor.session import SessionBusy, SessionMismatch
    from recorder.supervisor.supervisor import CaptureError, Supervisor

    setup_logging("supervisor", log_level)
    supervisor = Supervisor(cfg, log_level=log_level)
    try:
        supervisor.prepare()
    except (CaptureError, SessionBusy, SessionMismatch) as exc:
        raise UserError(str(exc)) from None
    click.echo(f"capturing session {supervisor.session_id} into {Path(cfg.data_dir).resolve()}", err=True)
    stderr_fd = _attach_status_view(supervisor)
    code = supervisor.run()
    why = {
        EXIT_CRASH_LOOP: "a child process kept crashing",
        EXIT_NOT_FLUSHED: "the writer did not confirm that every sampled snapshot was stored",
    }
    if code in why:  # on the terminal, also when the event log went to recorder.log
        os.write(stderr_fd, f"Error: session {supervisor.session_id} stopped: {why[code]} (see the log)\n".encode())
    sys.exit(code)


def _attach_status_view(supervisor: Any) -> int:
    """A terminal gets a live table (the event log goes to the session's recorder.log, whose
    tail the table shows); anything else gets plain log lines, a status summary a minute.
    Returns a descriptor of the user's stderr, for the last word."""
    from recorder.supervisor.view import LiveView, log_summary

    if sys.stdout.isatty() and sys.stderr.isatty():
        log_path = supervisor.session.path / "recorder.log"
        click.echo(f"live status below; event log: {log_path}", err=True)
        terminal = os.dup(2)
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 2)  # children inherit it: their log lines must not scroll the table away
        os.close(fd)
        supervisor.on_status = LiveView(sys.stdout, str(log_path)).update
        return terminal
    last = [0.0]

    def summary(status: dict[str, Any]) -> None:
        if time.monotonic() - last[0] >= 60.0 or status.get("state") != "running":
            last[0] = time.monotonic()
            log_summary(status)

    supervisor.on_status = summary
    return 2


def _session(data_dir: str, session_id: str) -> Any:
    from recorder.supervisor.session import SessionDir

    session = SessionDir(data_dir, session_id)
    if not session.path.is_dir():
        raise UserError(f"no session {session_id!r} under {Path(data_dir).resolve()}")
    return session


@main.command("capture-status")
@click.option("--session-id", required=True, type=SessionId())
@click.option("--data-dir", type=DATA_DIR, default=DEFAULT_DATA_DIR, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def capture_status(session_id: str, data_dir: str, as_json: bool) -> None:
    """Show a session's state and metrics (works from another terminal)."""
    from recorder.api import read_status

    _session(data_dir, session_id)
    status = read_status(data_dir, session_id)  # what recorder.api's Capture.status() returns
    if status is None:
        raise UserError(f"session {session_id!r} never started capturing: its start failed or was killed")
    if status.get("state") == "starting" and "uptime_s" not in status:  # checks and simulators come first
        click.echo(json.dumps(status, indent=2, sort_keys=True) if as_json else f"session {session_id}: starting")
        return
    if as_json:
        click.echo(json.dumps(status, indent=2, sort_keys=True))
        return
    try:
        click.echo(_render_status(status))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:  # hand-edited or from another version
        raise UserError(f"status of session {session_id!r} is incomplete ({exc!r}): use --json") from None


@main.command("sessions")
@click.option("--data-dir", type=DATA_DIR, default=DEFAULT_DATA_DIR, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def sessions_cmd(data_dir: str, as_json: bool) -> None:
    """List the sessions in a data directory: state, venues, pairs, interval, times, stored files."""
    from recorder.supervisor.listing import ListingError, list_sessions, render_sessions

    try:
        found = list_sessions(data_dir)
    except ListingError as exc:
        raise UserError(str(exc)) from None
    if as_json:
        click.echo(json.dumps(found, indent=2, sort_keys=True))
    elif not found:
        click.echo(f"no sessions under {Path(data_dir).resolve()}")
    else:
        click.echo(render_sessions(found))


def _trades_text(p: dict[str, Any]) -> str:
    if "trades" not in p:
        return ""
    silent = "  TRADES SILENT" if p["trade_silent"] else ""
    return f"  trades {p['trades']}  trade gaps {p['trade_gaps']}  quotes {p['quotes']}{silent}"


def _render_status(s: dict[str, Any]) -> str:
    lines = [
        f"session {s['session_id']}: {s['state']}  uptime {s['uptime_s']}s  interval {s['interval_s']}s"
        f"  depth {s['depth']}  format {s['format']}",
    ]
    for venue, v in s.get("venues", {}).items():
        lines.append(
            f"  {venue}: {'connected' if v['connected'] else 'DISCONNECTED'}  msgs/s {v['messages_per_s']}"
            f"  samples {v['samples']}  missed {v['missed_ticks']}  depth short {v.get('depth_short', 0)}"
            f"  resyncs {v['resyncs']}  gaps {v['gaps']}"
            f"  reconnects {v['reconnects']}  drops {v['ring_drops']}  restarts {v['restarts']}"
            f"  latency p50/p99/max {_ms3(v.get('capture_latency_ms'))}"
            f"  grid jitter p50/p99/max {_ms3(v.get('grid_jitter_ms'))}"
        )
        if "connections" in v:
            lines.append(
                f"    connections {v['connections']}  REST weight used {v['rest_weight_used']}"
                f"  queued {v['rest_queue']}  http 429 {v['http_429']}  418 {v['http_418']}"
            )
        if "trades" in v:
            lines.append(
                f"    trades {v['trades']}  trade gaps {v['trade_gaps']}  silent streams {v['trade_silent']}"
                f"  quotes {v['quotes']}  drops {v['trade_drops'] + v['quote_drops']}"
            )
        lines += _never_synced_lines(venue, v, s["state"])
        for pair, p in v["pairs"].items():
            lines.append(
                f"    {pair:<14} {'synced' if p['synced'] else 'NOT SYNCED':<10} samples {p['samples']:<8}"
                f" missed {p['missed_ticks']:<6} resyncs {p['resyncs']}"
                f"  depth short {p.get('depth_short', 0)}" + _first_sync_text(p) + _trades_text(p)
            )
    w = s.get("writer", {})
    if w:
        lines.append(
            f"  writer: snapshots {w.get('snapshots_written', 0)}  files {w.get('files_written', 0)}"
            f"  bytes {w.get('bytes_written', 0)}  lag {w.get('writer_lag_ms', 0)} ms"
            f"  errors {w.get('write_errors', 0)}  restarts {w.get('restarts', 0)}"
        )
    s3 = s.get("s3")
    if s3:
        lines.append(_render_s3(s3))
    if "flushed" in s:
        lines.append(f"  flushed: {s['flushed']}  ({s.get('stop_reason')})")
    return "\n".join(lines)


def _never_synced_lines(venue: str, v: dict[str, Any], state: str) -> list[str]:
    """One loud line when pairs have not synced once: their ticks are warm-up, not "missed", so
    the missed count alone would read 0 for a pair that stored nothing."""
    waiting = [pair for pair, p in v["pairs"].items() if "first_sync_ms" in p and p["first_sync_ms"] is None]
    if not waiting:
        return []
    ticks = sum(v["pairs"][pair]["warmup_ticks"] for pair in waiting)
    how = "still warming up, not synced yet" if state in ("running", "starting") else "NEVER SYNCED"
    names = ", ".join(waiting[:5]) + (f" and {len(waiting) - 5} more" if len(waiting) > 5 else "")
    return [
        f"  ! {venue}: {len(waiting)} of {len(v['pairs'])} pairs {how}, nothing stored for them"
        f" ({ticks} warm-up ticks, not counted as missed): {names}"
    ]


def _first_sync_text(p: dict[str, Any]) -> str:
    if "first_sync_ms" not in p:  # a status written before these counters existed
        return ""
    if p["first_sync_ms"] is None:
        return f"  warm-up {p['warmup_ticks']} (never synced)"
    return f"  warm-up {p['warmup_ticks']} (first sync {p['time_to_first_sync_s']} s after start)"


def _ms3(q: dict[str, Any] | None) -> str:
    """``{"p50": 2.7756, "p99": 4.977, "max": 4.977}`` -> ``2.78/4.98/4.98 ms``; unknown -> ``n/a``."""
    values = [(q or {}).get(k) for k in ("p50", "p99", "max")]
    if all(v is None for v in values):
        return "n/a"
    return "/".join(_ms(v) for v in values) + " ms"


def _ms(value: float | None) -> str:
    if value is None:
        return "n/a"
    digits = 2 if abs(value) < 10 else 1 if abs(value) < 100 else 0
    return f"{value:.{digits}f}"


def _render_s3(s3: dict[str, Any]) -> str:
    dest = f"s3://{s3['bucket']}/{s3['prefix']}".rstrip("/")
    line = (
        f"  s3 {dest}: spool {s3.get('spool_files', 0)} files / {s3.get('spool_bytes', 0)} bytes"
        f"  lag {s3.get('upload_lag_s', 0)} s  uploaded {s3.get('uploads', 0)}"
        f"  failures {s3.get('upload_failures', 0)}  retries {s3.get('upload_retries', 0)}"
    )
    if s3.get("last_error"):
        line += f"\n  s3 last error: {s3['last_error']}"
    return line


@main.command("fleet-status")
@click.option(
    "--data-dir", type=DATA_DIR, default=DEFAULT_DATA_DIR, show_default=True, help="Data dir (or s3://bucket/prefix)."
)
@click.option(
    "--stale-after",
    type=Duration("s", "stale-after"),
    default="30s",
    show_default=True,
    help="A status older than this shows its shard down.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def fleet_status_cmd(data_dir: str, stale_after: float, as_json: bool) -> None:
    """Every session (shard) writing to this data dir or S3 prefix; exit 3 if one is down."""
    from recorder.dataset import DatasetError
    from recorder.fleet import as_json as rows_json
    from recorder.fleet import fleet_status, render

    try:
        rows = fleet_status(data_dir, stale_after)
    except DatasetError as exc:
        raise UserError(str(exc)) from None
    click.echo(json.dumps(rows_json(rows), indent=2) if as_json else render(rows, data_dir))
    if any(r.state in ("down", "dead") for r in rows):
        sys.exit(FLEET_DOWN_EXIT)


# `fleet-status` printed every shard, but one or more are down or dead.
FLEET_DOWN_EXIT = 3


@main.command("stop-capture")
@click.option("--session-id", required=True, type=SessionId())
@click.option("--data-dir", type=DATA_DIR, default=DEFAULT_DATA_DIR, show_default=True)
@click.option(
    "--timeout",
    type=FiniteFloat(0, 86400, min_open=True),
    default=180.0,
    show_default=True,
    help="Seconds to wait for the flush (up to 86400).",
)
def stop_capture(session_id: str, data_dir: str, timeout: float) -> None:
    """Stop a running session gracefully and wait until its files are flushed."""
    from recorder.api import CaptureError, stop_session

    _session(data_dir, session_id)
    try:
        status = stop_session(data_dir, session_id, timeout)  # as recorder.api programs stop one
    except CaptureError as exc:
        raise UserError(str(exc)) from None
    w = status.get("writer", {})
    click.echo(f"session {session_id} stopped: {w.get('snapshots_written', 0)} snapshots written, flushed")


@main.command("simulate")
@click.option("--venue", default="binance", show_default=True, help=f"Venue id: {', '.join(VENUES)}.")
@click.option("--host", type=Text("host"), default="127.0.0.1", show_default=True)
@click.option("--port", default=0, show_default=True, type=PORT, help="0 picks a free port.")
@click.option("--symbols", help="Comma-separated venue symbols (default: a built-in universe).")
@click.option("--seed", type=int, help="Seed for a reproducible market.")
@click.option("--ping-interval", default=20.0, show_default=True, type=FiniteFloat(0, 86400, min_open=True))
@click.option(
    "--max-connection-age",
    default=86400.0,
    show_default=True,
    type=FiniteFloat(0, 30 * 86400, min_open=True),
    help="Seconds before the server closes a connection (the venue's 24 h limit).",
)
@click.option(
    "--faults",
    "faults_spec",
    help="Fault schedule: a .json/.toml file or e.g. 'drop@5,stall@10+4,gap@15:BTCUSDT,close@20#4000'.",
)
@click.option(
    "--instruments",
    default=0,
    show_default=True,
    type=click.IntRange(0, 10000),
    help="Extra generated instruments (tail), up to 10000.",
)
@click.option(
    "--weight-limit", default=6000, show_default=True, type=click.IntRange(1), help="REST weight budget per window."
)
@click.option(
    "--weight-window",
    default=60.0,
    show_default=True,
    type=FiniteFloat(0, 86400, min_open=True),
    help="REST weight window in seconds.",
)
@click.option(
    "--replay",
    "replay_file",
    type=click.Path(dir_okay=False),
    help="Serve this recorded raw capture (and its REST snapshots) instead of a generated market.",
)
@click.option(
    "--speed",
    default=1.0,
    show_default=True,
    type=FiniteFloat(0, 1e6, min_open=True),
    help="Replay pace: 1 as recorded, 10 faster.",
)
@click.option(
    "--okx-checksum",
    default="zero",
    show_default=True,
    type=click.Choice(["zero", "crc"]),
    help="OKX book checksum: 0 as OKX sends today, or the documented CRC32 (older captures).",
)
@click.option(
    "--idle-timeout",
    default=600.0,
    show_default=True,
    type=FiniteFloat(0, 86400, min_open=True),
    help="Bybit: seconds without a ping and without data before a connection is cut.",
)
@click.option(
    "--symbol-status",
    help="Binance: exchangeInfo status of some symbols, e.g. FOOUSDT=SETTLING (the others: TRADING).",
)
def simulate(
    venue: str,
    host: str,
    port: int,
    symbols: str | None,
    seed: int | None,
    ping_interval: float,
    max_connection_age: float,
    faults_spec: str | None,
    instruments: int,
    weight_limit: int,
    weight_window: float,
    replay_file: str | None,
    speed: float,
    okx_checksum: str,
    idle_timeout: float,
    symbol_status: str | None,
) -> None:
    """Run a local exchange speaking the venue's real protocol; prints its URLs as JSON."""
    from recorder.logs import setup_logging
    from recorder.sim.faults import FaultError, parse_faults
    from recorder.sim.server import VENUES as SIM_VENUES
    from recorder.sim.server import SimOptions, run_simulator

    if venue not in SIM_VENUES:
        raise UserError(f"the simulator does not serve venue {venue!r} yet (known: {', '.join(SIM_VENUES)})")
    try:
        faults = parse_faults(faults_spec) if faults_spec else None
    except FaultError as exc:
        raise UserError(str(exc)) from None
    statuses: dict[str, str] = {}
    for item in filter(None, (s.strip() for s in (symbol_status or "").split(","))):
        sym, _, state = item.partition("=")
        if not sym.strip() or not state.strip().isalpha():
            raise UserError(f"invalid --symbol-status item {item!r}: use SYMBOL=STATUS, e.g. FOOUSDT=SETTLING")
        statuses[sym.strip().upper()] = state.strip().upper()
    setup_logging("simulator")
    opts = SimOptions(
        venue=venue,
        host=host,
        port=port,
        symbols=parse_symbols(symbols) if symbols is not None else None,
        seed=seed,
        ping_interval_s=ping_interval,
        max_connection_age_s=max_connection_age,
        faults=faults,
        instruments=instruments,
        weight_limit_per_min=weight_limit,
        weight_window_s=weight_window,
        replay=replay_file,
        speed=speed,
        okx_checksum=okx_checksum,
        idle_timeout_s=idle_timeout,
        symbol_status=statuses or None,
    )
    if replay_file is not None:
        from recorder.replay.readers import CaptureFormatError
        from recorder.sim.replay import ReplayError
        from recorder.sim.server import load_venue

        try:
            load_venue(opts)  # load and check the recording now: a bad file is a one-line error
        except (ReplayError, CaptureFormatError, OSError) as exc:
            raise UserError(str(exc)) from None

    serving = []

    def ready(urls: dict[str, str]) -> None:
        serving.append(urls)
        click.echo(json.dumps(urls), nl=True)
        sys.stdout.flush()

    try:
        run_simulator(opts, on_ready=ready)
    except (OSError, UnicodeError) as exc:  # a port in use, a host that is not ours (or no host name)
        if serving:
            raise UserError(f"simulator stopped: {getattr(exc, 'strerror', None) or exc}") from None
        raise UserError(f"cannot serve on {host}:{port}: {getattr(exc, 'strerror', None) or exc}") from None


@main.command("systemd-unit")
@click.option("--config", "config_path", required=True, type=CONFIG_FILE, help="TOML config.")
@click.option(
    "--watchdog-sec",
    default=60,
    show_default=True,
    type=click.IntRange(5, 86400),
    help="systemd kills a recorder silent this long (5-86400).",
)
@click.option("--user", help="Run as this user (User=).")
@click.option("--shards", type=int, help="A template unit recorder@.service: instance I records shard I of N.")
def systemd_unit(config_path: str, watchdog_sec: int, user: str | None, shards: int | None) -> None:
    """Print a systemd service unit running start-capture with this config (long runs)."""
    from recorder.shard import MAX_SHARDS

    try:
        cfg = build_config(load_toml(config_path), {})
    except ConfigError as exc:
        raise UserError(str(exc)) from None
    if shards is not None and not 1 <= shards <= MAX_SHARDS:
        raise UserError(f"--shards must be 1 to {MAX_SHARDS}, got {shards}")
    if shards is not None and cfg.shard is not None:
        raise UserError(f"the config already sets shard = {cfg.shard!r}: drop it to use --shards")
    from recorder.supervisor.unit import UnitError, unit_text

    paths = [os.path.abspath(sys.executable), str(Path(__file__).resolve()), str(Path(config_path).resolve())]
    try:
        text = unit_text(cfg.resolved_session_id(), *paths, str(Path.cwd().resolve()), watchdog_sec, user, shards)
    except UnitError as exc:
        raise UserError(str(exc)) from None
    click.echo(text)


@main.command("demo")
@click.option(
    "--minutes", default=10.0, show_default=True, type=FiniteFloat(1, 1440), help="How long to capture (1-1440)."
)
@click.option(
    "--out", "out_dir", type=Text("directory"), help="Where data, logs and report.json go (default: data/demo-<time>)."
)
def demo(minutes: float, out_dir: str | None) -> None:
    """Capture every simulated venue under a fault every ~30 s, verify everything, print a report."""
    from recorder.demo import DemoError, run_demo

    out = Path(out_dir or f"{DEFAULT_DATA_DIR}/demo-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}").resolve()
    if out.exists() and not out.is_dir():
        raise UserError(f"output directory {out} is a file")
    if out.exists() and any(out.iterdir()):
        raise UserError(f"output directory {out} is not empty")
    try:
        code = run_demo(minutes, out)
    except DemoError as exc:
        raise UserError(str(exc)) from None
    sys.exit(code)


@main.command("compact")
@click.option("--data-dir", type=DATA_DIR, help="Data dir (or s3://bucket/prefix). Default: data.")
@click.option(
    "--older-than",
    "older_than_s",
    type=Duration("m", "duration", allow_zero=True),
    default="1h",
    show_default=True,
    help="Only files older than this (30m, 1h, 2d; 0: all).",
)
@click.option(
    "--target-mb",
    default=128.0,
    show_default=True,
    type=FiniteFloat(0, 1024 * 1024, min_open=True),
    help="Size of a merged file.",
)
@click.option(
    "--row-group-rows",
    default=128 * 1024,
    show_default=True,
    type=click.IntRange(1, 2**31 - 1),
    help="Rows per Parquet row group.",
)
@click.option("--config", "config_path", type=CONFIG_FILE, help="Compact this config's [storage.s3].")
@click.option(
    "--s3-bucket", type=Text("bucket name"), help="Compact this S3 bucket (endpoint etc.: --config or the AWS chain)."
)
@click.option("--s3-prefix", help="Key prefix in the bucket (default orderbook_data).")
def compact_cmd(
    data_dir: str | None,
    older_than_s: float,
    target_mb: float,
    row_group_rows: int,
    config_path: str | None,
    s3_bucket: str | None,
    s3_prefix: str | None,
) -> None:
    """Merge each partition's small Parquet and JSONL files into few large sorted ones, atomically."""
    from recorder.compaction import CompactionError, compact
    from recorder.config import S3Config, s3_destination
    from recorder.logs import setup_logging

    location: str | S3Config = data_dir or DEFAULT_DATA_DIR
    if config_path is not None or s3_bucket is not None or s3_prefix is not None:
        if data_dir is not None:
            raise UserError("give either --data-dir or an S3 destination (--config, --s3-bucket), not both")
        try:
            dest = s3_destination(load_toml(config_path) if config_path else None, s3_bucket, s3_prefix)
        except ConfigError as exc:
            raise UserError(str(exc)) from None
        if dest is None and config_path is None:
            raise UserError("--s3-prefix needs --s3-bucket (or --config with [storage.s3])")
        if dest is None:
            raise UserError("--config names local storage: use --data-dir, or give [storage.s3] / --s3-bucket")
        location = dest
    setup_logging("compact")
    try:
        res = compact(location, older_than_s=older_than_s, target_mb=target_mb, row_group_rows=row_group_rows)
    except (CompactionError, OSError) as exc:
        raise UserError(f"compaction failed: {exc}") from None
    for line in res.recovered:
        click.echo(f"recovered: {line}")
    click.echo(
        f"compacted {res.files_in} files into {res.files_out} in {res.partitions} partition(s): "
        f"{res.rows} rows, {res.bytes_in} -> {res.bytes_out} bytes"
    )


@main.command("replay")
@click.option("--venue", required=True, help=f"Venue id whose feed the capture holds: {', '.join(VENUES)}.")
@click.option(
    "--input",
    "inputs",
    required=True,
    multiple=True,
    type=click.Path(),
    help="Raw capture file (repeatable). A NAME.ws.N.R text capture brings its NAME.http.* snapshots; "
    "a directory, its archive files (*.jsonl.zst).",
)
@click.option("--pairs", help="Comma-separated pairs to keep (default: every pair in the capture).")
@click.option(
    "--interval",
    "interval_s",
    type=Duration("s", "interval"),
    help="Sampling interval: 1, 1s, 500ms (default: 1s; an archive's: as recorded, exactly).",
)
@click.option("--depth", type=int, help="Levels per side (1-1000; default: 20; an archive's: as recorded).")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "parquet", "both"]), default="both", show_default=True)
@click.option("--data-dir", type=DATA_DIR, default=DEFAULT_DATA_DIR, show_default=True)
@click.option("--session-id", type=SessionId(), help="Session id (default: replay_<venue>_<input name>).")
@click.option("--log-level", type=LOG_LEVEL, default="WARNING", show_default=True)
def replay_cmd(
    venue: str,
    inputs: tuple[str, ...],
    pairs: str | None,
    interval_s: float | None,
    depth: int | None,
    fmt: str,
    data_dir: str,
    session_id: str | None,
    log_level: str,
) -> None:
    """Feed a recorded raw capture through the live code path; write the files a capture would; print a summary."""
    import re

    from recorder.logs import setup_logging
    from recorder.names import normalize_pair
    from recorder.replay.engine import ReplayError, ReplayOptions, replay
    from recorder.replay.readers import CaptureFormatError, capture_files

    setup_logging("replay", log_level)
    try:
        if interval_s is not None and not MIN_INTERVAL_S <= interval_s <= MAX_INTERVAL_S:
            raise UserError(f"invalid interval {interval_s:g}s: must be at least 10ms and at most 1h")
        if depth is not None and not 1 <= depth <= 1000:
            raise UserError(f"invalid depth {depth}: use 1..1000")
        files = list(dict.fromkeys(f for path in inputs for f in capture_files(path)))
        empty = [p for p in inputs if Path(p).is_dir() and not capture_files(p)]
        if empty:
            raise UserError(f"no archive files (*.jsonl.zst) in directory {empty[0]}")
        if session_id is None:
            stem = re.sub(r"[^A-Za-z0-9_.\-]", "_", Path(inputs[0]).name)
            session_id = f"replay_{venue}_{stem}"[:128]
        check_session_id(session_id)
        opts = ReplayOptions(
            venue=venue,
            inputs=files,
            interval_ms=max(1, round(interval_s * 1000)) if interval_s is not None else 0,
            depth=depth or 0,
            formats=["jsonl", "parquet"] if fmt == "both" else [fmt],
            data_dir=data_dir,
            session_id=session_id,
            pairs=[normalize_pair(p) for p in pairs.split(",") if p.strip()] if pairs else None,
        )
        summary = replay(opts)
        _save_replay_summary(data_dir, session_id, summary)
    except (ConfigError, NameError_, ReplayError, CaptureFormatError) as exc:
        raise UserError(str(exc)) from None
    except OSError as exc:
        raise UserError(f"replay failed: {exc}") from None
    click.echo(json.dumps(summary, indent=2))


def _save_replay_summary(data_dir: str, session_id: str, summary: dict[str, Any]) -> None:
    """Beside the session's journal, for `report` (its per-pair counts, as status.json's)."""
    path = Path(data_dir) / ".sessions" / session_id / "replay.json"
    try:
        path.write_text(json.dumps(summary, indent=1), encoding="utf-8")
    except OSError as exc:
        click.echo(f"Warning: cannot write {path}: {exc.strerror or exc} (report will lack its counts)", err=True)


@main.command("export")
@click.option(
    "--to", "to", required=True, type=click.Choice(["hftbacktest", "nautilus", "tardis"]), help="Target format."
)
@click.option(
    "--out", "out_dir", required=True, type=Text("output directory"), help="Output directory (nautilus: the catalog)."
)
@click.option(
    "--data-dir", type=DATA_DIR, default=DEFAULT_DATA_DIR, show_default=True, help="Data dir (or s3://bucket/prefix)."
)
@click.option("--exchanges", help="Comma-separated exchanges (default: all).")
@click.option("--pairs", help="Comma-separated pairs (default: all).")
@click.option("--start", help="From this UTC time, inclusive (ISO 8601, e.g. 2026-11-24T10:00:00Z).")
@click.option("--end", help="Until this UTC time, exclusive.")
@click.option("--session-id", "sessions", help="Only these sessions (comma-separated).")
@click.option("--depth", default=25, show_default=True, type=int, help="tardis: levels of book_snapshot_{N}.")
@click.option("--overwrite", is_flag=True, help="Replace files an earlier export wrote.")
@click.option(
    "--from",
    "source",
    default="auto",
    show_default=True,
    type=click.Choice(["auto", "archive", "snapshots"]),
    help="Book events from the archive (every change) or stored snapshots; auto: archive where it has the pair.",
)
def export_cmd(
    to: str,
    out_dir: str,
    data_dir: str,
    exchanges: str | None,
    pairs: str | None,
    start: str | None,
    end: str | None,
    sessions: str | None,
    depth: int,
    overwrite: bool,
    source: str,
) -> None:
    """Export for backtesters: hftbacktest .npz, a nautilus_trader catalog, tardis CSV, one file per
    pair and day. From the lossless archive where it has the pair (every book change and trade:
    hftbacktest depth events, tardis incremental_book_L2), else from the stored snapshots (and
    trades, quotes)."""
    from recorder.dataset import DatasetError
    from recorder.export import ExportError, export

    def names(text: str | None) -> list[str] | None:
        return [n.strip() for n in text.split(",") if n.strip()] if text else None

    for s in names(sessions) or []:
        try:
            check_session_id(s)
        except NameError_ as exc:
            raise UserError(str(exc)) from None
    bar = _progress_bar(f"exporting to {to}")
    try:
        with bar:
            result = export(
                data_dir,
                to=to,
                out=out_dir,
                exchanges=names(exchanges),
                pairs=names(pairs),
                start=start,
                end=end,
                sessions=names(sessions),
                depth=depth,
                overwrite=overwrite,
                progress=bar.update,
                source=source,
            )
    except (ExportError, DatasetError) as exc:
        raise UserError(str(exc)) from None
    except OSError as exc:
        raise UserError(f"export failed: {exc.strerror or exc}") from None
    except Exception as exc:  # a backtester's own check refusing our data: one line, not a traceback
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise UserError(f"export failed: {type(exc).__name__}: {first}") from None
    counts = ", ".join(f"{k} {v}" for k, v in result.counts.items())
    click.echo(f"exported {result.units} pair-day(s) to {to} in {result.out.resolve()}: {counts}")


class _progress_bar:
    """A rich progress bar on a terminal (stderr); nothing otherwise."""

    def __init__(self, title: str) -> None:
        self.title, self._bar, self._task = title, None, None

    def __enter__(self) -> _progress_bar:
        if sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self._bar.start()
            self._task = self._bar.add_task(self.title, total=None)
            self._bar.refresh()  # shown at once, however short the export
        return self

    def update(self, done: int, total: int, unit: Any) -> None:
        if self._bar is not None:
            desc = f"{self.title}: {unit.exchange} {unit.pair} {unit.day}"
            self._bar.update(self._task, completed=done, total=total, description=desc)
            self._bar.refresh()

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()


@main.command("report")
@click.option(
    "--data-dir", type=DATA_DIR, default=DEFAULT_DATA_DIR, show_default=True, help="Data dir (or s3://bucket/prefix)."
)
@click.option("--session-id", type=SessionId(), help="Only this session (default: every session in the data).")
@click.option(
    "--out",
    "out_path",
    type=click.Path(dir_okay=False, writable=True),
    help="Also write an HTML page with plots here.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output instead of the table.")
@click.option("--format", "fmt", type=click.Choice(["auto", "parquet", "jsonl"]), default="auto", show_default=True)
def report(data_dir: str, session_id: str | None, out_path: str | None, as_json: bool, fmt: str) -> None:
    """Data-quality report per exchange and pair: coverage, gaps and causes, latency, storage."""
    if out_path is not None and not out_path.strip():
        raise UserError("--out is empty: give a file name, e.g. report.html")
    from recorder.dataset import DatasetError
    from recorder.report import build_report
    from recorder.report.quality import NoData
    from recorder.report.render import render_html, render_text

    try:
        rep = build_report(data_dir, session_id, fmt)
    except NoData as exc:
        _unreadable_lines(exc.unreadable)
        raise UserError(str(exc)) from None
    except (DatasetError, OSError) as exc:
        raise UserError(str(exc)) from None
    if out_path:
        try:
            Path(out_path).write_text(render_html(rep), encoding="utf-8")
        except OSError as exc:
            raise UserError(f"cannot write {out_path}: {exc.strerror or exc}") from None
    if as_json:
        click.echo(json.dumps(rep.to_json(), indent=2, sort_keys=True))
    else:
        click.echo(render_text(rep))
        if out_path:
            click.echo(f"HTML report: {Path(out_path).resolve()}")
    if rep.unreadable:
        _unreadable_lines(rep.unreadable)
        sys.exit(REPORT_UNREADABLE_EXIT)


# `report` printed everything it could read, but some files could not be read (named on stderr).
REPORT_UNREADABLE_EXIT = 3


def _unreadable_lines(unreadable: list[Any]) -> None:
    for u in unreadable:
        click.echo(f"Error: unreadable file {u.path}: {u.error}", err=True)


if __name__ == "__main__":
    run(main)
