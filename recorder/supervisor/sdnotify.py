"""The systemd notify protocol (sd_notify(3)) without libsystemd: datagrams to $NOTIFY_SOCKET.

Inactive (every call a no-op) when the variable is unset, so running by hand costs nothing.
"""

from __future__ import annotations

import logging
import os
import socket
import time

log = logging.getLogger("recorder.supervisor")


class SdNotify:
    def __init__(self, env: dict[str, str] | None = None) -> None:
        env = dict(os.environ) if env is None else env
        path = env.get("NOTIFY_SOCKET", "")
        self._addr: str | bytes | None = None
        if path.startswith("@"):
            self._addr = b"\0" + path[1:].encode()  # abstract namespace
        elif path.startswith("/"):
            self._addr = path
        self._sock: socket.socket | None = None
        if self._addr is not None:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        # WatchdogSec= reaches us as WATCHDOG_USEC (for us only if WATCHDOG_PID is unset or ours).
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        self.watchdog_s: float | None = None
        if usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            self.watchdog_s = int(usec) / 1e6
        self._last_ping = 0.0
        self._failed = False

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def send(self, **fields: str | int) -> None:
        """``send(READY=1, STATUS="...")`` -> one datagram "READY=1\\nSTATUS=...". Never raises."""
        if self._sock is None or self._addr is None:
            return
        msg = "\n".join(f"{k}={v}" for k, v in fields.items()).encode()
        try:
            self._sock.sendto(msg, self._addr)
        except OSError as exc:
            if not self._failed:  # systemd gone or socket full: say so once, keep capturing
                log.warning("event=sd_notify_failed error=%s", exc)
            self._failed = True

    def ready(self, status: str) -> None:
        self.send(READY=1, STATUS=status, MAINPID=os.getpid())

    def status(self, status: str) -> None:
        self.send(STATUS=status)

    def stopping(self, status: str) -> None:
        self.send(STOPPING=1, STATUS=status)

    def watchdog(self) -> None:
        """Ping the watchdog at half its period (call often; it rate-limits itself)."""
        if self.watchdog_s is None:
            return
        now = time.monotonic()
        if now - self._last_ping >= self.watchdog_s / 2:
            self._last_ping = now
            self.send(WATCHDOG=1)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
