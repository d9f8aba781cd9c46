"""Structured, journald-friendly log lines on stderr: one line per event, key=value pairs."""

from __future__ import annotations

import logging
import os
import sys


class _Formatter(logging.Formatter):
    def __init__(self, process_name: str) -> None:
        super().__init__()
        self.process_name = process_name

    def format(self, record: logging.LogRecord) -> str:
        ts = self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z"
        line = f"{ts} {record.levelname.lower()} proc={self.process_name} pid={os.getpid()} {record.getMessage()}"
        if record.exc_info:
            line += " exc=" + self.formatException(record.exc_info).replace("\n", " | ")
        return line


def setup_logging(process_name: str, level: str = "INFO") -> None:
    import time

    logging.Formatter.converter = time.gmtime
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter(process_name))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Third-party chatter (picows per-connection debug, aiohttp access logs) is not our events.
    for noisy in ("picows", "aiohttp.access", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
