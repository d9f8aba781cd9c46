"""Captures driven from Python, with the CLI's powers: ``Capture(...).start()``, ``status()``,
``stop()``, a context manager, and :class:`AsyncCapture` for asyncio programs.

A capture runs where ``python cli.py start-capture`` runs it: a supervisor process (the same
``Supervisor.prepare()`` then ``run()``) with its venue and writer processes, so a program's
captures are exactly the CLI's, survive the program's own hiccups, and can be watched and stopped
from the CLI too (``capture-status`` / ``stop-capture`` with the session id). Settings are the
config file's: a TOML path or a dict of the same keys, plus keyword overrides as the CLI's flags.

    with Capture(venue="binance", pairs=["BTC-USDT"], interval="1s", duration="10m",
                 data_dir="data", simulate=True) as cap:
        cap.wait()          # until the duration ends (or cap.stop() any time)
    print(cap.final_status["writer"]["snapshots_written"])
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec

from recorder.config import CaptureConfig, ConfigError, build_config, load_toml, parse_duration

__all__ = ["AsyncCapture", "Capture", "CaptureError", "ConfigError", "read_status", "stop_session"]


class CaptureError(RuntimeError):
    """A capture could not start, or did not stop cleanly (one-line message)."""


def read_status(data_dir: str | os.PathLike[str], session_id: str) -> dict[str, Any] | None:
    """A session's status as ``capture-status --json`` shows it (``state`` "dead" for a run that
    vanished without a final status); None when it never wrote one."""
    from recorder.supervisor.session import SessionDir

    session = SessionDir(data_dir, session_id)
    status = session.read_status()
    running = session.is_running()
    if status is None:
        return {"session_id": session_id, "state": "starting"} if running else None
    if not running and status.get("state") in ("running", "stopping", "starting"):
        status["state"] = "dead"
    return status


def stop_session(data_dir: str | os.PathLike[str], session_id: str, timeout: float = 180.0) -> dict[str, Any]:
    """Stop a running session, however it was started (``start-capture``, a :class:`Capture` of
    any program), as ``stop-capture`` does: SIGTERM to its supervisor, wait until it exited and
    reported every file flushed; its final status. CaptureError (one line) otherwise."""
    from recorder.supervisor.session import SessionDir

    session = SessionDir(data_dir, session_id)
    pid = session.pid()
    if not session.is_running() or pid is None:
        raise CaptureError(f"session {session_id!r} is not running")
    try:
        os.kill(pid, signal.SIGTERM)
    except OSError as exc:
        raise CaptureError(f"cannot signal session {session_id!r} (pid {pid}): {exc.strerror or exc}") from None
    deadline = time.monotonic() + timeout
    while session.is_running():
        if time.monotonic() > deadline:
            raise CaptureError(f"session {session_id!r} did not stop within {timeout:.0f}s")
        time.sleep(0.1)
    status = session.read_status() or {}
    if status.get("state") != "stopped" or not status.get("flushed"):
        raise CaptureError(f"session {session_id!r} stopped but did not report a clean flush")
    return status


def _seconds(value: Any, unit: str) -> float | None:
    """Numbers are seconds here (Python's unit); text takes units as in config files."""
    if value is None:
        return None
    if hasattr(value, "total_seconds"):
        return float(value.total_seconds())
    if isinstance(value, int | float) and not isinstance(value, bool):
        return parse_duration(float(value), default_unit="s")
    return parse_duration(str(value), default_unit=unit)


class Capture:
    """One capture session. Keywords mirror ``start-capture``'s flags; ``config`` is a TOML file
    or a dict with the config file's keys; ``venues={"binance": ["BTC-USDT"], ...}`` captures
    several venues in one session. Raises ConfigError for invalid settings, here, before anything
    starts."""

    def __init__(
        self,
        config: str | os.PathLike[str] | dict[str, Any] | None = None,
        *,
        venue: str | None = None,
        pairs: list[str] | str | None = None,
        venues: dict[str, list[str]] | None = None,
        interval: float | str | None = None,
        duration: float | str | None = None,
        depth: int | None = None,
        format: str | None = None,
        storage: str | None = None,
        s3_bucket: str | None = None,
        s3_prefix: str | None = None,
        data_dir: str | os.PathLike[str] | None = None,
        session_id: str | None = None,
        simulate: bool | None = None,
        metrics_port: int | None = None,
        log_level: str = "INFO",
    ) -> None:
        raw: dict[str, Any] = {}
        if isinstance(config, dict):
            raw = json.loads(json.dumps(config))  # a copy the merge may change
        elif config is not None:
            raw = load_toml(config)
        if venues is not None:
            if venue is not None:
                raise ConfigError("give venue= or venues=, not both")
            raw["venues"] = {
                name: {**(raw.get("venues") or {}).get(name, {}), "pairs": list(p)} for name, p in venues.items()
            }
        if isinstance(pairs, str):
            pairs = [p for p in pairs.split(",") if p.strip()]
        overrides: dict[str, Any] = {
            "venue": venue,
            "pairs": pairs,
            "interval_s": _seconds(interval, "s"),
            "duration_s": _seconds(duration, "m"),
            "depth": depth,
            "format": format,
            "storage": storage,
            "s3_bucket": s3_bucket,
            "s3_prefix": s3_prefix,
            "data_dir": os.fspath(data_dir) if data_dir is not None else None,
            "session_id": session_id,
            "simulate": simulate,
            "metrics_port": metrics_port,
        }
        self.config: CaptureConfig = build_config(raw, overrides)
        self.config.data_dir = os.path.abspath(self.config.data_dir)
        self.session_id = self.config.resolved_session_id()
        self.data_dir = Path(self.config.data_dir)
        self.log_level = log_level.upper()
        self.final_status: dict[str, Any] | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: Any = None

    def __repr__(self) -> str:
        return f"Capture({self.session_id!r}, data_dir={str(self.data_dir)!r}, running={self.running})"

    # lifecycle ----------------------------------------------------------------------------

    def start(self, timeout: float = 180.0) -> Capture:
        """Start the supervisor and return once it captures (its checks passed, simulators up, its
        first status written): CaptureError with the supervisor's one-line reason otherwise."""
        if self._proc is not None:
            raise CaptureError(f"capture {self.session_id!r} was already started")
        self._stderr = tempfile.TemporaryFile()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [_root(), os.environ.get("PYTHONPATH")]))}
        self._proc = subprocess.Popen(
            [sys.executable, "-c", "from recorder.api import _child_main; _child_main()"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=env,
        )
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.write(msgspec.json.encode({"config": self.config, "log_level": self.log_level}))
        self._proc.stdin.close()
        reply = _readline(self._proc.stdout, timeout)
        if reply is None:
            self._kill()
            raise CaptureError(f"capture {self.session_id!r} did not start within {timeout:.0f}s")
        try:
            msg = json.loads(reply)
        except ValueError:
            msg = {}
        if not msg.get("ok"):
            code = self._proc.wait(30)
            error = msg.get("error") or self._last_error_line() or f"supervisor exited with status {code}"
            raise CaptureError(error)
        # Return with a first full status written, so ``status()["venues"]`` works at once.
        deadline = time.monotonic() + timeout
        while self.running and time.monotonic() < deadline:
            st = read_status(self.data_dir, self.session_id)
            if st is not None and "venues" in st:
                break
            time.sleep(0.05)
        return self

    def status(self) -> dict[str, Any]:
        """The session's current status (``capture-status --json``): state, per venue and pair
        counters, writer totals; ``{"state": "starting"}`` before the first one is written."""
        st = read_status(self.data_dir, self.session_id)
        return st if st is not None else {"session_id": self.session_id, "state": "starting"}

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def wait(self, timeout: float | None = None) -> dict[str, Any]:
        """Wait for the capture to end by itself (its duration) and return its final status."""
        if self._proc is None:
            raise CaptureError(f"capture {self.session_id!r} was not started")
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise CaptureError(f"capture {self.session_id!r} still running after {timeout:.0f}s") from None
        return self._finish()

    def stop(self, timeout: float = 180.0) -> dict[str, Any]:
        """Stop gracefully (as ``stop-capture``): SIGTERM, wait until every file is flushed, and
        return the final status; CaptureError if it did not stop cleanly in ``timeout``."""
        if self._proc is None:
            raise CaptureError(f"capture {self.session_id!r} was not started")
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                raise CaptureError(f"capture {self.session_id!r} did not stop within {timeout:.0f}s") from None
        return self._finish()

    def _finish(self) -> dict[str, Any]:
        status = read_status(self.data_dir, self.session_id) or {}
        self.final_status = status
        if status.get("state") != "stopped" or not status.get("flushed"):
            reason = self._last_error_line() or f"exit status {self._proc.returncode if self._proc else '?'}"
            raise CaptureError(f"capture {self.session_id!r} did not report a clean flush ({reason})")
        return status

    def _kill(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()

    def _last_error_line(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        lines = [ln for ln in self._stderr.read().decode(errors="replace").splitlines() if ln.strip()]
        return lines[-1][-300:] if lines else ""

    def __enter__(self) -> Capture:
        if self._proc is None:
            self.start()
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        # Any way out of the block (an exception, Ctrl-C) stops the capture and flushes it.
        if self._proc is None:
            return
        if exc_type is None:
            if self._proc.poll() is None:
                self.stop()
            elif self.final_status is None:
                self._finish()
            return
        try:
            if self._proc.poll() is None:
                self.stop()
        except CaptureError:
            self._kill()


class AsyncCapture:
    """:class:`Capture` for asyncio: the same settings, awaitable ``start``, ``status``, ``stop``,
    ``wait`` and ``async with``; the blocking waits run in a thread."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.capture = Capture(*args, **kwargs)
        self.session_id = self.capture.session_id

    async def start(self, timeout: float = 180.0) -> AsyncCapture:
        await asyncio.to_thread(self.capture.start, timeout)
        return self

    async def status(self) -> dict[str, Any]:
        return await asyncio.to_thread(self.capture.status)

    async def wait(self, timeout: float | None = None) -> dict[str, Any]:
        return await asyncio.to_thread(self.capture.wait, timeout)

    async def stop(self, timeout: float = 180.0) -> dict[str, Any]:
        return await asyncio.to_thread(self.capture.stop, timeout)

    async def __aenter__(self) -> AsyncCapture:
        return await self.start()

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        await asyncio.to_thread(self.capture.__exit__, exc_type, exc, tb)


def _root() -> str:
    """The directory holding the ``recorder`` package the parent imported (the child's too)."""
    return str(Path(__file__).resolve().parent.parent)


def _readline(stream: Any, timeout: float) -> bytes | None:
    import selectors

    sel = selectors.DefaultSelector()
    sel.register(stream, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    buf = b""
    while time.monotonic() < deadline:
        if sel.select(timeout=max(0.0, deadline - time.monotonic())):
            chunk = os.read(stream.fileno(), 4096)
            if not chunk:
                return buf or b"{}"  # the child exited before replying
            buf += chunk
            if b"\n" in buf:
                return buf.split(b"\n", 1)[0]
    return None


def _child_main() -> None:
    """The supervisor process of an API capture: prepare (one JSON line back: ok or the error),
    then run as ``start-capture`` does, its event log in the session's ``recorder.log``."""
    from recorder.logs import setup_logging
    from recorder.supervisor.session import SessionBusy
    from recorder.supervisor.supervisor import CaptureError as SupervisorError
    from recorder.supervisor.supervisor import Supervisor

    msg = msgspec.json.decode(sys.stdin.buffer.read())
    cfg = msgspec.convert(msg["config"], CaptureConfig)
    setup_logging("supervisor", msg["log_level"])
    supervisor = Supervisor(cfg, log_level=msg["log_level"])
    out = sys.stdout
    try:
        supervisor.prepare()
    except (SupervisorError, SessionBusy, ConfigError, OSError) as exc:
        out.write(json.dumps({"ok": False, "error": str(exc)}) + "\n")
        out.flush()
        sys.exit(2)
    log_path = supervisor.session.path / "recorder.log"
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 2)  # the children inherit it
    os.close(fd)
    out.write(json.dumps({"ok": True, "session_id": supervisor.session_id, "pid": os.getpid()}) + "\n")
    out.flush()
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)  # nobody reads the pipe any more: a stray print must not block on it
    os.close(devnull)
    sys.exit(supervisor.run())
