"""Every bad value a user can type: one `Error:` line, exit 2, no traceback, nothing stored changed.

Each case runs the real ``python cli.py ...`` in a fresh directory beside a data dir holding a
stopped session (files, status, journal); the data dir and the working directory must be byte
for byte the same afterwards (``--data-dir ""`` once wrote into the working directory).
"""

from __future__ import annotations

import hashlib
import json
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT, Sim, write_config
from tests.s3_support import isolate_aws_env

CLI = [sys.executable, str(ROOT / "cli.py")]
CAPTURE = ["start-capture", "--venue", "binance", "--pairs", "BTC-USDT", "--simulate", "--data-dir", "data"]
SESSION = "kept"


def run_in(cwd: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout, cwd=cwd)


def tree(path: Path) -> dict[str, str]:
    """Every file under ``path`` with a digest of its content."""
    return {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest() for p in path.rglob("*") if p.is_file()
    }


@pytest.fixture
def workdir(tmp_path: Path) -> Iterator[Path]:
    """A working directory with ``data/`` holding a stopped session recorded at 1 s, depth 20,
    plus files a user might point at by mistake; asserts afterwards that none of it changed."""
    data = tmp_path / "data"
    part = data / "parquet" / "exchange=binance" / "date=2026-12-01"
    part.mkdir(parents=True)
    (part / f"{SESSION}-1764547200000-0.parquet").write_bytes(b"PAR1 stored bytes PAR1")
    jpart = data / "jsonl" / "exchange=binance" / "date=2026-12-01"
    jpart.mkdir(parents=True)
    (jpart / f"{SESSION}-1764547200000-0.jsonl").write_text('{"pair": "BTC-USDT"}\n')
    sdir = data / ".sessions" / SESSION
    sdir.mkdir(parents=True)
    status = {"session_id": SESSION, "state": "stopped", "interval_s": 1.0, "depth": 20, "venues": {}}
    (sdir / "status.json").write_text(json.dumps(status))
    (tmp_path / "notutf8.toml").write_bytes(b'interval = "1s"\n\xff\xfe\n')
    (tmp_path / "bad.toml").write_text("interval = [1,\n")
    (tmp_path / "types.toml").write_text('depth = "deep"\n[venues.binance]\npairs = ["BTC-USDT"]\n')
    (tmp_path / "venues.toml").write_text("venues = 5\n")
    (tmp_path / "nan.toml").write_text('interval_s = nan\n[venues.binance]\npairs = ["BTC-USDT"]\n')
    (tmp_path / "inf.toml").write_text('[venues.binance]\npairs = ["BTC-USDT"]\n[writer]\nrotate_seconds = inf\n')
    (tmp_path / "huge.toml").write_text('[venues.binance]\npairs = ["BTC-USDT"]\nsnapshot_limit = 1' + "0" * 20 + "\n")
    (tmp_path / "ring.toml").write_text('[venues.binance]\npairs = ["BTC-USDT"]\n[writer]\nring_mb = 1e9\n')
    (tmp_path / "count.toml").write_text('[venues.binance]\npairs = ["BTC-USDT"]\n[writer]\nrotate_snapshots = 0\n')
    (tmp_path / "port.toml").write_text('metrics_port = 70000\n[venues.binance]\npairs = ["BTC-USDT"]\n')
    (tmp_path / "empty-dir.toml").write_text('data_dir = ""\n[venues.binance]\npairs = ["BTC-USDT"]\n')
    (tmp_path / "url.toml").write_text('[venues.binance]\npairs = ["BTC-USDT"]\nrest_url = "localhost:8080"\n')
    (tmp_path / "port-url.toml").write_text('[venues.okx]\npairs = ["BTC-USDT"]\nws_url = "ws://127.0.0.1:99999"\n')
    (tmp_path / "faults.json").write_text('[{"kind": "drop", "at_s": NaN}]')
    (data / ".sessions" / "partial").mkdir()
    (data / ".sessions" / "partial" / "status.json").write_text('{"session_id": "partial", "state": "stopped"}')
    (tmp_path / "afile").write_text("not a directory")
    (tmp_path / "adir").mkdir()
    before = tree(tmp_path)
    yield tmp_path
    assert tree(tmp_path) == before, "stored data or the working directory changed"


