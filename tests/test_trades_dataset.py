"""Trades and quotes through the one pipeline: the same ring as the books, the same writer process,
their own datasets (``trades/``, ``quotes/``), journaled, compacted and read back.

References are the records the test pushed, numbered here; the files are read with plain pyarrow
and ``json`` and compared with them and with ``recorder.dataset``.
"""

from __future__ import annotations

import json
import shutil
from collections import defaultdict
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from recorder.compaction import compact
from recorder.dataset import open_dataset
from recorder.model import Quote, Trade, quote_record, trade_record
from recorder.writer.batches import SCHEMA
from tests.test_writer import SESSION, T0, harness, make_snapshot  # noqa: F401 - fixture

PAIRS = ("BTC-USDT", "ETH-USDT")


def make_trade(pair: str, i: int) -> Trade:
    t_us = (T0 + 1000 * i) * 1000 + 250 + (i % 7)
    return Trade(
        exchange="binance",
        pair=pair,
        trade_id=str(5_000_000 + i),
        price=100.0 + (i % 13) * 0.25,
        quantity=0.001 * (1 + i % 5),
        side="sell" if i % 3 == 0 else "buy",
        exchange_time_us=None if i % 11 == 0 else t_us - 1500,
        local_time_us=t_us,
    )


def make_quote(pair: str, i: int) -> Quote:
    return Quote(
        exchange="binance",
        pair=pair,
        bid_price=99.5 + i % 4,
        bid_qty=1.0 + i,
        ask_price=None if i % 9 == 4 else 100.5 + i % 4,
        ask_qty=None if i % 9 == 4 else 2.0,
        exchange_time_us=(T0 + 1000 * i) * 1000 + 100,
        local_time_us=(T0 + 1000 * i) * 1000 + 300,
        update_id=70_000 + i,
    )


def push_mixed(h, n: int, start: int = 0) -> tuple[list[Trade], list[Quote]]:
    """Books, trades and quotes interleaved on the one ring, as a venue process pushes them."""
    trades, quotes = [], []
    for i in range(start, start + n):
        for pair in PAIRS:
            h.push("binance", make_snapshot("binance", pair, T0 + 1000 * i, i))
            for k in range(2):
                t = make_trade(pair, 2 * i + k)
                assert h.rings["binance"].push(trade_record(t))
                trades.append(t)
            q = make_quote(pair, i)
            assert h.rings["binance"].push(quote_record(q))
            quotes.append(q)
    return trades, quotes


def expected_trade_rows(trades: list[Trade]) -> list[dict]:
    seq: dict[str, int] = defaultdict(int)
    out = []
    for t in trades:
        out.append(
            {
                "exchange": t.exchange,
                "pair": t.pair,
                "trade_id": t.trade_id,
                "price": t.price,
                "quantity": t.quantity,
                "side": t.side,
                "exchange_time": t.exchange_time_us,
                "local_time": t.local_time_us,
                "session_id": SESSION,
                "sequence_number": seq[t.pair],
            }
        )
        seq[t.pair] += 1
    return out


def expected_quote_rows(quotes: list[Quote]) -> list[dict]:
    seq: dict[str, int] = defaultdict(int)
    out = []
    for q in quotes:
        out.append(
            {
                "exchange": q.exchange,
                "pair": q.pair,
                "bid_price": q.bid_price,
                "bid_qty": q.bid_qty,
                "ask_price": q.ask_price,
                "ask_qty": q.ask_qty,
                "exchange_time": q.exchange_time_us,
                "local_time": q.local_time_us,
                "update_id": q.update_id,
                "session_id": SESSION,
                "sequence_number": seq[q.pair],
            }
        )
        seq[q.pair] += 1
    return out


def _key(row: dict) -> tuple:
    return (row["pair"], row["sequence_number"])


def parquet_rows(base: Path) -> list[dict]:
    """Plain pyarrow: every Parquet file under ``base``, times as integer µs."""
    rows = []
    for path in sorted(base.rglob("*.parquet")):
        table = pq.read_table(path)
        for name in ("exchange_time", "local_time"):
            i = table.schema.get_field_index(name)
            table = table.set_column(i, name, table[name].cast(pa.int64()))
        rows += table.to_pylist()
    return sorted(rows, key=_key)


def jsonl_rows(base: Path) -> list[dict]:
    rows = []
    for path in sorted(base.rglob("*.jsonl")):
        rows += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return sorted(rows, key=_key)


