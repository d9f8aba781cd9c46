"""Compaction: merge a partition's many small Parquet or JSONL files into few large sorted ones, atomically."""

from recorder.compaction.compactor import CompactionError, CompactionResult, compact
from recorder.compaction.store import LocalStore, PartitionStore

__all__ = ["CompactionError", "CompactionResult", "LocalStore", "PartitionStore", "compact"]
