"""A ring read added to the open segment in bulk (``adding.add_read``) leaves the segment as adding
its records one by one does: the reference below is that loop, written out here."""

from __future__ import annotations

import random
from typing import Any

import pytest

from recorder.model import Level, Quote, Snapshot, Trade, quote_record, ring_record, trade_record
from recorder.writer.adding import add_read
from recorder.writer.batches import utc_date
from recorder.writer.datasets import RECORD_ERRORS, SPECS
from recorder.writer.intake import BULK_MIN_RECORDS, Intake, take_records
from recorder.writer.lines import read_lines
from recorder.writer.segment import Partition, Segment

_DAY_MS = 86_400_000
_T0_MS = 19_700 * _DAY_MS - 3_000  # three seconds before a UTC midnight: reads span two dates


def _records(rng: random.Random, n: int) -> list[bytes]:
    out = []
    for i in range(n):
        ms = _T0_MS + 17 * i
        exchange, pair = rng.choice(["binance", "okx"]), rng.choice(["BTC-USDT", "ETH-USDT", "Ä-EUR"])
        kind = rng.random()
        if kind < 0.2:
            bids = [Level(1.0, 2.0)] * rng.randrange(3) if kind < 0.15 else [Level(1, 2), Level(3, 4)]  # ints too
            snap = Snapshot(exchange=exchange, pair=pair, timestamp_ms=ms, bids=bids, asks=[Level(2.0, 1.0)],
                            capture_latency_ms=0.5)  # fmt: skip
            out.append(ring_record(snap))
        elif kind < 0.6:
            out.append(
                trade_record(Trade(exchange, pair, str(i), 1.5, 2.0, rng.choice(["buy", "sell"]), None, ms * 1000))
            )
        elif kind < 0.95:
            out.append(quote_record(Quote(exchange, pair, None, None, 3.0, 1.0, None, ms * 1000 + 7, i)))
        else:  # unusable: skipped and counted
            out.append(trade_record(Trade("../x", pair, str(i), 1.5, 2.0, "buy", None, ms * 1000)))
    return out


def _reference_add(
    seg: Segment,
    numbers: dict,
    took: Intake,
    committed: dict,
    parquet: bool,
    jsonl: bool,
    rotate_bytes: int,
    limit: int | None,
) -> int:
    """The writer's loop before the bulk path: record after record, up to the first refused;
    a JSONL line as the record's struct renders it; ``numbers``: the segment's next sequence
    number per (dataset, exchange, pair) stored."""
    structs = take_records(took.stored, structs=True).records
    for i, rec in enumerate(took.records):
        if isinstance(rec, RECORD_ERRORS):
            seg.records += 1
            continue
        spec, exchange, pair, ts = took.specs[i], took.exchange[i], took.pair[i], int(took.time_ms[i])
        pkey = (spec.name, exchange, utc_date(ts))
        part = seg.parts.get(pkey)
        file_limit = None if limit is None else limit * spec.rotate_factor
        if part is not None and file_limit is not None and part.count >= file_limit:
            return i
        if seg.est_bytes >= rotate_bytes:
            return i
        seg.records += 1
        if part is None:
            part = seg.parts[pkey] = Partition(spec, exchange, pkey[2], ts)
        key = (spec.name, exchange, pair)
        seq = numbers.get(key, committed.get(key, 0))
        numbers[key] = seq + 1
        held = 0
        if parquet:
            part.payloads.append(took.stored[i])
            part.seqs.append(seq)
            part.read_rows.append(int(took.row[i]))
            held += len(took.stored[i]) * (1 if took.row[i] < 0 else 2)
        if jsonl:
            line = spec.jsonl(structs[i], seq, "s1")
            part.jsonl += line
            held += len(line)
        part.count += 1
        part.rows += spec.rows(rec)
        seg.snapshots += 1
        seg.stored[spec.name] = seg.stored.get(spec.name, 0) + 1
        seg.est_bytes += held
        seg.full = seg.full or (file_limit is not None and part.count >= file_limit)
    return len(took.records)


