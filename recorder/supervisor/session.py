"""A session's control directory: lock (one live capture per session id), pid and status."""

from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path
from typing import Any

from recorder.names import check_session_id


class SessionBusy(RuntimeError):
    pass


class SessionMismatch(ValueError):
    """A session continued with settings its stored data was not recorded with."""


def sessions_root(data_dir: str | Path) -> Path:
    return Path(data_dir) / ".sessions"


class SessionDir:
    def __init__(self, data_dir: str | Path, session_id: str) -> None:
        self.session_id = check_session_id(session_id)
        self.path = sessions_root(data_dir) / session_id
        self._lock_fd: int | None = None

    @property
    def status_path(self) -> Path:
        return self.path / "status.json"

    @property
    def children_lock(self) -> Path:
        """Held (shared) by every child of a run: see recorder/supervisor/lifeline.py."""
        return self.path / "children.lock"

    def acquire(self) -> None:
        """Hold an exclusive lock for the life of this process (released by the OS on any death)."""
        while True:
            self.path.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path / "lock", os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise SessionBusy(f"session {self.session_id!r} is already running") from None
            # A failed start removes its lock file (release(failed_start=True)): a lock taken on
            # the removed file guards nothing, so take the one now at the path instead.
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path / "lock"))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        self._lock_fd = fd
        (self.path / "supervisor.pid").write_text(str(os.getpid()))

    def release(self, failed_start: bool = False) -> None:
        """Unlock. After a start that failed, also remove what it created: a session that never
        captured leaves no directory behind, one that did keeps its last run's status."""
        if failed_start and self._lock_fd is not None:
            self._remove_failed_start()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _remove_failed_start(self) -> None:
        (self.path / "supervisor.pid").unlink(missing_ok=True)
        if self.status_path.exists() or not self._children_gone():
            return  # (a dead run's children still hold children.lock: removing it would hide them)
        for name in ("children.lock", "lock"):
            (self.path / name).unlink(missing_ok=True)
        for path in (self.path, self.path.parent):  # the session's dir, then .sessions if empty
            try:
                path.rmdir()
            except OSError:
                break  # not empty (another session, a log): keep it

    def _children_gone(self) -> bool:
        return not _held(self.children_lock)

    def is_running(self) -> bool:
        return _held(self.path / "lock")

    def pid(self) -> int | None:
        try:
            return int((self.path / "supervisor.pid").read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def record_run(self, event: str, **fields: Any) -> None:
        """One line per capture start / stop in ``runs.jsonl``: the report tells a pause between
        two runs from missing data by it. Best effort: a full disk must not stop a capture."""
        line = json.dumps({"event": event, "ms": int(time.time() * 1000), **fields})
        try:
            with open(self.path / "runs.jsonl", "a", encoding="utf-8") as fh:
                fh.write(line + "\n")
        except OSError:
            pass

    def write_status(self, status: dict[str, Any]) -> None:
        tmp = self.path / ".status.json.tmp"
        tmp.write_text(json.dumps(status, indent=1, sort_keys=True))
        os.replace(tmp, self.status_path)

    def read_status(self) -> dict[str, Any] | None:
        try:
            status = json.loads(self.status_path.read_text())
        except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
            return None
        return status if isinstance(status, dict) else None

    def check_continues(self, **settings: Any) -> None:
        """A restarted session must keep the settings of its previous run (``status.json``): one
        session is one grid, and the report reads every stored snapshot with the last interval."""
        previous = self.read_status() or {}
        for key, value in settings.items():
            old = previous.get(key)
            if old is not None and old != value:
                name = key.removesuffix("_s")
                unit = "s" if key.endswith("_s") else ""
                was, now = (f"{v:g}{unit}" if isinstance(v, int | float) else repr(v) for v in (old, value))
                raise SessionMismatch(
                    f"session {self.session_id!r} was recorded with {name} {was}, not {now}:"
                    f" use that {name}, or another --session-id"
                )


def _held(lock: str | Path) -> bool:
    """Does a live process hold ``lock`` (an flock, released when its holder dies)? A lock file
    that is missing (never made, or removed by a start that failed) is held by nobody."""
    try:
        fd = os.open(lock, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False
