"""Shards (``--shard I/N``): the split is a stable partition that moves few pairs when N changes,
and real shard captures into one data dir read as one dataset."""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from recorder.dataset import open_dataset
from recorder.shard import Shard, parse_shard, shard_of
from tests.conftest import ROOT, Sim, every_pair_sampled, run_cli, running_cli, stop_cli, wait_for, write_config


def _reference_shard(venue: str, pair: str, n: int) -> int:
    """Rendezvous hashing written out independently: the highest 64-bit BLAKE2b score wins."""
    scores = []
    for i in range(n):
        digest = hashlib.blake2b(f"{venue}\0{pair}\0{i}".encode(), digest_size=8).digest()
        scores.append((int.from_bytes(digest, "big"), i))
    return max(scores)[1]


def _universe(rng: random.Random, size: int) -> list[str]:
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    names = {
        "".join(rng.choice(letters) for _ in range(rng.randint(2, 8))) + "-" + rng.choice(["USDT", "BTC", "USD", "EUR"])
        for _ in range(size)
    }
    return sorted(names)


def test_split_is_a_partition_over_many_universes() -> None:
    rng = random.Random(18)
    for trial in range(60):
        pairs = _universe(rng, rng.randint(0, 400))
        venue = rng.choice(["binance", "okx", "kraken"])
        n = rng.randint(1, 12)
        parts = [Shard(i, n).select(venue, pairs) for i in range(n)]
        flat = [p for part in parts for p in part]
        assert sorted(flat) == pairs, trial  # every pair in exactly one shard, none invented
        assert len(flat) == len(set(flat))
        for part in parts:  # each part keeps the list's order
            assert part == [p for p in pairs if p in set(part)]
        for p in pairs[:50]:
            assert shard_of(venue, p, n) == _reference_shard(venue, p, n)


def test_split_is_the_same_on_every_host() -> None:
    # Pinned values: a new version (or another Python, another PYTHONHASHSEED) must split as before,
    # or shards of one fleet running different versions would record pairs twice.
    assert [shard_of("binance", p, 4) for p in ("BTC-USDT", "SOL-USDT", "DOGE-USDT", "ADA-USDT")] == [2, 3, 3, 0]
    pairs = _universe(random.Random(1), 300)
    here = [shard_of("binance", p, 5) for p in pairs]
    code = (
        "import json,sys; from recorder.shard import shard_of;"
        "print(json.dumps([shard_of('binance', p, 5) for p in json.load(sys.stdin)]))"
    )
    for seed in ("0", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(ROOT)}
        out = subprocess.run(
            [sys.executable, "-c", code], input=json.dumps(pairs), capture_output=True, text=True, env=env, check=True
        )
        assert json.loads(out.stdout) == here


def test_changing_the_shard_count_moves_as_few_pairs_as_possible() -> None:
    pairs = _universe(random.Random(7), 3000)
    for n in range(1, 9):
        before = {p: shard_of("binance", p, n) for p in pairs}
        after = {p: shard_of("binance", p, n + 1) for p in pairs}
        moved = {p for p in pairs if before[p] != after[p]}
        # Growing: a pair moves only to the new shard, and every pair the new shard records had to move.
        assert moved == {p for p in pairs if after[p] == n}
        # Shrinking back: only the removed shard's pairs move.
        assert {p for p in pairs if after[p] != before[p]} == {p for p in pairs if after[p] == n}
        # About 1/(n+1) of the universe moves (a modulo split would move about n/(n+1)).
        assert abs(len(moved) / len(pairs) - 1 / (n + 1)) < 0.05
        sizes = [sum(1 for s in after.values() if s == i) for i in range(n + 1)]
        assert max(sizes) - min(sizes) < 0.25 * len(pairs) / (n + 1) + 20  # balanced


@pytest.mark.parametrize("text", ["2/2", "0/0", "a/b", "1", "-1/2", "1/2/3", "0/5000", ""])
def test_bad_shard_text_is_one_line(text: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        parse_shard(text)
    res = run_cli(
        "start-capture", "--venue", "binance", "--pairs", "BTC-USDT", "--shard", text, "--data-dir", str(tmp_path)
    )
    assert res.returncode == 2, res.stderr
    assert res.stderr.startswith("Error: invalid shard") and res.stderr.count("\n") == 1, res.stderr
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'shard = "{text}"\n[venues.binance]\npairs = ["BTC-USDT"]\n')
    res = run_cli("systemd-unit", "--config", str(cfg))
    assert res.returncode == 2 and res.stderr.startswith("Error: invalid shard"), res.stderr


