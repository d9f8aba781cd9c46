"""The writer in a real spawned process, fed through real shared-memory rings and counters."""

from __future__ import annotations

import datetime as dt
import multiprocessing as mp
import os
import random
import shutil
import signal
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import duckdb
import msgspec
import polars as pl
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from recorder.metrics import SharedCounters
from recorder.model import Level, Snapshot, ring_record
from recorder.ring import ShmRing
from recorder.writer import WRITER_COUNTER_FIELDS, WriterSpec, run_writer
from recorder.writer.batches import SCHEMA, utc_date
from recorder.writer.journal import journal_path
from recorder.writer.process import CRASH_ENV

SPAWN = mp.get_context("spawn")
SESSION = "sess-test"
T0 = 1_704_067_200_000  # 2024-01-01T00:00:00Z
COLS = [f.name for f in SCHEMA]


def make_snapshot(exchange: str, pair: str, ts: int, i: int, depth: int = 3) -> Snapshot:
    mid = 100.0 + (i % 37) * 0.5
    return Snapshot(
        exchange=exchange,
        pair=pair,
        timestamp_ms=ts,
        bids=[Level(mid - 0.5 * (k + 1), 1.0 + k + i / 1000) for k in range(depth)],
        asks=[Level(mid + 0.5 * (k + 1), 2.0 + k) for k in range(depth)],
        capture_latency_ms=None if i % 4 == 0 else (i % 9) * 0.25 - 0.5,
        exchange_time_ms=None if i % 6 == 0 else ts - 3,
        update_id=None if i % 5 == 0 else 10_000 + i,
        verified=i % 3 != 0,
    )


