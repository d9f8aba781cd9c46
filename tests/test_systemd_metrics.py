"""systemd integration (unit file, sd_notify over a real AF_UNIX datagram socket), structured
logs, Prometheus metrics scraped over HTTP, and the live terminal view (through a real pty)."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import socket
import struct
import subprocess
import termios
import time
from pathlib import Path

import pytest

from tests.conftest import CLI, ROOT, Sim, free_port, run_cli, scrape_metrics, status, wait_for, write_config

pytestmark = pytest.mark.timeout(120)
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (debug|info|warning|error|critical) proc=\S+ pid=\d+ ")


def test_systemd_unit_is_complete_and_absolute(tmp_path: Path) -> None:
    res = run_cli("systemd-unit", "--config", "configs/binance-spot.toml", "--watchdog-sec", "30")
    assert res.returncode == 0, res.stderr
    unit = res.stdout.splitlines()
    for line in ("Type=notify", "Restart=on-failure", "WatchdogSec=30", "KillMode=mixed", "[Install]"):
        assert line in unit
    exec_start = next(x for x in unit if x.startswith("ExecStart=")).removeprefix("ExecStart=").split()
    python, cli, verb, flag, config = exec_start
    assert verb == "start-capture" and flag == "--config"
    for p in (python, cli, config):
        assert os.path.isabs(p) and os.path.exists(p), p
    assert config == str(ROOT / "configs" / "binance-spot.toml")
    bad = run_cli("systemd-unit", "--config", str(tmp_path / "missing.toml"))
    assert bad.returncode == 2 and "config file not found" in bad.stderr and "Traceback" not in bad.stderr


def test_sd_notify_metrics_and_structured_logs(sim: Sim, tmp_path: Path) -> None:
    data = tmp_path / "data"
    cfg = write_config(tmp_path / "c.toml", sim.urls, ["BTC-USDT", "ETH-USDT"], data)
    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(0.2)
    port = free_port()
    env = {**os.environ, "NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "1000000"}
    args = ["start-capture", "--config", str(cfg), "--interval", "0.5", "--duration", "12s", "--session-id", "sd"]
    proc = subprocess.Popen(
        [*CLI, *args, "--metrics-port", str(port)], env=env, cwd=ROOT, stderr=subprocess.PIPE, text=True
    )
    messages: list[str] = []
    scraped: dict[str, float] = {}
    try:
        deadline = time.monotonic() + 90
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                messages.append(sock.recv(4096).decode())
            except TimeoutError:
                pass
            if not scraped and any("READY=1" in m for m in messages):
                try:
                    m = scrape_metrics(port)
                except OSError:
                    continue
                st = status(data, "sd")
                samples = 'recorder_venue_snapshots_total{venue="binance"}'
                if st and m.get(samples, 0) >= 4 and m[samples] == st["venues"]["binance"]["samples"]:
                    scraped = m  # the same figures as capture-status, from the same status
        stderr = proc.communicate(timeout=60)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
        sock.close()
    assert proc.returncode == 0, stderr[-2000:]
    ready = next(i for i, m in enumerate(messages) if "READY=1" in m)
    assert f"MAINPID={proc.pid}" in messages[ready]
    assert sum("WATCHDOG=1" in m for m in messages[ready:]) >= 5  # every ~0.5 s for ~12 s
    assert any(m.startswith("STATUS=running; binance 2/2 synced") for m in messages)
    stopping = next(i for i, m in enumerate(messages) if "STOPPING=1" in m)
    assert stopping > ready
    assert scraped, "metrics never matched status.json"
    assert scraped['recorder_pair_synced{venue="binance",pair="BTC-USDT"}'] == 1
    assert scraped['recorder_venue_ring_drops_total{venue="binance"}'] == 0
    assert 'recorder_venue_capture_latency_ms{venue="binance",quantile="0.99"}' in scraped
    assert "recorder_writer_snapshots_written_total" in scraped
    # One structured line per event; no per-message lines (hundreds of diffs arrived).
    lines = [x for x in stderr.splitlines() if not x.startswith("capturing session")]
    assert lines and all(LOG_LINE.match(x) for x in lines), [x for x in lines if not LOG_LINE.match(x)][:3]
    assert len(lines) < 80, len(lines)
    assert any("event=status venue=binance synced=2/2" in x for x in lines)  # the summary when not a tty


def test_live_view_on_a_terminal(sim: Sim, tmp_path: Path) -> None:
    data = tmp_path / "data"
    cfg = write_config(tmp_path / "c.toml", sim.urls, ["BTC-USDT"], data)
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))  # an 80x24 terminal
    args = ["start-capture", "--config", str(cfg), "--interval", "0.5", "--duration", "6s", "--session-id", "tty"]
    proc = subprocess.Popen([*CLI, *args], cwd=ROOT, stdout=slave, stderr=slave, stdin=subprocess.DEVNULL)
    os.close(slave)
    out = b""
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            r, _, _ = select.select([master], [], [], 0.5)
            if r:
                try:
                    chunk = os.read(master, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                out += chunk
            elif proc.poll() is not None:
                break
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.decode(errors="replace"))
    frames = plain.split("session tty  ")
    assert len(frames) > 2 and "BTC-USDT" in plain
    assert "event=child_started" not in frames[0]  # logs went to the file, not the screen
    view = "session tty  ".join(frames[1:])  # (the "capturing ... into <long path>" line comes before)
    assert all(len(line) <= 80 for line in re.split(r"[\r\n]", view)), "no line wider than the terminal"
    # The last frame, drawn after the capture ended: stopped, not "PROCESS DOWN DISCONNECTED".
    assert frames[-1].startswith("stopped (duration reached), flushed")
    assert "DOWN" not in frames[-1] and "DISCONNECTED" not in frames[-1] and "writer  stopped" in frames[-1]
    log = (data / ".sessions" / "tty" / "recorder.log").read_text()
    assert "event=venue_started" in log and "event=stopped" in log
    wait_for(lambda: (status(data, "tty") or {}).get("state") == "stopped", 10, "final status")