def reader_rows(table: pa.Table) -> list[dict]:
    for name in ("exchange_time", "local_time"):
        i = table.schema.get_field_index(name)
        table = table.set_column(i, name, table[name].cast(pa.int64()))
    return sorted(table.to_pylist(), key=_key)


def test_trades_and_quotes_share_the_ring_and_get_their_own_datasets(harness) -> None:  # noqa: F811
    h = harness(rotate_snapshots=40)  # several segments, files per dataset
    proc = h.start()
    trades, quotes = push_mixed(h, 60)
    h.wait(lambda: h.c("trades_written") == len(trades) and h.c("quotes_written") == len(quotes))
    h.stop(proc)
    data = h.data_dir
    assert h.c("snapshots_written") == 120
    # Layout: sibling trees; the books' tree holds books only (a reader of parquet/ sees one schema).
    for d in ("trades/parquet", "trades/jsonl", "quotes/parquet", "quotes/jsonl"):
        assert list((data / d).glob("exchange=binance/date=2024-01-01/*")), d
    books = ds.dataset(data / "parquet", format="parquet", partitioning="hive")
    assert books.schema.names[: len(SCHEMA)] == SCHEMA.names
    assert books.count_rows() == 120 * 6
    assert not list((data / "parquet").rglob("*trades*")) and not (data / "parquet" / "trades").exists()

    want_t = expected_trade_rows(trades)
    assert parquet_rows(data / "trades" / "parquet") == sorted(want_t, key=_key)
    assert jsonl_rows(data / "trades" / "jsonl") == sorted(want_t, key=_key)
    want_q = expected_quote_rows(quotes)
    assert parquet_rows(data / "quotes" / "parquet") == sorted(want_q, key=_key)
    assert jsonl_rows(data / "quotes" / "jsonl") == sorted(want_q, key=_key)

    dset = open_dataset(data)
    for fmt in ("parquet", "jsonl"):
        assert reader_rows(dset.trades(format=fmt)) == sorted(want_t, key=_key)
        assert reader_rows(dset.quotes(format=fmt)) == sorted(want_q, key=_key)
    # Selection: pair and a time window on local_time, pruned like the books.
    lo, hi = T0 + 10_000, T0 + 20_000
    got = reader_rows(dset.trades(pairs="ETH-USDT", start=lo, end=hi))
    ref = [r for r in want_t if r["pair"] == "ETH-USDT" and lo * 1000 <= r["local_time"] < hi * 1000]
    assert got == sorted(ref, key=_key) and ref


# Parquet only: the files take their columns from the intake's bulk reads (Segment.read_columns).
@pytest.mark.parametrize("formats", [["jsonl", "parquet"], ["parquet"]])
def test_trades_survive_a_writer_killed_mid_commit_exactly_once(harness, formats) -> None:  # noqa: F811
    h = harness(rotate_snapshots=30, formats=formats)
    proc = h.start(crash_at="after_journal:2")
    trades, quotes = push_mixed(h, 40)
    proc.join(30)
    assert proc.exitcode is not None and proc.exitcode < 0  # killed at its second commit
    proc = h.start()
    more_t, more_q = push_mixed(h, 10, start=40)
    h.stop(proc)  # drains the ring
    want = sorted(expected_trade_rows(trades + more_t), key=_key)
    assert parquet_rows(h.data_dir / "trades" / "parquet") == want
    if "jsonl" in formats:
        assert jsonl_rows(h.data_dir / "trades" / "jsonl") == want
    assert parquet_rows(h.data_dir / "quotes" / "parquet") == sorted(expected_quote_rows(quotes + more_q), key=_key)


def test_sequence_numbers_continue_after_the_journal_is_lost(harness) -> None:  # noqa: F811
    h = harness()
    proc = h.start()
    trades, _ = push_mixed(h, 5)
    h.stop(proc)
    shutil.rmtree(h.data_dir / ".sessions")  # rebuilt from the files of every dataset
    proc = h.start()
    more, _ = push_mixed(h, 5, start=5)
    h.stop(proc)
    assert parquet_rows(h.data_dir / "trades" / "parquet") == sorted(expected_trade_rows(trades + more), key=_key)