class Harness:
    """Rings + counters owned by the test (the supervisor's role) and writer processes."""

    def __init__(self, tmp_path: Path, venues: tuple[str, ...] = ("binance",), **spec: object) -> None:
        self.rings = {v: ShmRing.create(int(spec.pop("ring_capacity", 1 << 20))) for v in venues}  # type: ignore[call-overload]
        self.counters = SharedCounters.create(WRITER_COUNTER_FIELDS)
        self.data_dir = tmp_path / "data"
        base: dict[str, object] = dict(
            session_id=SESSION,
            data_dir=str(self.data_dir),
            formats=["jsonl", "parquet"],
            rotate_snapshots=1000,
            rotate_seconds=60.0,
            rotate_bytes=64 << 20,
            rings={v: r.name for v, r in self.rings.items()},
            counters_name=self.counters.name,
            stop_timeout_s=5.0,
        )
        base.update(spec)
        self.spec = WriterSpec(**base)  # type: ignore[arg-type]
        self.pushed: list[Snapshot] = []
        self.procs: list[mp.process.BaseProcess] = []
        self.next_i: dict[tuple[str, str], int] = defaultdict(int)

    def push(self, venue: str, snap: Snapshot) -> None:
        assert self.rings[venue].push(ring_record(snap)), "test ring too small"
        self.pushed.append(snap)

    def push_round(self, n: int, pairs: tuple[str, ...] = ("BTC-USDT", "ETH-USDT")) -> None:
        """``n`` snapshots for every (venue, pair), interleaved like real samplers."""
        for _ in range(n):
            for venue in self.rings:
                for pair in pairs:
                    i = self.next_i[(venue, pair)]
                    self.next_i[(venue, pair)] += 1
                    self.push(venue, make_snapshot(venue, pair, T0 + 1000 * i, i))

    def start(self, crash_at: str | None = None, **overrides: object) -> mp.process.BaseProcess:
        spec = msgspec.structs.replace(self.spec, **overrides) if overrides else self.spec
        if crash_at:
            os.environ[CRASH_ENV] = crash_at
        try:
            proc = SPAWN.Process(target=run_writer, args=(spec,))
            proc.start()
        finally:
            os.environ.pop(CRASH_ENV, None)
        self.procs.append(proc)
        # Ready (signal handlers installed) once it has published its pid.
        self.wait(lambda: self.c("pid") == proc.pid or not proc.is_alive())
        return proc

    def stop(self, proc: mp.process.BaseProcess, expect: int = 0) -> None:
        os.kill(proc.pid, signal.SIGTERM)  # type: ignore[arg-type]
        proc.join(30)
        assert proc.exitcode == expect

    def kill(self, proc: mp.process.BaseProcess) -> None:
        os.kill(proc.pid, signal.SIGKILL)  # type: ignore[arg-type]
        proc.join(30)
        assert proc.exitcode == -signal.SIGKILL

    def wait(self, pred: Callable[[], bool], timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not pred():
            assert time.monotonic() < deadline, f"timed out; counters={self.counters.as_dict()}"
            time.sleep(0.02)

    def c(self, field: str) -> float:
        return self.counters.get(field)

    def close(self) -> None:
        for p in self.procs:
            if p.is_alive():
                p.kill()
                p.join(10)
        for r in self.rings.values():
            r.close()
        self.counters.close()


@pytest.fixture
def harness(tmp_path: Path):
    made: list[Harness] = []

    def make(**kw: object) -> Harness:
        h = Harness(tmp_path, **kw)  # type: ignore[arg-type]
        made.append(h)
        return h

    yield make
    for h in made:
        h.close()


# -- dataset checks ------------------------------------------------------------------------


def expected_snapshots(pushed: list[Snapshot]) -> list[Snapshot]:
    seq: dict[tuple[str, str], int] = defaultdict(int)
    out = []
    for s in pushed:
        key = (s.exchange, s.pair)
        out.append(msgspec.structs.replace(s, sequence_number=seq[key], session_id=SESSION))
        seq[key] += 1
    return sorted(out, key=_key)


def _key(s: Snapshot) -> tuple[str, str, int]:
    return (s.exchange, s.pair, s.sequence_number)


def snapshots_from_rows(rows: list[dict]) -> list[Snapshot]:
    groups: dict[tuple[str, str, int], list[dict]] = defaultdict(list)
    for r in rows:
        groups[(r["exchange"], r["pair"], r["sequence_number"])].append(r)
    out = []
    for key in sorted(groups):
        g = groups[key]
        first = g[0]
        assert len({(r["timestamp_ms"], r["session_id"], r["update_id"]) for r in g}) == 1
        levels = {
            side: [Level(r["price"], r["quantity"]) for r in sorted(g, key=lambda r: r["level"]) if r["side"] == side]
            for side in ("bid", "ask")
        }
        for side in ("bid", "ask"):
            assert sorted(r["level"] for r in g if r["side"] == side) == list(range(len(levels[side])))
        out.append(
            Snapshot(
                exchange=first["exchange"],
                pair=first["pair"],
                timestamp_ms=first["timestamp_ms"],
                bids=levels["bid"],
                asks=levels["ask"],
                capture_latency_ms=first["capture_latency_ms"],
                sequence_number=first["sequence_number"],
                exchange_time_ms=first["exchange_time_ms"],
                update_id=first["update_id"],
                verified=first["verified"],
                session_id=first["session_id"],
            )
        )
    return out


def _row_key(t: tuple) -> tuple:
    return tuple((x is None, x) for x in t)


def verify_dataset(data_dir: Path, pushed: list[Snapshot]) -> dict[str, list[Path]]:
    """Every pushed snapshot exactly once in Parquet and JSONL, gap-free sequence numbers,
    no torn or temp files, hive layout readable by pyarrow, DuckDB and polars alike."""
    files: dict[str, list[Path]] = {}
    for fmt in ("parquet", "jsonl"):
        root = data_dir / fmt
        every = [p for p in root.rglob("*") if p.is_file()] if root.exists() else []
        assert not [p for p in every if p.name.startswith(".") or p.suffix != f".{fmt}"], every
        files[fmt] = sorted(every)
        for p in every:
            exch, date = p.parent.parent.name, p.parent.name
            assert exch.startswith("exchange=") and date.startswith("date=")
            assert p.name.startswith(f"{SESSION}-")
    expected = expected_snapshots(pushed)

    # Parquet: each file opens, has the schema, and sits in the right partition.
    for p in files["parquet"]:
        table = pq.read_table(p)
        assert table.schema.remove_metadata().equals(SCHEMA), table.schema
        exch, date = p.parent.parent.name.split("=", 1)[1], p.parent.name.split("=", 1)[1]
        for ts, ex in set(zip(table["timestamp_ms"].to_pylist(), table["exchange"].to_pylist(), strict=True)):
            assert utc_date(ts) == date and ex == exch
    dataset = ds.dataset(data_dir / "parquet", format="parquet", partitioning="hive")
    arrow_rows = dataset.to_table(columns=COLS).to_pylist()
    assert snapshots_from_rows(arrow_rows) == expected

    # JSONL: nested form, same snapshots.
    lines = [line for p in files["jsonl"] for line in p.read_bytes().splitlines()]
    from_jsonl = sorted((msgspec.json.decode(line, type=Snapshot) for line in lines), key=_key)
    assert from_jsonl == expected

    # Same rows through DuckDB and polars hive discovery.
    glob = str(data_dir / "parquet" / "**" / "*.parquet")
    ref = sorted((tuple(r[c] for c in COLS) for r in arrow_rows), key=_row_key)
    duck = duckdb.sql(f"SELECT {', '.join(COLS)} FROM read_parquet('{glob}', hive_partitioning=true)")
    assert sorted(duck.fetchall(), key=_row_key) == ref
    polars_rows = pl.scan_parquet(glob, hive_partitioning=True).select(COLS).collect().rows()
    assert sorted(polars_rows, key=_row_key) == ref
    return files


def snapshots_per_file(paths: list[Path]) -> list[int]:
    return [len(p.read_bytes().splitlines()) for p in paths]


# -- tests ---------------------------------------------------------------------------------


def test_parquet_long_form_and_jsonl_hold_same_snapshots(harness) -> None:
    h = harness(venues=("binance", "kraken"))
    proc = h.start()
    h.push_round(15)
    one_sided = make_snapshot("binance", "SOL-USDT", T0, 0)
    one_sided.asks = []
    empty = make_snapshot("binance", "SOL-USDT", T0 + 1000, 1)
    empty.bids, empty.asks = [], []
    h.push("binance", one_sided)
    h.push("binance", empty)
    # Unusable records are counted and skipped, never stored, never fatal.
    assert h.rings["binance"].push(b"\xc1 not msgpack")
    assert h.rings["kraken"].push(ring_record(make_snapshot("../evil", "X-Y", T0, 0)))
    torn = msgspec.msgpack.decode(ring_record(make_snapshot("kraken", "X-Y", T0, 0)))
    torn[4] = torn[4][:-1]  # bid quantities one short of the bid prices: no book to store
    assert h.rings["kraken"].push(msgspec.msgpack.encode(torn))
    h.wait(lambda: h.c("records_read") == len(h.pushed) + 3)
    assert h.c("heartbeat_ms") > 0 and h.c("pid") == proc.pid
    assert h.c("pending_snapshots") == len(h.pushed)  # nothing durable yet: no rotation due
    assert h.rings["binance"].commit_pos == 0
    h.stop(proc)
    files = verify_dataset(h.data_dir, h.pushed)
    assert len(files["parquet"]) == 2 and len(files["jsonl"]) == 2  # one per exchange partition
    assert h.c("snapshots_written") == len(h.pushed) == 62
    assert h.c("rows_written") == 60 * 6 + 3 + 1
    assert h.c("decode_errors") == 3
    assert h.c("write_errors") == 0
    for ring in h.rings.values():  # everything committed
        assert ring.commit_pos == ring.write_pos
    # Empty book: one row with null side, so the pair's sequence stays gap-free in Parquet.
    t = pq.read_table(files["parquet"][0]).to_pylist()
    sol = [r for r in t if r["pair"] == "SOL-USDT"]
    assert [(r["sequence_number"], r["side"], r["level"]) for r in sol] == [
        (0, "bid", 0),
        (0, "bid", 1),
        (0, "bid", 2),
        (1, None, None),
    ]
    journal = msgspec.json.decode(journal_path(h.data_dir, SESSION).read_bytes())
    assert journal["pending"] is None
    assert journal["next_seq"]["binance"] == {"BTC-USDT": 15, "ETH-USDT": 15, "SOL-USDT": 2}


def test_rotation_by_snapshot_count(harness) -> None:
    h = harness(rotate_snapshots=10)
    proc = h.start()
    h.push_round(35, pairs=("BTC-USDT",))
    h.stop(proc)
    files = verify_dataset(h.data_dir, h.pushed)
    assert snapshots_per_file(files["jsonl"]) == [10, 10, 10, 5]
    assert [pq.ParquetFile(p).metadata.num_rows for p in files["parquet"]] == [60, 60, 60, 30]
    assert [p.stem.rsplit("-", 1)[1] for p in files["parquet"]] == ["000000", "000001", "000002", "000003"]


def test_rotation_by_time(harness) -> None:
    h = harness(rotate_seconds=0.3)
    proc = h.start()
    h.push_round(3, pairs=("BTC-USDT",))
    h.wait(lambda: h.c("segments_committed") == 1)
    assert h.rings["binance"].commit_pos == h.rings["binance"].write_pos  # freed only when durable
    assert h.c("pending_snapshots") == 0
    h.push_round(2, pairs=("BTC-USDT",))
    h.wait(lambda: h.c("segments_committed") == 2)
    h.stop(proc)
    files = verify_dataset(h.data_dir, h.pushed)
    assert snapshots_per_file(files["jsonl"]) == [3, 2]


def test_date_partition_and_rotation_at_midnight(harness) -> None:
    h = harness()
    proc = h.start()
    midnight = T0 + 86_400_000  # 2024-01-02T00:00:00Z
    for i in range(10):
        h.push("binance", make_snapshot("binance", "BTC-USDT", midnight - 5000 + 1000 * i, i))
    h.wait(lambda: h.c("segments_committed") >= 1)  # the date change rotates without a stop
    h.stop(proc)
    files = verify_dataset(h.data_dir, h.pushed)
    by_date = defaultdict(int)
    for p in files["jsonl"]:
        by_date[p.parent.name] += len(p.read_bytes().splitlines())
    assert dict(by_date) == {"date=2024-01-01": 5, "date=2024-01-02": 5}
    dates = ds.dataset(h.data_dir / "parquet", partitioning="hive").to_table(columns=["date"])
    assert set(dates["date"].to_pylist()) == {"2024-01-01", "2024-01-02"}
    assert dt.datetime.fromtimestamp(midnight / 1000, dt.UTC).date().isoformat() == "2024-01-02"


def test_kill9_at_every_commit_step_and_at_random_loses_and_doubles_nothing(harness) -> None:
    h = harness(venues=("binance", "kraken"), rotate_snapshots=7)
    # Deterministic crash points inside the commit protocol (2nd commit of each run)...
    for point in ("after_prepare", "after_journal", "mid_publish", "after_publish", "after_ring_commit"):
        proc = h.start(crash_at=f"{point}:2")
        h.push_round(12)
        proc.join(30)
        assert proc.exitcode == -signal.SIGKILL, point
    # ...then SIGKILL from outside at arbitrary moments while producing.
    rng = random.Random(42)
    for _ in range(3):
        proc = h.start()
        for _ in range(4):
            h.push_round(3)
            time.sleep(rng.uniform(0.0, 0.08))
        h.kill(proc)
    proc = h.start()
    h.push_round(5)
    h.stop(proc)
    verify_dataset(h.data_dir, h.pushed)
    assert h.c("recoveries") >= 3  # after_journal, mid_publish, after_publish left pending entries
    assert h.c("temp_files_cleaned") >= 1  # after_prepare left temp files
    for ring in h.rings.values():
        assert ring.commit_pos == ring.write_pos and ring.dropped == 0


def test_unwritable_data_dir_counts_errors_loses_nothing(harness) -> None:
    h = harness(rotate_snapshots=5, stop_timeout_s=1.0)
    h.data_dir.mkdir()
    obstacle = h.data_dir / "parquet"
    obstacle.write_text("a file where the parquet tree should be")
    proc = h.start()
    h.push_round(6, pairs=("BTC-USDT",))
    h.wait(lambda: h.c("write_errors") >= 2)
    assert h.c("segments_committed") == 0 and h.rings["binance"].commit_pos == 0
    assert h.c("pending_snapshots") == 5  # the sealed segment waits in memory, ring holds it all
    assert not (h.data_dir / "jsonl").exists() or not list((h.data_dir / "jsonl").rglob("*.jsonl"))
    # Stopping while the disk still fails: exit 1, and the ring keeps every record.
    h.stop(proc, expect=1)
    assert h.rings["binance"].commit_pos == 0
    obstacle.unlink()
    proc = h.start()
    h.push_round(2, pairs=("BTC-USDT",))
    h.wait(lambda: h.c("snapshots_written") >= 5)
    h.stop(proc)
    files = verify_dataset(h.data_dir, h.pushed)
    assert sum(snapshots_per_file(files["jsonl"])) == 8


def test_sequence_numbers_continue_across_runs_even_without_journal(harness) -> None:
    h = harness()
    proc = h.start()
    h.push_round(4, pairs=("BTC-USDT",))
    h.stop(proc)
    proc = h.start()  # same session, journal present
    h.push_round(3, pairs=("BTC-USDT",))
    h.stop(proc)
    shutil.rmtree(h.data_dir / ".sessions")  # journal lost: rebuilt from the session's files
    proc = h.start()
    h.push_round(2, pairs=("BTC-USDT",))
    h.stop(proc)
    files = verify_dataset(h.data_dir, h.pushed)
    assert snapshots_per_file(files["jsonl"]) == [4, 3, 2]


def _start_writer_and_exit(spec: WriterSpec) -> None:
    proc = SPAWN.Process(target=run_writer, args=(spec,))
    proc.start()
    os._exit(0)  # orphan the writer, as if the supervisor died


def test_parent_death_drains_and_exits(harness) -> None:
    h = harness()
    h.push_round(6)
    middle = SPAWN.Process(target=_start_writer_and_exit, args=(h.spec,))
    middle.start()
    middle.join(30)
    h.wait(lambda: h.c("stopping") == 1)
    h.wait(lambda: h.c("snapshots_written") == len(h.pushed))
    pid = int(h.c("pid"))

    def gone() -> bool:
        try:
            return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] == "Z"
        except FileNotFoundError:
            return True

    h.wait(gone)
    verify_dataset(h.data_dir, h.pushed)
