"""ShmRing: wrap-around, overflow, cross-process producers, producer crashes."""

from __future__ import annotations

import multiprocessing as mp
import os
import random
import signal
import struct
import time
import zlib
from multiprocessing import shared_memory

import pytest

from recorder.ring import HEADER_SIZE, RingError, ShmRing, record_size

SPAWN = mp.get_context("spawn")
_HDR = struct.Struct("<IIQ")  # producer tag, crc32(body), seq


def make_record(tag: int, seq: int, size: int) -> bytes:
    body = random.Random(tag * 1_000_003 + seq).randbytes(size)
    return _HDR.pack(tag, zlib.crc32(body), seq) + body


def check_record(payload: bytes) -> tuple[int, int]:
    """(tag, seq) of a whole record; fails the test on a torn one."""
    tag, crc, seq = _HDR.unpack_from(payload)
    body = payload[_HDR.size :]
    assert zlib.crc32(body) == crc, f"torn record tag={tag} seq={seq}"
    assert payload == make_record(tag, seq, len(body))
    return tag, seq


def producer_main(name: str, tag: int, count: int, min_size: int, max_size: int) -> None:
    """Push ``count`` records (forever if count < 0), retrying when the ring is full."""
    ring = ShmRing.attach(name)
    rng = random.Random(tag)
    seq = 0
    while count < 0 or seq < count:
        rec = make_record(tag, seq, rng.randint(min_size, max_size))
        while not ring.push(rec):
            time.sleep(0.0005)
        seq += 1
    ring.close()


def drain(ring: ShmRing, pos: int, out: list[bytes], commit: bool = True) -> int:
    recs, pos = ring.read(pos, 1000)
    out.extend(recs)
    if commit:
        ring.commit(pos)
    return pos


@pytest.fixture
def ring_factory():
    made: list[ShmRing] = []

    def make(capacity: int) -> ShmRing:
        r = ShmRing.create(capacity)
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()


def test_wraparound_varied_sizes(ring_factory) -> None:
    ring = ring_factory(512)
    rng = random.Random(7)
    pos, seq, got = 0, 0, []
    expected: list[bytes] = []
    for _ in range(3000):
        if rng.random() < 0.6:
            size = rng.choice([0, 1, 3, 4, 7, 8, 13, 100, 250])
            rec = bytes([seq % 251]) * size
            if ring.push(rec):
                expected.append(rec)
            seq += 1
        else:
            pos = drain(ring, pos, got)
    while pos < ring.write_pos:
        pos = drain(ring, pos, got)
    assert got == expected
    assert ring.write_pos > 20 * ring.capacity  # many laps
    assert ring.pushed == len(expected)
    assert ring.used_bytes == 0


def test_reads_return_each_record_and_its_end_across_blocks_and_laps(ring_factory) -> None:
    """A read copies the ring a block at a time: records smaller and larger than a block, reads
    cut by ``max_records``, laps; each record and the position after it as pushed."""
    ring = ring_factory(1 << 20)
    rng = random.Random(3)
    pushed: list[tuple[bytes, int]] = []  # record, the write position after it
    pos = 0
    for _ in range(300):
        for _ in range(rng.randrange(1, 3000)):
            rec = rng.randbytes(rng.choice([0, 5, 70, 71, 900, 40_000, 300_000]) if rng.random() < 0.01 else 60)
            if ring.push(rec):
                pushed.append((rec, ring.write_pos))
        while pushed and rng.random() < 0.9:
            ends: list[int] = []
            recs, nxt = ring.read(pos, rng.choice([rng.randrange(1, 80), 1 << 30]), ends)
            assert list(zip(recs, ends, strict=True)) == pushed[: len(recs)]
            assert nxt >= ends[-1] and (nxt == ring.write_pos or len(recs) < len(pushed))
            del pushed[: len(recs)]
            pos = nxt
            ring.commit(pos)
    assert ring.write_pos > 10 * ring.capacity


