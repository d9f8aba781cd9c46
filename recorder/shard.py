"""Shards: one venue universe split over several recorders (``--shard I/N``).

Every pair goes to the shard that scores highest for it under a keyed hash (rendezvous, or
highest-random-weight, hashing). The hash is BLAKE2b, not Python's ``hash()``: every host, every
Python and every run computes the same split. Going from N to N+1 shards moves only the pairs the
new shard wins (about 1/(N+1) of them), and every other pair stays where it was: a fleet can grow
without re-recording the whole universe elsewhere.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

# Far more than any fleet needs, small enough that a typo (1/1000000) is caught.
MAX_SHARDS = 1024
_SHARD_RE = re.compile(r"^\s*(\d{1,6})\s*/\s*(\d{1,6})\s*$")


class ShardError(ValueError):
    """Bad shard text; its message is one line for the user."""


@dataclass(frozen=True)
class Shard:
    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    @property
    def suffix(self) -> str:
        """Appended to the session id: every shard's files, journal and status are its own."""
        return f"-s{self.index}of{self.count}"

    def owns(self, venue: str, pair: str) -> bool:
        return shard_of(venue, pair, self.count) == self.index

    def select(self, venue: str, pairs: Iterable[str]) -> list[str]:
        """This shard's part of ``pairs``, in their order."""
        return [p for p in pairs if self.owns(venue, p)]


def parse_shard(text: str) -> Shard:
    """``"I/N"`` with 0 <= I < N <= MAX_SHARDS."""
    m = _SHARD_RE.match(str(text))
    if not m:
        raise ShardError(f"invalid shard {text!r}: use I/N, e.g. 0/4 (shard 0 of 4; I counts from 0)")
    index, count = int(m.group(1)), int(m.group(2))
    if not 1 <= count <= MAX_SHARDS:
        raise ShardError(f"invalid shard {text!r}: the shard count must be 1 to {MAX_SHARDS}")
    if index >= count:
        raise ShardError(f"invalid shard {text!r}: the index counts from 0, so it must be below {count}")
    return Shard(index, count)


def _score(venue: str, pair: str, shard: int) -> int:
    key = f"{venue}\x00{pair}\x00{shard}".encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big")


def shard_of(venue: str, pair: str, count: int) -> int:
    """The shard (0..count-1) that records ``pair`` of ``venue`` when the universe is split ``count`` ways."""
    return max(range(count), key=lambda i: _score(venue, pair, i))
