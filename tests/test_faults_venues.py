"""Every simulator fault kind against the four WebSocket-snapshot venues (Bybit, Coinbase, Kraken,
OKX), through one real capture (supervisor, one process per venue, writer) of all four.

Each test injects one fault kind into every venue's simulator at once (``POST /sim/fault``, the
same API as Binance's) and checks, per venue: the fault is detected (the venue's own counter for
it moves), the capture recovers (every book synced again, samples flowing). The last test stops
the capture and proves nothing is torn or lost and every stored book equals its simulator's.
Binance's faults are covered by test_faults_e2e.py, kill -9 by test_capture_e2e.py and the demo.
"""

from __future__ import annotations

import signal
import subprocess
import time
import urllib.error
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from recorder.demo import SIM_SYMBOLS, VENUE_PAIRS, sim_book_url
from tests.conftest import VenueSim, assert_no_torn_files, popen_cli, read_jsonl, status, terminate, wait_for

VENUES = ["bybit", "coinbase", "kraken", "okx"]
SESSION = "venue-faults"
INTERVAL_MS = 500
pytestmark = pytest.mark.timeout(120)

Counter = Callable[[dict[str, Any], str], float]  # (venue status, pair) -> counter value


def venue_counter(name: str) -> Counter:
    return lambda v, _pair: float(v[name])


def pair_counter(name: str) -> Counter:
    return lambda v, pair: float(v["pairs"][pair][name])


def lost_update(venue: str) -> Counter:
    """Kraken has no sequence numbers: a lost update shows as the next one's checksum failure."""
    return pair_counter("checksums_failed" if venue == "kraken" else "gaps")


def corrupt_level(venue: str) -> Counter:
    """Kraken catches a wrong level by its checksum; the others by the crossed book it makes (OKX
    too: it sends ``checksum: 0`` today, as its simulator does by default)."""
    if venue == "kraken":
        return pair_counter("checksums_failed")
    return lambda v, _pair: float(v["missed_by_cause"]["crossed"])


class Capture:
    def __init__(self, tmp: Path) -> None:
        self.sims = {
            v: VenueSim(v, "--seed", str(20 + i), "--ping-interval", "1", "--symbols", SIM_SYMBOLS[v])
            for i, v in enumerate(VENUES)
        }
        self.data = tmp / "data"
        lines = [f'data_dir = "{self.data}"', f'session_id = "{SESSION}"', "depth = 20", 'format = "both"']
        for venue, sim in self.sims.items():
            lines += [
                "",
                f"[venues.{venue}]",
                "pairs = [" + ", ".join(f'"{p}"' for p in VENUE_PAIRS[venue]) + "]",
                f'ws_url = "{sim.urls["ws_url"]}"',
                f'rest_url = "{sim.urls["rest_url"]}"',
                "stall_timeout_s = 3.0",
                "lag_alert_s = 1.0",
            ]
        lines += ["", "[writer]", "rotate_seconds = 2.0"]
        cfg = tmp / "venues.toml"
        cfg.write_text("\n".join(lines) + "\n")
        self.proc: subprocess.Popen[str] = popen_cli("start-capture", "--config", str(cfg), "--interval", "0.5")

    def venues(self) -> dict[str, Any]:
        st = status(self.data, SESSION)
        return st["venues"] if st and st.get("venues") and set(st["venues"]) == set(VENUES) else {}

    def values(self, counter: Callable[[str], Counter]) -> dict[tuple[str, str], float]:
        vs = self.venues()
        return {(v, p): counter(v)(vs[v], p) for v in VENUES for p in VENUE_PAIRS[v]}

    def inject(self, **fault: Any) -> None:
        for sim in self.sims.values():
            record = sim.fault(**fault)
            assert record["kind"] == fault["kind"]

    def wait_moved(
        self, what: str, counter: Callable[[str], Counter], before: dict[tuple[str, str], float], per_pair: bool
    ) -> None:
        """Every venue (every pair, if ``per_pair``) shows the counter above ``before``."""

        def late() -> list[str]:
            now = self.values(counter)
            if per_pair:
                return [f"{v}/{p}" for (v, p), n in now.items() if n <= before[(v, p)]]
            # a venue-wide counter: one pair moving is the venue moving
            return [v for v in VENUES if all(now[(v, p)] <= before[(v, p)] for p in VENUE_PAIRS[v])]

        until(late, 40, f"{what} to be detected")

    def wait_recovered(self, timeout: float = 60) -> None:
        """Every pair of every venue synced and sampling again (a few new samples each)."""
        before = self.values(lambda _v: pair_counter("samples"))

        def behind() -> list[str]:
            vs = self.venues()
            return [
                f"{v}/{p}"
                for v in VENUES
                for p in VENUE_PAIRS[v]
                if not (vs[v]["pairs"][p]["synced"] and vs[v]["pairs"][p]["samples"] >= before[(v, p)] + 3)
            ]

        until(behind, timeout, "recovery")


def until(pending: Callable[[], list[str]], timeout: float, what: str) -> None:
    """Poll until ``pending()`` is empty; the failure names what is still pending."""
    deadline = time.monotonic() + timeout
    while left := pending():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}: still waiting for {', '.join(left)}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def cap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Capture]:
    c = Capture(tmp_path_factory.mktemp("venue-faults"))
    try:
        wait_for(
            lambda: (vs := c.venues()) and all(p in vs[v]["pairs"] for v in VENUES for p in VENUE_PAIRS[v]),
            90,
            "the capture's first status",
        )
        c.wait_recovered(90)  # the first sync of every book
        yield c
    finally:
        terminate(c.proc, 60)
        for sim in c.sims.values():
            sim.stop()


