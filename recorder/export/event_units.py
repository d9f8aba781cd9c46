"""The archive's events of a selection, cut into (exchange, pair, UTC day) units on disk.

:class:`ArchiveUnits` finds the archived sessions of a selection (``recorder.export.events``),
plans the units they cover, and replays them one session at a time, appending each pair's events
to its unit's spool file (``EVENT_DTYPE`` records, receive order). A unit is handed over
(:meth:`ArchiveUnits.spooled`) as soon as it is complete — its pair's events reached the next day,
or the exchange's sessions ended — so the disk holds about one day per pair, and memory one
batch per pair. Sessions of an exchange are replayed in time order; two that archived the same
pair at once cannot both be exported (``--session-id`` picks one).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recorder.archive.format import index_path
from recorder.dataset.timeutil import MS_PER_DAY
from recorder.export.events import (
    EVENT_DTYPE,
    NS_PER_DAY,
    ArchiveEvents,
    ArchiveSession,
    EventBatch,
    archive_sessions,
    first_ms_of,
)
from recorder.export.source import Unit, day_of
from recorder.export.symbols import ExportError
from recorder.replay.archive import ArchiveReplayError

CHUNK_EVENTS = 1 << 18  # events read back per chunk (~9 MB)


@dataclass
class SpooledUnit:
    """A complete unit's events on disk (deleted by ``release``)."""

    unit: Unit
    path: Path
    count: int
    sessions: list[str] = field(default_factory=list)

    def chunks(self, size: int = CHUNK_EVENTS) -> Iterator[np.ndarray]:
        """The events in receive order, ``size`` at a time (read from the file, not all at once)."""
        with open(self.path, "rb") as fh:  # plain reads: a memory map's pages would count as ours
            while True:
                chunk = np.fromfile(fh, dtype=EVENT_DTYPE, count=size)
                if not len(chunk):
                    return
                yield chunk

    def release(self) -> None:
        self.path.unlink(missing_ok=True)


