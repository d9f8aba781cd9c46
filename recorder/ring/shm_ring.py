"""Single-producer single-consumer byte ring in POSIX shared memory.

Why shared memory: a venue process (producer) and the writer (consumer) can each die and be
restarted without the other losing anything; the bytes and both positions live outside
either process.

Layout (little endian)::

    [0:192)    header
        0   magic "RECRING1"
        8   capacity (bytes of the data area, multiple of 8)
        16  instance id (random; distinguishes a recreated ring that reuses a name)
        64  write_pos      } producer cache line: only the producer stores these
        72  pushed         }
        80  dropped        }
        88  dropped_bytes  }
        96  pushed_bytes   }
        128 commit_pos     } consumer cache line: only the consumer stores this
    [192:192+capacity)  data

Positions are monotonic uint64 byte counters; the data offset is ``pos % capacity``. A
record is a u32 payload length, the payload, then padding to 8 bytes (so a length prefix never
straddles the end and a wrap marker always fits). When a record does not fit in the tail of the
data area, the producer writes the wrap marker ``0xFFFFFFFF`` there and the record starts at
offset 0 of the next lap.

Crash safety: the producer writes the record bytes first and publishes ``write_pos`` last with
one aligned 8-byte store, so a producer killed mid-write leaves nothing visible; a new producer
attaching simply overwrites the unpublished bytes. The consumer only advances ``commit_pos``
once everything before it is durably stored elsewhere, so a restarted consumer re-reads from
``commit_pos`` and nothing is lost.
"""

from __future__ import annotations

import ctypes
import secrets
import struct
from multiprocessing import shared_memory

from recorder.metrics import _attach_untracked

MAGIC = int.from_bytes(b"RECRING1", "little")
HEADER_SIZE = 192
WRAP_MARKER = 0xFFFFFFFF
MAX_PAYLOAD = WRAP_MARKER - 1

_OFF_MAGIC = 0
_OFF_CAPACITY = 8
_OFF_INSTANCE = 16
_OFF_WRITE_POS = 64
_OFF_PUSHED = 72
_OFF_DROPPED = 80
_OFF_DROPPED_BYTES = 88
_OFF_PUSHED_BYTES = 96
_OFF_COMMIT_POS = 128

_LEN = struct.Struct("<I")
_READ_BLOCK = 256 * 1024  # bytes a consumer copies at once (more for a larger record)


class RingError(RuntimeError):
    """The ring's contents or a caller's position are inconsistent."""


def record_size(payload_len: int) -> int:
    """Bytes a payload of this length occupies in the ring (prefix + payload + padding)."""
    return (4 + payload_len + 7) & ~7


