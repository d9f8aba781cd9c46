"""The demo's fault plan: which faults it injects in which order, how each is injected (a
simulator fault body, or a kill -9), which status counter proves it was noticed, and which faults
can move each counter (so one fault's evidence is never credited to another)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class DemoError(RuntimeError):
    pass


# Order chosen so that a fault is not followed at once by another that moves the same counter.
FAULT_ORDER = [
    "drop",
    "slow",
    "malformed",
    "gap",
    "close",
    "corrupt",
    "stall",  # followed by a fault that leaves the feed alone: the reconnect takes a while
    "kill_writer",
    "kill_venue",
    "rest_refuse",
    "restart",
    "rest_delay",
]
# fault kind -> (where the evidence is, counter): "venue" counters are per venue, "writer" the writer's.
# VENUE_DETECTORS overrides a kind's counter for one venue.
DETECTORS: dict[str, tuple[str, str]] = {
    "drop": ("venue", "reconnects"),
    "close": ("venue", "reconnects"),
    "restart": ("venue", "reconnects"),
    "stall": ("venue", "stalls"),
    "malformed": ("venue", "malformed"),
    "gap": ("venue", "gaps"),
    "corrupt": ("venue", "resyncs"),
    "slow": ("venue", "lag_alerts"),
    "rest_refuse": ("venue", "rest_errors"),
    "rest_delay": ("venue", "rest_errors"),
    "kill_venue": ("venue", "restarts"),
    "kill_writer": ("writer", "restarts"),
}
# Kraken has no sequence numbers: a lost update shows as a checksum failure of the next one.
VENUE_DETECTORS: dict[tuple[str, str], str] = {("kraken", "gap"): "checksums_failed"}
# Simulator fault bodies (POST /sim/fault). REST faults come with a gap so a snapshot is needed.
SIM_FAULTS: dict[str, list[dict[str, Any]]] = {
    "drop": [{"kind": "drop"}],
    "close": [{"kind": "close", "code": 1011}],
    "restart": [{"kind": "restart", "duration_s": 2.0}],
    "stall": [{"kind": "stall", "duration_s": 4.0}],
    "malformed": [{"kind": "malformed"}],
    "gap": [{"kind": "gap", "count": 1}],
    "corrupt": [{"kind": "corrupt"}],
    "slow": [{"kind": "slow", "duration_s": 3.0, "rate": 2.0}],
    "rest_refuse": [{"kind": "rest_refuse", "duration_s": 3.0, "code": 503}, {"kind": "gap", "count": 1}],
    "rest_delay": [{"kind": "rest_delay", "duration_s": 3.0, "delay_s": 3.0}, {"kind": "gap", "count": 1}],
}
# counter -> the fault kinds that can move it: a fault's evidence is only taken up to the next
# injection of one of these, so one fault's effect is never credited to another.
AFFECTS: dict[str, set[str]] = {
    "reconnects": {"drop", "close", "restart", "stall"},
    "stalls": {"stall"},
    "malformed": {"malformed"},
    "gaps": {"gap", "rest_refuse", "rest_delay"},
    "resyncs": set(FAULT_ORDER) - {"malformed", "kill_writer", "slow"},
    "checksums_failed": {"gap", "corrupt", "rest_refuse", "rest_delay"},
    "lag_alerts": {"slow", "stall"},
    "rest_errors": {"rest_refuse", "rest_delay"},
    "restarts": {"kill_venue", "kill_writer"},
}
FAULT_DURATION_S = {"stall": 4.0, "slow": 3.0, "rest_refuse": 3.0, "rest_delay": 3.0, "restart": 2.0}
RECOVERY_GRACE_S = 10.0  # a fault window: injection .. end of the fault + this


@dataclass
class Injection:
    kind: str
    at: float  # wall clock, s
    before: dict[str, float] = field(default_factory=dict)  # venue (or "writer") -> counter before
    after: dict[str, float] = field(default_factory=dict)
    detected: dict[str, bool] = field(default_factory=dict)
    at_next: dict[str, dict[str, float]] = field(default_factory=dict)  # next kind -> counters then
    not_applicable: set[str] = field(default_factory=set)  # venues the fault cannot touch
    note: str = ""

    @property
    def window(self) -> tuple[float, float]:
        return self.at, self.at + FAULT_DURATION_S.get(self.kind, 0.0) + RECOVERY_GRACE_S


def detector(venue: str, kind: str) -> str:
    """The status counter that proves ``kind`` was noticed on ``venue`` (or by the writer)."""
    return VENUE_DETECTORS.get((venue, kind), DETECTORS[kind][1])


def schedule(duration_s: float, warmup_s: float, tail_s: float) -> list[tuple[float, str]]:
    """(seconds after start, kind): every kind at least once, then round robin, ~30 s apart."""
    span = duration_s - warmup_s - tail_s
    if span <= 0:
        raise DemoError("the demo needs at least 1 minute")
    n = max(len(FAULT_ORDER), int(span // 30))
    step = span / n
    return [(warmup_s + i * step, FAULT_ORDER[i % len(FAULT_ORDER)]) for i in range(n)]