def test_compaction_of_trades_and_quotes_keeps_every_row(harness) -> None:  # noqa: F811
    h = harness(rotate_snapshots=10)
    proc = h.start()
    trades, quotes = push_mixed(h, 30)
    h.wait(lambda: h.c("trades_written") == len(trades) and h.c("quotes_written") == len(quotes))
    h.stop(proc)
    tdir = h.data_dir / "trades" / "parquet" / "exchange=binance" / "date=2024-01-01"
    before = len(list(tdir.glob("*.parquet")))
    res = compact(str(h.data_dir), older_than_s=0)
    assert len(list(tdir.glob("*.parquet"))) < before
    assert res.partitions >= 6  # books, trades, quotes, each in both formats
    want_t = sorted(expected_trade_rows(trades), key=_key)
    assert parquet_rows(h.data_dir / "trades" / "parquet") == want_t
    assert jsonl_rows(h.data_dir / "trades" / "jsonl") == want_t
    assert parquet_rows(h.data_dir / "quotes" / "parquet") == sorted(expected_quote_rows(quotes), key=_key)
    dset = open_dataset(h.data_dir)
    assert reader_rows(dset.trades()) == want_t
    # The merged file's name carries its first local time (ms), which the reader prunes by.
    lo = T0 + 20_000
    assert reader_rows(dset.trades(start=lo)) == [r for r in want_t if r["local_time"] >= lo * 1000]


def test_trades_as_of_joined_to_the_book_in_force(harness) -> None:  # noqa: F811
    h = harness()
    proc = h.start()
    trades, _ = push_mixed(h, 20)
    h.stop(proc)
    joined = open_dataset(h.data_dir).trades_with_book(depth=2).to_pylist()
    assert len(joined) == len(trades)
    # Reference: the books pushed at T0 + 1000 i (make_snapshot), the last one at or before each trade.
    for row in joined:
        t_ms = int(row["local_time"].timestamp() * 1000)
        i = min((t_ms - T0) // 1000, 19)  # trades run on past the last book (i = 19)
        snap = make_snapshot("binance", row["pair"], T0 + 1000 * i, i)
        assert row["book_timestamp_ms"] == snap.timestamp_ms
        assert row["bid_px_0"] == snap.bids[0].price and row["ask_qty_1"] == snap.asks[1].qty
    # A trade before any book has nothing in force.
    h2_trades = [make_trade("BTC-USDT", -5)]
    from recorder.dataset.records import asof_join
    from recorder.writer.datasets import TRADES_SPEC, build_table

    early = build_table(TRADES_SPEC, [trade_record(t) for t in h2_trades], [0], SESSION)
    books = open_dataset(h.data_dir).wide(depth=1)
    assert asof_join(early, books).to_pylist()[0]["book_timestamp_ms"] is None


# Parquet only: the writer takes trades in bulk (no struct per record); with JSONL, one by one.
@pytest.mark.parametrize("formats", [["jsonl", "parquet"], ["parquet"]])
def test_undecodable_or_unsafe_trade_records_are_skipped_and_counted(harness, formats) -> None:  # noqa: F811
    h = harness(formats=formats)
    proc = h.start()
    good = make_trade("BTC-USDT", 1)
    bad_exchange = Trade("../evil", "BTC-USDT", "1", 1.0, 1.0, "buy", None, T0 * 1000)
    bad_side = Trade("binance", "BTC-USDT", "2", 1.0, 1.0, "maker", None, T0 * 1000)
    for rec in (trade_record(bad_exchange), trade_record(bad_side), b"T\x93\x01", trade_record(good)):
        assert h.rings["binance"].push(rec)
    h.wait(lambda: h.c("decode_errors") == 3)
    h.stop(proc)
    assert h.c("trades_written") == 1
    assert [r["trade_id"] for r in parquet_rows(h.data_dir / "trades" / "parquet")] == ["5000001"]
    assert not list(h.data_dir.rglob("*evil*"))


@pytest.mark.parametrize("formats", [["jsonl", "parquet"], ["parquet"]])
def test_a_trades_file_holds_fifty_times_rotate_snapshots(harness, formats) -> None:  # noqa: F811
    h = harness(rotate_snapshots=10, formats=formats)
    proc = h.start()
    trades = [make_trade("BTC-USDT", i) for i in range(1200)]
    for t in trades:
        assert h.rings["binance"].push(trade_record(t))
    h.stop(proc)
    files = sorted((h.data_dir / "trades" / "parquet").rglob("*.parquet"))
    assert sorted(pq.read_metadata(f).num_rows for f in files) == [200, 500, 500]
    assert parquet_rows(h.data_dir / "trades" / "parquet") == expected_trade_rows(trades)
