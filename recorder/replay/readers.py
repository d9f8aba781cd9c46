"""Readers for raw exchange captures (see tests/data/recordings/README.md), one record API.

Three formats, detected from the file's content (compression from its magic bytes):

- text capture (cryptofeed ``*.ws.N.0`` / ``*.http.N.0``): ``<unix s>: <frame>`` per received
  frame, ``<url> <- <unix s>: <frame>`` per sent frame, ``<url> <-> <unix s>`` per connect,
  ``<url> -> <unix s>: <body>`` per HTTP response, optional ``configuration: {...}`` lines;
- JSON lines, zstd-compressed (``*.jsonl.zst``): ``{"t", "conn", "ts", "data"}`` objects (a
  recorder archive's have ``ns``, epoch nanoseconds, for ``ts``: recorder/archive/format.py);
- ``<unix ns> <frame>`` text, plain or gzip, where a Binance REST depth snapshot appears inline as a
  bare ``{"lastUpdateId": ...}`` line just before the diffs that follow it.

Every reader yields :class:`Record` in file order with the *local* receive time in epoch ms.
"""

from __future__ import annotations

import base64
import enum
import heapq
import io
import json
import re
import zlib
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import zstandard

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
# A nanosecond epoch has 19 digits today; anything with 16+ digits cannot be seconds or ms.
_NS_LINE = re.compile(rb"^(\d{16,20}) (.*)$", re.DOTALL)
_TEXT_FRAME = re.compile(rb"^(\d+(?:\.\d*)?): (.*)$", re.DOTALL)
_SYMBOL = re.compile(rb'"s"\s*:\s*"([A-Za-z0-9_\-]+)"')
_INLINE_SNAPSHOT = b'{"lastUpdateId"'
# How far past an inline snapshot we look for the frame that names its symbol.
_INLINE_LOOKAHEAD = 64
# JSON-lines records that are no frame: a file's header; an archive's Feed builds, Feed calls and
# sampler ticks (recorder/archive/format.py; its own replay reads them).
_NOT_FRAMES = ("header", "feed", "call", "tick", "unarchivable")


class Kind(enum.Enum):
    WS = "ws"  # a frame the client received
    SENT = "sent"  # a frame the client sent (subscriptions)
    HTTP = "http"  # an HTTP response body; ``url`` says what was asked
    CONNECT = "connect"  # a socket was opened to ``url``
    CLOSE = "close"  # the socket was closed (JSON lines ``close`` / ``disconnect`` records)


@dataclass(frozen=True, slots=True)
class Record:
    recv_ms: float  # local receive (or send) time, epoch ms; may be behind exchange time
    conn: str  # socket id: different values are different sockets
    kind: Kind
    payload: bytes
    url: str | None = None


class CaptureFormatError(ValueError):
    """A capture line cannot be read; the message names the file and line."""


