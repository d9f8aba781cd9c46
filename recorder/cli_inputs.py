"""What a user may type on the command line, checked in one place before anything starts.

Every bad value is one line (``Error: ...``) and exit code 2, never a traceback: click's own
parameter errors included (``run`` prints them without the usage block). The capture settings
themselves (interval, duration, depth, ...) are checked by ``recorder.config`` so a config file
and a flag give the same message; the types here only parse and bound them.
"""

from __future__ import annotations

import errno
import math
import os
import re
import sys
from pathlib import Path
from typing import Any

import click

from recorder.config import (
    MAX_PORT,
    ConfigError,
    S3Config,
    check_depth,
    check_interval,
    load_toml,
    parse_duration,
    s3_destination,
)
from recorder.names import NameError_, check_session_id

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

# Exit codes (README, "Exit codes").
EXIT_FAILED = 1  # the demo's checks failed, or an unexpected internal error (a bug)
EXIT_INPUT = 2  # bad input, or nothing could be done (one line says why)
EXIT_CRASH_LOOP = 3  # a capture stopped because a child kept crashing
EXIT_NOT_FLUSHED = 4  # a capture stopped but its writer did not confirm that everything was stored
EXIT_INTERRUPTED = 130  # Ctrl-C before a capture was running
EXIT_FLEET_DOWN = 3  # `fleet-status` printed every shard, but one or more are down or dead
EXIT_REPORT_UNREADABLE = 3  # `report` printed all it could read; some files could not be read (on stderr)

# start-capture's last word on the terminal, for the exit codes that say a capture went wrong.
WHY_STOPPED = {
    EXIT_CRASH_LOOP: "a child process kept crashing",
    EXIT_NOT_FLUSHED: "the writer did not confirm that every sampled snapshot was stored",
}


class UserError(click.ClickException):
    """One line on stderr, exit code 2, no traceback."""

    exit_code = EXIT_INPUT


class FiniteFloat(click.ParamType):
    """A float in a range; click's FloatRange lets ``nan`` and ``inf`` through."""

    name = "number"

    def __init__(self, minimum: float, maximum: float, min_open: bool = False) -> None:
        self.minimum, self.maximum, self.min_open = minimum, maximum, min_open

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            rv = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number.", param, ctx)
        low = "above" if self.min_open else "at least"
        if not math.isfinite(rv):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        if rv < self.minimum or (self.min_open and rv == self.minimum) or rv > self.maximum:
            self.fail(f"{value} must be {low} {self.minimum:g} and at most {self.maximum:g}.", param, ctx)
        return rv


PORT = click.IntRange(0, MAX_PORT)
LOG_LEVEL = click.Choice(LOG_LEVELS, case_sensitive=False)
CONFIG_FILE = click.Path(dir_okay=False)


class Text(click.ParamType):
    """Non-empty text: an empty ``--data-dir ""`` would otherwise mean the current directory."""

    name = "text"

    def __init__(self, what: str = "value") -> None:
        self.what = what

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value
        if not value.strip():
            self.fail(f"empty {self.what}.", param, ctx)
        return value


DEFAULT_DATA_DIR = "data"
DATA_DIR = Text("data directory")


class SessionId(click.ParamType):
    name = "id"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            return check_session_id(value)
        except NameError_ as exc:
            raise UserError(str(exc)) from None


class Duration(click.ParamType):
    """``10`` (in ``default_unit``), ``30s``, ``500ms``, ``2h``: seconds, finite and positive.
    ``allow_zero``: ``0`` too (compact ``--older-than 0``: everything, now)."""

    name = "duration"

    def __init__(self, default_unit: str, what: str, allow_zero: bool = False) -> None:
        self.default_unit, self.what, self.allow_zero = default_unit, what, allow_zero

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, float):
            return value
        text = str(value).strip()
        if self.allow_zero and re.fullmatch(r"0+(\.0*)?\s*(ms|s|m|h|d)?", text):
            return 0.0
        try:
            return parse_duration(_number_or_text(text), default_unit=self.default_unit, what=self.what)
        except ConfigError as exc:
            raise UserError(str(exc)) from None  # the message names the setting already


def _number_or_text(value: str) -> str | float:
    try:
        return float(value)
    except ValueError:
        return value


# Venue symbols as the simulators take them: BTCUSDT, BTC/USD, BTC-USDT-SWAP, linear:BTCUSDT.
_SYMBOL_RE = re.compile(r"^(?:[A-Z]{1,16}:)?[A-Z0-9]{1,20}(?:[/\-_][A-Z0-9]{1,20}){0,3}$")


