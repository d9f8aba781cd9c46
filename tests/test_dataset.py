"""recorder.dataset: pruning, interoperability with DuckDB / polars / pandas, snapshots, as-of, S3."""

from __future__ import annotations

import datetime as dt
import json
import math
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import polars as pl
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pytest

from recorder.dataset import DatasetError, open_dataset, to_ms
from recorder.writer.batches import SCHEMA
from tests.conftest import free_port, read_jsonl, run_cli
from tests.faulty_capture import INTERVAL_MS, PAIRS, FaultyCapture
from tests.month_data import HOUR_MS, write_month

MONTH_START = to_ms("2026-11-01T00:00:00Z")
DAYS = 30


class CountingFs(pafs.FileSystemHandler):
    """The local filesystem, counting which files are opened and which directories listed."""

    def __init__(self) -> None:
        self.fs = pafs.LocalFileSystem()
        self.opened: list[str] = []
        self.listed: list[str] = []

    def get_type_name(self) -> str:
        return "counting"

    def equals(self, other: Any) -> bool:
        return self is other

    def normalize_path(self, path: str) -> str:
        return path

    def get_file_info(self, paths: list[str]) -> list[pafs.FileInfo]:
        return self.fs.get_file_info(paths)

    def get_file_info_selector(self, selector: pafs.FileSelector) -> list[pafs.FileInfo]:
        self.listed.append(selector.base_dir)
        return self.fs.get_file_info(selector)

    def open_input_file(self, path: str) -> Any:
        self.opened.append(path)
        return self.fs.open_input_file(path)

    def open_input_stream(self, path: str) -> Any:
        self.opened.append(path)
        return self.fs.open_input_stream(path)

    def _read_only(self, *args: Any) -> Any:
        raise OSError("read-only test filesystem")

    create_dir = delete_dir = delete_dir_contents = delete_root_dir_contents = delete_file = _read_only
    move = copy_file = open_output_stream = open_append_stream = _read_only


