"""Bad input gives one clear line and a non-zero exit, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from recorder.config import ConfigError, build_config, parse_duration
from tests.conftest import Sim, popen_cli, run_cli, status, wait_for, write_config


def _assert_one_line_error(res, needle: str) -> None:
    assert res.returncode != 0
    assert "Traceback" not in res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr
    assert needle in lines[0], lines[0]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--venue", "nosuchvenue", "--pairs", "BTC-USDT"], "unknown venue"),
        (["--venue", "binance", "--pairs", "BTC/USDT/X"], "invalid pair"),
        (["--venue", "binance", "--pairs", "BTC-USDT", "--interval", "5ms"], "at least 10ms"),
        (["--venue", "binance", "--pairs", "BTC-USDT", "--interval", "soon"], "invalid interval"),
        (["--venue", "binance", "--pairs", "BTC-USDT", "--duration", "-3"], "invalid duration"),
        (["--venue", "binance", "--pairs", "BTC-USDT", "--session-id", "../etc"], "invalid session id"),
        (["--venue", "binance", "--pairs", "BTC-USDT", "--depth", "0"], "invalid depth"),
        (["--config", "/nonexistent/x.toml"], "config file not found"),
    ],
)
def test_bad_arguments(args: list[str], needle: str, tmp_path: Path) -> None:
    _assert_one_line_error(run_cli("start-capture", "--data-dir", str(tmp_path), *args), needle)


def test_bad_config_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("interval = [1,\n")
    _assert_one_line_error(run_cli("start-capture", "--config", str(bad)), "not valid TOML")
    unknown = tmp_path / "unknown.toml"
    unknown.write_text('intervall = "1s"\n[venues.binance]\npairs = ["BTC-USDT"]\n')
    _assert_one_line_error(run_cli("start-capture", "--config", str(unknown)), "intervall")


def test_unknown_pair_on_venue(sim: Sim, tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "c.toml", sim.urls, ["BTC-USDT", "FOO-BAR"], tmp_path / "d")
    _assert_one_line_error(
        run_cli("start-capture", "--config", str(cfg), "--duration", "5s"), "unknown pair(s) on binance: FOO-BAR"
    )


def test_unreachable_venue(tmp_path: Path) -> None:
    urls = {"ws_url": "ws://127.0.0.1:9", "rest_url": "http://127.0.0.1:9"}
    cfg = write_config(tmp_path / "c.toml", urls, ["BTC-USDT"], tmp_path / "d")
    _assert_one_line_error(run_cli("start-capture", "--config", str(cfg), "--duration", "5s"), "cannot reach")


def test_unwritable_data_dir(sim: Sim, tmp_path: Path) -> None:
    blocker = tmp_path / "afile"
    blocker.write_text("not a directory")
    cfg = write_config(tmp_path / "c.toml", sim.urls, ["BTC-USDT"], blocker / "data")
    _assert_one_line_error(run_cli("start-capture", "--config", str(cfg), "--duration", "5s"), "not writable")


def test_session_already_running(sim: Sim, tmp_path: Path) -> None:
    data = tmp_path / "data"
    cfg = write_config(tmp_path / "c.toml", sim.urls, ["BTC-USDT"], data)
    first = popen_cli("start-capture", "--config", str(cfg), "--session-id", "dup", "--duration", "60s")
    try:
        wait_for(lambda: (st := status(data, "dup")) and st["state"] == "running", 60, "first session")
        second = run_cli("start-capture", "--config", str(cfg), "--session-id", "dup", "--duration", "5s")
        _assert_one_line_error(second, "already running")
        # A different session id runs beside it.
        other = run_cli("start-capture", "--config", str(cfg), "--session-id", "other", "--duration", "3s")
        assert other.returncode == 0, other.stderr[-2000:]
    finally:
        first.terminate()
        first.wait(60)


def test_status_and_stop_of_unknown_session(tmp_path: Path) -> None:
    _assert_one_line_error(run_cli("capture-status", "--session-id", "nope", "--data-dir", str(tmp_path)), "no session")
    _assert_one_line_error(run_cli("stop-capture", "--session-id", "nope", "--data-dir", str(tmp_path)), "no session")


def test_duration_forms() -> None:
    assert parse_duration(10) == 600.0
    assert parse_duration("30s") == 30.0
    assert parse_duration("10m") == 600.0
    assert parse_duration("2h") == 7200.0
    assert parse_duration("500ms", default_unit="s") == 0.5
    with pytest.raises(ConfigError):
        parse_duration("ten minutes")


def test_cli_flags_override_file_and_default_session_id(tmp_path: Path) -> None:
    raw = {"interval": "2s", "depth": 5, "venues": {"binance": {"pairs": ["btc-usdt"], "ws_url": "ws://x"}}}
    cfg = build_config(raw, {"depth": 10, "venue": "binance", "pairs": ["BTC-USDT", "eth/usdt"]})
    assert cfg.interval_s == 2.0 and cfg.depth == 10
    assert cfg.venues["binance"].pairs == ["BTC-USDT", "ETH-USDT"]
    assert cfg.venues["binance"].ws_url == "ws://x"  # the file's endpoint survives a --pairs override
    assert cfg.resolved_session_id() == "binance_BTC-USDT_ETH-USDT"
