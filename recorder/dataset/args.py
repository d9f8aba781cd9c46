"""Checks of what a user passes to the reader: each wrong value is one DatasetError line, never a
TypeError from deep inside pyarrow."""

from __future__ import annotations

import os
import re
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from recorder.dataset.source import DatasetError
from recorder.names import NameError_, check_session_id, check_venue_id, normalize_pair

# The deepest book a capture stores (config: depth 1..1000); ``wide`` makes 4 columns a level.
MAX_DEPTH = 1000
SELECT_KEYS = ("exchanges", "pairs", "sessions", "start", "end")
_REGION_RE = re.compile(r"^[a-z0-9][a-z0-9\-]{0,62}$")


def _exchange(name: str) -> str:
    try:
        return check_venue_id(name.strip().lower())
    except NameError_:
        raise NameError_(f"invalid exchange {name!r}: a venue id like binance or binance-futures") from None


def _checked(kind: str, check: Callable[[str], str], value: object) -> frozenset[str] | None:
    """A name or an iterable of names -> the set of checked names (None: any)."""
    if value is None:
        return None
    if isinstance(value, str):
        items: list[object] = [value]
    elif isinstance(value, Iterable) and not isinstance(value, bytes | bytearray):
        items = list(value)
    else:
        raise DatasetError(f"invalid {kind} {value!r}: give a name or a list of names")
    out = set()
    for item in items:
        if not isinstance(item, str):
            raise DatasetError(f"invalid {kind} {item!r}: names are text")
        try:
            out.add(check(item))
        except NameError_ as exc:
            raise DatasetError(str(exc)) from None
    return frozenset(out)


def exchanges(value: object) -> frozenset[str] | None:
    return _checked("exchange", _exchange, value)


def pairs(value: object) -> frozenset[str] | None:
    return _checked("pair", normalize_pair, value)


def sessions(value: object) -> frozenset[str] | None:
    return _checked("session id", check_session_id, value)


def one_name(kind: str, value: object, check: Callable[[object], frozenset[str] | None]) -> str:
    """Exactly one name (``asof``'s exchange and pair)."""
    if not isinstance(value, str):
        raise DatasetError(f"invalid {kind} {value!r}: give one name")
    return next(iter(check(value) or ()))


def select_keys(select: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(select) - set(SELECT_KEYS))
    if unknown:
        raise DatasetError(f"unknown argument(s) {', '.join(unknown)}; a selection takes {', '.join(SELECT_KEYS)}")
    return select


def depth(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise DatasetError(f"invalid depth {value!r}: give a whole number of levels, 1 to {MAX_DEPTH}")
    if not 1 <= value <= MAX_DEPTH:
        raise DatasetError(f"invalid depth {value}: must be between 1 and {MAX_DEPTH} (the deepest stored book)")
    return value


def columns(value: object, known: Sequence[str]) -> list[str] | None:
    if value is None:
        return None
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, Iterable) or isinstance(names, bytes | bytearray):
        raise DatasetError(f"invalid columns {value!r}: give a column name or a list of them")
    names = list(names)
    unknown = [repr(c) if not isinstance(c, str) else c for c in names if c not in known]
    if unknown:
        raise DatasetError(f"unknown column(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return names


def flag(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise DatasetError(f"invalid {name} {value!r}: True or False")
    return value


def location(value: object) -> str:
    if not isinstance(value, str | os.PathLike):
        raise DatasetError(f"invalid location {value!r}: give a data directory or s3://bucket/prefix")
    text = os.fspath(value)
    if not isinstance(text, str) or not text.strip() or "\x00" in text:
        raise DatasetError(f"invalid location {text!r}: give a data directory or s3://bucket/prefix")
    return text


def endpoint(value: object, source: str = "endpoint_url") -> str:
    """``http(s)://host[:port]`` of an S3-compatible server."""
    if not isinstance(value, str):
        raise DatasetError(f"invalid {source} {value!r}: expected http(s)://host[:port]")
    try:
        ep = urllib.parse.urlparse(value.strip())
        ep.port  # noqa: B018 - raises on a port out of range
    except ValueError:
        raise DatasetError(f"invalid {source} {value!r}: expected http(s)://host[:port]") from None
    if ep.scheme not in ("http", "https") or not ep.hostname or ep.path not in ("", "/") or ep.query:
        raise DatasetError(f"invalid {source} {value!r}: expected http(s)://host[:port]")
    return value.strip()


def region(value: object, source: str = "region") -> str:
    if not isinstance(value, str) or not _REGION_RE.fullmatch(value):
        raise DatasetError(f"invalid {source} {value!r}: expected an AWS region like us-east-1")
    return value
