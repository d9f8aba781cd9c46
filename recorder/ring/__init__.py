"""Shared-memory rings between venue processes (producers) and the writer (consumer)."""

from recorder.ring.shm_ring import HEADER_SIZE, RingError, ShmRing, record_size

__all__ = ["HEADER_SIZE", "RingError", "ShmRing", "record_size"]