class ArchiveUnits:
    """The archived sessions of a selection in a local data dir (one on S3: ``fetch_archive``
    first)."""

    def __init__(
        self,
        data_dir: str | Path,
        exchanges: Sequence[str] | None = None,
        pairs: Sequence[str] | None = None,
        sessions: Sequence[str] | None = None,
        start_ms: int | None = None,
        end_ms: int | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.pairs = None if pairs is None else set(pairs)
        self.start_ms, self.end_ms = start_ms, end_ms
        try:
            found = archive_sessions(data_dir, exchanges, sessions)
        except ArchiveReplayError as exc:
            raise ExportError(f"the archive cannot be read: {exc}") from None
        self.sessions = [s for s in found if self._pairs(s) and self._overlaps(s)]
        self._check_overlaps()

    def _pairs(self, session: ArchiveSession) -> list[str]:
        return [p for p in session.pairs if self.pairs is None or p in self.pairs]

    def _overlaps(self, session: ArchiveSession) -> bool:
        first, last = self._span_ms(session)
        return (self.end_ms is None or first < self.end_ms) and (self.start_ms is None or last >= self.start_ms)

    def _span_ms(self, session: ArchiveSession) -> tuple[int, int]:
        """The session's first and last record (ms): from its archive index, else its file names
        and their date directories (the end of the last file's day)."""
        first = session.first_ms
        last = None
        try:
            lines = index_path(self.data_dir, session.session).read_text().splitlines()
        except OSError:
            lines = []
        for line in lines:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and entry.get("venue") == session.exchange:
                last = max(last or 0, int(entry.get("last_ns", 0)) // 1_000_000)
        # The newest file may be missing from the index (being written, or its process killed).
        newest = max(first_ms_of(p) for p, _ in session.files)
        if last is None or newest > last:
            last = newest // MS_PER_DAY * MS_PER_DAY + MS_PER_DAY - 1
        return first, last

    def _check_overlaps(self) -> None:
        by_exchange: dict[str, list[ArchiveSession]] = {}
        for s in self.sessions:
            by_exchange.setdefault(s.exchange, []).append(s)
        for exchange, group in by_exchange.items():
            for a, b in zip(group, group[1:], strict=False):
                shared = set(self._pairs(a)) & set(self._pairs(b))
                if shared and self._span_ms(b)[0] <= self._span_ms(a)[1]:
                    raise ExportError(
                        f"sessions {a.session} and {b.session} both archived {exchange} {sorted(shared)[0]} at once: "
                        "pick one with --session-id"
                    )

    def covered(self) -> set[tuple[str, str]]:
        """(exchange, pair) of every pair some selected session archived."""
        return {(s.exchange, p) for s in self.sessions for p in self._pairs(s)}

    def planned(self) -> list[Unit]:
        """Every unit the sessions may fill (a pair never synced on a day fills none)."""
        units: set[Unit] = set()
        for s in self.sessions:
            first, last = self._span_ms(s)
            lo = max(first, self.start_ms or first)
            hi = min(last, (self.end_ms or last + 1) - 1)
            for day_ms in range(lo // MS_PER_DAY * MS_PER_DAY, hi + 1, MS_PER_DAY):
                units.update(Unit(s.exchange, p, day_of(day_ms)) for p in self._pairs(s))
        return sorted(units, key=lambda u: (u.exchange, u.pair, u.day))

    def spooled(self, spool_dir: Path) -> Iterator[SpooledUnit]:
        """Replay the sessions; yield each unit once complete, its events in a file under
        ``spool_dir`` (the caller ``release``s it)."""
        spool_dir.mkdir(parents=True, exist_ok=True)
        start_ns = None if self.start_ms is None else self.start_ms * 1_000_000
        end_ns = None if self.end_ms is None else self.end_ms * 1_000_000
        exchanges = list(dict.fromkeys(s.exchange for s in self.sessions))
        for exchange in exchanges:
            open_units: dict[str, _OpenUnit] = {}
            for s in (s for s in self.sessions if s.exchange == exchange):
                wanted = self._pairs(s)
                try:
                    for batch in ArchiveEvents(s, wanted, start_ns, end_ns):
                        yield from self._take(exchange, batch, s.session, open_units, spool_dir)
                except ArchiveReplayError as exc:
                    raise ExportError(
                        f"the archive of session {s.session} ({exchange}) cannot be replayed: {exc}"
                    ) from None
            for pair in sorted(open_units):
                yield open_units.pop(pair).close()

    def _take(
        self, exchange: str, batch: EventBatch, session: str, open_units: dict[str, _OpenUnit], spool_dir: Path
    ) -> Iterator[SpooledUnit]:
        pair, events = batch.pair, batch.events
        days = events["local_ns"] // NS_PER_DAY
        cuts = np.flatnonzero(np.diff(days)) + 1
        for part in np.split(events, cuts):
            day = day_of(int(part["local_ns"][0] // 1_000_000))
            current = open_units.get(pair)
            if current is not None and current.unit.day != day:
                yield open_units.pop(pair).close()
                current = None
            if current is None:
                current = open_units[pair] = _OpenUnit(Unit(exchange, pair, day), spool_dir)
            current.append(part, session)


class _OpenUnit:
    def __init__(self, unit: Unit, spool_dir: Path) -> None:
        self.unit = unit
        self.path = spool_dir / f"{unit.exchange}_{unit.pair}_{unit.day}.events"
        self._fh = open(self.path, "wb")  # noqa: SIM115 - open across the unit's batches
        self.count = 0
        self.sessions: list[str] = []

    def append(self, events: np.ndarray, session: str) -> None:
        self._fh.write(np.ascontiguousarray(events).tobytes())
        self.count += len(events)
        if session not in self.sessions:
            self.sessions.append(session)

    def close(self) -> SpooledUnit:
        self._fh.close()
        return SpooledUnit(self.unit, self.path, self.count, self.sessions)


def fetch_archive(
    fs: Any,
    root: str,
    dest: Path,
    exchanges: Sequence[str] | None = None,
    sessions: Sequence[str] | None = None,
    start_ms: int | None = None,
    end_ms: int | None = None,
) -> int:
    """Download ``<root>/archive`` (a data dir on S3, pyarrow filesystem ``fs``) into ``dest``: the
    files of every session whose files reach into [start, end), from its first file (a replay
    starts there) up to ``end``. Returns the files fetched (0: no archive there)."""
    import pyarrow.fs as pafs

    base = f"{root.rstrip('/')}/archive"
    try:
        infos = fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
    except OSError as exc:
        raise ExportError(f"cannot list the archive under {base}: {exc}") from None
    by_session: dict[tuple[str, str], list[tuple[int, str]]] = {}
    for info in infos:
        rel = info.path[len(base) + 1 :]
        parts = rel.split("/")
        if info.type != pafs.FileType.File or len(parts) != 3 or not parts[2].endswith(".jsonl.zst"):
            continue
        venue, name = parts[0].partition("=")[2], parts[2]
        session = name.removesuffix(".jsonl.zst").rsplit("-", 2)[0]
        if (exchanges is not None and venue not in exchanges) or (sessions is not None and session not in sessions):
            continue
        by_session.setdefault((venue, session), []).append((first_ms_of(Path(name)), rel))
    fetched = 0
    for files in by_session.values():
        files.sort()
        if end_ms is not None:
            files = [f for f in files if f[0] < end_ms]
        # A session that ended before ``start`` has no file from the start's day on.
        if not files or (start_ms is not None and files[-1][0] < start_ms - MS_PER_DAY):
            continue
        for _, rel in files:
            target = dest / "archive" / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                # (compression=None: pyarrow would unpack a .zst by its name)
                with fs.open_input_stream(f"{base}/{rel}", compression=None) as src, open(target, "wb") as out:
                    while block := src.read(1 << 20):
                        out.write(block)
            except OSError as exc:
                raise ExportError(f"cannot download {base}/{rel}: {exc}") from None
            fetched += 1
    return fetched