def test_systemd_template_unit_runs_one_shard_per_instance(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('session_id = "fleet"\n[venues.binance]\npairs = ["all"]\n')
    res = run_cli("systemd-unit", "--config", str(cfg), "--shards", "4")
    assert res.returncode == 0, res.stderr
    unit = res.stdout.splitlines()
    exec_start = next(line for line in unit if line.startswith("ExecStart="))
    assert exec_start.endswith(f"start-capture --config {cfg.resolve()} --shard %i/4")
    assert "Description=Order-book recorder, session fleet, shard %i of 4" in unit
    assert "Type=notify" in unit and "[Install]" in unit
    bad = run_cli("systemd-unit", "--config", str(cfg), "--shards", "0")
    assert bad.returncode == 2 and bad.stderr.startswith("Error: --shards"), bad.stderr
    cfg.write_text('shard = "1/2"\n[venues.binance]\npairs = ["all"]\n')
    both = run_cli("systemd-unit", "--config", str(cfg), "--shards", "2")
    assert both.returncode == 2 and "already sets shard" in both.stderr, both.stderr


def _listed_pairs(rest_url: str) -> set[str]:
    """The simulator's universe, read from its exchangeInfo directly."""
    with urllib.request.urlopen(f"{rest_url}/api/v3/exchangeInfo", timeout=10) as resp:
        info = json.load(resp)
    return {
        f"{s['baseAsset']}-{s['quoteAsset']}"
        for s in info["symbols"]
        if s["status"] == "TRADING" and s["baseAsset"] + s["quoteAsset"] == s["symbol"]
    }


def test_two_shards_into_one_data_dir_read_as_one_dataset(tmp_path: Path) -> None:
    sim = Sim("--seed", "18", "--instruments", "48")
    data = tmp_path / "data"
    try:
        universe = _listed_pairs(sim.urls["rest_url"])
        assert len(universe) >= 50
        cfg = write_config(
            tmp_path / "f.toml", sim.urls, ["all"], data, session_id="fleet", depth=5, format="both",
            venue_extra={"snapshot_limit": 100},
        )  # fmt: skip
        sessions = ["fleet-s0of2", "fleet-s1of2"]
        with (
            running_cli("start-capture", "--config", str(cfg), "--shard", "0/2") as a,
            running_cli("start-capture", "--config", str(cfg), "--shard", "1/2") as b,
        ):
            for session in sessions:
                wait_for(lambda s=session: every_pair_sampled(data, s, 2), 150, f"{session}: every pair sampled")
            stop_cli(a)
            stop_cli(b)
        for fmt in ("parquet", "jsonl"):
            table = open_dataset(str(data), format=fmt).table(
                columns=["pair", "session_id", "timestamp_ms", "side", "level"]
            )
            rows = table.to_pylist()
            by_pair: dict[str, set[str]] = {}
            for r in rows:
                by_pair.setdefault(r["pair"], set()).add(r["session_id"])
            assert set(by_pair) == universe, fmt  # none missing
            assert all(len(s) == 1 for s in by_pair.values()), fmt  # none recorded by both shards
            for pair, (session,) in by_pair.items():
                assert session == sessions[_reference_shard("binance", pair, 2)]
            keys = [(r["pair"], r["timestamp_ms"], r["side"], r["level"]) for r in rows]
            assert len(keys) == len(set(keys)), fmt  # no row twice
        names = [p.name for p in data.rglob("*.parquet")]
        assert len(names) == len(set(names))
    finally:
        sim.stop()


def test_a_shard_without_pairs_does_not_start(sim: Sim, tmp_path: Path) -> None:
    assert _reference_shard("binance", "BTC-USDT", 2) == 0
    cfg = write_config(tmp_path / "e.toml", sim.urls, ["BTC-USDT"], tmp_path / "data")
    res = run_cli("start-capture", "--config", str(cfg), "--shard", "1/2", "--duration", "5s")
    assert res.returncode == 2, res.stderr
    assert res.stderr == "Error: shard 1/2 gets none of the 1 binance pairs: use fewer shards\n"
    assert not (tmp_path / "data" / ".sessions").exists()  # a failed start leaves no session behind
