"""Merge each partition's small files into few large ones sorted by pair and time.

One planner for both formats and both stores. Which files: the data files of a
``parquet/exchange=*/date=*`` or ``jsonl/exchange=*/date=*`` partition older than
``older_than_s`` (by modification time: a closed file of a closed hour) and smaller than half
the target size. They are grouped in time order (file names start with the first tick) into
groups of about ``target_bytes``; each group becomes one file, sorted by (pair, timestamp_ms,
session, sequence) — Parquet with row groups of ``row_group_rows`` so a time-range read of one
pair touches few row groups, JSONL line by line (``formats.py``). All groups of a partition are
replaced with one atomic commit (``store.py`` locally, ``s3store.py`` on S3).

Memory is bounded by one group (about ``target_bytes`` of files, decoded).
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import signal
import time
from dataclasses import dataclass, field

from recorder.compaction.formats import FormatError, codec_for
from recorder.compaction.store import FileInfo, LocalStore, PartitionStore, Plan, StoreError
from recorder.config import S3Config

log = logging.getLogger("recorder.compaction")

DEFAULT_TARGET_MB = 128.0
DEFAULT_ROW_GROUP_ROWS = 128 * 1024
OUTPUT_PREFIX = "compacted-"
# Fault injection for the crash tests: SIGKILL when this point is reached (see store.py).
CRASH_ENV = "RECORDER_COMPACT_CRASH_AT"
_FIRST_TS = re.compile(r"-(\d{10,16})-\d+\.(?:parquet|jsonl)$")


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


def open_store(location: str | S3Config) -> PartitionStore:
    """The store of a local data dir, an ``s3://bucket/prefix`` URL (endpoint from the AWS chain,
    e.g. ``AWS_ENDPOINT_URL``) or an S3 destination from a capture config."""
    if isinstance(location, str) and not location.startswith("s3://"):
        if not os.path.isdir(location):
            raise CompactionError(f"data dir {location} does not exist")
        return LocalStore(location, crash_hook=_crash_hook())
    from recorder.compaction.s3store import S3PartitionStore

    try:
        if isinstance(location, str):
            return S3PartitionStore.from_url(location, crash_hook=_crash_hook())
        return S3PartitionStore.from_config(location, crash_hook=_crash_hook())
    except StoreError as exc:
        raise CompactionError(f"{exc.strerror}: {exc.filename}") from None


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


def compact(
    store: PartitionStore | str | S3Config,
    *,
    older_than_s: float = 3600.0,
    target_mb: float = DEFAULT_TARGET_MB,
    row_group_rows: int = DEFAULT_ROW_GROUP_ROWS,
    partitions: list[str] | None = None,
) -> CompactionResult:
    """Compact every partition (or the given ones) of a data dir, an ``s3://bucket/prefix``, an
    S3 destination (``[storage.s3]``) or a store. Recovers an interrupted run first."""
    if isinstance(store, str | S3Config):
        store = open_store(store)
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
    codec = codec_for(partition)
    groups = plan_groups(store.list_files(partition), target, older_than_s, time.time())
    if not groups:
        return
    token = f"{int(time.time())}{secrets.token_hex(4)}"
    stage = store.begin(partition, token)
    inputs: list[str] = []
    outputs: list[str] = []
    sizes: list[int] = []
    rows = bytes_out = 0
    try:
        for group in groups:
            try:
                merged = codec.merge([(f.name, store.read_bytes(partition, f.name)) for f in group], rg_rows)
            except FormatError as exc:
                raise CompactionError(f"{partition}: {exc}") from None
            # "<prefix><token>-<first tick>-<n>": like the writer's names, the number before the
            # last one is the file's first tick, which readers use to skip files (recorder.dataset).
            name = f"{OUTPUT_PREFIX}{token}-{merged.first_ts}-{len(outputs):03d}.{codec.ext}"
            bytes_out += store.write_staged(stage, name, merged.write)
            rows += merged.rows
            outputs.append(name)
            inputs += [f.name for f in group]
            sizes.append(len(group))
            del merged
        plan = Plan(partition=partition, stage=stage, inputs=inputs, outputs=outputs, token=token, group_sizes=sizes)
        store.commit(plan)
    except BaseException:
        # Nothing was swapped unless commit() got past its commit point, and then it finished
        # (or the next run's recover() finishes it). Unsure (the store cannot be listed): keep
        # the stage for recover().
        try:
            committed = any(_exists_in_partition(store, partition, o) for o in outputs)
        except Exception:  # noqa: BLE001 - the original error is the one to report
            committed = True
        if not committed:
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