# kind -> (fault body, the counter that proves it was noticed, per pair?)
CASES: dict[str, tuple[dict[str, Any], Callable[[str], Counter], bool]] = {
    "drop": ({"kind": "drop"}, lambda _v: venue_counter("reconnects"), False),
    "close": ({"kind": "close", "code": 4000}, lambda _v: venue_counter("reconnects"), False),
    "malformed": ({"kind": "malformed"}, lambda _v: venue_counter("malformed"), False),
    "gap": ({"kind": "gap", "count": 1}, lost_update, True),
    "corrupt": ({"kind": "corrupt"}, corrupt_level, False),
    "stall": ({"kind": "stall", "duration_s": 5.0}, lambda _v: venue_counter("stalls"), False),
    "slow": ({"kind": "slow", "duration_s": 4.0, "rate": 2.0}, lambda _v: venue_counter("lag_alerts"), False),
    "restart": ({"kind": "restart", "duration_s": 2.0}, lambda _v: venue_counter("reconnects"), False),
}


@pytest.mark.parametrize("kind", list(CASES))
def test_fault_is_detected_counted_and_recovered(cap: Capture, kind: str) -> None:
    body, counter, per_pair = CASES[kind]
    reconnects = cap.values(lambda _v: venue_counter("reconnects"))
    resyncs = cap.values(lambda _v: pair_counter("resyncs"))
    evidence = cap.values(counter)
    cap.inject(**body)
    cap.wait_moved(kind, counter, evidence, per_pair)
    if kind in ("gap", "corrupt"):  # the damaged books (every pair for a gap) are synced afresh
        cap.wait_moved(f"{kind} resync", lambda _v: pair_counter("resyncs"), resyncs, per_pair)
    cap.wait_recovered()
    after = cap.values(lambda _v: venue_counter("reconnects"))
    if kind in ("malformed", "gap", "corrupt", "slow"):  # none of these is a reason to reconnect
        assert after == reconnects, (kind, reconnects, after)
    if kind == "malformed":  # a bad frame is skipped: no book is resynced for it
        assert cap.values(lambda _v: pair_counter("resyncs")) == resyncs
    if kind == "slow":
        wait_for(lambda: not any(v["lagging"] for v in cap.venues().values()), 60, "the feeds to catch up")


def test_rest_snapshot_faults_do_not_apply_and_change_nothing(cap: Capture) -> None:
    """These venues start their books from a WebSocket snapshot: a refused or delayed REST
    snapshot is recorded by the simulator, but no request of theirs is affected."""
    before = cap.venues()
    cap.inject(kind="rest_refuse", duration_s=3.0, code=503)
    cap.inject(kind="rest_delay", duration_s=3.0, delay_s=3.0)
    cap.wait_recovered()
    for venue, v in cap.venues().items():
        assert v["snapshots_fetched"] == 0 and v["rest_errors"] == 0, venue
        for name in ("reconnects", "resyncs", "gaps"):
            assert v[name] == before[venue][name], (venue, name)
    for sim in cap.sims.values():
        assert [f["kind"] for f in sim.injected()][-2:] == ["rest_refuse", "rest_delay"]


def test_stop_flushes_everything_untorn_and_books_match_the_simulators(cap: Capture) -> None:
    cap.proc.send_signal(signal.SIGTERM)
    assert cap.proc.wait(90) == 0, cap.proc.stderr.read()[-3000:] if cap.proc.stderr else ""
    final = status(cap.data, SESSION)
    assert final is not None and final["state"] == "stopped" and final["flushed"] is True
    assert_no_torn_files(cap.data)
    stored = read_jsonl(cap.data)
    assert len(stored) == final["writer"]["snapshots_written"]
    by_pair: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for s in stored:
        by_pair[(s["exchange"], s["pair"])].append(s)
    assert set(by_pair) == {(v, p) for v in VENUES for p in VENUE_PAIRS[v]}
    for (venue, pair), items in by_pair.items():
        v = final["venues"][venue]
        assert v["ring_drops"] == 0, venue
        items.sort(key=lambda s: s["sequence_number"])
        assert [s["sequence_number"] for s in items] == list(range(len(items))), (venue, pair)
        ts = [s["timestamp_ms"] for s in items]
        # Every tick from the first to the last is either stored or counted as missed.
        assert len(ts) + v["pairs"][pair]["missed_ticks"] == (ts[-1] - ts[0]) // INTERVAL_MS + 1, (venue, pair)
        sim = cap.sims[venue]
        for s in items:
            url = sim_book_url(sim.urls["sim_url"], venue, pair, s, 20)
            code, ref = sim.get(url[len(sim.urls["sim_url"]) :])
            if code != 200:
                raise AssertionError(f"{venue} simulator has no book for {pair} at {s['update_id']}: {ref}")
            assert [(float(p), float(q)) for p, q in ref["bids"]] == [(lv["price"], lv["qty"]) for lv in s["bids"]]
            assert [(float(p), float(q)) for p, q in ref["asks"]] == [(lv["price"], lv["qty"]) for lv in s["asks"]]


def test_unknown_symbol_or_venue_kind_is_refused(cap: Capture) -> None:
    """One API for all venues, with one-line errors: an unknown symbol, a kind this venue lacks."""
    for venue, sim in cap.sims.items():
        with pytest.raises(urllib.error.HTTPError) as err:
            sim.fault(kind="gap", symbol="NOPE")
        assert err.value.code == 400 and "unknown symbol" in err.value.read().decode(), venue
    with pytest.raises(urllib.error.HTTPError) as err:
        cap.sims["kraken"].fault(kind="notice")
    assert err.value.code == 400
