"""Shared helpers: run the real CLI, the real simulator and read what a capture stored."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds
import pytest

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, str(ROOT / "cli.py")]


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def popen_cli(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)


@contextmanager
def running_cli(*args: str) -> Iterator[subprocess.Popen[str]]:
    """``popen_cli``, killed on the way out if the test body did not stop it (a failed wait)."""
    proc = popen_cli(*args)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def stop_cli(proc: subprocess.Popen[str], timeout: float = 120) -> None:
    """SIGTERM a running capture and require a clean exit (status 0)."""
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]


def terminate(proc: subprocess.Popen[Any], grace_s: float) -> None:
    """SIGTERM (the clean stop under test elsewhere), then SIGKILL after ``grace_s``."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class VenueSim:
    """``python cli.py simulate --venue V`` as a real process (its first stdout line: its URLs)."""

    def __init__(self, venue: str, *extra: str) -> None:
        self.venue = venue
        self.proc = subprocess.Popen(
            [*CLI, "simulate", "--venue", venue, "--port", "0", *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            cwd=ROOT,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{venue} simulator did not start")
        self.urls: dict[str, str] = json.loads(line)

    def get(self, path: str) -> tuple[int, Any]:
        """(HTTP status, JSON body) of one of the simulator's endpoints."""
        try:
            with urllib.request.urlopen(f"{self.urls['sim_url']}{path}", timeout=10) as resp:
                return resp.status, json.load(resp)
        except urllib.error.HTTPError as exc:
            return exc.code, json.load(exc)

    def fault(self, **fault: Any) -> dict[str, Any]:
        """Inject a fault now (``POST /sim/fault``, see recorder/sim/faults.py); its record."""
        req = urllib.request.Request(
            f"{self.urls['sim_url']}/sim/fault",
            data=json.dumps(fault).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.load(resp)  # type: ignore[no-any-return]

    def injected(self) -> list[dict[str, Any]]:
        """Every fault injected so far (``GET /sim/faults``)."""
        return self.get("/sim/faults")[1]["injected"]  # type: ignore[no-any-return]

    def stop(self) -> None:
        terminate(self.proc, 10)


def sim_venues(sims: dict[str, VenueSim], pairs: dict[str, list[str]], channels: list[str]) -> dict[str, Any]:
    """The ``venues`` section of a capture config (``recorder.api``) whose venues are the running
    simulators ``sims``."""
    return {
        v: {"pairs": p, "channels": channels, "ws_url": sims[v].urls["ws_url"], "rest_url": sims[v].urls["rest_url"]}
        for v, p in pairs.items()
    }


class Sim(VenueSim):
    """The Binance simulator (a ``--venue`` in ``extra`` picks another)."""

    def __init__(self, *extra: str) -> None:
        super().__init__("binance", *extra)


def samples_per_pair(data_dir: Path, session_id: str) -> dict[str, float]:
    """Samples of every pair of every venue of the session so far (status file; {} until written)."""
    venues = (status(data_dir, session_id) or {}).get("venues") or {}
    return {p: c["samples"] for v in venues.values() for p, c in v["pairs"].items()}


def capture_whole_replay(sim: VenueSim, cfg: Path, data_dir: Path, session_id: str, interval: str) -> None:
    """Capture from a simulator replaying a recording (``--replay``), JSONL, until the whole
    recording was sent and every pair sampled twice more, then SIGTERM: not for a fixed time,
    which a slow start-up on a loaded machine could eat."""
    args = ["--config", str(cfg), "--interval", interval, "--format", "jsonl", "--session-id", session_id]
    with running_cli("start-capture", *args) as proc:
        wait_for(lambda: sim.get("/sim/stats")[1]["done"], 120, "the whole recording sent")
        # The status file is rewritten every second or so: only one written two ticks after the
        # end counts the samples that hold the recording's last frames.
        after_ms = time.time() * 1000.0 + 2 * float(interval) * 1000.0
        at_end = samples_per_pair(data_dir, session_id)

        def sampled_after_the_end() -> bool:
            st = status(data_dir, session_id)
            now = samples_per_pair(data_dir, session_id)
            fresh = st is not None and st.get("updated_at_ms", 0) >= after_ms
            return fresh and all(n > at_end.get(p, 0) for p, n in now.items())

        wait_for(sampled_after_the_end, 60, "samples of every pair after the recording's end")
        stop_cli(proc)


@pytest.fixture
def sim() -> Iterator[Sim]:
    s = Sim("--seed", "7", "--ping-interval", "2")
    yield s
    s.stop()


def write_config(path: Path, urls: dict[str, str], pairs: list[str], data_dir: Path, **top: Any) -> Path:
    lines = [f'data_dir = "{data_dir}"']
    venue_extra = top.pop("venue_extra", {})
    writer = top.pop("writer", {})
    for key, value in top.items():
        lines.append(f"{key} = {json.dumps(value)}")
    lines += [
        "",
        "[venues.binance]",
        f"pairs = {json.dumps(pairs)}",
        f'ws_url = "{urls["ws_url"]}"',
        f'rest_url = "{urls["rest_url"]}"',
    ]
    lines += [f"{k} = {json.dumps(v)}" for k, v in venue_extra.items()]
    if writer:
        lines += ["", "[writer]"] + [f"{k} = {json.dumps(v)}" for k, v in writer.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def status(data_dir: Path, session_id: str) -> dict[str, Any] | None:
    try:
        return json.loads((data_dir / ".sessions" / session_id / "status.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def every_pair_sampled(data_dir: Path, session_id: str, n: int) -> bool:
    """Every pair of every venue of the session has at least ``n`` samples (status file)."""
    st = status(data_dir, session_id)
    if st is None or not st.get("venues"):
        return False
    return all(p["samples"] >= n for v in st["venues"].values() for p in v["pairs"].values())


def wait_for(cond: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


async def until(cond: Callable[[], Any], timeout: float, what: str) -> None:
    """``wait_for`` inside an event loop: the loop keeps running (a connector, a simulator) meanwhile."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def read_parquet_rows(data_dir: Path) -> list[dict[str, Any]]:
    dataset = ds.dataset(data_dir / "parquet", format="parquet", partitioning="hive")
    return dataset.to_table().to_pylist()


def read_jsonl(data_dir: Path) -> list[dict[str, Any]]:
    out = []
    for path in sorted((data_dir / "jsonl").rglob("*.jsonl")):
        out += [json.loads(line) for line in path.read_text().splitlines() if line]
    return out


def snapshots_from_rows(rows: list[dict[str, Any]]) -> dict[tuple[str, int], dict[str, Any]]:
    """Rebuild nested snapshots from Parquet's one-row-per-level form."""
    snaps: dict[tuple[str, int], dict[str, Any]] = {}
    for r in rows:
        key = (r["pair"], r["sequence_number"])
        s = snaps.setdefault(
            key,
            {
                "pair": r["pair"],
                "timestamp_ms": r["timestamp_ms"],
                "sequence_number": r["sequence_number"],
                "update_id": r["update_id"],
                "bids": {},
                "asks": {},
            },
        )
        side = "bids" if r["side"] == "bid" else "asks"
        s[side][r["level"]] = (r["price"], r["quantity"])
    for s in snaps.values():
        for side in ("bids", "asks"):
            s[side] = [s[side][i] for i in sorted(s[side])]
    return snaps


def assert_no_torn_files(data_dir: Path) -> None:
    import pyarrow.parquet as pq

    for path in (data_dir / "parquet").rglob("*"):
        if path.is_file():
            assert not path.name.endswith(".tmp") or path.name.startswith("."), path
            if path.suffix == ".parquet":
                pq.read_metadata(path)  # raises on a torn file
    for path in (data_dir / "jsonl").rglob("*.jsonl"):
        text = path.read_text()
        assert text.endswith("\n"), path
        for line in text.splitlines():
            json.loads(line)


def env_without_proxy() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}


@pytest.fixture(scope="session")
def faulty_capture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One capture with injected faults, shared by the dataset and report tests (~25 s)."""
    from tests.faulty_capture import run_faulty_capture

    yield from run_faulty_capture(tmp_path_factory)


def free_port() -> int:
    """A loopback port free now (for ``--metrics-port``, a server to start)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape_metrics(port: int) -> dict[str, float]:
    """A capture's Prometheus exposition (``--metrics-port``): series (with labels) -> value."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = resp.read().decode()
    return {
        name: float(value)
        for name, _, value in (line.rpartition(" ") for line in text.splitlines() if line and line[0] != "#")
    }


def stored_trade_rows(data_dir: Path) -> list[dict[str, Any]]:
    """Every stored trade of a data dir, read with plain pyarrow (times as integer µs), in
    exchange, pair and sequence order."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows: list[dict[str, Any]] = []
    for path in sorted((data_dir / "trades" / "parquet").rglob("*.parquet")):
        t = pq.read_table(path)
        for name in ("exchange_time", "local_time"):
            t = t.set_column(t.schema.get_field_index(name), name, t[name].cast(pa.int64()))
        rows += t.to_pylist()
    return sorted(rows, key=lambda r: (r["exchange"], r["pair"], r["sequence_number"]))