def test_exact_fit_and_wrap_marker(ring_factory) -> None:
    ring = ring_factory(64)
    assert ring.push(b"a" * 20)  # 24 bytes at [0, 24)
    assert ring.push(b"b" * 20)  # [24, 48)
    recs, pos = ring.read(0)
    ring.commit(pos)
    # 16-byte tail can't hold a 32-byte record: wrap marker, record at offset 0 of lap 2.
    assert ring.push(b"c" * 28)
    assert ring.write_pos == 64 + 32
    recs2, pos2 = ring.read(pos)
    assert recs == [b"a" * 20, b"b" * 20] and recs2 == [b"c" * 28] and pos2 == 96
    ring.commit(pos2)
    assert ring.push(b"d" * 28)  # [96, 128): exactly fills the tail
    recs3, pos3 = ring.read(pos2)
    assert recs3 == [b"d" * 28] and pos3 == 128
    ring.commit(pos3)
    assert ring.push(b"e" * 60)  # one record filling the whole ring
    assert not ring.push(b"")
    assert ring.read(pos3) == ([b"e" * 60], 192)


def test_overflow_drops_counts_and_never_blocks(ring_factory) -> None:
    ring = ring_factory(1024)
    rec = b"x" * 100  # 104 bytes in the ring
    accepted = sum(ring.push(rec) for _ in range(50))
    assert accepted == 1024 // record_size(100)
    assert ring.dropped == 50 - accepted
    assert ring.dropped_bytes == ring.dropped * 100
    # Reading alone doesn't free space; committing does.
    recs, pos = ring.read(ring.commit_pos, 3)
    assert len(recs) == 3
    assert ring.uncommitted_bytes(pos) == 3 * 104
    assert not ring.push(rec)
    ring.commit(pos)
    assert ring.push(rec)
    # Larger than the whole ring: dropped, never blocks.
    assert not ring.push(b"y" * 2000)
    assert ring.dropped == 50 - accepted + 2


def test_commit_is_monotonic_and_bounded(ring_factory) -> None:
    ring = ring_factory(256)
    ring.push(b"abc")
    _, pos = ring.read(0)
    ring.commit(pos)
    ring.commit(0)  # older position: ignored
    assert ring.commit_pos == pos
    with pytest.raises(RingError):
        ring.commit(pos + 8)
    with pytest.raises(RingError):
        ring.read(0)  # before commit_pos


def test_restarted_consumer_rereads_uncommitted(ring_factory) -> None:
    ring = ring_factory(4096)
    for i in range(10):
        ring.push(b"r%d" % i)
    first, pos = ring.read(ring.commit_pos, 4)
    ring.commit(pos)
    seen, _ = ring.read(pos, 3)  # read but never committed: the consumer "dies"
    other = ShmRing.attach(ring.name)
    try:
        again, _ = other.read(other.commit_pos)
    finally:
        other.close()
    assert first == [b"r0", b"r1", b"r2", b"r3"]
    assert again[:3] == seen and again == [b"r%d" % i for i in range(4, 10)]


def test_attach_rejects_foreign_segment() -> None:
    shm = shared_memory.SharedMemory(create=True, size=HEADER_SIZE + 256)
    try:
        with pytest.raises(RingError):
            ShmRing.attach(shm.name)
    finally:
        shm.close()
        shm.unlink()


def test_producer_in_other_process(ring_factory) -> None:
    ring = ring_factory(64 * 1024)
    n = 3000
    proc = SPAWN.Process(target=producer_main, args=(ring.name, 1, n, 0, 2000))
    proc.start()
    got: list[bytes] = []
    pos = 0
    deadline = time.monotonic() + 30
    while len(got) < n and time.monotonic() < deadline:
        pos = drain(ring, pos, got)
        time.sleep(0.001)
    proc.join(10)
    assert proc.exitcode == 0
    assert [check_record(r) for r in got] == [(1, i) for i in range(n)]
    assert ring.pushed == n


