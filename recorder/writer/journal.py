"""The writer's commit journal: ``<data_dir>/.sessions/<session_id>/writer-journal.json``.

It makes a segment commit atomic across several files and several rings::

    prepare files (tmp + fsync)
    -> journal with ``pending`` (files, ring positions, sequence numbers after the segment)
    -> publish files (rename)  -> ring.commit(pos)  -> journal with ``pending`` cleared

A writer that starts and finds ``pending`` finishes it (publish is idempotent, ring commits are
monotonic) before reading anything, so a kill -9 at any point neither loses nor doubles a
snapshot. Without ``pending`` the top-level ``next_seq``/``next_segment`` are authoritative.

Paths in the journal are relative to ``data_dir`` so a data directory can be moved.
"""

from __future__ import annotations

import logging
import os
import re
import time
from pathlib import Path

import msgspec
import pyarrow.parquet as pq

from recorder.layout import BOOKS, format_dirs
from recorder.sinks.local import atomic_write_bytes

log = logging.getLogger("recorder.writer")

JOURNAL_VERSION = 1
JOURNAL_NAME = "writer-journal.json"

# exchange -> pair -> next sequence number to assign
SeqState = dict[str, dict[str, int]]


class JournalFile(msgspec.Struct, forbid_unknown_fields=True):
    tmp: str
    final: str


class RingPosition(msgspec.Struct, forbid_unknown_fields=True):
    name: str  # shm name of the ring the position belongs to
    instance: int  # the ring's random instance id: a recreated ring with the same name differs
    pos: int  # commit position once this segment is published


class PendingCommit(msgspec.Struct, kw_only=True):
    segment: int
    files: list[JournalFile]
    rings: dict[str, RingPosition]  # venue id -> position
    next_seq: SeqState  # the books'
    next_segment: int
    dataset_seq: dict[str, SeqState] = {}  # every other dataset's (trades, quotes): name -> state
    snapshots: int = 0  # books stored by the segment
    stored: dict[str, int] = {}  # records stored by the segment, per dataset
    rows: int = 0
    bytes: int = 0
    created_ms: int = 0


class Journal(msgspec.Struct, kw_only=True):
    version: int = JOURNAL_VERSION
    session_id: str
    next_segment: int = 0
    next_seq: SeqState = {}  # the books' (this file's format from before trades and quotes)
    dataset_seq: dict[str, SeqState] = {}  # every other dataset's: name -> state
    pending: PendingCommit | None = None
    updated_ms: int = 0


class JournalError(RuntimeError):
    pass


def journal_path(data_dir: str | os.PathLike[str], session_id: str) -> Path:
    return Path(data_dir) / ".sessions" / session_id / JOURNAL_NAME


def save_journal(data_dir: str | os.PathLike[str], journal: Journal) -> None:
    """Atomically and durably replace the journal. Raises OSError (SinkError) on failure."""
    journal.updated_ms = int(time.time() * 1000)
    data = msgspec.json.format(msgspec.json.encode(journal), indent=2) + b"\n"
    atomic_write_bytes(journal_path(data_dir, journal.session_id), data)


def load_journal(data_dir: str | os.PathLike[str], session_id: str) -> Journal:
    """The session's journal; rebuilt from the session's files when missing or unreadable.

    A missing journal with existing files happens when ``.sessions`` was deleted; continuing
    from the stored maxima keeps sequence numbers gap-free and file names unique.
    """
    path = journal_path(data_dir, session_id)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return rebuild_journal(data_dir, session_id)
    try:
        journal = msgspec.json.decode(raw, type=Journal)
        if journal.version != JOURNAL_VERSION or journal.session_id != session_id:
            raise JournalError(f"version {journal.version} / session {journal.session_id!r}")
        return journal
    except (msgspec.DecodeError, msgspec.ValidationError, JournalError) as exc:
        # Can't happen with atomic writes short of disk corruption; keep the evidence and go on.
        aside = path.with_name(f"{JOURNAL_NAME}.corrupt-{int(time.time() * 1000)}")
        os.replace(path, aside)
        log.error("event=journal_corrupt path=%s moved_to=%s error=%s", path, aside, exc)
        return rebuild_journal(data_dir, session_id)


def _session_file_re(session_id: str, ext: str) -> re.Pattern[str]:
    return re.compile(rf"^{re.escape(session_id)}-(\d+)-(\d+)\.{ext}$")


def rebuild_journal(data_dir: str | os.PathLike[str], session_id: str) -> Journal:
    """Recover ``next_seq``/``next_segment`` from the session's published files, every dataset."""
    journal = Journal(session_id=session_id)
    found = 0
    for layout, fmt, rel in format_dirs():
        state = journal.next_seq if layout is BOOKS else journal.dataset_seq.setdefault(layout.name, {})
        found += _rebuild_dataset(journal, state, Path(data_dir, rel), fmt, session_id)
    journal.dataset_seq = {name: state for name, state in journal.dataset_seq.items() if state}
    if found:
        log.warning(
            "event=journal_rebuilt session=%s files=%d next_segment=%d",
            session_id,
            found,
            journal.next_segment,
        )
    return journal


def _rebuild_dataset(journal: Journal, state: SeqState, base: Path, fmt: str, session_id: str) -> int:
    """Fold one dataset's files of one format into ``state``; returns the files that counted."""
    found = 0

    def fold(tops: dict[tuple[str, str], int]) -> None:
        for (exchange, pair), top in tops.items():
            pairs = state.setdefault(exchange, {})
            pairs[pair] = max(pairs.get(pair, 0), top + 1)

    pattern = _session_file_re(session_id, fmt)
    for path in sorted(base.glob("exchange=*/date=*/*")):
        m = pattern.match(path.name)
        if not m:
            continue
        found += 1
        journal.next_segment = max(journal.next_segment, int(m.group(2)) + 1)
        try:
            fold(_max_sequences(path, fmt))
        except Exception as exc:  # a damaged file must not stop the recorder
            log.error("event=journal_rebuild_skip path=%s error=%r", path, exc)
    # Compaction merges sessions' files into ``compacted-*`` files: their rows count too.
    for path in sorted(base.glob(f"exchange=*/date=*/compacted-*.{fmt}")):
        try:
            tops = _max_sequences(path, fmt, session_id)
        except Exception as exc:
            log.error("event=journal_rebuild_skip path=%s error=%r", path, exc)
            continue
        found += bool(tops)
        fold(tops)
    return found


class _SeqOnly(msgspec.Struct):
    exchange: str
    pair: str
    sequence_number: int
    session_id: str = ""


def _max_sequences(path: Path, fmt: str, session_id: str | None = None) -> dict[tuple[str, str], int]:
    """Highest sequence number per (exchange, pair); JSONL lines of ``session_id`` only if given
    (a compacted file holds several sessions)."""
    out: dict[tuple[str, str], int] = {}
    if fmt == "parquet":
        filters = [("session_id", "==", session_id)] if session_id is not None else None
        table = pq.read_table(path, columns=["exchange", "pair", "sequence_number"], filters=filters)
        agg = table.group_by(["exchange", "pair"]).aggregate([("sequence_number", "max")])
        for row in agg.to_pylist():
            out[(row["exchange"], row["pair"])] = row["sequence_number_max"]
        return out
    decoder = msgspec.json.Decoder(_SeqOnly)
    with open(path, "rb") as fh:
        for line in fh:
            if line.strip():
                rec = decoder.decode(line)
                if session_id is not None and rec.session_id != session_id:
                    continue
                key = (rec.exchange, rec.pair)
                out[key] = max(out.get(key, -1), rec.sequence_number)
    return out
