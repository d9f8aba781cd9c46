"""Where the data is: a local directory or an ``s3://`` URL, and the files a selection needs.

Partition pruning happens here, on directory names alone: only ``exchange=`` / ``date=`` (and
``pair=``, where a sink writes one) directories that can hold selected rows are listed, so a
one-hour query on a month of data lists and opens one day's files, not the month's.
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass

import msgspec
import pyarrow.fs as pafs

from recorder.compaction.manifest import Manifest, hidden_names, is_manifest
from recorder.compaction.manifest import decode as decode_manifest

FORMATS = ("parquet", "jsonl")


class DatasetError(ValueError):
    """The dataset cannot be opened or a selection is invalid (one-line message)."""


@dataclass(frozen=True)
class DataFile:
    path: str  # path inside the filesystem
    format: str  # parquet | jsonl
    size: int
    partition: dict[str, str]  # hive keys on the way down: exchange, date, maybe pair


@dataclass(frozen=True)
class Prune:
    """Partition values a selection accepts; None = any."""

    exchanges: frozenset[str] | None = None
    pairs: frozenset[str] | None = None
    first_date: str | None = None  # inclusive, YYYY-MM-DD
    last_date: str | None = None  # inclusive

    def accepts(self, key: str, value: str) -> bool:
        if key == "exchange" and self.exchanges is not None:
            return value in self.exchanges
        if key == "pair" and self.pairs is not None:
            return value in self.pairs
        if key == "date":
            if self.first_date is not None and value < self.first_date:
                return False
            if self.last_date is not None and value > self.last_date:
                return False
        return True


def resolve(
    location: str | os.PathLike[str],
    filesystem: pafs.FileSystem | None = None,
    endpoint_url: str | None = None,
    region: str | None = None,
) -> tuple[pafs.FileSystem, str]:
    """(filesystem, root path) for a local directory or ``s3://bucket/prefix``.

    S3 credentials come only from the standard AWS chain (environment, profile, instance role);
    ``endpoint_url`` (or ``AWS_ENDPOINT_URL``) points at any S3-compatible server.
    """
    from recorder.dataset import args  # it imports DatasetError from here

    text = args.location(location)
    if filesystem is not None:
        if not isinstance(filesystem, pafs.FileSystem):
            raise DatasetError(f"invalid filesystem {filesystem!r}: give a pyarrow.fs.FileSystem")
        return filesystem, text.rstrip("/") or "/"
    if text.startswith("s3://"):
        parsed = urllib.parse.urlparse(text)
        if not parsed.netloc:
            raise DatasetError(f"invalid S3 URL {text!r}: expected s3://bucket/prefix")
        kwargs: dict[str, object] = {}
        endpoint = _setting(endpoint_url, "endpoint_url", ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"), args.endpoint)
        if endpoint:
            ep = urllib.parse.urlparse(endpoint)
            kwargs["endpoint_override"] = ep.netloc
            kwargs["scheme"] = ep.scheme
        region = _setting(region, "region", ("AWS_REGION", "AWS_DEFAULT_REGION"), args.region)
        if region:
            kwargs["region"] = region
        try:
            fs = pafs.S3FileSystem(**kwargs)  # type: ignore[arg-type]
        except (OSError, ValueError) as exc:
            raise DatasetError(f"cannot open {text}: {' '.join(str(exc).split())}") from None
        return fs, f"{parsed.netloc}{parsed.path}".rstrip("/")
    if endpoint_url is not None or region is not None:
        raise DatasetError("endpoint_url and region apply to s3:// locations only")
    if "://" in text:
        raise DatasetError(f"unsupported location {text!r}: use a local directory or s3://bucket/prefix")
    path = os.path.abspath(text)
    if not os.path.isdir(path):
        raise DatasetError(f"no data directory {text!r}")
    return pafs.LocalFileSystem(), path


def _setting(value: object, name: str, env: tuple[str, ...], check: Callable[[object, str], str]) -> str | None:
    """An S3 setting given by the caller, else from the first of ``env`` that is set; checked."""
    if value is not None:
        return check(value, name)
    for var in env:
        if os.environ.get(var):
            return check(os.environ[var], f"{var} (environment)")
    return None


def _children(fs: pafs.FileSystem, path: str) -> list[pafs.FileInfo]:
    try:
        return fs.get_file_info(pafs.FileSelector(path, allow_not_found=True, recursive=False))
    except OSError as exc:
        raise DatasetError(f"cannot list {path}: {exc}") from None


def format_roots(fs: pafs.FileSystem, root: str, fmt: str) -> dict[str, str]:
    """Format -> directory holding its hive partitions.

    ``root`` may be the recorder's data dir (``parquet/``, ``jsonl/`` below it) or one format's
    directory itself (``exchange=...`` below it, format told by the file suffix).
    """
    wanted = FORMATS if fmt == "auto" else (fmt,)
    if fmt not in ("auto", *FORMATS):
        raise DatasetError(f"invalid format {fmt!r}: use auto, parquet or jsonl")
    names = {i.base_name: i for i in _children(fs, root) if i.type == pafs.FileType.Directory}
    found = {f: names[f].path for f in wanted if f in names}
    if not found and any("=" in n for n in names):
        found = {f: root for f in wanted}  # the root is a format directory already
    return found


def list_files(fs: pafs.FileSystem, base: str, fmt: str, prune: Prune) -> list[DataFile]:
    """Data files under ``base`` whose partition directories pass ``prune``; sorted by path.

    Names starting with '.' or '_' are skipped: temp files of the atomic sinks and markers.
    A compaction in progress on an object store (a ``_compaction-*.json`` manifest in the
    directory) hides either its inputs or its outputs (``recorder.compaction.manifest``), so a
    listing never holds a row twice or misses one.
    """
    out: list[DataFile] = []
    suffix = f".{fmt}"
    stack: list[tuple[str, dict[str, str]]] = [(base, {})]
    while stack:
        path, part = stack.pop()
        files: list[DataFile] = []
        manifests: list[str] = []
        sizes: dict[str, int] = {}
        for info in _stable_children(fs, path):
            name = info.base_name
            if info.type == pafs.FileType.File:
                sizes[name] = int(info.size or 0)
                if is_manifest(name):
                    manifests.append(info.path)
            if name.startswith((".", "_")):
                continue
            if info.type == pafs.FileType.Directory:
                key, eq, value = name.partition("=")
                if not eq:
                    continue
                value = urllib.parse.unquote(value)
                if prune.accepts(key, value):
                    stack.append((info.path, {**part, key: value}))
            elif info.type == pafs.FileType.File and name.endswith(suffix):
                files.append(DataFile(info.path, fmt, int(info.size or 0), part))
        if manifests:
            hidden = hidden_names([_read_manifest(fs, m) for m in manifests], sizes)
            files = [f for f in files if f.path.rsplit("/", 1)[-1] not in hidden]
        out += files
    out.sort(key=lambda f: f.path)
    return out


def _stable_children(fs: pafs.FileSystem, path: str) -> list[pafs.FileInfo]:
    """A directory listing that is one moment's state, also on an object store.

    An S3 listing of more than 1,000 keys comes in pages fetched one after the other, so a
    compaction committing in between could show a page from before and one from after (neither
    the small files nor the merged ones). Each key changes at most once in a compaction's
    direction (outputs appear, inputs go), so two equal listings in a row are the state at the
    moment between them: list until two agree.
    """
    entries = _children(fs, path)
    if fs.type_name == "local":
        return entries  # the local swap is one directory exchange
    for _ in range(_LISTING_ATTEMPTS):
        again = _children(fs, path)
        if _same_listing(entries, again):
            return again
        entries = again
    raise ListingChanged(f"{path} kept changing while listed")


def _same_listing(a: list[pafs.FileInfo], b: list[pafs.FileInfo]) -> bool:
    return {(i.path, i.size) for i in a} == {(i.path, i.size) for i in b}


_LISTING_ATTEMPTS = 5


class ListingChanged(DatasetError):
    """A file or manifest went away between listing and reading: list again."""


def _read_manifest(fs: pafs.FileSystem, path: str) -> Manifest:
    try:
        with fs.open_input_stream(path) as fh:
            return decode_manifest(fh.read())
    except OSError as exc:
        # S3 reports a key deleted after its HEAD as a plain OSError ("AWS Error
        # RESOURCE_NOT_FOUND during GetObject"): ask whether the manifest is gone.
        if isinstance(exc, FileNotFoundError) or _gone(fs, path):
            raise ListingChanged(f"{path} went away (a compaction finished)") from None
        raise DatasetError(f"cannot read {path}: {exc}") from None
    except msgspec.DecodeError as exc:
        raise DatasetError(f"malformed compaction manifest {path}: {exc}") from None


def _gone(fs: pafs.FileSystem, path: str) -> bool:
    try:
        return fs.get_file_info(path).type == pafs.FileType.NotFound
    except OSError:
        return False
