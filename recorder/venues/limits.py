"""Each venue's published limits, as data: the connector and the REST limiter read them here.

Numbers come from the venues' docs (see ../shared/venue-protocols.md). A venue that publishes
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
    snapshot_weights: tuple[tuple[int, int], ...]
    # Header prefix carrying the weight the venue has counted for this IP (None: not sent).
    used_weight_header: str | None
    # WebSocket: streams (one per book) a connection may carry, subscribe batching and pacing.
    streams_per_connection: int
    subscriptions_per_message: int
    messages_per_s: float  # client -> venue messages (pongs and subscribes count)
    connections_per_ip: int
    connection_attempts_per_5min: int
    # The venue's hard connection lifetime; planned reconnects happen before it.
    max_connection_age_s: float | None
    # Part of the REST budget we allow ourselves: others (another tool, a human) share the IP.
    rest_safety: float = 0.8

    def snapshot_weight(self, depth: int) -> int:
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
)

# venue id -> limits; venues added later declare theirs here.
LIMITS: dict[str, VenueLimits] = {"binance": BINANCE, "binance-futures": BINANCE_FUTURES}


def limits_for(venue: str) -> VenueLimits:
    return LIMITS[venue]


def interval_seconds(num: int, letter: str) -> float:
    """``(1, "M")`` -> 60.0: Binance's ``X-MBX-USED-WEIGHT-1M`` / rateLimits interval notation."""
    unit = {"S": 1.0, "M": 60.0, "H": 3600.0, "D": 86400.0}[letter.upper()[:1]]
    return num * unit
