"""The REST limiter every venue's snapshot requests go through: a venue's weight budget per
window, shared fairly between pairs, paused by a 429/418 (README: "Whole universes")."""

from __future__ import annotations

import asyncio
import re
import time
from collections import OrderedDict, deque
from collections.abc import Mapping

from recorder.venues.limits import interval_seconds


class RateLimited(Exception):
    """The venue answered 429/418: the request was not served."""


class WeightLimiter:
    """Keeps REST requests within a venue's weight budget per window, queued fairly.

    * Our own spending is tracked over a sliding window (safe whatever the venue's window
      alignment or clock skew); the venue's used-weight header (e.g. ``X-MBX-USED-WEIGHT-1M``)
      adds what others on the same IP spent, until the venue's window rolls over.
    * Waiters are served round-robin across keys (pairs): a pair that keeps resyncing gets one
      request per turn and can never starve the others.
    * A 429/418 pauses every request until its ``Retry-After`` has passed.
    """

    def __init__(
        self,
        budget: int,
        window_s: float = 60.0,
        safety: float = 0.8,
        header_prefix: str | None = None,
        max_inflight: int = 4,
    ) -> None:
        # Few requests in flight: if our idea of the budget is wrong, only these few arrive after
        # the venue's first 429 (repeated violations are what turn into a 418 ban).
        self.max_inflight = max_inflight
        self._inflight_n = 0
        self.header_prefix = header_prefix.lower() if header_prefix else None
        self.configure(budget, window_s, safety)
        self._spent: deque[tuple[float, int]] = deque()
        self._spent_sum = 0
        # Two tiers, each round-robin across keys: urgent (a book nobody is sampling right now)
        # before background (a planned reconnect's new connection, while the old one samples).
        self._tiers: tuple[_Queues, _Queues] = (OrderedDict(), OrderedDict())
        self._inflight = 0
        self._reported: tuple[int, int] | None = None  # (venue window index, used weight)
        self._paused_until = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self.granted = 0
        self.rate_limited = 0
        self.banned = 0

    def configure(self, budget: int, window_s: float, safety: float = 0.8) -> None:
        self.limit = max(1, int(budget))
        self.window_s = float(window_s)
        self.safety = safety
        self.budget = max(1, int(budget * safety))

    # -- state --------------------------------------------------------------------------------

    @property
    def waiting(self) -> int:
        return sum(len(q) for tier in self._tiers for q in tier.values())

    def used(self) -> int:
        """Our best estimate of the weight the venue has counted right now."""
        self._expire(time.monotonic())
        return max(self._spent_sum, self._server_used())

    def _window_index(self) -> int:
        return int(time.time() // self.window_s)

    def _server_used(self) -> int:
        if self._reported is None or self._reported[0] != self._window_index():
            return 0
        return self._reported[1] + self._inflight

    def _expire(self, now: float) -> None:
        while self._spent and now - self._spent[0][0] >= self.window_s:
            self._spent_sum -= self._spent.popleft()[1]

    # -- requests -----------------------------------------------------------------------------

    def pause(self, seconds: float) -> None:
        self._paused_until = max(self._paused_until, time.monotonic() + max(0.0, seconds))
        self._schedule(seconds)

    async def acquire(self, weight: int, key: str = "", background: bool = False) -> None:
        """Wait for a turn within budget; the weight counts as spent from now."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queues = self._tiers[1 if background else 0]
        queues.setdefault(key, deque()).append((weight, fut))
        self._pump()
        try:
            await fut
        except asyncio.CancelledError:
            q = queues.get(key)
            if q is not None:
                try:
                    q.remove((weight, fut))
                except ValueError:
                    pass
                if not q:
                    del queues[key]
            if fut.done() and not fut.cancelled():
                # Granted just as we were cancelled: that weight is spent anyway.
                self._inflight = max(0, self._inflight - weight)
                self._inflight_n = max(0, self._inflight_n - 1)
            self._pump()
            raise

    def done(self, weight: int, status: int | None, headers: Mapping[str, str] | None) -> None:
        """A granted request finished (status None: no answer). Reads the venue's verdict."""
        self._inflight = max(0, self._inflight - weight)
        self._inflight_n = max(0, self._inflight_n - 1)
        if headers is not None:
            self.observe_headers(headers)
            if status in (429, 418):
                retry = _retry_after(headers)
                if retry is None:  # no hint: a 429 lasts until the window rolls, a ban longer
                    retry = self._until_next_window() + 1.0 if status == 429 else 120.0
                if status == 429:
                    self.rate_limited += 1
                else:
                    self.banned += 1
                self.pause(retry)
        self._pump()

    def observe_headers(self, headers: Mapping[str, str]) -> None:
        if self.header_prefix is None:
            return
        for name, value in headers.items():
            lname = name.lower()
            if not lname.startswith(self.header_prefix):
                continue
            m = _INTERVAL_RE.match(lname[len(self.header_prefix) :])
            if not m or not value.strip().isdigit():
                continue
            if abs(interval_seconds(int(m.group(1)), m.group(2)) - self.window_s) > 1e-6:
                continue
            self._reported = (self._window_index(), int(value))

    def _until_next_window(self) -> float:
        now = time.time()
        return (int(now // self.window_s) + 1) * self.window_s - now

    def _schedule(self, delay: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._timer = loop.call_later(max(0.01, delay), self._pump)

    def _pump(self) -> None:
        """Grant queued requests in round-robin order while the budget allows."""
        while True:
            queues = self._tiers[0] or self._tiers[1]
            if not queues:
                return
            now = time.monotonic()
            if now < self._paused_until:
                self._schedule(self._paused_until - now)
                return
            self._expire(now)
            if self._inflight_n >= self.max_inflight:
                return  # done() pumps again
            key, q = next(iter(queues.items()))
            weight, fut = q[0]
            if fut.done():  # cancelled waiter
                q.popleft()
                if not q:
                    del queues[key]
                continue
            local, server = self._spent_sum, self._server_used()
            nothing_spent = not self._spent and server == 0
            if max(local, server) + weight > self.budget and not nothing_spent:
                waits = []
                if local + weight > self.budget and self._spent:
                    waits.append(self.window_s - (now - self._spent[0][0]))
                if server + weight > self.budget:
                    waits.append(self._until_next_window() + 0.25)
                self._schedule(max(0.05, min(waits) if waits else 0.05))
                return
            q.popleft()
            del queues[key]
            if q:  # the key's next request goes to the back of the line
                queues[key] = q
            self._spent.append((now, weight))
            self._spent_sum += weight
            self._inflight += weight
            self._inflight_n += 1
            self.granted += 1
            fut.set_result(None)


_Queues = OrderedDict[str, deque[tuple[int, "asyncio.Future[None]"]]]
_INTERVAL_RE = re.compile(r"^(\d+)([smhd])$")


def _retry_after(headers: Mapping[str, str]) -> float | None:
    raw = headers.get("Retry-After")
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        return None