# (command line, text the one line must contain)
CASES: list[tuple[list[str], str]] = [
    # start-capture: numbers
    ([*CAPTURE, "--interval", "nan"], "invalid interval nan: must be a finite number"),
    ([*CAPTURE, "--interval", "inf"], "invalid interval inf: must be a finite number"),
    ([*CAPTURE, "--interval", "-1"], "invalid interval"),
    ([*CAPTURE, "--interval", "2h"], "at most 1h"),
    ([*CAPTURE, "--interval", "soon"], "invalid interval 'soon'"),
    ([*CAPTURE, "--duration", "nan"], "invalid duration nan: must be a finite number"),
    ([*CAPTURE, "--duration", "inf"], "invalid duration inf"),
    ([*CAPTURE, "--duration", "1e300"], "at most 366d"),
    ([*CAPTURE, "--duration", "0.5s"], "at least 1s"),
    ([*CAPTURE, "--duration", "3s", "--interval", "5s"], "at least 1s and one interval"),
    ([*CAPTURE, "--depth", "99999999999999999999"], "invalid depth"),
    ([*CAPTURE, "--metrics-port", "70000"], "'--metrics-port': 70000 is not in the range 0<=x<=65535"),
    ([*CAPTURE, "--metrics-port", "-1"], "'--metrics-port': -1 is not in the range"),
    ([*CAPTURE, "--log-level", "LOUD"], "'--log-level': 'LOUD' is not one of"),
    # start-capture: empty or ignored text
    (["start-capture", "--venue", "binance", "--pairs", "BTC-USDT", "--data-dir", ""], "empty data directory"),
    ([*CAPTURE, "--session-id", ""], "invalid session id ''"),
    ([*CAPTURE, "--s3-bucket", "my-bucket"], "--s3-bucket needs --storage s3"),
    ([*CAPTURE, "--s3-prefix", "x"], "--s3-prefix needs --storage s3"),
    ([*CAPTURE, "--storage", "s3", "--s3-bucket", ""], "'--s3-bucket': empty bucket name"),
    ([*CAPTURE, "--venue", ""], "invalid venue id ''"),
    ([*CAPTURE, "--pairs", ""], "has no pairs"),
    # start-capture: a session continued with other settings
    ([*CAPTURE, "--session-id", SESSION, "--interval", "2s"], f"'{SESSION}' was recorded with interval 1s, not 2s"),
    ([*CAPTURE, "--session-id", SESSION, "--depth", "5"], f"'{SESSION}' was recorded with depth 20, not 5"),
    # config files
    (["start-capture", "--config", "notutf8.toml"], "config file notutf8.toml is not UTF-8 text"),
    (["start-capture", "--config", "adir"], "'--config': File 'adir' is a directory"),
    (["start-capture", "--config", "bad.toml"], "is not valid TOML"),
    (["start-capture", "--config", "types.toml"], "Expected `int`, got `str` - at `$.depth`"),
    (["start-capture", "--config", "venues.toml"], "venues must be [venues.NAME] tables"),
    (["start-capture", "--config", "nan.toml"], "invalid interval nan: must be a finite number"),
    (["start-capture", "--config", "inf.toml"], "invalid writer.rotate_seconds: must be a finite number"),
    (["start-capture", "--config", "port.toml"], "invalid metrics port 70000"),
    (["start-capture", "--config", "huge.toml"], "invalid venues.binance.snapshot_limit: must be a finite"),
    (["start-capture", "--config", "ring.toml"], "invalid [writer] ring_mb = 1e+09: at most 16384"),
    (["start-capture", "--config", "count.toml"], "invalid [writer] rotate_snapshots = 0: at least 1"),
    (["start-capture", "--config", "empty-dir.toml"], "invalid data dir ''"),
    (["start-capture", "--config", "url.toml"], "invalid [venues.binance] rest_url 'localhost:8080'"),
    (["start-capture", "--config", "port-url.toml"], "invalid [venues.okx] ws_url 'ws://127.0.0.1:99999'"),
    (["systemd-unit", "--config", "notutf8.toml"], "is not UTF-8 text"),
    (["systemd-unit", "--config", "adir"], "is a directory"),
    (["compact", "--config", "notutf8.toml"], "is not UTF-8 text"),
    # stop-capture, capture-status, sessions
    (["stop-capture", "--session-id", SESSION, "--timeout", "-5"], "'--timeout': -5 must be above 0"),
    (["stop-capture", "--session-id", SESSION, "--timeout", "nan"], "'--timeout': 'nan' is not a finite number"),
    (["stop-capture", "--session-id", SESSION, "--timeout", "inf"], "'--timeout': 'inf' is not a finite number"),
    (["stop-capture", "--session-id", SESSION], f"session '{SESSION}' is not running"),
    (["stop-capture", "--session-id", ""], "invalid session id ''"),
    (["capture-status", "--session-id", SESSION, "--data-dir", ""], "empty data directory"),
    (["capture-status", "--session-id", SESSION, "--data-dir", "afile"], f"no session '{SESSION}'"),
    (["capture-status", "--session-id", "../x"], "invalid session id '../x'"),
    (["capture-status", "--session-id", "partial"], "status of session 'partial' is incomplete"),
    (["capture-status", "--session-id", SESSION, "--data-dir", "a\nb"], "under"),
    (["sessions", "--data-dir", ""], "empty data directory"),
    (["sessions", "--data-dir", "afile"], "no data directory"),
    # simulate
    (["simulate", "--port", "99999"], "'--port': 99999 is not in the range 0<=x<=65535"),
    (["simulate", "--port", "-1"], "'--port': -1 is not in the range"),
    (["simulate", "--symbols", "BTC USDT,../x"], "invalid symbol 'BTC USDT'"),
    (["simulate", "--symbols", "BTCUSDT,../x"], "invalid symbol '../X'"),
    (["simulate", "--symbols", ","], "--symbols is empty"),
    (["simulate", "--instruments", "-5"], "'--instruments': -5 is not in the range 0<=x<=10000"),
    (["simulate", "--speed", "nan"], "'--speed': 'nan' is not a finite number"),
    (["simulate", "--weight-window", "0"], "'--weight-window': 0 must be above 0"),
    (["simulate", "--ping-interval", "inf"], "'--ping-interval': 'inf' is not a finite number"),
    (["simulate", "--host", ""], "empty host"),
    (["simulate", "--host", "../x"], "cannot serve on ../x:0"),
    (["simulate", "--venue", "nope"], "does not serve venue 'nope'"),
    (["simulate", "--faults", "faults.json"], "times must be finite"),
    (["simulate", "--faults", "notutf8.toml"], "not UTF-8 text"),
    (["simulate", "--replay", "adir"], "'--replay': File 'adir' is a directory"),
    # replay, report, compact, demo, systemd-unit
    (["replay", "--venue", "binance", "--input", "afile", "--interval", "nan"], "invalid interval nan"),
    (["replay", "--venue", "binance", "--input", "afile", "--interval", "0"], "invalid interval 0"),
    (["replay", "--venue", "binance", "--input", "adir"], "no archive files (*.jsonl.zst) in directory adir"),
    (["replay", "--venue", "binance", "--input", "afile", "--data-dir", ""], "empty data directory"),
    (["replay", "--venue", "binance", "--input", "afile", "--session-id", ""], "invalid session id ''"),
    (["replay", "--venue", "binance", "--input", "afile", "--log-level", "LOUD"], "'--log-level': 'LOUD'"),
    (["report", "--data-dir", ""], "empty data directory"),
    (["report", "--session-id", ""], "invalid session id ''"),
    (["report", "--out", "adir"], "'--out': File 'adir' is a directory"),
    (["report", "--out", ""], "--out is empty"),
    (["compact", "--data-dir", ""], "empty data directory"),
    (["compact", "--older-than", "nan"], "invalid duration nan"),
    (["compact", "--older-than", "inf"], "invalid duration inf"),
    (["compact", "--target-mb", "nan"], "'--target-mb': 'nan' is not a finite number"),
    (["compact", "--target-mb", "-1"], "'--target-mb': -1 must be above 0"),
    (["compact", "--row-group-rows", "99999999999999999999"], "'--row-group-rows'"),
    (["compact", "--s3-bucket", ""], "'--s3-bucket': empty bucket name"),
    (["compact", "--s3-prefix", "x"], "--s3-prefix needs --s3-bucket"),
    (["compact", "--s3-bucket", "my-bucket", "--data-dir", "data"], "either --data-dir or an S3 destination"),
    (["demo", "--minutes", "nan"], "'--minutes': 'nan' is not a finite number"),
    (["demo", "--minutes", "1e9"], "'--minutes': 1e9 must be at least 1 and at most 1440"),
    (["demo", "--out", "afile"], "is a file"),
    (["demo", "--out", ""], "empty directory"),
    (["systemd-unit", "--config", "configs/x.toml", "--watchdog-sec", "9999999999"], "'--watchdog-sec'"),
    # unknown commands and options: one line too
    (["nosuchcommand"], "No such command 'nosuchcommand'"),
    (["start-capture", "--bogus"], "No such option '--bogus'"),
]