class CaptureReader:
    """Iterate the records of one capture file, whatever its format.

    ``strict=False`` (the default) skips unreadable lines and counts them in ``bad_lines``: a
    capture cut short by a crash ends in a partial line, and the frames before it are still good.
    """

    def __init__(self, path: str | Path, *, strict: bool = False) -> None:
        self.path = Path(path)
        self.strict = strict
        self.bad_lines = 0
        # The file ends inside a compressed stream (a capture cut by a crash or a full disk):
        # everything before the cut is read, the partial last line is counted in bad_lines.
        self.truncated = False
        self.format = detect_format(self.path)

    def __iter__(self) -> Iterator[Record]:
        if self.format == "jsonl":
            return self._jsonl()
        if self.format == "ns":
            return self._ns()
        return self._text()

    # --- helpers ---------------------------------------------------------------------------

    def _bad(self, lineno: int, why: str) -> None:
        if self.strict:
            raise CaptureFormatError(f"{self.path}:{lineno}: {why}")
        self.bad_lines += 1

    def _lines(self) -> Iterator[tuple[int, bytes]]:
        with open_decompressed(self.path) as fh:
            for lineno, raw in enumerate(fh, 1):
                if not raw.endswith(b"\n") and getattr(fh, "cut", False):
                    # The partial line a cut left: counted, never parsed.
                    self._bad(lineno, "the compressed stream ends mid-line (the file was cut)")
                    break
                line = raw.rstrip(b"\r\n")
                if line.strip():
                    yield lineno, line
            self.truncated = bool(getattr(fh, "cut", False))

    # --- text capture ----------------------------------------------------------------------

    def _text(self) -> Iterator[Record]:
        conn = conn_id_for(self.path)
        for lineno, line in self._lines():
            m = _TEXT_FRAME.match(line)
            if m:
                yield Record(float(m.group(1)) * 1000.0, conn, Kind.WS, m.group(2))
                continue
            if line.startswith(b"configuration: "):
                continue
            record = self._text_other(conn, line)
            if record is None:
                self._bad(lineno, "not a text-capture line")
            else:
                yield record

    @staticmethod
    def _text_other(conn: str, line: bytes) -> Record | None:
        # URLs hold no spaces, so the first space ends the URL and the arrow follows it.
        url, sep, rest = line.partition(b" ")
        if not sep:
            return None
        arrow, _, rest = rest.partition(b" ")
        try:
            if arrow == b"<->":
                return Record(float(rest) * 1000.0, conn, Kind.CONNECT, b"", url.decode())
            ts, sep, body = rest.partition(b": ")
            if not sep:
                return None
            if arrow == b"<-":
                return Record(float(ts) * 1000.0, conn, Kind.SENT, body, url.decode())
            if arrow == b"->":
                return Record(float(ts) * 1000.0, conn, Kind.HTTP, body, url.decode())
        except (ValueError, UnicodeDecodeError):
            return None
        return None

    # --- JSON lines ------------------------------------------------------------------------

    def _jsonl(self) -> Iterator[Record]:
        kinds = {
            "recv": Kind.WS,
            "send": Kind.SENT,
            "http": Kind.HTTP,
            "connect": Kind.CONNECT,
            "close": Kind.CLOSE,
            "disconnect": Kind.CLOSE,
        }
        for lineno, line in self._lines():
            try:
                obj = json.loads(line)
                kind = kinds.get(obj["t"]) if obj["t"] != "header" else None
                if obj["t"] in _NOT_FRAMES:
                    continue
                if kind is None:
                    raise KeyError(f"unknown record type {obj['t']!r}")
                data = obj.get("data", "")
                if "b64" in obj:  # an archive's frame that is not UTF-8
                    data = base64.b64decode(obj["b64"]).decode(errors="replace")
                url = obj.get("url") or obj.get("addr")
                yield Record(
                    obj["ns"] / 1e6 if "ns" in obj else float(obj["ts"]) * 1000.0,
                    str(obj["conn"]),
                    kind,
                    data.encode() if isinstance(data, str) else json.dumps(data).encode(),
                    url,
                )
            except (ValueError, KeyError, TypeError) as exc:
                self._bad(lineno, f"not a capture record: {exc}")

    # --- <unix ns> <frame> -----------------------------------------------------------------

    def _ns(self) -> Iterator[Record]:
        conn = conn_id_for(self.path)
        lines = (self._ns_line(lineno, line) for lineno, line in self._lines())
        items = (item for item in lines if item is not None)
        ahead: deque[tuple[float, bytes]] = deque()  # read ahead to name an inline snapshot
        while True:
            item = ahead.popleft() if ahead else next(items, None)
            if item is None:
                return
            recv_ms, frame = item
            if not frame.startswith(_INLINE_SNAPSHOT):
                yield Record(recv_ms, conn, Kind.WS, frame)
                continue
            # The bare snapshot has no symbol: the diffs right after it say which book it is for.
            symbol = next((s for _, f in ahead if (s := _symbol_of(f))), None)
            while symbol is None and len(ahead) < _INLINE_LOOKAHEAD:
                nxt = next(items, None)
                if nxt is None:
                    break
                ahead.append(nxt)
                symbol = _symbol_of(nxt[1])
            url = f"inline:depth?symbol={symbol}" if symbol else "inline:depth"
            yield Record(recv_ms, conn, Kind.HTTP, frame, url)

    def _ns_line(self, lineno: int, line: bytes) -> tuple[float, bytes] | None:
        m = _NS_LINE.match(line)
        if not m:
            self._bad(lineno, "expected '<unix ns> <frame>'")
            return None
        return int(m.group(1)) / 1e6, m.group(2)


def _symbol_of(frame: bytes) -> str | None:
    """The symbol of a depth diff (a Binance ``depthUpdate``); None for any other frame."""
    if frame.startswith(_INLINE_SNAPSHOT) or b'"depthUpdate"' not in frame:
        return None
    m = _SYMBOL.search(frame)
    return m.group(1).decode() if m else None


