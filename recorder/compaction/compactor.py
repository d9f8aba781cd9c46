"""Merge each partition's small Parquet files into few large ones sorted by pair and time.

Which files: ``*.parquet`` in ``parquet/exchange=*/date=*`` older than ``older_than_s`` (by
modification time: a closed file of a closed hour) and smaller than half the target size.
They are grouped in time order (file names start with the first tick) into groups of about
``target_bytes``; each group becomes one file, sorted by (pair, timestamp_ms, session, sequence)
with row groups of ``row_group_rows`` so a time-range read of one pair touches few row groups.
All groups of a partition are swapped in with one atomic commit (see ``store.py``).

Memory is bounded by one group (about ``target_bytes`` of Parquet, decoded).
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import signal
import time
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from recorder.compaction.store import SORT_KEYS, FileInfo, LocalStore, PartitionStore, Plan, StoreError

log = logging.getLogger("recorder.compaction")

DEFAULT_TARGET_MB = 128.0
DEFAULT_ROW_GROUP_ROWS = 128 * 1024
OUTPUT_PREFIX = "compacted-"
# Fault injection for the crash tests: SIGKILL when this point is reached (see store.py).
CRASH_ENV = "RECORDER_COMPACT_CRASH_AT"
_FIRST_TS = re.compile(r"-(\d{10,16})-\d+\.parquet$")


class CompactionError(RuntimeError):
    """A problem reported to the user as one line."""


@dataclass
class CompactionResult:
    partitions: int = 0
    files_in: int = 0
    files_out: int = 0
    rows: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    recovered: list[str] = field(default_factory=list)


def _crash_hook() -> object:
    point = os.environ.get(CRASH_ENV)
    if not point:
        return None

    def hook(at: str) -> None:
        if at == point:
            os.kill(os.getpid(), signal.SIGKILL)

    return hook


def _order_key(f: FileInfo) -> tuple[int, str]:
    m = _FIRST_TS.search(f.name)
    first = int(m.group(1)) if m else int(f.mtime * 1000)
    return first, f.name


def plan_groups(files: list[FileInfo], target_bytes: int, older_than_s: float, now: float) -> list[list[FileInfo]]:
    """Groups of small, old-enough files, in time order; a group of one is left alone."""
    small = [f for f in files if f.size < target_bytes / 2 and now - f.mtime >= older_than_s]
    small.sort(key=_order_key)
    groups: list[list[FileInfo]] = []
    cur: list[FileInfo] = []
    size = 0
    for f in small:
        if cur and size + f.size > target_bytes:
            groups.append(cur)
            cur, size = [], 0
        cur.append(f)
        size += f.size
    if cur:
        groups.append(cur)
    return [g for g in groups if len(g) > 1]


def merge(tables: list[pa.Table]) -> pa.Table:
    table = pa.concat_tables(tables, promote_options="default")
    keys = [(k, "ascending") for k in SORT_KEYS if k in table.schema.names]
    # Arrow's sort is stable: the levels of one snapshot keep their order.
    return table.sort_by(keys)


def compact(
    store: PartitionStore | str,
    *,
    older_than_s: float = 3600.0,
    target_mb: float = DEFAULT_TARGET_MB,
    row_group_rows: int = DEFAULT_ROW_GROUP_ROWS,
    partitions: list[str] | None = None,
) -> CompactionResult:
    """Compact every partition (or the given ones). Recovers an interrupted run first."""
    if isinstance(store, str):
        if not os.path.isdir(store):
            raise CompactionError(f"data dir {store} does not exist")
        store = LocalStore(store, crash_hook=_crash_hook())
    target = max(1, int(target_mb * 1024 * 1024))
    result = CompactionResult()
    try:
        with store.exclusive():
            did = store.recover()
            if did:
                log.info("event=compaction_recovered detail=%s", did)
                result.recovered.append(did)
            for partition in partitions if partitions is not None else store.partitions():
                _compact_partition(store, partition, target, older_than_s, row_group_rows, result)
    except StoreError as exc:
        raise CompactionError(f"{exc.strerror}: {exc.filename}") from None
    return result


def _compact_partition(
    store: PartitionStore, partition: str, target: int, older_than_s: float, rg_rows: int, result: CompactionResult
) -> None:
    groups = plan_groups(store.list_files(partition), target, older_than_s, time.time())
    if not groups:
        return
    token = f"{int(time.time())}{secrets.token_hex(4)}"
    stage = store.begin(partition, token)
    inputs: list[str] = []
    outputs: list[str] = []
    rows = bytes_out = 0
    try:
        for group in groups:
            table = merge([store.read_table(partition, f.name) for f in group])
            ts = table.column("timestamp_ms")
            first = pc.min(ts).as_py()
            # "<prefix><token>-<first tick>-<n>": like the writer's names, the number before the
            # last one is the file's first tick, which readers use to skip files (recorder.dataset).
            name = f"{OUTPUT_PREFIX}{token}-{first}-{len(outputs):03d}.parquet"
            bytes_out += store.write_staged(stage, name, table, rg_rows)
            rows += table.num_rows
            outputs.append(name)
            inputs += [f.name for f in group]
            del table
        store.commit(Plan(partition=partition, stage=stage, inputs=inputs, outputs=outputs))
    except BaseException:
        # Nothing was swapped unless commit() got past the exchange, and then it finished.
        if not any(o for o in outputs if _exists_in_partition(store, partition, o)):
            store.abort(stage)
        raise
    result.partitions += 1
    result.files_in += len(inputs)
    result.files_out += len(outputs)
    result.rows += rows
    result.bytes_in += sum(f.size for g in groups for f in g)
    result.bytes_out += bytes_out
    log.info(
        "event=partition_compacted partition=%s files_in=%d files_out=%d rows=%d",
        partition,
        len(inputs),
        len(outputs),
        rows,
    )


def _exists_in_partition(store: PartitionStore, partition: str, name: str) -> bool:
    return any(f.name == name for f in store.list_files(partition))
