"""UTC times as epoch milliseconds: the recorder's ``timestamp_ms`` unit."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from recorder.dataset.source import DatasetError

MS_PER_DAY = 86_400_000
_SPAN_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_SPAN_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": MS_PER_DAY}

TimeLike = int | float | str | dt.datetime | dt.date | Any


def to_ms(value: TimeLike) -> int:
    """Epoch ms from an int (already epoch ms), ISO-8601 text, a datetime (naive = UTC), a date,
    a pandas Timestamp or a numpy datetime64."""
    if isinstance(value, bool):
        raise DatasetError(f"invalid time {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
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
    raise DatasetError(f"invalid time {value!r}")


def span_ms(value: int | float | str | dt.timedelta) -> int:
    """A duration in ms from a timedelta, ms as a number, or text like ``90s``, ``1h``, ``7d``."""
    if isinstance(value, dt.timedelta):
        return int(value.total_seconds() * 1000)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return int(value)
    m = _SPAN_RE.match(str(value))
    if not m:
        raise DatasetError(f"invalid duration {value!r}: use e.g. 500ms, 90s, 1h, 7d")
    return int(float(m.group(1)) * _SPAN_MS[m.group(2)])


def utc_date(ms: int) -> str:
    return (dt.date(1970, 1, 1) + dt.timedelta(days=ms // MS_PER_DAY)).isoformat()


def iso(ms: int | None) -> str:
    """``2026-11-24T10:00:00.250Z`` (empty for None)."""
    if ms is None:
        return ""
    t = dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"