class ShmRing:
    """SPSC ring of byte records. One producer calls :meth:`push`; one consumer calls
    :meth:`read` and :meth:`commit`. Neither side ever blocks."""

    def __init__(self, shm: shared_memory.SharedMemory, owner: bool) -> None:
        self._shm = shm
        self._owner = owner
        buf = shm.buf
        if len(buf) < HEADER_SIZE + 8:
            raise RingError(f"shared memory {shm.name!r} is too small to be a ring")
        self._magic = ctypes.c_uint64.from_buffer(buf, _OFF_MAGIC)
        self._capacity_v = ctypes.c_uint64.from_buffer(buf, _OFF_CAPACITY)
        self._instance_v = ctypes.c_uint64.from_buffer(buf, _OFF_INSTANCE)
        self._write_pos = ctypes.c_uint64.from_buffer(buf, _OFF_WRITE_POS)
        self._pushed = ctypes.c_uint64.from_buffer(buf, _OFF_PUSHED)
        self._dropped = ctypes.c_uint64.from_buffer(buf, _OFF_DROPPED)
        self._dropped_bytes = ctypes.c_uint64.from_buffer(buf, _OFF_DROPPED_BYTES)
        self._pushed_bytes = ctypes.c_uint64.from_buffer(buf, _OFF_PUSHED_BYTES)
        self._commit_pos = ctypes.c_uint64.from_buffer(buf, _OFF_COMMIT_POS)
        self._data = buf[HEADER_SIZE:]
        self._closed = False

    # -- lifecycle -------------------------------------------------------------------------

    @classmethod
    def create(cls, capacity: int, name: str | None = None) -> ShmRing:
        """Create a ring with ``capacity`` data bytes (rounded up to a multiple of 8).

        The creator (the supervisor) owns the segment and unlinks it on :meth:`close`.
        """
        if capacity < 64:
            raise ValueError(f"ring capacity {capacity} too small (minimum 64 bytes)")
        capacity = (capacity + 7) & ~7
        shm = shared_memory.SharedMemory(name=name, create=True, size=HEADER_SIZE + capacity)
        shm.buf[:HEADER_SIZE] = bytes(HEADER_SIZE)
        ring = cls(shm, owner=True)
        ring._capacity_v.value = capacity
        # Never 0, so a zeroed header can't match a journal entry by accident.
        ring._instance_v.value = secrets.randbits(62) + 1
        ring._magic.value = MAGIC  # last: an attacher never sees a half-initialised header
        return ring

    @classmethod
    def attach(cls, name: str) -> ShmRing:
        """Attach to an existing ring (producer or consumer); never unlinks it."""
        shm = _attach_untracked(name)
        try:
            ring = cls(shm, owner=False)
        except BaseException:
            shm.close()
            raise
        if ring._magic.value != MAGIC:
            ring.close()
            raise RingError(f"shared memory {name!r} is not a recorder ring (bad magic)")
        cap = ring._capacity_v.value
        if cap % 8 or cap < 64 or HEADER_SIZE + cap > len(shm.buf):
            ring.close()
            raise RingError(f"ring {name!r} has an invalid capacity {cap}")
        return ring

    def close(self) -> None:
        """Detach; the owner also unlinks the segment. Idempotent."""
        if self._closed:
            return
        self._closed = True
        # ctypes views and the data slice pin the mapping: drop them before closing it.
        del self._magic, self._capacity_v, self._instance_v, self._write_pos, self._pushed
        del self._dropped, self._dropped_bytes, self._pushed_bytes, self._commit_pos
        self._data.release()
        del self._data
        self._shm.close()
        if self._owner:
            try:
                self._shm.unlink()
            except FileNotFoundError:
                pass

    def __enter__(self) -> ShmRing:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- properties ------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self._shm.name

    @property
    def capacity(self) -> int:
        return self._capacity_v.value

    @property
    def instance_id(self) -> int:
        return self._instance_v.value

    @property
    def write_pos(self) -> int:
        return self._write_pos.value

    @property
    def commit_pos(self) -> int:
        return self._commit_pos.value

    @property
    def pushed(self) -> int:
        return self._pushed.value

    @property
    def pushed_bytes(self) -> int:
        return self._pushed_bytes.value

    @property
    def dropped(self) -> int:
        return self._dropped.value

    @property
    def dropped_bytes(self) -> int:
        return self._dropped_bytes.value

    @property
    def used_bytes(self) -> int:
        """Bytes not yet committed by the consumer (read or not): what limits the producer."""
        return self._write_pos.value - self._commit_pos.value

    @property
    def free_bytes(self) -> int:
        return self.capacity - self.used_bytes

    def uncommitted_bytes(self, read_pos: int) -> int:
        """Bytes the consumer has read up to ``read_pos`` but not committed yet (held by it)."""
        return max(0, read_pos - self._commit_pos.value)

    def unread_bytes(self, read_pos: int) -> int:
        """Bytes published by the producer beyond ``read_pos``."""
        return max(0, self._write_pos.value - read_pos)

    # -- producer --------------------------------------------------------------------------

    def push(self, payload: bytes | bytearray | memoryview) -> bool:
        """Append one record; never blocks. Returns False (and counts a drop) when full."""
        n = len(payload)
        cap = self._capacity_v.value
        need = (4 + n + 7) & ~7  # record_size(n), inlined: once per trade and per quote
        wp = self._write_pos.value
        off = wp % cap
        tail = cap - off
        # A record that doesn't fit before the end skips the tail (wrap marker there).
        advance = need if need <= tail else tail + need
        if n > MAX_PAYLOAD or need > cap or advance > cap - (wp - self._commit_pos.value):
            self._dropped.value += 1
            self._dropped_bytes.value += n
            return False
        data = self._data
        if need > tail:
            _LEN.pack_into(data, off, WRAP_MARKER)
            off = 0
        data[off + 4 : off + 4 + n] = payload
        _LEN.pack_into(data, off, n)
        # Publish last: one aligned 8-byte store makes the whole record visible at once.
        self._write_pos.value = wp + advance
        self._pushed.value += 1
        self._pushed_bytes.value += n
        return True

    def push_many(self, payloads: list[bytes]) -> int:
        """Append records in order, publishing them with one ``write_pos`` store; never blocks.

        Returns how many were pushed: the first ``n``. Once one does not fit, it and every
        later one are dropped (and counted), so a tick never reaches the writer with holes.
        One publish per batch instead of per record: the sampler pushes a whole tick at once.
        """
        cap = self._capacity_v.value
        wp = start = self._write_pos.value
        free_until = self._commit_pos.value + cap
        data = self._data
        pack_into = _LEN.pack_into
        pushed = pushed_bytes = 0
        for payload in payloads:
            n = len(payload)
            need = (4 + n + 7) & ~7
            off = wp % cap
            tail = cap - off
            advance = need if need <= tail else tail + need
            if n > MAX_PAYLOAD or need > cap or wp + advance > free_until:
                dropped = payloads[pushed:]
                self._dropped.value += len(dropped)
                self._dropped_bytes.value += sum(len(p) for p in dropped)
                break
            if need > tail:
                pack_into(data, off, WRAP_MARKER)
                off = 0
            data[off + 4 : off + 4 + n] = payload
            pack_into(data, off, n)
            wp += advance
            pushed += 1
            pushed_bytes += n
        if wp != start:
            # Publish last: one aligned 8-byte store makes every record of the batch visible.
            self._write_pos.value = wp
            self._pushed.value += pushed
            self._pushed_bytes.value += pushed_bytes
        return pushed

    # -- consumer --------------------------------------------------------------------------

    def read(self, from_pos: int, max_records: int = 1 << 30, ends: list[int] | None = None) -> tuple[list[bytes], int]:
        """Copy up to ``max_records`` records published after ``from_pos``, without committing.

        Returns the payloads and the position just after the last one returned. With ``ends``,
        the position just after each returned record is appended to it (so a consumer that
        stops part-way through the batch knows where to resume).
        """
        commit = self._commit_pos.value
        wp = self._write_pos.value  # snapshot once: bytes before it are complete
        if from_pos < commit or from_pos > wp:
            raise RingError(f"read position {from_pos} outside [{commit}, {wp}] of ring {self.name}")
        cap = self._capacity_v.value
        data = self._data
        out: list[bytes] = []
        pos = from_pos
        unpack = _LEN.unpack_from
        while pos < wp and len(out) < max_records:
            off = pos % cap
            (n,) = unpack(data, off)
            if n == WRAP_MARKER:
                pos += cap - off
                continue
            size = record_size(n)
            avail = min(cap - off, wp - pos)  # bytes readable without a wrap
            if size > avail:
                raise RingError(f"ring {self.name} corrupt at position {pos} (length {n})")
            # One copy of a block of records, each then sliced out of it: cheaper than a
            # memoryview slice and a copy per record.
            block = bytes(data[off : off + min(avail, max(_READ_BLOCK, size))])
            at = 0
            while True:
                out.append(block[at + 4 : at + 4 + n])
                at += size
                pos += size
                if ends is not None:
                    ends.append(pos)
                if len(out) >= max_records or at + 4 > len(block):
                    break
                (n,) = unpack(block, at)
                size = (4 + n + 7) & ~7  # record_size, inlined
                if n == WRAP_MARKER or at + size > len(block):
                    break  # the next one is read (and checked) from the ring by the outer loop
        # Skip a trailing wrap marker so next_pos is always a record start or write_pos.
        if pos < wp and _LEN.unpack_from(data, pos % cap)[0] == WRAP_MARKER:
            pos += cap - pos % cap
        return out, pos

    def commit(self, pos: int) -> None:
        """Free everything before ``pos``. Monotonic: an older position is ignored."""
        wp = self._write_pos.value
        if pos > wp:
            raise RingError(f"commit position {pos} beyond write position {wp} of ring {self.name}")
        if pos > self._commit_pos.value:
            self._commit_pos.value = pos
