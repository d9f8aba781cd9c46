"""Compaction on S3: the ``PartitionStore`` protocol over a bucket + prefix, committed by a
manifest (see ``manifest.py`` for the protocol and the rule readers follow).

Merged files are first written to a local temp directory (the stage), so their sizes are known
when the manifest is written; then they are uploaded with the recorder's verified upload (HEAD:
size and ETag). One compaction per location at a time: a lock object created with
``If-None-Match: *``; a lock left by a killed compactor on this host (its pid gone), or older
than ``LOCK_STALE_S``, is taken over.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import socket
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import botocore.exceptions as bex
import msgspec
import psutil

from recorder.compaction import manifest as mf
from recorder.compaction.formats import codec_for
from recorder.compaction.store import FileInfo, Plan, StoreError, WriteFn
from recorder.config import ConfigError, S3Config, check_s3_location
from recorder.layout import format_dirs
from recorder.sinks.s3 import S3Error, S3Store

log = logging.getLogger("recorder.compaction")

LOCK_KEY = "_compaction/lock.json"
LOCK_STALE_S = 6 * 3600.0
_DELETE_BATCH = 1000  # DeleteObjects takes at most 1000 keys


class _Lock(msgspec.Struct):
    host: str
    pid: int
    started_ms: int


class S3PartitionStore:
    def __init__(self, s3: S3Store, crash_hook: object = None) -> None:
        self.s3 = s3
        self.client: Any = s3.client
        self.bucket = s3.bucket
        self.base = f"{s3.prefix}/" if s3.prefix else ""
        self._crash: Callable[[str], None] = crash_hook if callable(crash_hook) else (lambda point: None)

    @classmethod
    def from_config(cls, cfg: S3Config, crash_hook: object = None) -> S3PartitionStore:
        try:
            check_s3_location(cfg)
            return cls(S3Store(cfg), crash_hook)
        except (ConfigError, S3Error) as exc:
            raise StoreError(errno.EINVAL, str(exc), f"s3://{cfg.bucket}/{cfg.prefix}") from None

    @classmethod
    def from_url(cls, url: str, crash_hook: object = None, **s3: Any) -> S3PartitionStore:
        """``s3://bucket/prefix``; the endpoint comes from ``endpoint_url`` or the AWS chain
        (``AWS_ENDPOINT_URL``), as for the dataset reader."""
        parsed = urllib.parse.urlparse(url)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise StoreError(errno.EINVAL, "invalid S3 URL: expected s3://bucket/prefix", url)
        cfg = S3Config(bucket=parsed.netloc, prefix=parsed.path.strip("/"), **s3)
        return cls.from_config(cfg, crash_hook)

    @property
    def url(self) -> str:
        return self.s3.url

    def key(self, partition: str, name: str = "") -> str:
        return f"{self.base}{partition}/{name}"

    def _fail(self, exc: BaseException, action: str) -> StoreError:
        return StoreError(errno.EIO, str(self.s3.error(exc, action)), self.url)

    # -- listing and reading ----------------------------------------------------------------

    def _prefixes(self, prefix: str) -> list[str]:
        out: list[str] = []
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix, Delimiter="/"
            )
            for page in pages:
                out += [p["Prefix"][len(prefix) :].rstrip("/") for p in page.get("CommonPrefixes", [])]
        except Exception as exc:  # noqa: BLE001 - one line for the user
            raise self._fail(exc, f"listing {prefix}") from None
        return out

    def partitions(self) -> list[str]:
        out = []
        for _, _, fmt in format_dirs():  # fmt: the format's directory, e.g. parquet, trades/jsonl
            for exchange in self._prefixes(f"{self.base}{fmt}/"):
                if not exchange.startswith("exchange="):
                    continue
                for date in self._prefixes(f"{self.base}{fmt}/{exchange}/"):
                    if date.startswith("date="):
                        out.append(f"{fmt}/{exchange}/{date}")
        return sorted(out)

    def listing(self, partition: str) -> dict[str, FileInfo]:
        """Every object directly in the partition (hidden names included), by name."""
        prefix = self.key(partition)
        out: dict[str, FileInfo] = {}
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix, Delimiter="/"
            )
            for page in pages:
                for obj in page.get("Contents", []):
                    name = obj["Key"][len(prefix) :]
                    out[name] = FileInfo(name, int(obj["Size"]), obj["LastModified"].timestamp())
        except Exception as exc:  # noqa: BLE001
            raise self._fail(exc, f"listing {prefix}") from None
        return out

    def list_files(self, partition: str) -> list[FileInfo]:
        suffix = f".{codec_for(partition).ext}"
        files = [f for n, f in self.listing(partition).items() if n.endswith(suffix) and not n.startswith((".", "_"))]
        return sorted(files, key=lambda f: f.name)

    def _get(self, key: str) -> bytes:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except Exception as exc:  # noqa: BLE001
            raise self._fail(exc, f"reading {key}") from None

    def read_bytes(self, partition: str, name: str) -> bytes:
        return self._get(self.key(partition, name))

    # -- staging (local temp files) ---------------------------------------------------------

    def begin(self, partition: str, token: str) -> str:
        return tempfile.mkdtemp(prefix=f"recorder-compact-{token}-")

    def write_staged(self, stage: str, name: str, write: WriteFn) -> int:
        with open(Path(stage) / name, "wb") as fh:
            write(fh)
            return fh.tell()

    def abort(self, stage: str) -> None:
        shutil.rmtree(stage, ignore_errors=True)

    # -- the commit --------------------------------------------------------------------------

    def commit(self, plan: Plan) -> None:
        stage = Path(plan.stage)
        try:
            manifest = mf.Manifest(
                token=plan.token,
                inputs=plan.inputs,
                outputs=[mf.Output(name, (stage / name).stat().st_size) for name in plan.outputs],
                group_sizes=plan.group_sizes,
                created_ms=int(time.time() * 1000),
            )
            self._put(self.key(plan.partition, mf.manifest_name(plan.token)), mf.encode(manifest))
            self._crash("after_manifest")
            for n, name in enumerate(plan.outputs):
                try:
                    self.s3.upload(stage / name, self.key(plan.partition, name))
                except S3Error as exc:
                    raise StoreError(errno.EIO, str(exc), self.url) from None
                if n == 0 and len(plan.outputs) > 1:
                    self._crash("mid_upload")
            # Every output is in place: committed. Readers now hide the inputs.
            self._crash("after_uploads")
            self._finish(plan.partition, manifest)
        finally:
            self.abort(plan.stage)

    def _finish(self, partition: str, manifest: mf.Manifest) -> None:
        """Delete the inputs of a committed manifest (one group at a time), then the manifest."""
        sizes = manifest.group_sizes or [len(manifest.inputs)]
        start = 0
        for n, size in enumerate(sizes):
            self._delete([self.key(partition, name) for name in manifest.inputs[start : start + size]])
            start += size
            if n == 0:
                self._crash("mid_delete")
        self._crash("before_manifest_delete")
        self._delete([self.key(partition, mf.manifest_name(manifest.token))])

    def _rollback(self, partition: str, manifest: mf.Manifest, present: dict[str, FileInfo]) -> None:
        """Outputs first, the manifest last: until it is gone, readers keep hiding the outputs."""
        self._delete([self.key(partition, o.name) for o in manifest.outputs if o.name in present])
        self._delete([self.key(partition, mf.manifest_name(manifest.token))])

    def recover(self) -> str | None:
        done: list[str] = []
        for partition in self.partitions():
            listing = self.listing(partition)
            sizes = {name: f.size for name, f in listing.items()}
            for name in sorted(n for n in listing if mf.is_manifest(n)):
                try:
                    manifest = mf.decode(self._get(self.key(partition, name)))
                except msgspec.DecodeError as exc:
                    msg = f"unreadable compaction manifest {name} ({exc}); move it aside to go on"
                    raise StoreError(errno.EIO, msg, self.key(partition)) from None
                if mf.committed(manifest, sizes):
                    self._finish(partition, manifest)
                    done.append(f"finished the compaction of {partition}")
                else:
                    self._rollback(partition, manifest, listing)
                    done.append(f"rolled back an unfinished compaction of {partition}")
        return "; ".join(done) or None

    # -- objects -----------------------------------------------------------------------------

    def _put(self, key: str, body: bytes, **extra: Any) -> None:
        try:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=body, **extra)
        except Exception as exc:  # noqa: BLE001
            raise self._fail(exc, f"writing {key}") from None

    def _delete(self, keys: list[str]) -> None:
        for i in range(0, len(keys), _DELETE_BATCH):
            chunk = keys[i : i + _DELETE_BATCH]
            try:
                resp = self.client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in chunk], "Quiet": True}
                )
            except Exception as exc:  # noqa: BLE001
                raise self._fail(exc, f"deleting {len(chunk)} objects") from None
            errors = resp.get("Errors") or []
            if errors:
                first = errors[0]
                msg = f"cannot delete {first.get('Key')}: {first.get('Code')} {first.get('Message', '')}".strip()
                raise StoreError(errno.EIO, msg, self.url)

    # -- one compaction at a time -----------------------------------------------------------

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        key = f"{self.base}{LOCK_KEY}"
        mine = _Lock(host=socket.gethostname(), pid=os.getpid(), started_ms=int(time.time() * 1000))
        body = msgspec.json.encode(mine)
        if not self._create(key, body):
            holder = self._holder(key)
            if holder is not None and not self._stale(holder):
                since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(holder.started_ms / 1000))
                who = f"host {holder.host} pid {holder.pid} since {since}"
                msg = f"another compaction is running on this S3 location ({who})"
                raise StoreError(errno.EBUSY, msg, self.url)
            log.warning("event=compaction_lock_taken_over holder=%s", holder)
            self._put(key, body)
        try:
            yield
        finally:
            try:
                if self._holder(key) == mine:
                    self._delete([key])
            except StoreError as exc:  # the next run takes over a lock whose pid is gone
                log.warning("event=compaction_lock_release_failed error=%s", exc)

    def _create(self, key: str, body: bytes) -> bool:
        """PUT if absent; False if the key exists."""
        try:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=body, IfNoneMatch="*")
            return True
        except bex.ParamValidationError:
            pass  # a botocore older than S3's conditional writes (2024)
        except Exception as exc:  # noqa: BLE001
            code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
            if code in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                return False
            if code not in ("NotImplemented", "501"):
                raise self._fail(exc, f"writing {key}") from None
        # A server (or botocore) without conditional writes: check, then write (a narrow race).
        if self._holder(key) is not None:
            return False
        self._put(key, body)
        return True

    def _holder(self, key: str) -> _Lock | None:
        try:
            data = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except Exception as exc:  # noqa: BLE001
            code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
            if code in ("NoSuchKey", "404", "NotFound"):
                return None
            raise self._fail(exc, f"reading {key}") from None
        try:
            return msgspec.json.decode(data, type=_Lock)
        except msgspec.DecodeError:
            return _Lock(host="?", pid=0, started_ms=0)  # unreadable: treated as stale

    @staticmethod
    def _stale(holder: _Lock) -> bool:
        if time.time() - holder.started_ms / 1000 > LOCK_STALE_S:
            return True
        if holder.host != socket.gethostname():
            return False
        try:
            # A pid reused by a process started after the lock was taken is not the holder.
            proc = psutil.Process(holder.pid)
            return proc.status() == psutil.STATUS_ZOMBIE or proc.create_time() * 1000 > holder.started_ms + 1000
        except psutil.Error:
            return True  # no such process