class _Decompressed(io.RawIOBase):
    """A gzip or zstd file as a stream that survives a cut: ``cut`` turns true where the file
    ends inside a compressed member (``gzip.open`` raised there, and the replay lost the whole
    file). Concatenated members (``cat a.gz b.gz``) are read one after the other."""

    CHUNK = 1 << 16

    def __init__(self, path: Path, zstd: bool) -> None:
        self._raw = open(path, "rb")
        self._zstd = zstd
        self._errors: tuple[type[Exception], ...] = (zstandard.ZstdError,) if zstd else (zlib.error,)
        self._z = self._member()
        self._pending = b""  # compressed bytes read but not yet decompressed
        self._in_member = False
        self._produced = False
        self._out = b""
        self.cut = False

    def _member(self):  # type: ignore[no-untyped-def]
        if self._zstd:
            return zstandard.ZstdDecompressor().decompressobj()
        return zlib.decompressobj(16 + zlib.MAX_WBITS)

    def readable(self) -> bool:
        return True

    def readinto(self, buf: memoryview) -> int:  # type: ignore[override]
        while not self._out:
            if not self._pending:
                self._pending = self._raw.read(self.CHUNK)
                if not self._pending:
                    self.cut = self.cut or self._in_member
                    if self.cut and not self._produced:
                        raise OSError("the compressed stream ends before any data")
                    return 0
            try:
                if self._zstd:
                    self._out, self._pending = self._z.decompress(self._pending), b""
                else:
                    self._out = self._z.decompress(self._pending, self.CHUNK)
                    self._pending = self._z.unconsumed_tail
            except self._errors as exc:
                if not self._produced:
                    raise OSError(f"not a {'zstd' if self._zstd else 'gzip'} stream: {exc}") from None
                self.cut = True  # what follows the cut is not a compressed stream: stop there
                self._pending = b""
                return 0
            self._produced = self._produced or bool(self._out)
            self._in_member = True
            if self._z.eof:  # a member ended; another may follow (NUL padding is not one)
                rest = self._z.unused_data + self._pending
                self._pending = rest if rest.strip(b"\0") else b""
                self._z = self._member()
                self._in_member = False
        n = min(len(buf), len(self._out))
        buf[:n] = self._out[:n]
        self._out = self._out[n:]
        return n

    def close(self) -> None:
        self._raw.close()
        super().close()


class _CutAwareReader(io.BufferedReader):
    @property
    def cut(self) -> bool:
        return bool(getattr(self.raw, "cut", False))


def open_decompressed(path: Path) -> IO[bytes]:
    """The file as a binary line stream, gunzipped or zstd-decompressed by its magic bytes."""
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic.startswith(GZIP_MAGIC) or magic == ZSTD_MAGIC:
        return _CutAwareReader(_Decompressed(path, zstd=magic == ZSTD_MAGIC))
    return open(path, "rb")


def detect_format(path: Path) -> str:
    """``jsonl``, ``ns`` or ``text``, from the first non-blank line."""
    try:
        with open_decompressed(path) as fh:
            for raw in fh:
                line = raw.strip()
                if not line:
                    continue
                if line.startswith(b"{") and b'"t"' in line:
                    return "jsonl"
                if _NS_LINE.match(line):
                    return "ns"
                return "text"
    except (OSError, EOFError, zstandard.ZstdError) as exc:
        raise CaptureFormatError(f"{path}: cannot read: {exc}") from None
    raise CaptureFormatError(f"{path}: empty capture")


def conn_id_for(path: Path) -> str:
    """``BINANCE.ws.1.0`` -> ``BINANCE.ws.1`` (cryptofeed's trailing rotation index dropped)."""
    name = path.name
    for suffix in (".gz", ".txt", ".log"):
        name = name.removesuffix(suffix)
    m = re.match(r"^(.+\.(?:ws|http)\.\d+)\.\d+$", name)
    return m.group(1) if m else name


def capture_files(path: str | Path) -> list[Path]:
    """The files that make up one capture: a cryptofeed ``NAME.ws.N.R`` file comes with its
    ``NAME.http.*`` siblings (the REST snapshots); a directory gives its ``*.jsonl.zst`` files (an
    archive); anything else stands alone."""
    p = Path(path)
    if p.is_dir():  # a directory of a recorder's archive (README "Archive"): its finished files
        return sorted(f for f in p.rglob("*.jsonl.zst") if not f.name.startswith("."))
    m = re.match(r"^(.+)\.ws\.\d+\.\d+$", p.name)
    if not m:
        return [p]
    siblings = sorted(p.parent.glob(f"{m.group(1)}.http.*"))
    return [*siblings, p]


def read_capture(paths: Iterable[str | Path], *, strict: bool = False) -> Iterator[Record]:
    """All records of several files merged by local receive time (file order kept on ties)."""
    readers = [CaptureReader(p, strict=strict) for p in paths]
    if len(readers) == 1:
        return iter(readers[0])
    return heapq.merge(*readers, key=lambda r: r.recv_ms)
