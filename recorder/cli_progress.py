"""A progress bar for long commands (``export``): drawn on a terminal only, so a pipe or a log
gets the command's result lines alone."""

from __future__ import annotations

import sys
from typing import Any


class ProgressBar:
    """A rich progress bar on a terminal (stderr); nothing otherwise."""

    def __init__(self, title: str) -> None:
        self.title, self._bar, self._task = title, None, None

    def __enter__(self) -> ProgressBar:
        if sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self._bar.start()
            self._task = self._bar.add_task(self.title, total=None)
            self._bar.refresh()  # shown at once, however short the export
        return self

    def update(self, done: int, total: int, unit: Any) -> None:
        if self._bar is not None:
            desc = f"{self.title}: {unit.exchange} {unit.pair} {unit.day}"
            self._bar.update(self._task, completed=done, total=total, description=desc)
            self._bar.refresh()

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()
