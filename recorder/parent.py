"""Who spawned this process, known even if that parent died before we asked."""

from __future__ import annotations

import multiprocessing
import os


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
