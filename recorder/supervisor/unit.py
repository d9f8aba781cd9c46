"""The systemd service unit that runs a capture (``cli.py systemd-unit``)."""

from __future__ import annotations

import re

# systemd's User=: a user name (what useradd accepts) or a numeric uid.
_USER_RE = re.compile(r"^(?:[a-z_][a-z0-9_-]{0,30}\$?|[0-9]{1,10})$")
# Characters systemd would unescape or expand in ExecStart= / WorkingDirectory=, or that end a line.
_UNSAFE = "\n\r\t\"'%$\\;"


class UnitError(ValueError):
    """A value a unit file cannot hold safely (one line)."""


def unit_text(
    session_id: str, python: str, cli: str, config: str, workdir: str, watchdog_sec: int, user: str | None
) -> str:
    if user is not None and not _USER_RE.fullmatch(user):
        raise UnitError(f"invalid user {user!r}: a user name (letters, digits, '_', '-') or a numeric uid")
    for p in (python, cli, config, workdir):
        if any(c in p for c in _UNSAFE):
            raise UnitError(f"path {p!r} has characters a unit file cannot hold safely")
    python, cli, config = (f'"{p}"' if " " in p else p for p in (python, cli, config))
    lines = [
        "[Unit]",
        f"Description=Order-book recorder, session {session_id}",
        "Wants=network-online.target",
        "After=network-online.target",
        # The supervisor restarts its own children; this only catches the supervisor itself looping.
        "StartLimitIntervalSec=600",
        "StartLimitBurst=5",
        "",
        "[Service]",
        "Type=notify",
        "NotifyAccess=main",
        f"ExecStart={python} {cli} start-capture --config {config}",
        f"WorkingDirectory={workdir}",
        *([f"User={user}"] if user else []),
        "Environment=PYTHONUNBUFFERED=1",
        "Restart=on-failure",
        "RestartSec=5",
        f"WatchdogSec={watchdog_sec}",
        # SIGTERM to the supervisor only: it stops the venue processes, then lets the writer flush.
        "KillMode=mixed",
        "TimeoutStopSec=300",
        "LimitNOFILE=65536",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
    ]
    return "\n".join(lines)