def test_torn_write_is_invisible_and_new_producer_continues(ring_factory) -> None:
    """A producer killed after writing bytes but before publishing write_pos (simulated
    deterministically by scribbling past write_pos) leaves nothing visible."""
    ring = ring_factory(256)
    ring.push(b"whole-1")
    wp = ring.write_pos
    # What a killed producer leaves: a length prefix and part of a payload, unpublished.
    shm = shared_memory.SharedMemory(name=ring.name)
    try:
        off = HEADER_SIZE + wp % ring.capacity
        shm.buf[off : off + 4] = struct.pack("<I", 40)
        shm.buf[off + 4 : off + 14] = b"GARBAGE..."
    finally:
        shm.close()
    assert ring.read(0)[0] == [b"whole-1"]
    producer = ShmRing.attach(ring.name)
    try:
        assert producer.push(b"whole-2")
    finally:
        producer.close()
    assert ring.read(0)[0] == [b"whole-1", b"whole-2"]


def test_producer_sigkill_mid_stream_then_new_producer(ring_factory) -> None:
    ring = ring_factory(1 << 20)
    # Big records so that the kill very likely lands inside a memcpy.
    first = SPAWN.Process(target=producer_main, args=(ring.name, 1, -1, 10_000, 200_000))
    first.start()
    got: list[bytes] = []
    pos = 0
    deadline = time.monotonic() + 30
    while len(got) < 200 and time.monotonic() < deadline:
        pos = drain(ring, pos, got)
    os.kill(first.pid, signal.SIGKILL)
    first.join(10)
    assert first.exitcode == -signal.SIGKILL
    second = SPAWN.Process(target=producer_main, args=(ring.name, 2, 300, 10, 50_000))
    second.start()
    while time.monotonic() < deadline:
        pos = drain(ring, pos, got)
        if not second.is_alive() and pos == ring.write_pos:
            break
        time.sleep(0.001)
    second.join(10)
    assert second.exitcode == 0
    ids = [check_record(r) for r in got]  # every record whole
    from_first = [s for t, s in ids if t == 1]
    from_second = [s for t, s in ids if t == 2]
    assert from_first == list(range(len(from_first))) and len(from_first) >= 200
    assert from_second == list(range(300))
    assert ids.index((2, 0)) == len(from_first)  # the new producer continued after the old one


def test_push_many_writes_what_sequential_pushes_write(ring_factory) -> None:
    """Same bytes, positions and counters as one push per record, across many wraps."""
    one, many = ring_factory(512), ring_factory(512)
    rng = random.Random(3)
    pos_one = pos_many = 0
    for batch_no in range(400):
        batch = [bytes([batch_no % 251]) * rng.choice([0, 1, 5, 8, 30, 90]) for _ in range(rng.randint(0, 5))]
        for rec in batch:
            assert one.push(rec)
        assert many.push_many(batch) == len(batch)
        assert many.write_pos == one.write_pos
        got_one, pos_one = one.read(pos_one)
        got_many, pos_many = many.read(pos_many)
        assert got_many == got_one == batch and pos_many == pos_one
        one.commit(pos_one)
        many.commit(pos_many)
    assert (many.pushed, many.pushed_bytes) == (one.pushed, one.pushed_bytes)
    assert many.write_pos > 10 * many.capacity


def test_push_many_drops_the_rest_of_a_batch_that_does_not_fit(ring_factory) -> None:
    ring = ring_factory(256)
    batch = [b"r" * 60] * 6  # 64 bytes each: four fit
    assert ring.push_many(batch) == 4
    assert (ring.dropped, ring.dropped_bytes, ring.pushed) == (2, 120, 4)
    recs, pos = ring.read(0)
    assert recs == batch[:4]
    # Nothing after a dropped record is stored, even one that would fit: no holes in a tick.
    ring.commit(64)  # 64 bytes free: the 96-byte record is dropped, and the 8-byte one after it
    assert ring.push_many([b"big" * 30, b"s"]) == 0 and ring.dropped == 4
    assert ring.push_many([]) == 0 and ring.write_pos == pos
