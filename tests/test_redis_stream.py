"""The ``[stream.redis]`` sink against a real ``redis-server`` (Debian's) started by the test on a
free loopback port: a consumer sees every stored snapshot in order; Redis killed mid-run costs
the files nothing, the lost records are counted, and publishing resumes when Redis is back."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from recorder.dataset import open_dataset
from tests.conftest import Sim, free_port, run_cli, running_cli, status, wait_for, write_config

redis = pytest.importorskip("redis", reason="pip install -e '.[fleet]'")
if shutil.which("redis-server") is None and not os.environ.get("RECORDER_REQUIRE_REDIS"):
    # CI installs redis-server and sets RECORDER_REQUIRE_REDIS=1: there a missing server fails.
    pytest.skip("redis-server not installed (apt-get install redis-server; CI installs it)", allow_module_level=True)

from recorder.live import LiveReader  # noqa: E402 (needs redis)

PAIRS = ["BTC-USDT", "ETH-USDT", "SOL-USDT"]
PASSWORD = "stream-test-pw-5c1e"


class RedisServer:
    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.tmp = tmp
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://:{PASSWORD}@127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        args += ["--requirepass", PASSWORD, "--dir", str(self.tmp)]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(self._ping, 20, "redis-server answering")
        return self

    def _ping(self) -> bool:
        try:
            return bool(self.client().ping())
        except redis.RedisError:
            return False

    def client(self) -> Any:
        return redis.Redis.from_url(self.url, socket_timeout=5)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path).start()
    yield server
    server.kill()


def _config(path: Path, sim: Sim, data: Path, url: str, maxlen: int = 100_000, datasets: str = '["books"]') -> Path:
    write_config(path, sim.urls, PAIRS, data, depth=5, format="both", writer={"rotate_seconds": 2.0})
    with open(path, "a") as fh:
        fh.write(f'\n[stream.redis]\nurl = "{url}"\nmaxlen = {maxlen}\ndatasets = {datasets}\n')
    return path


def _stored(data: Path) -> dict[str, list[tuple[int, int, list[float]]]]:
    """Per pair, (sequence, timestamp, best bid/ask prices) of every stored snapshot, in order."""
    out: dict[str, list[tuple[int, int, list[float]]]] = {}
    for snap in open_dataset(str(data), format="jsonl").snapshots():
        out.setdefault(snap.pair, []).append(
            (snap.sequence_number, snap.timestamp_ms, [float(snap.bids[0][0]), float(snap.asks[0][0])])
        )
    return {p: sorted(v) for p, v in out.items()}


def _streamed(server: RedisServer, group: str) -> dict[str, list[tuple[int, int, list[float]]]]:
    live = LiveReader(server.url, group=group, exchange="binance", pairs=PAIRS)
    out: dict[str, list[tuple[int, int, list[float]]]] = {}
    try:
        while batch := live.read(count=1000, block_ms=200):
            for snap in batch:
                out.setdefault(snap.pair, []).append(
                    (snap.sequence_number, snap.timestamp_ms, [float(snap.bids[0][0]), float(snap.asks[0][0])])
                )
    finally:
        live.close()
    return out


def test_a_consumer_sees_every_stored_snapshot_in_order(redis_server: RedisServer, sim: Sim, tmp_path: Path) -> None:
    data = tmp_path / "data"
    cfg = _config(tmp_path / "r.toml", sim, data, redis_server.url, datasets='["books", "trades"]')
    res = run_cli("start-capture", "--config", str(cfg), "--duration", "6s", "--session-id", "live")
    assert res.returncode == 0, res.stderr[-2000:]
    stored = _stored(data)
    assert set(stored) == set(PAIRS) and all(len(v) >= 3 for v in stored.values())
    streamed = _streamed(redis_server, "g1")
    assert streamed == stored  # every row the files hold, in the order of the stream
    # The stream entry has the file's fields (JSON values), nothing else.
    (entry_id, fields), *_ = redis_server.client().xrange("recorder:books:binance:BTC-USDT", count=1)
    line = json.loads((next((data / "jsonl").rglob("*.jsonl"))).read_text().splitlines()[0])
    assert {k.decode() for k in fields} == set(line)
    final = status(data, "live")
    assert final is not None
    w = final["writer"]
    assert w["stream_published"] == w["snapshots_written"] + w["trades_written"] and w["stream_drops"] == 0
    assert w["snapshots_written"] > 0 and w["trades_written"] > 0
    # Trades too: one stream per pair, each entry a stored trade's JSONL fields, in order.
    client = redis_server.client()
    trades = [json.loads(x) for p in (data / "trades" / "jsonl").rglob("*.jsonl") for x in p.read_text().splitlines()]
    for pair in PAIRS:
        entries = client.xrange(f"recorder:trades:binance:{pair}")
        streamed_trades = [{k.decode(): json.loads(v) for k, v in f.items()} for _, f in entries]
        stored_trades = sorted((t for t in trades if t["pair"] == pair), key=lambda t: t["sequence_number"])
        assert streamed_trades == stored_trades and stored_trades, pair
    # A second group reads everything again; the first group has nothing left.
    assert _streamed(redis_server, "g2") == stored
    assert _streamed(redis_server, "g1") == {}
    session_text = "".join(p.read_text() for p in (data / ".sessions" / "live").iterdir() if p.is_file())
    assert PASSWORD not in res.stderr + res.stdout + session_text


def test_maxlen_trims_each_stream(redis_server: RedisServer, sim: Sim, tmp_path: Path) -> None:
    data = tmp_path / "data"
    cfg = _config(tmp_path / "r.toml", sim, data, redis_server.url, maxlen=3)
    res = run_cli("start-capture", "--config", str(cfg), "--interval", "0.2", "--duration", "5s", "--session-id", "m")
    assert res.returncode == 0, res.stderr[-2000:]
    stored = _stored(data)
    client = redis_server.client()
    for pair in PAIRS:
        entries = client.xrange(f"recorder:books:binance:{pair}")
        assert len(entries) == 3 and len(stored[pair]) > 3
        seqs = [int(json.loads(f[b"sequence_number"])) for _, f in entries]
        assert seqs == [s for s, _, _ in stored[pair][-3:]]  # the newest three


def test_redis_killed_mid_run_loses_no_file_data_and_resumes(
    redis_server: RedisServer, sim: Sim, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    cfg = _config(tmp_path / "r.toml", sim, data, redis_server.url)

    def writer() -> dict[str, Any]:
        return (status(data, "kill") or {}).get("writer") or {}

    with running_cli("start-capture", "--config", str(cfg), "--interval", "0.5", "--session-id", "kill") as proc:
        wait_for(lambda: writer().get("stream_published", 0) > 10, 60, "publishing")
        redis_server.kill()
        wait_for(lambda: writer().get("stream_drops", 0) > 5, 60, "drops counted while Redis is down")
        assert writer()["stream_connected"] == 0
        before = writer()["stream_published"]
        redis_server.start()  # an empty Redis on the same port (no persistence)
        wait_for(lambda: writer().get("stream_published", 0) > before + 10, 60, "publishing resumed")
        assert writer()["stream_connected"] == 1
        resumed_at_ms = time.time() * 1000
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-2000:]
    w = writer()
    stored = _stored(data)
    for pair in PAIRS:  # the files are whole: every sequence number from 0, no gap
        assert [s for s, _, _ in stored[pair]] == list(range(len(stored[pair])))
    assert w["stream_published"] + w["stream_drops"] == w["snapshots_written"]  # every record accounted for
    streamed = _streamed(redis_server, "after")
    for pair in PAIRS:  # what the new Redis got is the files' tail, in order and unchanged
        got = streamed[pair]
        assert got and got == [s for s in stored[pair] if s[0] >= got[0][0]]
        assert got[-1][1] > resumed_at_ms - 60_000
    # The outage is logged once each way, the URL without its password.
    assert f"event=stream_down url=redis://***@127.0.0.1:{redis_server.port}/0" in err
    assert err.count("event=stream_down") == 1 and "event=stream_connected" in err
    assert PASSWORD not in err


def test_bad_stream_config_is_one_line(tmp_path: Path) -> None:
    for section, needle in (
        ('url = "http://x"', "invalid [stream.redis] url"),
        (f'url = "ftp://:{PASSWORD}@h"', "invalid [stream.redis] url"),
        ("maxlen = 0", "maxlen"),
        ('datasets = ["candles"]', "datasets"),
    ):
        cfg = tmp_path / "c.toml"
        cfg.write_text(f'[venues.binance]\npairs = ["BTC-USDT"]\n\n[stream.redis]\n{section}\n')
        res = run_cli("start-capture", "--config", str(cfg), "--data-dir", str(tmp_path / "d"))
        assert res.returncode == 2 and res.stderr.startswith("Error: ") and needle in res.stderr, res.stderr
        assert res.stderr.count("\n") == 1 and PASSWORD not in res.stderr