def parse_symbols(raw: str) -> list[str]:
    """``--symbols`` of ``simulate``: comma-separated venue symbols, checked (they become URL
    parts and book names)."""
    symbols = [s.strip().upper() for s in raw.split(",") if s.strip()]
    if not symbols:
        raise UserError("--symbols is empty: give venue symbols such as BTCUSDT,ETHUSDT")
    for symbol in symbols:
        if not _SYMBOL_RE.fullmatch(symbol):
            raise UserError(f"invalid symbol {symbol!r}: use the venue's spelling, e.g. BTCUSDT, BTC/USD, BTC-USDT")
    return symbols


def compact_location(
    data_dir: str | None, config_path: str | None, s3_bucket: str | None, s3_prefix: str | None
) -> str | S3Config:
    """What ``compact`` works on: ``--data-dir`` (default ``data``), or the S3 destination that
    ``--config``'s ``[storage.s3]`` and ``--s3-bucket``/``--s3-prefix`` name (never both)."""
    if config_path is None and s3_bucket is None and s3_prefix is None:
        return data_dir or DEFAULT_DATA_DIR
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
    return dest


def existing_session(data_dir: str, session_id: str) -> Any:
    """The session directory of a session that exists (``capture-status``, ``stop-capture``)."""
    from recorder.supervisor.session import SessionDir

    session = SessionDir(data_dir, session_id)
    if not session.path.is_dir():
        raise UserError(f"no session {session_id!r} under {Path(data_dir).resolve()}")
    return session


def replay_options(
    venue: str,
    inputs: tuple[str, ...],
    pairs: str | None,
    interval_s: float | None,
    depth: int | None,
    fmt: str,
    data_dir: str,
    session_id: str | None,
) -> Any:
    """``replay``'s options, checked: the interval and depth a capture takes, every ``--input``
    file once (a text capture brings its REST snapshots, a directory its archive files: an empty
    one is an error), the session id (default ``replay_<venue>_<input name>``, made valid)."""
    from recorder.names import normalize_pair
    from recorder.replay.engine import ReplayOptions
    from recorder.replay.readers import capture_files

    if interval_s is not None:
        check_interval(interval_s)
    if depth is not None:
        check_depth(depth)
    files = list(dict.fromkeys(f for path in inputs for f in capture_files(path)))
    empty = [p for p in inputs if Path(p).is_dir() and not capture_files(p)]
    if empty:
        raise UserError(f"no archive files (*.jsonl.zst) in directory {empty[0]}")
    if session_id is None:
        stem = re.sub(r"[^A-Za-z0-9_.\-]", "_", Path(inputs[0]).name)
        session_id = f"replay_{venue}_{stem}"[:128]
    return ReplayOptions(
        venue=venue,
        inputs=files,
        interval_ms=max(1, round(interval_s * 1000)) if interval_s is not None else 0,
        depth=depth or 0,
        formats=["jsonl", "parquet"] if fmt == "both" else [fmt],
        data_dir=data_dir,
        session_id=check_session_id(session_id),
        pairs=[normalize_pair(p) for p in pairs.split(",") if p.strip()] if pairs else None,
    )


def one_line(message: str) -> str:
    """A message that echoes what the user typed stays one line (``--data-dir $'a\\nb'``)."""
    return message.replace("\r", "\\r").replace("\n", "\\n")


def run(group: click.Group) -> None:
    """Run the command line: errors are one line, and exit codes are the README's."""
    try:
        rv = group.main(standalone_mode=False)
    except click.ClickException as exc:
        # click prints a usage block before a usage error's message: one line is the promise.
        hint = ""
        if isinstance(exc, click.UsageError) and exc.ctx is not None:
            hint = f" (see '{exc.ctx.command_path} --help')"
        click.echo(f"Error: {one_line(exc.format_message())}{hint}", err=True)
        sys.exit(exc.exit_code)
    except (click.Abort, KeyboardInterrupt):
        click.echo("Aborted.", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except OSError as exc:
        if exc.errno == errno.EPIPE:  # `capture-status | head`: the reader left, nothing to say
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(EXIT_FAILED)
        if os.environ.get("RECORDER_TRACEBACK"):
            raise
        # The system's word (e.g. a full disk), and which file.
        where = f" ({exc.filename})" if exc.filename else ""
        click.echo(f"Error: {one_line(str(exc.strerror or exc) + where)}", err=True)
        sys.exit(EXIT_FAILED)
    except Exception as exc:  # noqa: BLE001 - the last line of defence; RECORDER_TRACEBACK=1 shows it
        _internal_error(exc)
    sys.exit(rv if isinstance(rv, int) else 0)


def _internal_error(exc: BaseException) -> None:
    if os.environ.get("RECORDER_TRACEBACK"):
        raise exc
    text = one_line(str(exc))[:300]
    click.echo(
        f"Error: unexpected {type(exc).__name__}: {text} (a bug: please report it; RECORDER_TRACEBACK=1 shows where)",
        err=True,
    )
    sys.exit(EXIT_FAILED)
