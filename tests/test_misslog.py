"""The sampler's miss log: one line per run of missed ticks, with the cause decided at its end."""

from __future__ import annotations

import json
from pathlib import Path

from recorder.metrics import SharedCounters
from recorder.sampler.misslog import MissLog
from recorder.sampler.sampler import sampler_pair_fields
from recorder.venues.base import CONNECTOR_FIELDS, pair_fields


def _counters(pairs: list[str]) -> SharedCounters:
    fields = list(CONNECTOR_FIELDS)
    for p in pairs:
        fields += pair_fields(p) + sampler_pair_fields(p)
    return SharedCounters.create(fields)


def test_runs_and_causes(tmp_path: Path) -> None:
    pairs = ["A-B", "C-D"]
    c = _counters(pairs)
    path = tmp_path / "missed-ticks-x.jsonl"
    try:
        log = MissLog("x", 100, c, str(path))
        for p in pairs:
            log.hit(p)
        # A-B: a disconnect counted *before* the first missed tick still explains the run.
        c.incr("reconnects")
        log.miss("A-B", 1000, 1, "not_synced")
        log.miss("A-B", 1100, 2, "not_synced")  # contiguous: same run
        c.incr("resyncs:A-B")
        log.hit("A-B")
        log.hit("C-D")  # C-D was fine meanwhile: its baseline moves past the disconnect
        # C-D: a checksum failure outranks the resync it causes; then a separate drop run.
        c.incr("checksum_failures:C-D")
        log.miss("C-D", 1000, 1, "not_synced")
        c.incr("resyncs:C-D")
        log.miss("C-D", 1300, 1, "drop")  # not contiguous: closes the first run
        log.hit("C-D")
        # A-B again: a late loop, then a sequence gap and crossed book in one run.
        log.miss("A-B", 2000, 3, "late")
        log.hit("A-B")
        c.incr("gaps:A-B")
        log.miss("A-B", 3000, 1, "crossed")
        log.close()  # still open: written with ended=false
        runs = [json.loads(line) for line in path.read_text().splitlines()]
    finally:
        c.close()
    got = [(r["pair"], r["first_tick_ms"], r["last_tick_ms"], r["ticks"], r["cause"], r["ended"]) for r in runs]
    assert got == [
        ("A-B", 1000, 1200, 3, "disconnect", True),
        ("C-D", 1000, 1000, 1, "checksum", True),
        ("C-D", 1300, 1300, 1, "drop", True),
        ("A-B", 2000, 2200, 3, "late", True),
        ("A-B", 3000, 3000, 1, "sequence_gap", False),
    ]


def test_not_synced_after_a_restart_is_the_restart(tmp_path: Path) -> None:
    c = _counters(["A-B"])
    path = tmp_path / "m.jsonl"
    try:
        log = MissLog("x", 100, c, str(path))  # a new incarnation: A-B not sampled by it yet
        log.miss("A-B", 500, 4, "restart")  # ticks lost while the process was down
        c.incr("resyncs:A-B")
        log.miss("A-B", 900, 2, "not_synced")  # then waiting for the first sync
        log.hit("A-B")
        log.miss("A-B", 1500, 1, "not_synced")  # later trouble is not the restart's
        log.hit("A-B")
        log.close()
        runs = [json.loads(line) for line in path.read_text().splitlines()]
    finally:
        c.close()
    assert [(r["first_tick_ms"], r["ticks"], r["cause"]) for r in runs] == [
        (500, 6, "restart"),
        (1500, 1, "not_synced"),
    ]