@pytest.fixture(scope="module")
def month(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("month") / "data"
    assert write_month(data, MONTH_START, DAYS) == DAYS * 24
    return data


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_one_hour_query_on_a_month_reads_one_day(month: Path, fmt: str) -> None:
    counting = CountingFs()
    ds = open_dataset(str(month), format=fmt, filesystem=pafs.PyFileSystem(counting))
    start = to_ms("2026-11-17T13:00:00Z")
    t = ds.table(pairs="ETH-USDT", start=start, end=start + HOUR_MS)
    assert t.num_rows == 12 * 4  # 12 snapshots in the hour, 2 levels x 2 sides each
    assert set(t["pair"].to_pylist()) == {"ETH-USDT"}
    assert min(t["timestamp_ms"].to_pylist()) == start and max(t["timestamp_ms"].to_pylist()) < start + HOUR_MS
    # Only the 2026-11-17 partition was listed and read: at most 24 of the month's 720 files
    # (files named after a first tick past the hour are not even opened).
    assert counting.opened and all("date=2026-11-17" in p for p in counting.opened)
    assert any(f"-{start}-" in p for p in counting.opened)
    assert len(set(counting.opened)) <= 24
    assert not [d for d in counting.listed if "date=" in d and "date=2026-11-17" not in d]

    # The counter is not blind: the whole month opens every file.
    counting.opened.clear()
    assert ds.table(pairs="ETH-USDT").num_rows == DAYS * 24 * 12 * 4
    assert len(set(counting.opened)) == DAYS * 24


def test_range_across_midnight_and_exchange_pruning(month: Path) -> None:
    counting = CountingFs()
    ds = open_dataset(str(month), filesystem=pafs.PyFileSystem(counting))
    start = to_ms("2026-11-09T23:30:00Z")
    w = ds.wide(depth=1, start=start, end=start + HOUR_MS)
    assert w.num_rows == 2 * 12
    assert {p.split("date=")[1][:10] for p in counting.opened} == {"2026-11-09", "2026-11-10"}
    counting.opened.clear()
    assert ds.table(exchanges="kraken").num_rows == 0
    assert counting.opened == []  # no exchange=kraken partition: nothing opened at all


def test_snapshots_merge_pairs_in_time_order_in_bounded_chunks(month: Path) -> None:
    ds = open_dataset(str(month))
    start = to_ms("2026-11-03T22:00:00Z")
    snaps = list(ds.snapshots(start=start, end=start + 4 * HOUR_MS, chunk="30m"))
    assert len(snaps) == 4 * 12 * 2
    keys = [(s.timestamp_ms, s.pair) for s in snaps]
    assert keys == sorted(keys)
    assert [s.pair for s in snaps[:4]] == ["BTC-USDT", "ETH-USDT", "BTC-USDT", "ETH-USDT"]
    s = snaps[0]
    assert s.bids.shape == (2, 2) and s.asks.shape == (2, 2) and s.bids.dtype == np.float64
    assert s.mid == (s.bids[0, 0] + s.asks[0, 0]) / 2 and s.spread == 1.0
    assert s.microprice == pytest.approx((s.bids[0, 0] * 2.0 + s.asks[0, 0] * 1.0) / 3.0)
    assert s.timestamp == "2026-11-03T22:00:00.000Z"


# -- on data written by a real capture ------------------------------------------------------


def _norm(rows: list[tuple]) -> list[tuple]:
    return [tuple(None if isinstance(v, float) and math.isnan(v) else v for v in r) for r in rows]


def test_duckdb_polars_pandas_and_reader_return_the_same_rows(faulty_capture: FaultyCapture) -> None:
    data = faulty_capture.data
    ds = open_dataset(str(data))
    all_ts = sorted(set(ds.table(columns=["timestamp_ms"])["timestamp_ms"].to_pylist()))
    lo = all_ts[5]
    hi = min(lo + 6_000, (lo // 86_400_000 + 1) * 86_400_000)  # one UTC date, even near midnight
    cols = SCHEMA.names
    ours = ds.table(pairs="BTC-USDT", start=lo, end=dt.datetime.fromtimestamp(hi / 1000, tz=dt.UTC))
    ours_rows = _norm([tuple(r[c] for c in cols) for r in ours.to_pylist()])
    assert len({r[cols.index("timestamp_ms")] for r in ours_rows}) >= min(15, (hi - lo) // INTERVAL_MS)

    # Each engine discovers the Hive partitions itself and prunes on them (date) as users would.
    glob = str(data / "parquet" / "**" / "*.parquet")
    day = dt.datetime.fromtimestamp(lo / 1000, tz=dt.UTC).date().isoformat()
    order = "timestamp_ms, side desc, level"
    where = f"date = '{day}' and pair = 'BTC-USDT' and timestamp_ms >= {lo} and timestamp_ms < {hi}"
    duck = duckdb.sql(
        f"select {', '.join(cols)} from read_parquet('{glob}', hive_partitioning=true) where {where} order by {order}"
    )
    pol = (
        pl.scan_parquet(glob, hive_partitioning=True)
        .filter(
            (pl.col("date").cast(pl.String) == day)
            & (pl.col("pair") == "BTC-USDT")
            & (pl.col("timestamp_ms") >= lo)
            & (pl.col("timestamp_ms") < hi)
        )
        .sort(["timestamp_ms", "side", "level"], descending=[False, True, False])
        .select(cols)
        .collect()
    )
    # pandas (pyarrow engine): partition values as plain strings, since `exchange` is also a column.
    pdf = pd.read_parquet(
        data / "parquet",
        filters=[
            ("date", "==", day),
            ("pair", "==", "BTC-USDT"),
            ("timestamp_ms", ">=", lo),
            ("timestamp_ms", "<", hi),
        ],
        partitioning=pads.HivePartitioning.discover(infer_dictionary=False),
    )
    pdf = pdf.sort_values(["timestamp_ms", "side", "level"], ascending=[True, False, True])[cols]
    pdf = pdf.astype(object).where(pdf.notna(), None)
    assert _norm(duck.fetchall()) == ours_rows
    assert _norm(pol.rows()) == ours_rows
    assert _norm(list(pdf.itertuples(index=False, name=None))) == ours_rows
    # The reader's own pandas / polars frames are the same rows too.
    assert _norm(list(ds.to_pandas(pairs="BTC-USDT", start=lo, end=hi).itertuples(index=False, name=None))) == ours_rows
    assert _norm(ds.to_polars(pairs="BTC-USDT", start=lo, end=hi).rows()) == ours_rows
    # Reading the JSONL copy gives the identical table.
    assert open_dataset(str(data), format="jsonl").table(pairs="BTC-USDT", start=lo, end=hi).equals(ours)


def test_wide_top_of_book_matches_sql(faulty_capture: FaultyCapture) -> None:
    data = faulty_capture.data
    w = open_dataset(str(data)).wide(depth=3)
    glob = str(data / "parquet" / "**" / "*.parquet")
    sql = f"""
        select pair, timestamp_ms,
          max(price) filter (where side = 'bid' and level = 0) as bid_px_0,
          max(quantity) filter (where side = 'bid' and level = 0) as bid_qty_0,
          max(price) filter (where side = 'ask' and level = 0) as ask_px_0,
          max(quantity) filter (where side = 'ask' and level = 0) as ask_qty_0,
          max(price) filter (where side = 'ask' and level = 2) as ask_px_2
        from read_parquet('{glob}') group by pair, timestamp_ms order by timestamp_ms, pair"""
    ref = duckdb.sql(sql).fetchall()
    got = w.select(["pair", "timestamp_ms", "bid_px_0", "bid_qty_0", "ask_px_0", "ask_qty_0", "ask_px_2"])
    assert [tuple(r.values()) for r in got.to_pylist()] == ref
    assert w.num_rows == sum(faulty_capture.final_status["venues"]["binance"]["pairs"][p]["samples"] for p in PAIRS)
    for r in w.slice(0, 20).to_pylist():
        assert r["mid"] == (r["bid_px_0"] + r["ask_px_0"]) / 2
        assert r["spread"] == r["ask_px_0"] - r["bid_px_0"] and r["spread"] > 0
        total = r["bid_qty_0"] + r["ask_qty_0"]
        assert r["microprice"] == pytest.approx(
            (r["bid_px_0"] * r["ask_qty_0"] + r["ask_px_0"] * r["bid_qty_0"]) / total
        )
        assert r["bid_px_0"] < r["microprice"] < r["ask_px_0"]
    assert "bid_px_3" not in w.column_names and "ask_qty_2" in w.column_names


def test_snapshots_equal_the_jsonl_lines(faulty_capture: FaultyCapture) -> None:
    data = faulty_capture.data
    snaps = list(open_dataset(str(data)).snapshots())
    lines = sorted(read_jsonl(data), key=lambda s: (s["timestamp_ms"], s["pair"]))
    assert len(snaps) == len(lines)
    assert [s.timestamp_ms for s in snaps] == sorted(s.timestamp_ms for s in snaps)
    for s, line in zip(snaps, lines, strict=True):
        assert (s.pair, s.timestamp_ms, s.sequence_number, s.update_id) == (
            line["pair"],
            line["timestamp_ms"],
            line["sequence_number"],
            line["update_id"],
        )
        assert s.bids.tolist() == [[lv["price"], lv["qty"]] for lv in line["bids"]]
        assert s.asks.tolist() == [[lv["price"], lv["qty"]] for lv in line["asks"]]
        assert s.is_valid


def test_asof_returns_the_last_valid_snapshot_at_or_before(faulty_capture: FaultyCapture) -> None:
    ds = open_dataset(str(faulty_capture.data))
    ts = np.array(sorted(ds.table(pairs="ETH-USDT", columns=["timestamp_ms"])["timestamp_ms"].to_pylist()))
    ts = np.unique(ts)
    at = ds.asof(int(ts[7]), exchange="binance", pair="ETH-USDT")
    assert at is not None and at.timestamp_ms == ts[7] and at.pair == "ETH-USDT"
    at = ds.asof(int(ts[7]) + INTERVAL_MS - 1, exchange="binance", pair="ETH-USDT")
    assert at is not None and at.timestamp_ms == ts[7]
    # Inside an injected gap: the snapshot before the gap.
    i = int(np.flatnonzero(np.diff(ts) > INTERVAL_MS)[0])
    at = ds.asof(int(ts[i]) + INTERVAL_MS + 10, exchange="binance", pair="ETH-USDT")
    assert at is not None and at.timestamp_ms == ts[i]
    assert ds.asof(int(ts[0]) - 1, exchange="binance", pair="ETH-USDT", lookback="1h") is None
    assert ds.asof(int(ts[-1]) + 10 * 86_400_000, exchange="binance", pair="ETH-USDT", lookback="2d") is None


# -- S3 --------------------------------------------------------------------------------------


@pytest.fixture
def s3_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """moto's standalone S3 server on loopback; the client talks real HTTP to it."""
    for key in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{url}/moto-api/", timeout=2).close()
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError("moto server did not start") from None
            time.sleep(0.2)
    yield url
    proc.terminate()
    proc.wait(10)


def test_s3_dataset_reads_like_local(
    faulty_capture: FaultyCapture, s3_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3

    s3 = boto3.client("s3", endpoint_url=s3_server)
    s3.create_bucket(Bucket="books")
    data = faulty_capture.data
    for path in data.rglob("*"):
        rel = path.relative_to(data).as_posix()
        if path.is_file() and (rel.startswith("parquet/") or rel.startswith("jsonl/")):
            s3.upload_file(str(path), "books", f"capture/{rel}")
    local = open_dataset(str(data))
    remote = open_dataset("s3://books/capture", endpoint_url=s3_server)
    assert remote.format == "parquet"
    assert remote.table().equals(local.table())
    assert remote.wide(depth=2, pairs="ETH-USDT").equals(local.wide(depth=2, pairs="ETH-USDT"))
    assert open_dataset("s3://books/capture", format="jsonl", endpoint_url=s3_server).table().equals(local.table())
    # Pruning works the same way remotely: a date with no partition lists no file.
    assert remote.files(start="2020-01-01", end="2020-01-02") == []
    assert len(remote.files()) == len(local.files())
    with pytest.raises(DatasetError, match="no recorder data"):
        open_dataset("s3://books/nothing-here", endpoint_url=s3_server)
    # The report reads the bucket too (endpoint from the standard AWS_ENDPOINT_URL variable);
    # without the session's status beside the data it infers the interval and can't name causes.
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server)
    res = run_cli("report", "--data-dir", "s3://books/capture", "--json")
    assert res.returncode == 0, res.stderr
    (remote_s,) = json.loads(res.stdout)["sessions"]
    (local_s,) = json.loads(run_cli("report", "--data-dir", str(data), "--json").stdout)["sessions"]
    assert (remote_s["interval_ms"], remote_s["interval_source"]) == (INTERVAL_MS, "inferred")
    for r, loc in zip(remote_s["pairs"], local_s["pairs"], strict=True):
        assert (r["pair"], r["stored"], r["expected"], r["storage"]) == (
            loc["pair"],
            loc["stored"],
            loc["expected"],
            loc["storage"],
        )
        assert [(g["start_ms"], g["ticks"]) for g in r["gaps"]] == [(g["start_ms"], g["ticks"]) for g in loc["gaps"]]
        assert {g["cause"] for g in r["gaps"]} == {"unknown"}


def test_s3_unreadable_object_is_named_or_skipped(tmp_path: Path, s3_server: str) -> None:
    import boto3
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = tmp_path / "data"
    write_month(data, MONTH_START, 1)
    good = sorted((data / "parquet").rglob("*.parquet"))
    s3 = boto3.client("s3", endpoint_url=s3_server)
    s3.create_bucket(Bucket="torn")
    for path in good:
        s3.upload_file(str(path), "torn", f"cap/{path.relative_to(data).as_posix()}")
    bad_key = f"cap/{good[0].parent.relative_to(data).as_posix()}/synthetic-{MONTH_START + 1}-000099.parquet"
    s3.put_object(Bucket="torn", Key=bad_key, Body=good[0].read_bytes()[:-100])  # a copy cut short
    with pytest.raises(DatasetError, match=f"^cannot read s3://torn/{bad_key}: "):
        open_dataset("s3://torn/cap", endpoint_url=s3_server).table()
    ds = open_dataset("s3://torn/cap", endpoint_url=s3_server, on_error="skip")
    order = [("timestamp_ms", "ascending"), ("pair", "ascending"), ("side", "descending"), ("level", "ascending")]
    reference = pa.concat_tables([pq.read_table(p) for p in good]).sort_by(order)  # plain pyarrow
    assert ds.table().sort_by(order).equals(reference)
    assert list(ds.skipped) == [f"s3://torn/{bad_key}"]


# -- bad input ---------------------------------------------------------------------------------


def test_bad_locations_and_selections_fail_with_one_line(tmp_path: Path, month: Path) -> None:
    with pytest.raises(DatasetError, match="no data directory"):
        open_dataset(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no recorder data"):
        open_dataset(tmp_path / "empty")
    with pytest.raises(DatasetError, match="unsupported location"):
        open_dataset("ftp://host/data")
    with pytest.raises(DatasetError, match="invalid format"):
        open_dataset(str(month), format="csv")
    ds = open_dataset(str(month))
    with pytest.raises(DatasetError, match="invalid pair"):
        ds.table(pairs="BTC/USDT/X")
    with pytest.raises(DatasetError, match="invalid time"):
        ds.table(start="yesterday")
    with pytest.raises(DatasetError, match="empty time range"):
        ds.table(start="2026-11-02", end="2026-11-01")
    with pytest.raises(DatasetError, match="unknown column"):
        ds.table(columns=["nope"], start="2026-11-02", end="2026-11-02T00:10:00Z")
    # A torn/garbled JSONL file is named in the error, not a traceback from deep inside.
    bad = tmp_path / "bad" / "jsonl" / "exchange=binance" / "date=2026-11-01"
    bad.mkdir(parents=True)
    (bad / "x-1-000000.jsonl").write_text('{"exchange": "binance", "pair": \n')
    with pytest.raises(DatasetError, match="cannot read .*x-1-000000.jsonl: malformed JSONL line 1"):
        open_dataset(tmp_path / "bad").table()


def test_report_cli_errors_are_one_line(tmp_path: Path, month: Path) -> None:
    for args, msg in [
        (["--data-dir", str(tmp_path / "nope")], "no data directory"),
        (["--data-dir", str(month), "--session-id", "../etc"], "invalid session id"),
        (["--data-dir", str(month), "--session-id", "other"], "no stored snapshots of session 'other'"),
    ]:
        res = run_cli("report", *args)
        assert res.returncode == 2, res.stderr
        err = res.stderr.strip().splitlines()
        assert len(err) == 1 and msg in err[0] and "Traceback" not in res.stderr


def test_month_report_json_is_complete(month: Path) -> None:
    res = run_cli("report", "--data-dir", str(month), "--json", "--format", "jsonl")
    assert res.returncode == 0, res.stderr
    (session,) = json.loads(res.stdout)["sessions"]
    assert session["interval_source"] == "inferred" and session["interval_ms"] == 300_000
    for p in session["pairs"]:
        assert p["stored"] == p["expected"] == DAYS * 24 * 12 and p["gaps"] == []
        assert p["storage"]["jsonl"]["files"] == DAYS * 24 and p["storage"]["parquet"]["files"] == DAYS * 24
    assert session["session_id"] == "synthetic"
