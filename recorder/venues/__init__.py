"""Venue registry: venue id -> the module implementing it (imported lazily).

Every venue module has the same shape: ``VENUE``, wire structs, a sans-I/O ``Feed`` class (the
``Feed`` protocol in ``base.py``; ``replay`` drives it too), a ``*Connector`` class with
``run / close / book / request_resync`` that drives the Feed over picows, and
``check_pairs(rest_url, pairs)``, ``list_pairs(rest_url, quotes, types)`` for ``--pairs all``; for
replay also ``capture_pairs(frames, url=None)``. Each venue's limits are data in ``limits.py``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

VENUES: dict[str, str] = {
    "binance": "recorder.venues.binance",
    "binance-futures": "recorder.venues.binance_futures",
    "kraken": "recorder.venues.kraken",
    "okx": "recorder.venues.okx",
    "bybit": "recorder.venues.bybit",
    "coinbase": "recorder.venues.coinbase",
}


def venue_module(venue: str) -> ModuleType:
    return importlib.import_module(VENUES[venue])


def connector_class(venue: str) -> type:
    module = venue_module(venue)
    return module.CONNECTOR  # type: ignore[no-any-return]
