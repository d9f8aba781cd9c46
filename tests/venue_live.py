"""Helpers for venue tests: recorded captures, capture configs (and ``VenueSim`` from conftest)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from tests.conftest import VenueSim as VenueSim  # (re-exported: the venue tests import it from here)
from tests.conftest import read_jsonl, running_cli, status, stop_cli, wait_for

RECORDINGS = Path(__file__).resolve().parent / "data" / "recordings"


_KIND = {"ws": "recv", "sent": "send", "http": "http", "connect": "connect"}


def read_jsonl_zst(path: Path) -> Iterator[dict[str, Any]]:
    """A capture read by ``recorder.replay.readers``, as dicts: t (recv/send/http/connect), conn, ts, data, addr."""
    from recorder.replay.readers import CaptureReader

    reader = CaptureReader(path, strict=True)
    for rec in reader:
        yield {
            "t": _KIND[rec.kind.value],
            "conn": rec.conn,
            "ts": rec.recv_ms / 1000.0,
            "data": rec.payload.decode(),
            "addr": rec.url,
        }


def write_venue_config(
    path: Path, venue: str, urls: dict[str, str], pairs: list[str], data_dir: Path, **top: Any
) -> Path:
    lines = [f'data_dir = "{data_dir}"']
    lines += [f"{k} = {json.dumps(v)}" for k, v in top.items()]
    lines += [
        "",
        f"[venues.{venue}]",
        f"pairs = {json.dumps(pairs)}",
        f'ws_url = "{urls["ws_url"]}"',
        f'rest_url = "{urls["rest_url"]}"',
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def levels(side: list[list[str]]) -> list[tuple[float, float]]:
    return [(float(p), float(q)) for p, q in side]


def stored_levels(side: list[dict[str, float]]) -> list[tuple[float, float]]:
    return [(lv["price"], lv["qty"]) for lv in side]


def pairs_status(data: Path, session: str, venue: str) -> dict[str, Any]:
    """The per-pair counters of ``venue`` in the session's status file ({} until written)."""
    st = status(data, session)
    return st["venues"][venue]["pairs"] if st and st.get("venues") else {}


def capture_through_a_gap(
    tmp_path: Path,
    sim: VenueSim,
    venue: str,
    pairs: list[str],
    gap: tuple[str, str],
    after_gap: Callable[[], None] = lambda: None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A live capture at 250 ms with one sequence gap injected into one market, ``gap`` =
    (simulator symbol, recorder pair), with a slow (1.5 s) resubscription: that pair must miss
    ticks meanwhile, alone. Checks what every such venue must show, then returns the venue's
    final status and the stored snapshots for the venue's own checks."""
    data = tmp_path / "data"
    fault_symbol, faulted = gap
    cfg = write_venue_config(tmp_path / "c.toml", venue, sim.urls, pairs, data)

    def min_samples() -> float:
        st = pairs_status(data, "gap", venue)
        return min((p["samples"] for p in st.values()), default=0) if len(st) == len(pairs) else 0

    with running_cli("start-capture", "--config", str(cfg), "--interval", "0.25", "--session-id", "gap") as proc:
        wait_for(lambda: min_samples() >= 12, 90, "samples of every pair")
        assert sim.fault(kind="gap", symbol=fault_symbol, hold_s=1.5)["connections"] == 1
        wait_for(
            lambda: (p := pairs_status(data, "gap", venue)[faulted])["gaps"] >= 1 and p["resyncs"] >= 2,
            60,
            "gap detected and resynced",
        )
        after_gap()
        before = pairs_status(data, "gap", venue)[faulted]["samples"]
        wait_for(lambda: pairs_status(data, "gap", venue)[faulted]["samples"] >= before + 8, 60, "samples")
        stop_cli(proc, timeout=60)
    final = status(data, "gap")
    assert final is not None and final["flushed"] is True
    counters = final["venues"][venue]
    # Only the faulted pair saw the gap. resyncs count every sync: the first, and the one after it.
    assert counters["pairs"][faulted]["gaps"] == 1 and counters["pairs"][faulted]["resyncs"] == 2
    cause = counters["missed_by_cause"]
    # Ticks missed for want of a synced book are the faulted pair's alone; the others miss a tick
    # only if the whole process was late (a loaded machine), never because of the gap.
    assert 2 <= cause["not_synced"] <= counters["pairs"][faulted]["missed_ticks"]
    for pair in pairs:
        if pair != faulted:
            p = counters["pairs"][pair]
            assert p["gaps"] == 0 and p["resyncs"] == 1, (pair, p)
            assert p["missed_ticks"] <= cause["late"] + cause["restart"], (pair, p, cause)
    assert counters["reconnects"] == 0
    stored = read_jsonl(data)
    assert len(stored) == counters["samples"]
    return counters, stored


class LiveConnector:
    """A venue's real connector running against its simulator (``live_connector``): ``got``
    collects what its ``on_trade`` or ``on_quote`` emits."""

    def __init__(self, sim: Any, connector: Any, got: list[Any]) -> None:
        self.sim, self.connector, self.got = sim, connector, got
        self.task = asyncio.create_task(connector.run())

    async def finish(self) -> None:
        """Close the connector and wait for its run to end (what it emitted is all in ``got``)."""
        await self.connector.close()
        await asyncio.wait_for(self.task, 10)


@asynccontextmanager
async def live_connector(
    venue: str, pairs: list[str], symbols: list[str], seed: int, emits: str
) -> AsyncIterator[LiveConnector]:
    """``venue``'s simulator (``symbols``: its names of ``pairs``; Bybit's carry their category)
    and the venue's connector over loopback, its ``emits`` callback (``on_trade``/``on_quote``)
    collecting; both stopped on exit, whatever happened."""
    from recorder.config import VenueConfig
    from recorder.sim.server import SimOptions, Simulator
    from recorder.venues import connector_class

    names = symbols if venue == "bybit" else [s.partition(":")[2] or s for s in symbols]
    sim = Simulator(SimOptions(venue=venue, port=0, seed=seed, symbols=names))
    await sim.start()
    cfg = VenueConfig(pairs=pairs, ws_url=sim.urls["ws_url"], rest_url=sim.urls["rest_url"])
    connector = connector_class(venue)(cfg, pairs, None)
    got: list[Any] = []
    setattr(connector, emits, got.append)
    live = LiveConnector(sim, connector, got)
    try:
        yield live
    finally:
        await connector.close()
        live.task.cancel()
        await sim.stop()
