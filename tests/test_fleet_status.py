"""``fleet-status`` over real shard captures: a local data dir, and two "hosts" (separate data dirs)
uploading to one bucket on moto's S3 server."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from recorder.dataset import open_dataset
from tests.conftest import Sim, every_pair_sampled, free_port, run_cli, running_cli, stop_cli, wait_for, write_config
from tests.s3_support import isolate_aws_env
from tests.test_s3 import MotoS3
from tests.test_shard import _listed_pairs, _reference_shard


def _fleet(location: str, stale: str = "30s") -> tuple[int, list[dict[str, Any]], str]:
    res = run_cli("fleet-status", "--data-dir", location, "--stale-after", stale, "--json")
    assert res.returncode in (0, 3), res.stderr
    text = run_cli("fleet-status", "--data-dir", location, "--stale-after", stale).stdout
    return res.returncode, json.loads(res.stdout), text


def _by_shard(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["shard"]: r for r in rows}


def test_fleet_status_local_shows_every_shard_and_a_silent_one_down(tmp_path: Path) -> None:
    sim = Sim("--seed", "4", "--instruments", "20")
    data = tmp_path / "data"
    port = free_port()
    try:
        universe = _listed_pairs(sim.urls["rest_url"])
        cfg = write_config(tmp_path / "f.toml", sim.urls, ["all"], data, session_id="fl", depth=5, format="parquet")
        with (
            running_cli("start-capture", "--config", str(cfg), "--shard", "0/2", "--metrics-port", str(port)) as a,
            running_cli("start-capture", "--config", str(cfg), "--shard", "1/2") as b,
        ):
            for s in ("fl-s0of2", "fl-s1of2"):
                wait_for(lambda s=s: every_pair_sampled(data, s, 2), 120, f"{s} sampling every pair")
            code, rows, text = _fleet(str(data))
            assert code == 0, text
            shards = _by_shard(rows)
            assert set(shards) == {"0/2", "1/2"}
            assert all(r["alive"] and r["state"] == "running" for r in rows)
            assert shards["0/2"]["session"] == "fl-s0of2" and shards["1/2"]["session"] == "fl-s1of2"
            assert sum(r["pairs"] for r in rows) == len(universe)
            expected = [sum(1 for p in universe if _reference_shard("binance", p, 2) == i) for i in (0, 1)]
            assert [shards["0/2"]["pairs"], shards["1/2"]["pairs"]] == expected
            assert "2 of 2 up" in text and text.splitlines()[0].split()[:3] == ["SESSION", "SHARD", "ALIVE"]

            # Prometheus: every sample of the shard carries its session and shard.
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
                samples = [x for x in resp.read().decode().splitlines() if x and not x.startswith("#")]
            assert len(samples) > 50
            assert all('session="fl-s0of2",shard="0/2"}' in x for x in samples), samples[:3]
            assert 'recorder_up{session="fl-s0of2",shard="0/2"} 1' in samples

            # A supervisor that stops answering (SIGSTOP: alive, lock held, status not refreshed).
            os.kill(b.pid, signal.SIGSTOP)
            try:
                down = wait_for(lambda: _down(str(data), "1/2", "3s"), 60, "the silent shard shown down")
                assert down["state"] == "down" and down["age_s"] > 3
                assert _by_shard(_fleet(str(data), "3s")[1])["0/2"]["alive"]
            finally:
                os.kill(b.pid, signal.SIGCONT)
            wait_for(lambda: _by_shard(_fleet(str(data), "3s")[1])["1/2"]["alive"], 60, "the shard back up")

            # Killed outright: its lock is free at once, shown dead whatever its status' age.
            b.kill()
            b.wait()
            dead = wait_for(lambda: _down(str(data), "1/2", "30s"), 30, "the killed shard shown dead")
            assert dead["state"] == "dead"
            stop_cli(a)
        code, rows, _ = _fleet(str(data))
        assert code == 3 and _by_shard(rows)["0/2"]["state"] == "stopped"
    finally:
        sim.stop()


def _down(location: str, shard: str, stale: str) -> dict[str, Any] | None:
    code, rows, _ = _fleet(location, stale)
    row = _by_shard(rows).get(shard)
    return row if code == 3 and row is not None and not row["alive"] else None


ACCESS_KEY = "AKIAFLEETTEST0000001"
SECRET_KEY = "fleet-test-secret-2b9d"


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[MotoS3]:
    server = MotoS3()
    isolate_aws_env(monkeypatch, tmp_path, ACCESS_KEY, SECRET_KEY, AWS_ENDPOINT_URL=server.url)
    server.start()
    yield server
    server.stop()


def _s3_config(path: Path, sim: Sim, data: Path, endpoint: str, bucket: str) -> Path:
    write_config(
        path, sim.urls, ["all"], data, session_id="fleet", depth=5, format="parquet",
        venue_extra={"snapshot_limit": 100}, writer={"rotate_seconds": 2.0},
    )  # fmt: skip
    with open(path, "a") as fh:
        fh.write(f'\n[storage.s3]\nbucket = "{bucket}"\nprefix = "fleet"\nendpoint_url = "{endpoint}"\n')
    return path


def test_two_hosts_one_bucket_one_dataset_and_fleet_status(s3: MotoS3, tmp_path: Path) -> None:
    sim = Sim("--seed", "9", "--instruments", "190")
    bucket = s3.create_bucket()
    url = f"s3://{bucket}/fleet"
    hosts = {i: tmp_path / f"host{i}" for i in (0, 1)}
    try:
        universe = _listed_pairs(sim.urls["rest_url"])
        assert len(universe) >= 200
        cfgs = {i: _s3_config(tmp_path / f"h{i}.toml", sim, hosts[i], s3.url, bucket) for i in (0, 1)}
        sessions = {i: f"fleet-s{i}of2" for i in (0, 1)}
        with running_cli("start-capture", "--config", str(cfgs[0]), "--shard", "0/2") as a:
            with running_cli("start-capture", "--config", str(cfgs[1]), "--shard", "1/2") as b:

                def both_synced() -> list[dict[str, Any]] | None:
                    code, rows, _ = _fleet(url)
                    ok = code == 0 and len(rows) == 2 and all(r["alive"] and r["synced"] == r["pairs"] for r in rows)
                    return rows if ok else None

                rows = wait_for(both_synced, 170, "both shards up and synced on S3")
                assert sum(r["pairs"] for r in rows) == len(universe)
                pairs_before = _by_shard(rows)["1/2"]["pairs"]
                # Host 1 dies (kill -9: no last word). Its status object goes stale.
                b.kill()
                b.wait()
                killed_at = time.time()
                down = wait_for(lambda: _down(url, "1/2", "10s"), 60, "the killed host shown down on S3")
                assert down["state"] == "down" and down["age_s"] > 10
                assert _by_shard(_fleet(url, "10s")[1])["0/2"]["alive"]
            # Restarted, it resumes its pairs (its status object fresh again).
            with running_cli("start-capture", "--config", str(cfgs[1]), "--shard", "1/2") as b2:
                back = wait_for(
                    lambda: next((r for r in _fleet(url)[1] if r["shard"] == "1/2" and r["alive"]), None),
                    120,
                    "the restarted host up",
                )
                assert back["pairs"] == pairs_before
                wait_for(lambda: every_pair_sampled(hosts[1], sessions[1], 2), 120, "restarted host sampling")
                assert time.time() > killed_at
                stop_cli(b2)
            stop_cli(a)
        code, rows, text = _fleet(url)
        assert code == 0 and {r["state"] for r in rows} == {"stopped"}, text
        table = open_dataset(url).table(columns=["pair", "session_id"])
        owners: dict[str, set[str]] = {}
        for r in table.to_pylist():
            owners.setdefault(r["pair"], set()).add(r["session_id"])
        assert set(owners) == universe  # the union of the hosts' pairs is the universe
        assert all(o == {sessions[_reference_shard("binance", p, 2)]} for p, o in owners.items())  # none in both
        keys = s3.keys(bucket, "fleet/_status/")
        assert sorted(keys) == ["fleet/_status/fleet-s0of2.json", "fleet/_status/fleet-s1of2.json"]
        for key in keys:
            body = s3.client().get_object(Bucket=bucket, Key=key)["Body"].read().decode()
            assert SECRET_KEY not in body and ACCESS_KEY not in body
    finally:
        sim.stop()


def test_fleet_status_bad_location_is_one_line(tmp_path: Path) -> None:
    for args in (["--data-dir", str(tmp_path / "nope")], ["--data-dir", "ftp://x"], ["--stale-after", "soon"]):
        res = run_cli("fleet-status", *args)
        assert res.returncode == 2 and res.stderr.startswith("Error: ") and res.stderr.count("\n") == 1, res.stderr
    res = run_cli("fleet-status", "--data-dir", str(tmp_path))
    assert res.returncode == 0 and "no sessions" in res.stdout
