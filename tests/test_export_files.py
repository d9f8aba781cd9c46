"""Exports as files: tardis CSV read back with tardis' documented layout equals the stored data;
trades and quotes plug in through the dataset's readers; JSONL, Parquet and S3 sources export
alike; bad arguments are one-line errors; a progress bar on a terminal.
"""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import run_cli
from tests.export_data import (  # noqa: F401 - replayed: a fixture by name
    expected_quotes,
    export_cli,
    ours,
    records,
    replayed,
)
from tests.test_dataset import s3_server  # noqa: F401 - the moto S3 server fixture


def test_tardis_csv_reads_back_as_stored(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    rec: Path = request.getfixturevalue("replayed")
    out = tmp_path / "tardis"
    export_cli(rec, "tardis", out, "--depth", "5", "--exchanges", "binance-futures,binance")
    books = ours(rec)
    symbols = {"binance": "binance", "binance-futures": "binance-futures"}
    expected_header = ["exchange", "symbol", "timestamp", "local_timestamp"] + [
        f"{side}[{i}].{field}" for i in range(5) for side in ("asks", "bids") for field in ("price", "amount")
    ]
    for (exchange, pair), snaps in books.items():
        symbol = pair.removesuffix("-PERP").replace("-", "")
        name = f"{symbols[exchange]}_book_snapshot_5_{snaps[0].timestamp[:10]}_{symbol}.csv.gz"
        with gzip.open(out / name, "rt", newline="") as fh:
            rows = list(csv.reader(fh))
        assert rows[0] == expected_header
        body = rows[1:]
        assert len(body) == len(snaps)
        for row, s in zip(body, snaps, strict=True):
            assert row[:2] == [symbols[exchange], symbol]
            assert int(row[3]) == s.timestamp_ms * 1000  # µs
            exch = s.exchange_time_ms if s.exchange_time_ms is not None else s.timestamp_ms
            assert int(row[2]) == exch * 1000
            for i in range(5):
                for off, levels in ((4, s.asks), (6, s.bids)):
                    px, amount = row[off + 4 * i], row[off + 4 * i + 1]
                    if i < len(levels):
                        assert (float(px), float(amount)) == (levels[i, 0], levels[i, 1])
                    else:
                        assert px == amount == ""
        quotes = _rows(out, f"{symbols[exchange]}_quotes_*_{symbol}.csv.gz")
        assert quotes[0] == ["exchange", "symbol", "timestamp", "local_timestamp"] + [
            "ask_amount",
            "ask_price",
            "bid_price",
            "bid_amount",
        ]
        got = [
            (int(q[3]), int(q[2]), *(float(q[k]) if q[k] else None for k in (5, 4, 6, 7)))
            for q in quotes[1:]
            if q != quotes[0]  # each day's file has its header
        ]
        want = [(lo, lo if ex is None else ex, *rest) for lo, ex, *rest in expected_quotes(rec, exchange, pair)]
        assert got == want, pair
        stored = records(rec, "trades").get((exchange, pair))
        trades = _rows(out, f"{symbols[exchange]}_trades_*_{symbol}.csv.gz")
        if stored is None:
            assert trades == []
            continue
        assert trades[0] == ["exchange", "symbol", "timestamp", "local_timestamp", "id", "side", "price", "amount"]
        local = stored["local_time"].cast("int64").to_pylist()
        venue = stored["exchange_time"].cast("int64").to_pylist()
        want_trades = [
            [symbols[exchange], symbol, str(v if v is not None else lo), str(lo), tid, side, px, qty]
            for lo, v, tid, side, px, qty in zip(
                local,
                venue,
                stored["trade_id"].to_pylist(),
                stored["side"].to_pylist(),
                stored["price"].to_pylist(),
                stored["quantity"].to_pylist(),
                strict=True,
            )
        ]
        got_trades = [t[:6] + [float(t[6]), float(t[7])] for t in trades[1:] if t != trades[0]]
        assert got_trades == want_trades, pair


def _rows(out: Path, pattern: str) -> list[list[str]]:
    """Every row of the files matching ``pattern``, day after day (each file's header kept)."""
    rows: list[list[str]] = []
    for path in sorted(out.glob(pattern)):
        with gzip.open(path, "rt", newline="") as fh:
            rows += list(csv.reader(fh))
    return rows


def test_bad_arguments_are_one_line_errors(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    rec: Path = request.getfixturevalue("replayed")
    out = tmp_path / "out"
    cases = [
        (["--to", "zipline"], "Invalid value for '--to'"),
        (["--to", "tardis", "--pairs", "../etc"], "Error: invalid pair"),
        (["--to", "tardis", "--start", "yesterday"], "Error: invalid time 'yesterday'"),
        (["--to", "tardis", "--start", "2021-10-13", "--end", "2021-10-12"], "Error: empty time range"),
        (["--to", "tardis", "--exchanges", "kraken"], "Error: nothing to export"),
        (["--to", "tardis", "--session-id", "../x"], "Error: invalid session id"),
        (["--to", "tardis", "--depth", "0"], "Error: invalid depth 0"),
    ]
    for args, message in cases:
        res = run_cli("export", "--data-dir", str(rec), "--out", str(out), *args)
        assert res.returncode == 2, (args, res.stderr)
        assert message in res.stderr and "Traceback" not in res.stderr, (args, res.stderr)
    res = run_cli("export", "--to", "tardis", "--data-dir", str(tmp_path / "missing"), "--out", str(out))
    assert res.returncode == 2 and res.stderr.strip().splitlines()[-1].startswith("Error: no data directory")
    # An export never overwrites an earlier one unless told to.
    export_cli(rec, "tardis", out, "--exchanges", "binance")
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    res = run_cli("export", "--to", "tardis", "--data-dir", str(rec), "--out", str(out))
    assert res.returncode == 2 and "exists: choose another --out or pass --overwrite" in res.stderr
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
    # Names from the data become file names: a partition that would climb out of --out is refused.
    import shutil

    evil = tmp_path / "evil" / "parquet" / "exchange=binance" / "date=..%2F..%2Fescaped"
    evil.mkdir(parents=True)
    for f in (rec / "parquet" / "exchange=binance").rglob("*.parquet"):
        shutil.copy(f, evil / f.name)
    res = run_cli("export", "--to", "tardis", "--data-dir", str(tmp_path / "evil"), "--out", str(tmp_path / "o"))
    assert res.returncode == 2 and res.stderr.startswith("Error: invalid date partition '../../escaped'")
    assert not (tmp_path / "escaped").exists() and not list(tmp_path.rglob("*escaped*.csv.gz"))
    (tmp_path / "file").write_text("x")
    res = run_cli("export", "--to", "tardis", "--data-dir", str(rec), "--out", str(tmp_path / "file"))
    assert res.returncode == 2 and "is not a directory" in res.stderr


def test_trades_are_exported_when_the_dataset_has_them(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The exporters read trades through ``Dataset.trades(**selection)`` (the trades dataset's
    reader: one row per trade, µs ``exchange_time`` / ``local_time``); stand one in here."""
    rec: Path = request.getfixturevalue("replayed")
    import pyarrow as pa

    from recorder.dataset.reader import Dataset
    from recorder.export import export

    snaps = ours(rec)[("binance", "NKN-USDT")]
    t0 = snaps[3].timestamp_ms * 1000 + 250  # µs
    us = pa.timestamp("us", tz="UTC")
    stored = pa.table(
        {
            "exchange": ["binance"] * 4,
            "pair": ["NKN-USDT"] * 4,
            "trade_id": ["101", "102", "103", "104"],
            "price": [0.4312, 0.4311, 0.4313, 0.4313],
            "quantity": [12.0, 3.5, 40.0, 0.0],  # a zero-size print: nautilus refuses it
            "side": ["buy", "sell", "buy", "sell"],
            "exchange_time": pa.array([t0 - 900, t0 + 1_000, None, t0 + 400_000], us),
            "local_time": pa.array([t0, t0 + 2_000, t0 + 300_000, t0 + 400_000], us),
            "session_id": ["s"] * 4,
            "sequence_number": [0, 1, 2, 3],
        }
    )

    def trades(self: Dataset, **select: object) -> pa.Table:
        sel = self.selection(**select)
        local_ms = [v // 1000 for v in stored["local_time"].cast(pa.int64()).to_pylist()]
        keep = [
            (sel.pairs is None or p in sel.pairs)
            and (sel.start_ms is None or t >= sel.start_ms)
            and (sel.end_ms is None or t < sel.end_ms)
            for p, t in zip(stored["pair"].to_pylist(), local_ms, strict=True)
        ]
        return stored.filter(pa.array(keep))

    monkeypatch.setattr(Dataset, "trades", trades, raising=False)
    res = export(rec, to="tardis", out=tmp_path / "tardis", exchanges="binance", pairs="NKN-USDT", depth=5)
    assert res.counts["trades"] == 4
    with gzip.open(tmp_path / "tardis" / "binance_trades_2021-10-12_NKNUSDT.csv.gz", "rt", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["exchange", "symbol", "timestamp", "local_timestamp", "id", "side", "price", "amount"]
    assert rows[1:] == [
        ["binance", "NKNUSDT", str(t0 - 900), str(t0), "101", "buy", "0.4312", "12"],
        ["binance", "NKNUSDT", str(t0 + 1_000), str(t0 + 2_000), "102", "sell", "0.4311", "3.5"],
        ["binance", "NKNUSDT", str(t0 + 300_000), str(t0 + 300_000), "103", "buy", "0.4313", "40"],  # no venue time
        ["binance", "NKNUSDT", str(t0 + 400_000), str(t0 + 400_000), "104", "sell", "0.4313", "0"],
    ]
    hbt = pytest.importorskip("hftbacktest")
    res = export(rec, to="hftbacktest", out=tmp_path / "hbt", exchanges="binance", pairs="NKN-USDT")
    assert res.counts["trades"] == 4
    events = np.load(tmp_path / "hbt" / "binance_NKN-USDT_2021-10-12.npz")["data"]
    tr = events[((events["ev"] & 0xFF) == hbt.TRADE_EVENT) & ((events["ev"] & hbt.LOCAL_EVENT) != 0)]
    assert tr["local_ts"].tolist() == [t * 1000 for t in (t0, t0 + 2_000, t0 + 300_000, t0 + 400_000)]
    assert tr["px"].tolist() == [0.4312, 0.4311, 0.4313, 0.4313] and tr["qty"].tolist() == [12.0, 3.5, 40.0, 0.0]
    sides = [(e & hbt.BUY_EVENT) != 0 for e in tr["ev"].tolist()]
    assert sides == [True, False, True, False]
    pytest.importorskip("nautilus_trader")
    from nautilus_trader.persistence.catalog import ParquetDataCatalog

    res = export(rec, to="nautilus", out=tmp_path / "catalog", exchanges="binance", pairs="NKN-USDT")
    ticks = ParquetDataCatalog(str(tmp_path / "catalog")).trade_ticks(instrument_ids=["NKN-USDT.BINANCE"])
    got = [(t.ts_init, t.ts_event, str(t.trade_id), t.price.as_double(), t.size.as_double()) for t in ticks]
    assert got == [
        (t0 * 1000, (t0 - 900) * 1000, "101", 0.4312, 12.0),
        ((t0 + 2_000) * 1000, (t0 + 1_000) * 1000, "102", 0.4311, 3.5),
        ((t0 + 300_000) * 1000, (t0 + 300_000) * 1000, "103", 0.4313, 40.0),
    ]
    assert [t.aggressor_side.name for t in ticks] == ["BUYER", "SELLER", "BUYER"]


def test_quotes_dataset_replaces_tops_of_snapshots(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a quotes dataset (``Dataset.quotes(**selection)``), tardis ``quotes`` and nautilus
    ``QuoteTick`` come from it, not from the snapshots' tops; a side missing is an empty cell
    (tardis) or no tick (nautilus needs both sides)."""
    rec: Path = request.getfixturevalue("replayed")
    import pyarrow as pa

    from recorder.dataset.reader import Dataset
    from recorder.export import export

    t0 = ours(rec)[("binance", "NKN-USDT")][2].timestamp_ms * 1000 + 7
    us = pa.timestamp("us", tz="UTC")
    stored = pa.table(
        {
            "exchange": ["binance"] * 2,
            "pair": ["NKN-USDT"] * 2,
            "bid_price": [0.431, None],
            "bid_qty": [5.0, None],
            "ask_price": [0.4315, 0.4316],
            "ask_qty": [7.5, 1.0],
            "exchange_time": pa.array([t0 - 40, t0 + 60], us),
            "local_time": pa.array([t0, t0 + 90], us),
            "update_id": [1, 2],
            "session_id": ["s"] * 2,
            "sequence_number": [0, 1],
        }
    )

    def quotes(self: Dataset, **select: object) -> pa.Table:
        sel = self.selection(**select)
        if sel.pairs is not None and "NKN-USDT" not in sel.pairs:
            return stored.slice(0, 0)
        ms = [us // 1000 for us in stored["local_time"].cast("int64").to_pylist()]  # time range as the reader's
        return stored.filter([(sel.start_ms or 0) <= t < (sel.end_ms or 2**62) for t in ms])

    monkeypatch.setattr(Dataset, "quotes", quotes, raising=False)
    export(rec, to="tardis", out=tmp_path / "tardis", exchanges="binance", pairs="NKN-USDT", depth=5)
    with gzip.open(tmp_path / "tardis" / "binance_quotes_2021-10-12_NKNUSDT.csv.gz", "rt", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[1:] == [
        ["binance", "NKNUSDT", str(t0 - 40), str(t0), "7.5", "0.4315", "0.431", "5"],
        ["binance", "NKNUSDT", str(t0 + 60), str(t0 + 90), "1", "0.4316", "", ""],
    ]
    pytest.importorskip("nautilus_trader")
    from nautilus_trader.persistence.catalog import ParquetDataCatalog

    export(rec, to="nautilus", out=tmp_path / "catalog", exchanges="binance", pairs="NKN-USDT")
    ticks = ParquetDataCatalog(str(tmp_path / "catalog")).quote_ticks(instrument_ids=["NKN-USDT.BINANCE"])
    assert [(q.ts_init, q.ts_event, q.bid_price.as_double(), q.ask_size.as_double()) for q in ticks] == [
        (t0 * 1000, (t0 - 40) * 1000, 0.431, 7.5)
    ]


def test_progress_bar_on_a_terminal_only(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    rec: Path = request.getfixturevalue("replayed")
    import os
    import pty
    import subprocess

    from tests.conftest import CLI
    from tests.conftest import ROOT as CLI_ROOT

    args = ["export", "--to", "tardis", "--data-dir", str(rec), "--out"]
    res = run_cli(*args, str(tmp_path / "piped"))
    assert res.returncode == 0 and res.stderr == ""  # no bar in a pipe or a log
    master, slave = pty.openpty()
    proc = subprocess.Popen([*CLI, *args, str(tmp_path / "tty")], stdout=subprocess.PIPE, stderr=slave, cwd=CLI_ROOT)
    os.close(slave)
    shown = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        shown += chunk
    out, _ = proc.communicate(timeout=120)
    os.close(master)
    assert proc.returncode == 0 and out.startswith(b"exported "), (out, shown[-500:])
    assert b"exporting to tardis" in shown and b"/" in shown, shown[-500:]


def test_exports_from_s3_as_from_the_local_dir(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3

    rec: Path = request.getfixturevalue("replayed")
    s3_url: str = request.getfixturevalue("s3_server")  # moto's S3 server (tests/test_dataset.py)
    s3 = boto3.client("s3", endpoint_url=s3_url)
    s3.create_bucket(Bucket="books")
    for path in rec.rglob("*"):
        rel = path.relative_to(rec).as_posix()
        if path.is_file() and rel.startswith(("parquet/", "jsonl/", "trades/", "quotes/")):
            s3.upload_file(str(path), "books", f"capture/{rel}")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_url)
    export_cli(rec, "tardis", tmp_path / "local", "--pairs", "NKN-USDT,SUSHI-USDT-PERP")
    res = run_cli(
        "export", "--to", "tardis", "--data-dir", "s3://books/capture", "--out", str(tmp_path / "s3"),
        "--pairs", "NKN-USDT,SUSHI-USDT-PERP",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    names = sorted(p.name for p in (tmp_path / "local").iterdir())
    assert len(names) >= 4 and names == sorted(p.name for p in (tmp_path / "s3").iterdir())
    for name in names:
        assert gzip.decompress((tmp_path / "s3" / name).read_bytes()) == gzip.decompress(
            (tmp_path / "local" / name).read_bytes()
        )


def test_trades_and_quotes_without_books(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """A capture of trades and quotes alone (no book channel) exports them, and no empty book files."""
    import shutil

    rec: Path = request.getfixturevalue("replayed")
    data = tmp_path / "data"
    for tree in ("trades", "quotes"):
        shutil.copytree(rec / tree, data / tree)
    export_cli(rec, "tardis", tmp_path / "full", "--exchanges", "binance")
    export_cli(data, "tardis", tmp_path / "alone", "--exchanges", "binance")
    full = {p.name for p in (tmp_path / "full").iterdir() if "_book_snapshot_" not in p.name}
    alone = {p.name for p in (tmp_path / "alone").iterdir()}
    trades = {n for n in alone if "_trades_" in n}
    assert trades and trades == {n for n in full if "_trades_" in n}
    for name in trades:
        assert gzip.decompress((tmp_path / "alone" / name).read_bytes()) == gzip.decompress(
            (tmp_path / "full" / name).read_bytes()
        )
    assert all("_book_snapshot_" not in n for n in alone)
