"""Binance USD-M futures simulator: the spot simulator with futures ids, routes and fields.

Differences from spot (shared/venue-protocols.md section 2): REST under ``/fapi/v1`` (depth limit
up to 1000, futures weights), the WebSocket also under ``/public`` (the 2026 URL split), diffs carry
``T`` and ``pu`` (the previous event's ``u``), and update ids are not contiguous per symbol (wire id
= generator id x 10, each event's ``U`` lies between ``pu`` and ``u``), so only a client that
chains on ``pu`` keeps its book.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from recorder.sim import binance
from recorder.sim.binance import BinanceVenue, _levels
from recorder.sim.book import Level, WindowDiff

if TYPE_CHECKING:
    from recorder.sim.server import SimOptions

DEPTH_LIMITS = (5, 10, 20, 50, 100, 500, 1000)


class BinanceFuturesVenue(BinanceVenue):
    name = "binance-futures"
    rest_prefix = "/fapi/v1"
    depth_limit_max = 1000
    id_scale = 10
    ws_prefixes = ("", "/public")

    def _diff_event(self, sym: str, event_ms: int, diff: WindowDiff) -> dict[str, Any]:
        k = self.id_scale
        return {
            "e": "depthUpdate", "E": event_ms, "T": event_ms - 2, "s": sym,
            "U": diff.first_id * k - k // 2, "u": diff.last_id * k, "pu": (diff.first_id - 1) * k,
            "b": _levels(diff.bids), "a": _levels(diff.asks),
        }  # fmt: skip

    @staticmethod
    def _depth_weight(limit: int | None) -> int:
        if limit is None or limit <= 50:
            return 2
        return 5 if limit <= 100 else 10 if limit <= 500 else 20

    def _snapshot_body(self, last_id: int, bids: list[Level], asks: list[Level]) -> dict[str, Any]:
        body = super()._snapshot_body(last_id, bids, asks)
        # Futures snapshots also carry message and transaction times.
        return {"lastUpdateId": body["lastUpdateId"], "E": 0, "T": 0, "bids": body["bids"], "asks": body["asks"]}


def replay_routes(app: web.Application, symbols: list[str]) -> None:
    binance.replay_routes(app, symbols, BinanceFuturesVenue)


def create_venue(opts: SimOptions) -> BinanceFuturesVenue:
    return BinanceFuturesVenue(opts)
