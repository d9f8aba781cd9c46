"""The long-form Arrow batch, built from ring records and from Snapshot structs, against rows
written out one by one: the column builder may vectorise, the rows may not change."""

from __future__ import annotations

import random

from recorder.model import Level, Snapshot, ring_decoder, ring_record
from recorder.writer.batches import sampled_to_batch, snapshots_to_batch


def _random_snapshots(n: int) -> list[Snapshot]:
    rng = random.Random(5)
    out = []
    for i in range(n):
        nb, na = rng.choice([0, 0, 1, 3, 20]), rng.choice([0, 1, 5, 20])  # empty and one-sided too
        out.append(
            Snapshot(
                exchange=rng.choice(["binance", "okx"]),
                pair=f"P{i % 7}-USDT",
                timestamp_ms=1_700_000_000_000 + i,
                bids=[Level(rng.uniform(1, 100), rng.uniform(0, 5)) for _ in range(nb)],
                asks=[Level(rng.uniform(100, 200), rng.uniform(0, 5)) for _ in range(na)],
                capture_latency_ms=rng.choice([None, -0.5, 1.25]),
                sequence_number=i,
                exchange_time_ms=rng.choice([None, 1_700_000_000_000]),
                update_id=rng.choice([None, 7, 2**40]),
                verified=rng.random() < 0.5,
                depth_complete=rng.random() < 0.5,
                session_id="s1",
            )
        )
    return out


def _expected_rows(snaps: list[Snapshot]) -> list[dict[str, object]]:
    rows = []
    for s in snaps:
        common = {
            "exchange": s.exchange,
            "pair": s.pair,
            "timestamp_ms": s.timestamp_ms,
            "capture_latency_ms": s.capture_latency_ms,
            "sequence_number": s.sequence_number,
            "exchange_time_ms": s.exchange_time_ms,
            "update_id": s.update_id,
            "verified": s.verified,
            "depth_complete": s.depth_complete,
            "session_id": s.session_id,
        }
        levels = [("bid", k, lv) for k, lv in enumerate(s.bids)] + [("ask", k, lv) for k, lv in enumerate(s.asks)]
        if not levels:  # a book with no level keeps one row, so its sequence number shows
            rows.append({**common, "side": None, "level": None, "price": None, "quantity": None})
        for side, k, lv in levels:
            rows.append({**common, "side": side, "level": k, "price": lv.price, "quantity": lv.qty})
    return rows


def test_both_batch_builders_write_the_rows_one_by_one_would() -> None:
    snaps = _random_snapshots(500)
    expected = _expected_rows(snaps)
    assert any(r["side"] is None for r in expected)
    assert snapshots_to_batch(snaps).to_pylist() == expected
    books = [ring_decoder.decode(ring_record(s)) for s in snaps]
    assert sampled_to_batch(books, [s.sequence_number for s in snaps], "s1").to_pylist() == expected


def test_a_ring_record_turns_back_into_its_snapshot() -> None:
    for s in _random_snapshots(50):
        assert ring_decoder.decode(ring_record(s)).to_snapshot(s.sequence_number, s.session_id) == s
