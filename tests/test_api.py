"""The Python capture API (recorder.api): real supervisor, venue and writer processes on the embedded
simulator, started, watched and stopped from a program."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from recorder.api import AsyncCapture, Capture, CaptureError, ConfigError, read_status
from tests.conftest import read_jsonl, run_cli, wait_for

PAIRS = ["BTC-USDT", "ETH-USDT"]


def _samples(cap: Capture | AsyncCapture) -> dict[str, int]:
    c = cap.capture if isinstance(cap, AsyncCapture) else cap
    venues = c.status().get("venues") or {}
    return {p: v["samples"] for venue in venues.values() for p, v in venue["pairs"].items()}


def test_start_status_stop_and_cleanup_on_exception(tmp_path: Path) -> None:
    data = tmp_path / "data"
    cap = Capture(venue="binance", pairs=PAIRS, interval=0.25, data_dir=data, session_id="api1", simulate=True)
    with pytest.raises(RuntimeError, match="strategy blew up"):
        with cap:
            assert cap.running
            # start() returned with a first full status: the README's first status() line works.
            assert set(cap.status()["venues"]["binance"]["pairs"]) == set(PAIRS)
            # Watched from another process too: the CLI sees the same session.
            wait_for(lambda: all(n >= 4 for n in _samples(cap).values()) and len(_samples(cap)) == 2, 120, "samples")
            st = cap.status()
            assert st["state"] == "running" and set(st["venues"]["binance"]["pairs"]) == set(PAIRS)
            shown = json.loads(
                run_cli("capture-status", "--session-id", "api1", "--data-dir", str(data), "--json").stdout
            )
            assert shown["state"] == "running"
            raise RuntimeError("strategy blew up")
    # The exception stopped the capture, and it flushed everything it sampled.
    assert not cap.running
    final = read_status(data, "api1")
    assert final is not None and final["state"] == "stopped" and final["flushed"] is True
    stored = read_jsonl(data)
    assert len(stored) == final["venues"]["binance"]["samples"] == final["writer"]["snapshots_written"] > 0
    assert {s["pair"] for s in stored} == set(PAIRS)


def test_duration_ends_it_and_wait_returns_final_status(tmp_path: Path) -> None:
    data = tmp_path / "data"

    async def main() -> dict:
        async with AsyncCapture(
            {"interval": "500ms", "venues": {"binance": {"pairs": ["BTC-USDT"]}}},
            duration="4s",
            data_dir=data,
            session_id="api2",
            simulate=True,
            format="parquet",
        ) as cap:
            return await cap.wait(120)

    final = asyncio.run(main())
    assert final["state"] == "stopped" and final["flushed"] is True and final["stop_reason"] == "duration reached"
    assert final["venues"]["binance"]["pairs"]["BTC-USDT"]["samples"] > 0


def test_bad_settings_are_one_line_errors_and_start_nothing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with pytest.raises(ConfigError, match="invalid pair"):
        Capture(venue="binance", pairs=["not a pair"], data_dir=data)
    with pytest.raises(ConfigError, match="unknown venue"):
        Capture(venue="nowhere", pairs=["BTC-USDT"], data_dir=data)
    with pytest.raises(ConfigError, match="invalid duration"):
        Capture(venue="binance", pairs=["BTC-USDT"], duration="soon", data_dir=data)
    cap = Capture(venue="binance", pairs=["NOPE-USDT"], data_dir=data, session_id="api3", simulate=True)
    with pytest.raises(CaptureError) as err:
        cap.start()
    assert str(err.value) == "unknown pair(s) on binance: NOPE-USDT"
    assert not cap.running and read_status(data, "api3") is None


def test_stop_session_stops_a_capture_started_elsewhere(tmp_path: Path) -> None:
    """``stop_session`` (what ``stop-capture`` runs) stops a session another program started."""
    from recorder.api import stop_session

    data = tmp_path / "data"
    cap = Capture(
        venue="binance", pairs=["BTC-USDT"], interval="250ms", data_dir=data, session_id="api4", simulate=True
    )
    cap.start()
    try:
        wait_for(lambda: _samples(cap).get("BTC-USDT", 0) >= 3, 120, "samples")
        final = stop_session(data, "api4", timeout=120)
        assert final["state"] == "stopped" and final["flushed"] is True
        assert final["writer"]["snapshots_written"] == final["venues"]["binance"]["samples"] >= 3
        assert cap.wait(30)["flushed"] is True and not cap.running
        with pytest.raises(CaptureError, match="is not running"):
            stop_session(data, "api4")
    finally:
        cap._kill()