@pytest.mark.parametrize(("args", "needle"), CASES, ids=[" ".join(a)[-60:] for a, _ in CASES])
def test_bad_input_is_one_line_and_changes_nothing(workdir: Path, args: list[str], needle: str) -> None:
    res = run_in(workdir, *args)
    assert_one_error_line(res, needle)


def assert_one_error_line(res: subprocess.CompletedProcess[str], needle: str, code: int = 2) -> None:
    assert "Traceback" not in res.stderr, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), res.stderr
    assert needle in lines[0], lines[0]
    assert res.returncode == code, (res.returncode, lines[0])


def test_unit_user_cannot_inject_lines(workdir: Path) -> None:
    """``--user`` lands in the unit file: a newline would add a directive of the caller's choice."""
    cfg = str(ROOT / "configs" / "binance-spot.toml")
    res = run_in(workdir, "systemd-unit", "--config", cfg, "--user", "svc\nExecStartPre=/bin/sh -c id")
    assert_one_error_line(res, "invalid user")
    assert res.stdout == ""
    ok = run_in(workdir, "systemd-unit", "--config", cfg, "--user", "recorder")
    assert ok.returncode == 0 and "\nUser=recorder\n" in ok.stdout


def test_simulate_on_a_port_in_use(workdir: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        res = run_in(workdir, "simulate", "--port", str(port))
    assert_one_error_line(res, f"cannot serve on 127.0.0.1:{port}")
    assert "address already in use" in res.stderr and res.stdout == ""


def test_s3_errors_name_the_endpoint_in_use(sim: Sim, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With ``AWS_ENDPOINT_URL`` pointing elsewhere, an S3 error names that endpoint, not AWS."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # nobody listens once the socket is closed
    endpoint = f"http://127.0.0.1:{port}"
    isolate_aws_env(monkeypatch, tmp_path, "AKIACLIINPUTTEST", "cli-input-secret", AWS_ENDPOINT_URL=endpoint)
    cfg = write_config(tmp_path / "s3.toml", sim.urls, ["BTC-USDT"], tmp_path / "data")
    res = run_in(tmp_path, "start-capture", "--config", str(cfg), "--storage", "s3", "--s3-bucket", "my-bucket")
    assert_one_error_line(res, f"cannot reach S3 endpoint {endpoint}")
    assert "AWS" not in res.stderr and not list((tmp_path / "data").rglob("*.parquet"))


def test_status_sessions_and_a_restart_with_other_settings(sim: Sim, tmp_path: Path) -> None:
    """A real capture: ``capture-status`` shows latency and grid jitter rounded from status.json
    and its venue stopped (not disconnected) once it ended, ``sessions`` lists it with the files
    on disk, and restarting it at another interval or depth is refused without touching what it
    stored."""
    data = tmp_path / "data"
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f'data_dir = "{data}"\n[venues.binance]\npairs = ["BTC-USDT"]\n'
        f'ws_url = "{sim.urls["ws_url"]}"\nrest_url = "{sim.urls["rest_url"]}"\n'
    )
    first = run_in(tmp_path, "start-capture", "--config", str(cfg), "--session-id", "s", "--duration", "3s")
    assert first.returncode == 0, first.stderr[-2000:]
    status = json.loads((data / ".sessions" / "s" / "status.json").read_text())
    venue = status["venues"]["binance"]

    text = run_in(tmp_path, "capture-status", "--session-id", "s", "--data-dir", str(data)).stdout
    for label, key in (("latency", "capture_latency_ms"), ("grid jitter", "grid_jitter_ms")):
        m = re.search(rf"{label} p50/p99/max (\S+)/(\S+)/(\S+) ms", text)
        assert m, text
        for shown, stored in zip(m.groups(), (venue[key][q] for q in ("p50", "p99", "max")), strict=True):
            assert stored is not None and abs(float(shown) - stored) <= 0.005 + abs(stored) * 0.01, (shown, stored)
            assert len(shown.partition(".")[2]) <= 2, shown
    assert "None" not in text
    # The capture ended by itself: its venue is "stopped" (as the live view says), not DISCONNECTED.
    assert re.search(r"^  binance: stopped  msgs/s ", text, re.M) and "DISCONNECTED" not in text, text

    files = [p for p in data.rglob("s-*") if p.suffix in (".parquet", ".jsonl")]
    listing = run_in(tmp_path, "sessions", "--data-dir", str(data), "--json")
    (row,) = json.loads(listing.stdout)
    assert row["session_id"] == "s" and row["state"] == "stopped" and row["venues"] == {"binance": ["BTC-USDT"]}
    assert row["interval_s"] == 1.0 and row["files"] == len(files) > 0
    assert row["bytes"] == sum(p.stat().st_size for p in files)
    table = run_in(tmp_path, "sessions", "--data-dir", str(data)).stdout.splitlines()
    assert table[0].split()[:5] == ["SESSION", "STATE", "VENUES", "PAIRS", "INTERVAL"]
    assert table[1].split()[:5] == ["s", "stopped", "binance", "BTC-USDT", "1s"]

    before = tree(data)
    again = ["start-capture", "--config", str(cfg), "--session-id", "s", "--duration", "3s"]
    assert_one_error_line(run_in(tmp_path, *again, "--interval", "500ms"), "recorded with interval 1s, not 0.5s")
    assert_one_error_line(run_in(tmp_path, *again, "--depth", "5"), "recorded with depth 20, not 5")
    assert tree(data) == before


def test_status_without_samples_says_na(tmp_path: Path) -> None:
    """Before the first sample the quantiles are null: ``n/a``, never ``None/None/None``."""
    sdir = tmp_path / ".sessions" / "fresh"
    sdir.mkdir(parents=True)
    venue = {
        "connected": False,
        "messages_per_s": 0.0,
        "samples": 0,
        "missed_ticks": 0,
        "resyncs": 0,
        "gaps": 0,
        "reconnects": 0,
        "ring_drops": 0,
        "restarts": 0,
        "capture_latency_ms": {"p50": None, "p99": None, "max": None},
        "grid_jitter_ms": {"p50": None, "p99": None, "max": None},
        "pairs": {},
    }
    status = {"session_id": "fresh", "state": "stopped", "uptime_s": 1.0, "interval_s": 1.0, "depth": 20}
    (sdir / "status.json").write_text(json.dumps({**status, "format": "both", "venues": {"binance": venue}}))
    res = run_in(tmp_path, "capture-status", "--session-id", "fresh", "--data-dir", str(tmp_path))
    assert res.returncode == 0, res.stderr
    assert "latency p50/p99/max n/a" in res.stdout and "grid jitter p50/p99/max n/a" in res.stdout
    assert "None" not in res.stdout


def test_help_lists_venues_and_log_levels(tmp_path: Path) -> None:
    text = " ".join(run_in(tmp_path, "start-capture", "--help").stdout.split())
    for venue in ("binance", "binance-futures", "coinbase", "kraken", "okx", "bybit"):
        assert f"{venue}," in text or f"{venue}." in text, venue
    assert "[debug|info|warning|error|critical]" in text.lower()


def test_a_stop_right_after_start_flushes_cleanly(sim: Sim, tmp_path: Path) -> None:
    """A stop that comes while the writer is still importing (a capture of a second, or a
    stop-capture right after the start) must reach it only once it can drain: it used to die of
    the SIGTERM, and the capture ended with exit 4, flushed false and no word why."""
    data = tmp_path / "data"
    cfg = write_config(tmp_path / "c.toml", sim.urls, ["BTC-USDT"], data)
    proc = subprocess.Popen(
        [*CLI, "start-capture", "--config", str(cfg), "--session-id", "short"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    try:
        status_file = data / ".sessions" / "short" / "status.json"
        deadline = time.monotonic() + 60
        while not status_file.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)  # the first status is written as soon as the children are spawned
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-2000:]
    status = json.loads(status_file.read_text())
    assert status["state"] == "stopped" and status["flushed"] is True
