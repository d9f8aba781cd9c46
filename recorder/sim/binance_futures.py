"""Binance USD-M futures simulator: the spot simulator with futures ids, routes and fields.

Differences from spot (shared/venue-protocols.md section 2): REST under ``/fapi/v1`` (depth limit
up to 1000, futures weights), the WebSocket also under ``/public`` (the 2026 URL split), diffs carry
``T`` and ``pu`` (the previous event's ``u``), and update ids are not contiguous per symbol (wire id
= generator id x 10, each event's ``U`` lies between ``pu`` and ``u``), so only a client that
chains on ``pu`` keeps its book.

``exchangeInfo`` rows have the USD-M shape: ``contractType`` (``PERPETUAL``; a symbol named like
``BTCUSDT_260925`` is a delivery contract, ``CURRENT_QUARTER`` / ``NEXT_QUARTER``, delivered on
that date), ``deliveryDate``, ``pair``, ``marginAsset`` and the contract status in ``status``
(``TRADING`` unless ``SimOptions.symbol_status`` names another, e.g. ``SETTLING``).
"""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web

from recorder.sim.binance import BinanceVenue
from recorder.sim.binance_symbols import make_spec, quote_of
from recorder.sim.binance_wire import levels
from recorder.sim.book import InstrumentSpec, Level, WindowDiff, fmt_units

if TYPE_CHECKING:
    from recorder.sim.options import SimOptions

DEPTH_LIMITS = (5, 10, 20, 50, 100, 500, 1000)
PERPETUAL_DELIVERY_MS = 4133404800000  # what USD-M prints as a perpetual's deliveryDate (2100-12-25)
ONBOARD_MS = 1569398400000
_DELIVERY = re.compile(r"^([A-Z0-9]+)_(\d{6})$")


def delivery_ms(symbol: str) -> int | None:
    """``BTCUSDT_260925`` -> its delivery time (08:00 UTC that day, epoch ms); None for a perpetual."""
    m = _DELIVERY.match(symbol)
    if m is None:
        return None
    try:
        day = datetime.strptime(m[2], "%y%m%d").replace(hour=8, tzinfo=UTC)
    except ValueError:
        return None
    return int(day.timestamp() * 1000)


def _decimals(units: int) -> int:
    text = fmt_units(units).rstrip("0")
    return len(text.partition(".")[2])


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
            "b": levels(diff.bids), "a": levels(diff.asks),
        }  # fmt: skip

    def _trade_event(self, sym: str, event_ms: int, trade: tuple[int, int, int, bool, int]) -> dict[str, Any]:
        # The undocumented USD-M ``@trade`` (trades-protocols.md section 3): no ``M``, ``X`` the origin.
        tid, px, qty, buyer_maker, t_ms = trade
        return {
            "e": "trade", "E": event_ms, "T": t_ms, "s": sym, "t": tid, "p": fmt_units(px), "q": fmt_units(qty),
            "X": "MARKET", "m": buyer_maker,
        }  # fmt: skip

    @staticmethod
    def _depth_weight(limit: int | None) -> int:
        if limit is None or limit <= 50:
            return 2
        return 5 if limit <= 100 else 10 if limit <= 500 else 20

    def make_spec(self, symbol: str) -> InstrumentSpec:
        """A delivery contract trades like its perpetual (``BTCUSDT_260925`` like ``BTCUSDT``)."""
        if delivery_ms(symbol) is None:
            return make_spec(symbol)
        return dataclasses.replace(make_spec(symbol.partition("_")[0]), symbol=symbol)

    def _contract_type(self, symbol: str) -> str:
        due = delivery_ms(symbol)
        if due is None:
            return "PERPETUAL"
        pair = symbol.partition("_")[0]
        dates = sorted({d for s in self.feeds if s.startswith(pair + "_") and (d := delivery_ms(s)) is not None})
        return "CURRENT_QUARTER" if due == dates[0] else "NEXT_QUARTER"

    def symbol_row(self, spec: InstrumentSpec) -> dict[str, Any]:
        """A USD-M ``exchangeInfo`` row (contract type and status; no spot-only fields)."""
        return {
            "symbol": spec.symbol, "pair": spec.base + spec.quote, "contractType": self._contract_type(spec.symbol),
            "deliveryDate": delivery_ms(spec.symbol) or PERPETUAL_DELIVERY_MS, "onboardDate": ONBOARD_MS,
            "status": self.listing_status(spec.symbol), "maintMarginPercent": "2.5000",
            "requiredMarginPercent": "5.0000", "baseAsset": spec.base, "quoteAsset": spec.quote,
            "marginAsset": spec.quote, "pricePrecision": _decimals(spec.tick),
            "quantityPrecision": _decimals(spec.lot), "baseAssetPrecision": 8, "quotePrecision": 8,
            "underlyingType": "COIN", "underlyingSubType": [], "settlePlan": 0, "triggerProtect": "0.0500",
            "liquidationFee": "0.012500", "marketTakeBound": "0.05",
            "filters": [
                {"filterType": "PRICE_FILTER", "minPrice": fmt_units(spec.tick),
                 "maxPrice": fmt_units(spec.price * 100), "tickSize": fmt_units(spec.tick)},
                {"filterType": "LOT_SIZE", "minQty": fmt_units(spec.lot), "maxQty": "1000000",
                 "stepSize": fmt_units(spec.lot)},
            ],
            "orderTypes": ["LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET",
                           "TRAILING_STOP_MARKET"],
            "timeInForce": ["GTC", "IOC", "FOK", "GTX", "GTD"],
        }  # fmt: skip

    def exchange_info_extra(self) -> dict[str, Any]:
        return {"futuresType": "U_MARGINED"}

    def _snapshot_body(self, last_id: int, bids: list[Level], asks: list[Level]) -> dict[str, Any]:
        body = super()._snapshot_body(last_id, bids, asks)
        # Futures snapshots also carry message and transaction times.
        return {"lastUpdateId": body["lastUpdateId"], "E": 0, "T": 0, "bids": body["bids"], "asks": body["asks"]}


def replay_routes(app: web.Application, symbols: list[str]) -> None:
    """For a replayed recording: USD-M rows (with ``contractType``) for the recorded symbols."""

    async def exchange_info(request: web.Request) -> web.Response:
        rows = []
        for s in symbols:
            base, quote = quote_of(s.partition("_")[0])
            due = delivery_ms(s)
            rows.append({"symbol": s, "pair": base + quote, "contractType": "CURRENT_QUARTER" if due else "PERPETUAL",
                         "deliveryDate": due or PERPETUAL_DELIVERY_MS, "status": "TRADING", "baseAsset": base,
                         "quoteAsset": quote, "marginAsset": quote})  # fmt: skip
        return web.json_response({"timezone": "UTC", "futuresType": "U_MARGINED", "symbols": rows})

    app.router.add_get(f"{BinanceFuturesVenue.rest_prefix}/exchangeInfo", exchange_info)


def create_venue(opts: SimOptions) -> BinanceFuturesVenue:
    return BinanceFuturesVenue(opts)
