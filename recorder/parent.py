"""Who spawned this process, known even if that parent died before we asked; and dying with it."""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import threading
import time

_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def spawning_parent_pid() -> int:
    """The pid of the process that spawned us.

    ``os.getppid()`` at start-up is racy: if the parent dies before the child asks, the child
    sees its new reaper and never notices it was orphaned. A ``spawn`` child is told its
    parent's pid on the command line, so that is the reliable answer when there is one.
    """
    parent = multiprocessing.parent_process()
    return parent.pid if parent is not None and parent.pid is not None else os.getppid()


def parent_alive(parent_pid: int) -> bool:
    """True while we are still the child of ``parent_pid`` (an orphan is re-parented)."""
    return os.getppid() == parent_pid


def die_with_parent(parent_pid: int, signum: int = signal.SIGTERM, grace_s: float = 120.0) -> None:
    """Receive ``signum`` as soon as ``parent_pid`` dies, however it dies (SIGKILL included).

    Linux delivers it itself (``PR_SET_PDEATHSIG``); a watch thread polling our parent pid is the
    fallback elsewhere and the backstop everywhere: it sends the same signal, then, if we are
    still here ``grace_s`` later (a graceful stop that hangs), ends us for good. ``signum`` is the
    process's own graceful-stop signal, so an orphan stops the way a ``stop-capture`` stops it.
    (Linux sends it when the *thread* that spawned us ends: spawn children from the main thread.)
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signum), 0, 0, 0)
    except (OSError, AttributeError):
        pass  # no prctl (not Linux): the watch thread alone
    watch = threading.Thread(target=_watch, args=(parent_pid, signum, grace_s), name="parent-watch", daemon=True)
    watch.start()


def _watch(parent_pid: int, signum: int, grace_s: float) -> None:
    # Also covers a parent that died before prctl above was called (the kernel then sends nothing).
    while parent_alive(parent_pid):
        time.sleep(0.5)
    os.kill(os.getpid(), signum)
    time.sleep(grace_s)
    os.kill(os.getpid(), signal.SIGKILL)
