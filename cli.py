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

from recorder.cli_capture import capture_options
from recorder.cli_inputs import (
    CONFIG_FILE,
    DATA_DIR,
    DEFAULT_DATA_DIR,
    EXIT_FLEET_DOWN,
    EXIT_REPORT_UNREADABLE,
    LOG_LEVEL,
    WHY_STOPPED,
    Duration,
    FiniteFloat,
    SessionId,
    Text,
    UserError,
    compact_location,
    existing_session,
    replay_options,
    run,
)
from recorder.cli_simulate import sim_options, simulator_options
from recorder.config import ConfigError, build_config, load_toml
from recorder.names import NameError_, check_session_id
from recorder.venues import VENUES


@click.group()
def main() -> None:
    """Order-book recorder for backtesting."""


@main.command("start-capture")
@capture_options
def start_capture(config_path: str | None, log_level: str, **overrides: Any) -> None:
    """Capture order books until the duration ends, stop-capture, SIGTERM or Ctrl-C."""
    pairs = overrides["pairs"]
    overrides["pairs"] = [p for p in pairs.split(",") if p.strip()] if pairs is not None else None
    try:
        cfg = build_config(load_toml(config_path) if config_path else None, overrides)
    except ConfigError as exc:
        raise UserError(str(exc)) from None
    from recorder.logs import setup_logging
    from recorder.supervisor.session import SessionBusy, SessionMismatch
    from recorder.supervisor.supervisor import CaptureError, Supervisor
    from recorder.supervisor.view import attach_status_view

    setup_logging("supervisor", log_level)
    supervisor = Supervisor(cfg, log_level=log_level)
    try:
        supervisor.prepare()
    except (CaptureError, SessionBusy, SessionMismatch) as exc:
        raise UserError(str(exc)) from None
    click.echo(f"capturing session {supervisor.session_id} into {Path(cfg.data_dir).resolve()}", err=True)
    stderr_fd = attach_status_view(supervisor)
    code = supervisor.run()
    if code in WHY_STOPPED:  # on the terminal, also when the event log went to recorder.log
        why = WHY_STOPPED[code]
        os.write(stderr_fd, f"Error: session {supervisor.session_id} stopped: {why} (see the log)\n".encode())
    sys.exit(code)


@main.command("capture-status")
@click.option("--session-id", required=True, type=SessionId())
@click.option("--data-dir", type=DATA_DIR, default=DEFAULT_DATA_DIR, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def capture_status(session_id: str, data_dir: str, as_json: bool) -> None:
    """Show a session's state and metrics (works from another terminal)."""
    from recorder.api import read_status
    from recorder.supervisor.status_text import render_status

    existing_session(data_dir, session_id)
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
        click.echo(render_status(status))
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
        sys.exit(EXIT_FLEET_DOWN)


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

    existing_session(data_dir, session_id)
    try:
        status = stop_session(data_dir, session_id, timeout)  # as recorder.api programs stop one
    except CaptureError as exc:
        raise UserError(str(exc)) from None
    w = status.get("writer", {})
    click.echo(f"session {session_id} stopped: {w.get('snapshots_written', 0)} snapshots written, flushed")


@main.command("simulate")
@simulator_options
def simulate(**given: Any) -> None:
    """Run a local exchange speaking the venue's real protocol; prints its URLs as JSON."""
    from recorder.logs import setup_logging
    from recorder.sim.server import run_simulator

    opts = sim_options(given)
    setup_logging("simulator")
    if opts.replay is not None:
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
        raise UserError(f"cannot serve on {opts.host}:{opts.port}: {getattr(exc, 'strerror', None) or exc}") from None


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
    from recorder.logs import setup_logging

    location = compact_location(data_dir, config_path, s3_bucket, s3_prefix)
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
def replay_cmd(log_level: str, **given: Any) -> None:
    """Feed a recorded raw capture through the live code path; write the files a capture would; print a summary."""
    from recorder.logs import setup_logging
    from recorder.replay.engine import ReplayError, replay
    from recorder.replay.readers import CaptureFormatError

    setup_logging("replay", log_level)
    try:
        opts = replay_options(**given)
        summary = replay(opts)
        _save_replay_summary(opts.data_dir, opts.session_id, summary)
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
    help="Book events from the archive (every change) or stored snapshots; auto: archive where it has the day.",
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
    from recorder.cli_progress import ProgressBar
    from recorder.dataset import DatasetError
    from recorder.export import ExportError, export

    def names(text: str | None) -> list[str] | None:
        return [n.strip() for n in text.split(",") if n.strip()] if text else None

    for s in names(sessions) or []:
        try:
            check_session_id(s)
        except NameError_ as exc:
            raise UserError(str(exc)) from None
    bar = ProgressBar(f"exporting to {to}")
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
        sys.exit(EXIT_REPORT_UNREADABLE)


def _unreadable_lines(unreadable: list[Any]) -> None:
    for u in unreadable:
        click.echo(f"Error: unreadable file {u.path}: {u.error}", err=True)


if __name__ == "__main__":
    run(main)