def _state(seg: Segment, numbers: dict) -> dict[str, Any]:
    parts = {
        k: (p.payloads, list(p.seqs), list(p.read_rows), bytes(p.jsonl), p.count, p.rows, p.first_ts_ms)
        for k, p in seg.parts.items()
    }
    return {"parts": parts, "seq": numbers, "n": (seg.snapshots, seg.records, seg.est_bytes, seg.full),
            "stored": seg.stored}  # fmt: skip


@pytest.mark.parametrize(
    ("parquet", "jsonl", "rotate_bytes", "limit"),
    [(True, False, 1 << 40, None), (True, True, 1 << 40, None), (False, True, 20_000, None), (True, True, 9_000, None),
     (True, False, 1 << 40, 7), (True, True, 30_000, 2)],
)  # fmt: skip
@pytest.mark.parametrize("bulk_min", [0, BULK_MIN_RECORDS], ids=["columns", "decoded"])
@pytest.mark.parametrize("segment_ids", [True, False], ids=["segment-ids", "read-ids"])
def test_a_read_added_in_bulk_leaves_the_segment_as_record_by_record(
    parquet: bool, jsonl: bool, rotate_bytes: int, limit: int | None, bulk_min: int, segment_ids: bool
) -> None:
    """Trades and quotes read in bulk (their rows and lines from the read's columns), or, in a
    read of fewer than ``BULK_MIN_RECORDS`` of them, decoded (the writer's usual); each read's
    groups with the ids the segment keeps across its reads (the writer's way), or with their
    own (``take_records`` without the segment's)."""
    rng = random.Random(5)
    payloads = _records(rng, 1500)
    committed = {("trades", "okx", "ETH-USDT"): 41, ("books", "binance", "Ä-EUR"): 7}
    segs = {"bulk": Segment(), "ref": Segment()}
    numbers: dict = {}  # the reference's next numbers, for its segment
    committed_of = {"bulk": dict(committed), "ref": dict(committed)}
    rotations = 0
    at = 0
    while at < len(payloads):
        read = payloads[at : at + rng.randrange(1, 400)]
        consumed = {}
        for how, seg in segs.items():
            ids = seg.group_ids if segment_ids and how == "bulk" else None
            took = take_records(read, False, seg.keep_read_columns if parquet else None, bulk_min, ids)
            assert bulk_min == 0 or None not in took.records  # a small read: every record decoded
            if how == "bulk":
                line = lambda at, seqs, took=took: read_lines(took, at, seqs, "s1")  # noqa: E731
                added = add_read(
                    seg,
                    took,
                    committed_of[how],
                    parquet=parquet,
                    jsonl=line if jsonl else None,
                    rotate_bytes=rotate_bytes,
                    file_limit=lambda d: None if limit is None else limit * SPECS[d].rotate_factor,
                    now_mono=17.0,  # the writer's clock, whatever the real one says
                )
                consumed[how] = added.consumed
                assert seg.started_mono == (17.0 if seg.records else None)  # rotation by time reads it
                stored = [i for i in range(added.consumed) if not isinstance(took.records[i], RECORD_ERRORS)]
                assert [added.seqs[i] >= 0 for i in range(len(read))] == [i in stored for i in range(len(read))]
            else:
                consumed[how] = _reference_add(
                    seg, numbers, took, committed_of[how], parquet, jsonl, rotate_bytes, limit
                )
        assert consumed["bulk"] == consumed["ref"]
        assert _state(segs["bulk"], segs["bulk"].seq) == _state(segs["ref"], numbers)
        at += consumed["bulk"]
        if consumed["bulk"] < len(read) or segs["bulk"].full:  # rotate: the numbers are committed
            rotations += 1
            committed_of["bulk"].update(segs["bulk"].seq)
            committed_of["ref"].update(numbers)
            numbers = {}
            segs = {"bulk": Segment(), "ref": Segment()}
    assert (rotations > 0) == (rotate_bytes < 1 << 40 or limit is not None)
