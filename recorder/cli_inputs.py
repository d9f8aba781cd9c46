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
from typing import Any

import click

from recorder.config import MAX_PORT, ConfigError, parse_duration
from recorder.names import NameError_, check_session_id

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

# Exit codes (README, "Exit codes").
EXIT_FAILED = 1  # the demo's checks failed, or an unexpected internal error (a bug)
EXIT_INPUT = 2  # bad input, or nothing could be done (one line says why)
EXIT_CRASH_LOOP = 3  # a capture stopped because a child kept crashing
EXIT_NOT_FLUSHED = 4  # a capture stopped but its writer did not confirm that everything was stored
EXIT_INTERRUPTED = 130  # Ctrl-C before a capture was running


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
