"""The Binance simulators' REST API (spot ``/api/v3``, USD-M ``/fapi/v1``): depth snapshots,
``exchangeInfo``, ping and time, each charged against a per-IP REQUEST_WEIGHT budget, answered
with the venue's 429 (and 418 for a client that keeps coming back early) and weight headers."""

from __future__ import annotations

import json
import math
import re
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec
from aiohttp import web

from recorder.sim.binance_wire import illegal_symbol, json_error, levels, mandatory, now_ms
from recorder.sim.book import InstrumentSpec, Level
from recorder.sim.faults import FaultInjector
from recorder.sim.feed import SymbolFeed

if TYPE_CHECKING:
    from recorder.sim.options import SimOptions

BAN_DURATION_S = 120.0
SERVED_BOOKS_KEPT = 2000  # REST snapshot states kept for /sim/book (a few MB)

_SYMBOL_RE = re.compile(r"^[A-Z0-9\-_.]{1,20}$")


@dataclass
class IpWeightBudget:
    """One client IP's REQUEST_WEIGHT in the current window, and its back-off or ban."""

    minute: int = -1
    used: int = 0
    backoff_until: float = 0.0
    ignored: int = 0
    banned_until: float = 0.0


class BinanceRest:
    """The REST routes of ``BinanceVenue`` (a mixin: the venue holds the state named below)."""

    opts: SimOptions
    counters: dict[str, int]
    feeds: dict[str, SymbolFeed]
    faults: FaultInjector
    depth_limit_max: int
    id_scale: int
    _budgets: dict[str, IpWeightBudget]
    _served: OrderedDict[tuple[str, int], bytes]

    def _advance(self, feed: SymbolFeed, tick: int) -> None:
        raise NotImplementedError

    def _tick_now(self, feed: SymbolFeed | None = None) -> int:
        raise NotImplementedError

    def symbol_row(self, spec: InstrumentSpec) -> dict[str, Any]:
        raise NotImplementedError

    def exchange_info_extra(self) -> dict[str, Any]:
        raise NotImplementedError

    @staticmethod
    def _depth_weight(limit: int | None) -> int:
        return 5 if limit is None or limit <= 100 else 25 if limit <= 500 else 50 if limit <= 1000 else 250

    def _charge(self, request: web.Request, weight: int) -> tuple[web.Response | None, int]:
        """Per-IP REQUEST_WEIGHT per wall-clock window; returns (error response or None, used weight)."""
        self.counters["rest_requests"] += 1
        now = time.time()
        ip = request.remote or "?"
        b = self._budgets.setdefault(ip, IpWeightBudget())
        window = self.opts.weight_window_s
        minute = int(now // window)
        if b.minute != minute:
            b.minute, b.used = minute, 0
        if b.banned_until > now:
            return self._banned(b, now), b.used
        if b.backoff_until > now:  # told to back off, came back early
            b.ignored += 1
            if self.opts.ban_after_ignored_429s > 0 and b.ignored >= self.opts.ban_after_ignored_429s:
                b.banned_until = now + BAN_DURATION_S
                return self._banned(b, now), b.used
            return self._too_many(b, now), b.used
        if b.used + weight > self.opts.weight_limit_per_min:
            b.backoff_until = (minute + 1) * window
            return self._too_many(b, now), b.used
        b.ignored = 0
        b.used += weight
        return None, b.used

    def _too_many(self, b: IpWeightBudget, now: float) -> web.Response:
        limit = self.opts.weight_limit_per_min
        msg = (
            f"Too much request weight used; current limit is {limit} request weight per 1 MINUTE. "
            "Please use WebSocket Streams for live updates to avoid polling the API."
        )
        return self._refuse(429, msg, b.backoff_until - now)

    def _banned(self, b: IpWeightBudget, now: float) -> web.Response:
        msg = (
            f"Way too much request weight used; IP banned until {int(b.banned_until * 1000)}. "
            "Please use WebSocket Streams for live updates to avoid bans."
        )
        return self._refuse(418, msg, b.banned_until - now)

    def _refuse(self, status: int, msg: str, retry_after_s: float) -> web.Response:
        """A 429 (back off) or 418 (banned), counted, with the seconds to wait in Retry-After."""
        self.counters[f"http_{status}"] += 1
        resp = json_error(status, -1003, msg)
        resp.headers["Retry-After"] = str(max(1, math.ceil(retry_after_s)))
        return resp

    def _with_weight(self, resp: web.Response, used: int) -> web.Response:
        resp.headers[f"X-MBX-USED-WEIGHT-{interval_code(self.opts.weight_window_s)}"] = str(used)
        if resp.status == 400:
            self.counters["http_400"] += 1
        return resp

    async def _rest_depth(self, request: web.Request) -> web.Response:
        q = request.query
        raw_limit = q.get("limit")
        limit: int | None = 100
        if raw_limit is not None:
            limit = int(raw_limit) if raw_limit.isdigit() and len(raw_limit) <= 20 else None
            if limit is not None and not 1 <= limit <= self.depth_limit_max:
                limit = None
        weight = self._depth_weight(limit)
        err, used = self._charge(request, weight)
        if err is not None:
            return self._with_weight(err, used)
        if limit is None:
            msg = f"Illegal characters found in parameter 'limit'; legal range is '1' to '{self.depth_limit_max}'."
            return self._with_weight(json_error(400, -1100, msg), used)
        symbol = q.get("symbol")
        if not symbol:
            return self._with_weight(mandatory("symbol"), used)
        if not _SYMBOL_RE.match(symbol):
            return self._with_weight(illegal_symbol(), used)
        feed = self.feeds.get(symbol)
        if feed is None:
            return self._with_weight(json_error(400, -1121, "Invalid symbol."), used)
        refused = await self.faults.rest_fault()
        if refused is not None:
            return refused
        # Catch the generator up to *now*: the snapshot reflects mid-window state, so its lastUpdateId
        # normally lies inside the next diff's [U, u] (the straddle a client must handle).
        self._advance(feed, self._tick_now(feed))
        bids, asks = feed.book.top(limit)
        self._served[(symbol, feed.last_id)] = feed.book.encode()
        while len(self._served) > SERVED_BOOKS_KEPT:
            self._served.popitem(last=False)
        self.counters["snapshots_served"] += 1
        body = msgspec.json.encode(self._snapshot_body(feed.last_id, bids, asks))
        return self._with_weight(web.Response(body=body, content_type="application/json"), used)

    def _snapshot_body(self, last_id: int, bids: list[Level], asks: list[Level]) -> dict[str, Any]:
        return {"lastUpdateId": last_id * self.id_scale, "bids": levels(bids), "asks": levels(asks)}

    async def _rest_exchange_info(self, request: web.Request) -> web.Response:
        err, used = self._charge(request, 20)
        if err is not None:
            return self._with_weight(err, used)
        q = request.query
        if "symbol" in q and "symbols" in q:
            msg = "Combination of optional parameters invalid."
            return self._with_weight(json_error(400, -1128, msg), used)
        if "symbol" in q:
            wanted = [q["symbol"]]
        elif "symbols" in q:
            try:
                wanted = json.loads(q["symbols"])
            except ValueError:
                wanted = None
            if not isinstance(wanted, list) or not wanted or not all(isinstance(s, str) for s in wanted):
                msg = "Illegal characters found in parameter 'symbols'; legal range is '^\\[(\"[A-Z0-9-_.]{1,20}\"(,\"[A-Z0-9-_.]{1,20}\"){0,}){0,1}\\]$'."  # noqa: E501
                return self._with_weight(json_error(400, -1100, msg), used)
        else:
            wanted = list(self.feeds)
        if any(s not in self.feeds for s in wanted):
            return self._with_weight(json_error(400, -1121, "Invalid symbol."), used)
        info = {
            "timezone": "UTC",
            "serverTime": now_ms(),
            "rateLimits": [
                {"rateLimitType": "REQUEST_WEIGHT", **interval_fields(self.opts.weight_window_s),
                 "limit": self.opts.weight_limit_per_min},
                {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
                {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 61000},
            ],
            "exchangeFilters": [],
            "symbols": [self.symbol_row(self.feeds[s].spec) for s in dict.fromkeys(wanted)],
            **self.exchange_info_extra(),
        }  # fmt: skip
        return self._with_weight(web.Response(body=msgspec.json.encode(info), content_type="application/json"), used)

    async def _rest_ping(self, request: web.Request) -> web.Response:
        err, used = self._charge(request, 1)
        return self._with_weight(err or web.Response(body=b"{}", content_type="application/json"), used)

    async def _rest_time(self, request: web.Request) -> web.Response:
        err, used = self._charge(request, 1)
        body = msgspec.json.encode({"serverTime": now_ms()})
        return self._with_weight(err or web.Response(body=body, content_type="application/json"), used)


def interval_code(window_s: float) -> str:
    """Window -> the header suffix Binance uses: 60 -> ``1M``, 10 -> ``10S``."""
    w = round(window_s)
    return f"{w // 60}M" if w % 60 == 0 else f"{w}S"


def interval_fields(window_s: float) -> dict[str, Any]:
    w = round(window_s)
    return {"interval": "MINUTE", "intervalNum": w // 60} if w % 60 == 0 else {"interval": "SECOND", "intervalNum": w}
