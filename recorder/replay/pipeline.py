"""What every replay samples into: shared counters, a ring and the live writer, in this process.

Both replays (of raw captures, ``engine.py``, and of a session's archive, ``archive.py``) store
through the live ``Writer`` exactly as a capture does, so the files are the ones a capture writes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from recorder.config import WriterConfig
from recorder.metrics import SharedCounters
from recorder.ring.shm_ring import ShmRing
from recorder.sampler.emitter import EMITTER_FIELDS, emitter_pair_fields
from recorder.sampler.sampler import SAMPLER_FIELDS, sampler_pair_fields
from recorder.writer.process import WRITER_COUNTER_FIELDS, Writer, WriterSpec

RING_BYTES = 16 * 1024 * 1024


@dataclass
class ReplayPipeline:
    sampler_counters: SharedCounters  # the sampler's and the emitter's, as in a venue process
    writer_counters: SharedCounters
    ring: ShmRing
    writer: Writer


@contextmanager
def replay_pipeline(
    venue: str, pairs: list[str], session_id: str, data_dir: str, formats: list[str], w: WriterConfig
) -> Iterator[ReplayPipeline]:
    """Counters, ring and a recovered writer for ``pairs`` of ``venue``; released on exit."""
    fields = list(SAMPLER_FIELDS) + [f for p in pairs for f in sampler_pair_fields(p)]
    fields += EMITTER_FIELDS + [f for p in pairs for f in emitter_pair_fields(p)]
    sampler_counters = SharedCounters.create(fields)
    writer_counters = SharedCounters.create(WRITER_COUNTER_FIELDS)
    ring = ShmRing.create(RING_BYTES)
    try:
        spec = WriterSpec(
            session_id=session_id,
            data_dir=data_dir,
            formats=formats,
            rotate_snapshots=w.rotate_snapshots,
            rotate_seconds=w.rotate_seconds,
            rotate_bytes=int(w.rotate_mb * 1024 * 1024),
            rings={venue: ring.name},
            counters_name=writer_counters.name,
            poll_interval_s=0.001,  # replay runs far faster than real time: keep the ring drained
        )
        writer = Writer(spec, {venue: ring}, writer_counters)
        writer.recover()
        yield ReplayPipeline(sampler_counters, writer_counters, ring, writer)
    finally:
        ring.close()
        sampler_counters.close()
        writer_counters.close()
