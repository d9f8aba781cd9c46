"""Nothing outlives the supervisor: its children die with it, and what a dead one leaves behind
(shared-memory segments, children still draining) is found and reclaimed by the next start of
the same session.

* Every child runs :func:`child_main` first: it asks for SIGTERM when the supervisor dies
  (``recorder.parent.die_with_parent``) and holds a shared lock on the session's
  ``children.lock`` for its whole life, so a new supervisor can wait until the last one of a
  dead predecessor is gone (an orphaned writer still draining into the same journal).
* Segments are named ``rec-<session key>-<supervisor pid>-<what>``, the key a hash of the
  resolved data dir and the session id, so the next start lists ``/dev/shm`` for its own. Short
  (at most 30 characters, macOS's limit): ``what`` is ``r<i>`` / ``c<i>`` for venue ``i``'s ring
  and counters, ``w`` for the writer's counters, ``u`` for the uploader's.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from recorder.parent import die_with_parent, spawning_parent_pid

log = logging.getLogger("recorder.supervisor")

SHM_DIR = Path("/dev/shm")
SHM_PREFIX = "rec-"


def child_main(children_lock: str | None, target: Callable[..., Any], args: tuple[Any, ...]) -> None:
    """Entry point of every child process (``spawn``): the lifeline, then the real target."""
    die_with_parent(spawning_parent_pid())
    # A terminal's hangup reaches its whole process group; the supervisor orders the stop.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    if children_lock is not None:
        try:
            fd = os.open(children_lock, os.O_RDWR | os.O_CREAT, 0o644)
            fcntl.flock(fd, fcntl.LOCK_SH)  # held until this process ends: the OS releases it
        except OSError as exc:  # a lock we cannot take must not stop the capture
            log.warning("event=children_lock_failed path=%s error=%s", children_lock, exc)
    target(*args)


def wait_for_children(children_lock: Path, timeout_s: float) -> bool:
    """Wait until no process holds ``children_lock`` (the previous run's children are gone)."""
    try:
        fd = os.open(children_lock, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        return True  # nothing to wait on (e.g. read-only); the session lock still guards us
    deadline = time.monotonic() + timeout_s
    logged = False
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    return False
                if not logged:
                    log.warning("event=waiting_for_previous_run detail=its processes are still stopping")
                    logged = True
                time.sleep(0.1)
                continue
            fcntl.flock(fd, fcntl.LOCK_UN)
            return True
    finally:
        os.close(fd)


def session_shm_key(data_dir: str | os.PathLike[str], session_id: str) -> str:
    """Short and path-safe whatever the data dir: a POSIX shm name is one path component."""
    resolved = str(Path(data_dir).resolve())
    return hashlib.sha256(f"{resolved}\0{session_id}".encode()).hexdigest()[:12]


def segment_name(session_key: str, what: str) -> str:
    """The name of one of this supervisor's segments (``what``: ``r0``, ``c0``, ``w``, ``u``)."""
    return f"{SHM_PREFIX}{session_key}-{os.getpid()}-{what}"


def session_segments(session_key: str) -> list[str]:
    """Segments of this session in ``/dev/shm`` (none listed where there is no ``/dev/shm``)."""
    try:
        return sorted(p.name for p in SHM_DIR.iterdir() if p.name.startswith(f"{SHM_PREFIX}{session_key}-"))
    except OSError:
        return []


def reclaim_segments(session_key: str) -> tuple[int, int]:
    """Unlink the segments a dead run of this session left; (segments, bytes) reclaimed.

    Only called while holding the session lock and after :func:`wait_for_children`, so no live
    process of the session uses them (and a mapping that survived would stay valid anyway).
    """
    count = size = 0
    for name in session_segments(session_key):
        path = SHM_DIR / name
        try:
            nbytes = path.stat().st_size
            path.unlink()
        except FileNotFoundError:
            continue
        except OSError as exc:
            log.warning("event=shm_reclaim_failed segment=%s error=%s", name, exc)
            continue
        count += 1
        size += nbytes
    if count:
        log.warning("event=shm_reclaimed segments=%d bytes=%d detail=left by a run that did not stop", count, size)
    return count, size
