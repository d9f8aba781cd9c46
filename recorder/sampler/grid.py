"""The wall-clock sampling grid: ticks at whole multiples of the interval since the epoch.

Each tick is computed from the wall clock, never by adding intervals to the previous one, so
the grid cannot drift over hours (and re-aligns by itself after an NTP step).
"""

from __future__ import annotations

import asyncio
import time


def next_tick_ms(now_ms: float, interval_ms: int) -> int:
    """The first grid tick strictly after ``now_ms``."""
    return (int(now_ms // interval_ms) + 1) * interval_ms


def ticks_between(after_ms: int, before_ms: int, interval_ms: int) -> int:
    """How many grid ticks lie strictly between two ticks."""
    return max(0, (before_ms - after_ms) // interval_ms - 1)


async def sleep_until(wall_ms: float) -> None:
    # Event-loop timers can wake a little early; loop until the wall clock has really passed.
    while True:
        delay = wall_ms / 1000.0 - time.time()
        if delay <= 0:
            return
        await asyncio.sleep(delay)
