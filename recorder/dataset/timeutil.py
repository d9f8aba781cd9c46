"""UTC times as epoch milliseconds: the recorder's ``timestamp_ms`` unit."""

from __future__ import annotations

import datetime as dt
import math
import numbers
import re
from typing import Any

from recorder.dataset.source import DatasetError

MS_PER_DAY = 86_400_000
# The times a datetime can hold (years 1 to 9999): any other number is a typo, not a time.
MIN_MS = -62_135_596_800_000  # 0001-01-01T00:00:00Z
MAX_MS = 253_402_300_800_000  # 10000-01-01T00:00:00Z (exclusive)
_SPAN_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_SPAN_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": MS_PER_DAY}

TimeLike = int | float | str | dt.datetime | dt.date | Any


def to_ms(value: TimeLike) -> int:
    """Epoch ms from an int (already epoch ms), ISO-8601 text, a datetime (naive = UTC), a date,
    a pandas Timestamp or a numpy datetime64; between years 1 and 9999."""
    try:
        ms = _to_ms(value)
    except DatasetError:
        raise
    except (ValueError, OverflowError, OSError):  # NaT, a datetime at the edge of its range
        raise DatasetError(f"invalid time {value!r}") from None
    if not MIN_MS <= ms < MAX_MS:
        raise DatasetError(f"invalid time {value!r}: outside years 1 to 9999")
    return ms


def _to_ms(value: TimeLike) -> int:
    if isinstance(value, bool):
        raise DatasetError(f"invalid time {value!r}")
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        if not math.isfinite(float(value)):
            raise DatasetError(f"invalid time {value!r}: not a finite number")
        return int(value)
    if hasattr(value, "dtype") and str(getattr(value, "dtype", "")).startswith("datetime64"):
        return int(value.astype("datetime64[ms]").astype("int64"))  # numpy datetime64
    if isinstance(value, str):
        text = value.strip()
        try:
            value = dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise DatasetError(f"invalid time {text!r}: use ISO 8601, e.g. 2026-11-24T10:00:00Z") from None
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return int(round(value.timestamp() * 1000))
    if isinstance(value, dt.date):
        return int(dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC).timestamp() * 1000)
    raise DatasetError(f"invalid time {value!r}: use epoch ms, ISO-8601 text or a datetime")


def span_ms(value: int | float | str | dt.timedelta, name: str = "duration") -> int:
    """A duration in ms from a timedelta, ms as a number, or text like ``90s``, ``1h``, ``7d``."""
    if isinstance(value, dt.timedelta):
        ms = value.total_seconds() * 1000
    elif isinstance(value, numbers.Real) and not isinstance(value, bool):
        ms = float(value)
    else:
        m = _SPAN_RE.match(value) if isinstance(value, str) else None
        if not m:
            raise DatasetError(f"invalid {name} {value!r}: use e.g. 500ms, 90s, 1h, 7d")
        ms = float(m.group(1)) * _SPAN_MS[m.group(2)]
    if not math.isfinite(ms) or abs(ms) > MAX_MS - MIN_MS:
        raise DatasetError(f"invalid {name} {value!r}: longer than the whole calendar")
    return int(ms)


def utc_date(ms: int) -> str:
    """The UTC date of a time, for partition pruning (times beyond the calendar clamp to its ends)."""
    ms = min(max(ms, MIN_MS), MAX_MS - 1)
    return (dt.date(1970, 1, 1) + dt.timedelta(days=ms // MS_PER_DAY)).isoformat()


def iso(ms: int | None) -> str:
    """``2026-11-24T10:00:00.250Z`` (empty for None)."""
    if ms is None:
        return ""
    t = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(milliseconds=to_ms(ms))
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")
