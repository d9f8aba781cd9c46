"""``--pairs all`` shared by the venues' ``list_pairs``: fetch an instruments endpoint, filter, normalize."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from typing import Any

from recorder.names import NameError_, normalize_pair

log = logging.getLogger("recorder.venues.listing")


def fetch_json(url: str, timeout_s: float) -> Any:
    """One blocking GET (the CLI/supervisor list instruments before anything starts)."""
    import urllib.request

    with urllib.request.urlopen(url, timeout=timeout_s) as resp:
        return json.load(resp)


def select_pairs(
    venue: str, listed: Iterable[tuple[str, str, str]], quotes: Iterable[str] = (), types: Iterable[str] = ()
) -> list[str]:
    """``(pair, quote asset, type)`` candidates -> normalized pairs passing the quote / type filters
    (case-insensitive; empty = any). A name that cannot be a path component is skipped and logged."""
    want_quotes = {q.upper() for q in quotes}
    want_types = {t.lower() for t in types}
    out: dict[str, None] = {}
    for pair, quote, kind in listed:
        if want_quotes and quote.upper() not in want_quotes:
            continue
        if want_types and kind.lower() not in want_types:
            continue
        try:
            out[normalize_pair(pair)] = None
        except NameError_:
            log.warning("event=pair_skipped venue=%s pair=%s reason=unusable name", venue, pair)
    return list(out)
