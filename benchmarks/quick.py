"""Quick mode: every benchmark once, on small sizes, so that a broken benchmark fails CI.

``pytest benchmarks --benchmark-disable`` (what ``.ci/run`` runs), ``BENCH_QUICK=1``, or benchmarks
disabled because xdist is active: each benchmark body runs once (pytest-benchmark calls the
function a single time and keeps no statistics), on sizes picked with :func:`size`, and still
checks what it checks at full size. Figures are only measured in the full run (``-n 0``).
"""

from __future__ import annotations

import os
from typing import Any, TypeVar

T = TypeVar("T")


def quick() -> bool:
    return os.environ.get("BENCH_QUICK", "") not in ("", "0")


def size(full: T, small: T) -> T:
    """``full`` in a measuring run, ``small`` in quick mode."""
    return small if quick() else full


def mean_s(benchmark: Any) -> float | None:
    """The benchmark's mean time (s), or None when it was not measured (quick mode)."""
    stats = getattr(benchmark, "stats", None)
    return stats.stats.mean if stats is not None else None
