"""Each venue's published limits, as data: the connector and the REST limiter read them here.

Numbers come from the venues' published API docs; ``None`` marks a limit the
venue does not publish. Venues that start every book from a WebSocket snapshot (Coinbase, Kraken,
OKX, Bybit) take no REST snapshot, so their ``snapshot_weights`` are empty. A venue that publishes
its live limits (Binance's exchangeInfo ``rateLimits``) overrides the REST budget at start-up;
config files can override any of them (``max_streams_per_connection``, ``rest_weight_limit``...).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class VenueLimits:
    # REST: weight budget per window (per IP), and the weight of one book snapshot by depth.
    rest_weight_limit: int
    rest_window_s: float
    # ((max depth, weight), ...) ascending; a depth above the last bound costs the last weight.
    # Empty: the venue's books sync from WS snapshots, no REST snapshot is ever taken.
    snapshot_weights: tuple[tuple[int, int], ...]
    # Header prefix carrying the weight the venue has counted for this IP (None: not sent).
    used_weight_header: str | None
    # WebSocket: streams (one per book) a connection may carry, subscribe batching and pacing.
    streams_per_connection: int
    subscriptions_per_message: int
    messages_per_s: float | None  # client -> venue messages (pongs and subscribes count)
    connections_per_ip: int | None
    connection_attempts_per_5min: int | None
    # The venue's hard connection lifetime; planned reconnects happen before it.
    max_connection_age_s: float | None
    # Part of the REST budget we allow ourselves: others (another tool, a human) share the IP.
    rest_safety: float = 0.8
    # REST snapshot depths the venue accepts (empty: any from 1 to the last weight bound).
    snapshot_limits: tuple[int, ...] = ()

    def snapshot_limit_error(self, limit: int) -> str | None:
        """Why the venue would refuse a snapshot ``limit`` (None: it accepts it)."""
        if self.snapshot_limits:
            if limit in self.snapshot_limits:
                return None
            return f"snapshot_limit {limit} is not one the venue accepts: {', '.join(map(str, self.snapshot_limits))}"
        top = self.snapshot_weights[-1][0]
        return None if 1 <= limit <= top else f"snapshot_limit {limit} is out of the venue's range: 1 to {top}"

    def default_snapshot_limit(self, pairs: int) -> int:
        """The deepest snapshot whose first sync of ``pairs`` books fits in two windows of budget.

        A deep snapshot covers a range the price takes long to outrun (fewer refetches, fewer
        samples short of the depth); a universe takes the depth its budget allows, so that its
        first sync still takes minutes, not an hour."""
        budget = 2 * self.rest_weight_limit * self.rest_safety
        bounds = self.snapshot_limits or tuple(b for b, _ in self.snapshot_weights)
        for limit in sorted(bounds, reverse=True):
            if max(1, pairs) * self.snapshot_weight(limit) <= budget:
                return limit
        return min(bounds)

    def snapshot_weight(self, depth: int) -> int:
        if not self.snapshot_weights:
            raise ValueError("this venue takes no REST snapshot (books sync from WS snapshots)")
        for bound, weight in self.snapshot_weights:
            if depth <= bound:
                return weight
        return self.snapshot_weights[-1][1]


BINANCE = VenueLimits(
    rest_weight_limit=6000,
    rest_window_s=60.0,
    snapshot_weights=((100, 5), (500, 25), (1000, 50), (5000, 250)),
    used_weight_header="X-MBX-USED-WEIGHT-",
    streams_per_connection=1024,
    # Undocumented per message; 200 keeps a SUBSCRIBE frame well under the 64 KiB frame limit.
    subscriptions_per_message=200,
    messages_per_s=5.0,
    connections_per_ip=300,
    connection_attempts_per_5min=300,
    max_connection_age_s=24 * 3600.0,
)

BINANCE_FUTURES = VenueLimits(
    rest_weight_limit=2400,
    rest_window_s=60.0,
    snapshot_weights=((50, 2), (100, 5), (500, 10), (1000, 20)),
    used_weight_header="X-MBX-USED-WEIGHT-",
    streams_per_connection=1024,
    subscriptions_per_message=200,
    messages_per_s=10.0,
    connections_per_ip=300,
    connection_attempts_per_5min=300,
    max_connection_age_s=24 * 3600.0,
    snapshot_limits=(5, 10, 20, 50, 100, 500, 1000),  # GET /fapi/v1/depth refuses any other
)

# Advanced Trade (docs.cdp.coinbase.com .../websocket-rate-limits, .../rest-api-rate-limits).
COINBASE = VenueLimits(
    rest_weight_limit=10,  # public REST endpoints: 10 requests/s per IP
    rest_window_s=1.0,
    snapshot_weights=(),  # the WS ``snapshot`` event is the only valid start (no REST stitching)
    used_weight_header=None,
    # No published cap. One product per connection is ours: ``sequence_num`` is one counter per
    # connection, so a gap drops every book on it; one each keeps the blast radius to one book.
    streams_per_connection=1,
    subscriptions_per_message=1,
    messages_per_s=8.0,  # unauthenticated messages: 8/s per IP (the connector paces the whole IP)
    connections_per_ip=None,  # not published (only the rate, below)
    connection_attempts_per_5min=8 * 300,  # 8 connections/s per IP (750/s on another page: design for 8)
    max_connection_age_s=None,
)

# Spot WS v2 (docs.kraken.com guides/spot-ratelimits, spot-rest-ratelimits).
KRAKEN = VenueLimits(
    rest_weight_limit=1,  # public REST: about 1 call/s per IP
    rest_window_s=1.0,
    snapshot_weights=(),  # ``book`` subscriptions start with a WS snapshot
    used_weight_header=None,
    # Not published; the message rate limit is dynamic. 200 symbols keep one subscribe's snapshot
    # burst well inside it (and one request carries them all).
    streams_per_connection=200,
    subscriptions_per_message=200,
    messages_per_s=None,  # dynamic ("Exceeded msg rate" when over)
    connections_per_ip=None,
    connection_attempts_per_5min=75,  # Cloudflare: about 150 (re)connections per rolling 10 min per IP
    max_connection_age_s=None,
)

# v5 public (okx.com/docs-v5 "WebSocket" / "Rate limit").
OKX = VenueLimits(
    rest_weight_limit=20,  # /api/v5/public/instruments: 20 requests per 2 s per IP
    rest_window_s=2.0,
    snapshot_weights=(),  # REST books carry no seqId to align with the stream: sync from WS snapshot
    used_weight_header=None,
    streams_per_connection=29,  # "fewer than 30" deep-book channels per connection
    subscriptions_per_message=29,  # one subscribe's args (total under 64 KiB) carries them all
    messages_per_s=480 / 3600,  # 480 subscribe/unsubscribe/login requests per connection per hour
    connections_per_ip=None,  # not published for public channels
    connection_attempts_per_5min=3 * 300,  # 3 connection requests/s per IP
    max_connection_age_s=None,
)

# v5 (bybit-exchange/docs: websocket/public/orderbook, rate-limit/rate-limit, "Connect").
BYBIT = VenueLimits(
    rest_weight_limit=600,  # 600 requests per 5 s per IP
    rest_window_s=5.0,
    snapshot_weights=(),  # ``orderbook.{depth}`` sends its own snapshot; REST is not used
    used_weight_header=None,
    # No published cap per connection: one subscribe args array < 21,000 characters instead.
    streams_per_connection=1000,
    subscriptions_per_message=10,  # spot accepts at most 10 args per request (linear more)
    messages_per_s=None,  # not published for public streams
    connections_per_ip=1000,  # market-data connections per IP per market
    connection_attempts_per_5min=500,  # per domain
    max_connection_age_s=None,
)

# venue id -> limits.
LIMITS: dict[str, VenueLimits] = {
    "binance": BINANCE,
    "binance-futures": BINANCE_FUTURES,
    "coinbase": COINBASE,
    "kraken": KRAKEN,
    "okx": OKX,
    "bybit": BYBIT,
}


def limits_for(venue: str) -> VenueLimits:
    return LIMITS[venue]


def interval_seconds(num: int, letter: str) -> float:
    """``(1, "M")`` -> 60.0: Binance's ``X-MBX-USED-WEIGHT-1M`` / rateLimits interval notation."""
    unit = {"S": 1.0, "M": 60.0, "H": 3600.0, "D": 86400.0}[letter.upper()[:1]]
    return num * unit
