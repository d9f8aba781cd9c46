"""S3 destination: a boto3 client from the standard credential chain, the start-up check, and
one verified upload (multipart above the part size, then HEAD: size and ETag must match).

Every error leaves here as :class:`S3Error` with one human line that never carries a
credential (messages are scrubbed of the live key id, secret and token just in case).
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import botocore.exceptions as bex
from boto3.s3.transfer import TransferConfig
from botocore.config import Config as BotoConfig
from s3transfer.utils import ChunksizeAdjuster

if TYPE_CHECKING:
    from recorder.config import S3Config

# botocore announces where it found credentials at INFO; that is noise in our event log.
for _noisy in ("botocore", "boto3", "s3transfer", "urllib3"):
    logging.getLogger(_noisy).setLevel(logging.WARNING)

MIB = 1024 * 1024
PROBE_DIR = ".recorder-probe"  # dot-prefixed: dataset readers skip it

_CONTENT_TYPES = {".parquet": "application/vnd.apache.parquet", ".jsonl": "application/x-ndjson"}
_NOT_FOUND = {"NoSuchBucket", "404", "NotFound"}
_DENIED = {"AccessDenied", "403", "Forbidden", "AllAccessDisabled", "AccountProblem"}
_BAD_CREDENTIALS = {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "TokenRefreshRequired",
}
_WRONG_REGION = {"301", "PermanentRedirect", "AuthorizationHeaderMalformed", "IllegalLocationConstraintException"}


class S3Error(Exception):
    """One line saying what is wrong with the S3 destination (or one upload)."""

    def __init__(self, message: str, *, kind: str = "error") -> None:
        super().__init__(message)
        self.kind = kind  # not_found | denied | credentials | region | unreachable | mismatch | local | error


class S3Store:
    """A bucket + prefix reached through one boto3 client."""

    def __init__(self, cfg: S3Config, *, quick: bool = False) -> None:
        """``quick``: short timeouts and one retry, for the start-up check (a wrong endpoint must
        fail in seconds, not minutes)."""
        self.cfg = cfg
        self.bucket = cfg.bucket
        self.prefix = cfg.prefix.strip("/")
        # Named in every error: the endpoint actually used (AWS_ENDPOINT_URL, a profile's endpoint_url
        # and AWS's own all reach boto3 without endpoint_url), so an error never blames AWS for another server.
        self.endpoint = cfg.endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        self.endpoint = _without_userinfo(self.endpoint or "the default S3 endpoint")
        connect = min(cfg.connect_timeout_s, 5.0) if quick else cfg.connect_timeout_s
        read = min(cfg.read_timeout_s, 15.0) if quick else cfg.read_timeout_s
        try:
            session = boto3.session.Session(profile_name=cfg.profile, region_name=cfg.region)
            self._secrets = _credential_strings(session)
            self.client: Any = session.client(
                "s3",
                endpoint_url=cfg.endpoint_url,
                config=BotoConfig(
                    connect_timeout=connect,
                    read_timeout=read,
                    retries={"mode": "standard", "total_max_attempts": 2 if quick else 3},
                    s3={"addressing_style": cfg.addressing_style},
                    max_pool_connections=max(10, cfg.upload_concurrency + 2),
                ),
            )
            self.endpoint = _without_userinfo(cfg.endpoint_url or str(self.client.meta.endpoint_url))
        except bex.BotoCoreError as exc:  # e.g. ProfileNotFound, a malformed endpoint
            raise S3Error(f"cannot set up S3 client: {exc}", kind="error") from None
        except ValueError as exc:
            raise S3Error(f"cannot set up S3 client: {exc}", kind="error") from None
        part = int(cfg.part_size_mb * MIB)
        self.transfer = TransferConfig(
            multipart_threshold=part,
            multipart_chunksize=part,
            max_concurrency=cfg.upload_concurrency,
            use_threads=cfg.upload_concurrency > 1,
        )

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    def key_for(self, rel_path: str) -> str:
        """Object key of a file at ``rel_path`` under the data dir (the layout is mirrored)."""
        rel = rel_path.replace(os.sep, "/").lstrip("/")
        return f"{self.prefix}/{rel}" if self.prefix else rel

    # -- start-up check --------------------------------------------------------------------

    def check(self, probe_name: str) -> None:
        """Bucket exists, we may read it, and we may write under the prefix. Raises S3Error."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except Exception as exc:  # noqa: BLE001 - classified into one line
            raise self.error(exc, "checking bucket") from None
        probe = self.key_for(f"{PROBE_DIR}/{probe_name}")
        try:
            self.client.put_object(Bucket=self.bucket, Key=probe, Body=b"recorder write probe\n")
        except Exception as exc:  # noqa: BLE001
            raise self.error(exc, "writing a probe object") from None
        try:
            self.client.delete_object(Bucket=self.bucket, Key=probe)
        except Exception:  # noqa: BLE001 - write-only credentials are fine: the probe is tiny and hidden
            pass

    # -- uploads ---------------------------------------------------------------------------

    def upload(self, path: Path, key: str) -> tuple[int, str]:
        """Upload ``path`` to ``key`` and confirm it by HEAD; returns (size, ETag). Re-uploading
        the same file replaces the same key, so a retry never creates a second object."""
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise S3Error(f"cannot read {path}: {exc.strerror or exc}", kind="local") from exc
        extra = {"ContentType": _CONTENT_TYPES.get(path.suffix, "application/octet-stream")}
        try:
            self.client.upload_file(str(path), self.bucket, key, ExtraArgs=extra, Config=self.transfer)
            head = self.client.head_object(Bucket=self.bucket, Key=key)
        except OSError as exc:
            if isinstance(exc, FileNotFoundError):
                raise S3Error(f"{path} vanished before upload", kind="local") from exc
            raise self.error(exc, f"uploading {key}") from None
        except Exception as exc:  # noqa: BLE001
            raise self.error(exc, f"uploading {key}") from None
        etag = str(head.get("ETag", "")).strip('"')
        remote_size = int(head.get("ContentLength", -1))
        if remote_size != size:
            raise S3Error(f"uploaded {key} but S3 reports {remote_size} bytes, expected {size}", kind="mismatch")
        if self.cfg.verify == "etag":
            expected = expected_etag(path, size, self.transfer)
            if etag != expected:
                raise S3Error(f"uploaded {key} but its ETag {etag} is not the expected {expected}", kind="mismatch")
        return size, etag

    # -- errors ----------------------------------------------------------------------------

    def error(self, exc: BaseException, action: str) -> S3Error:
        where = f"S3 bucket {self.bucket!r} at {self.endpoint}"
        if isinstance(exc, bex.ClientError):
            err = exc.response.get("Error", {})
            code = str(err.get("Code", "")) or str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
            detail = str(err.get("Message") or code)
            if code in _NOT_FOUND:
                out = S3Error(f"{where} does not exist ({action})", kind="not_found")
            elif code in _DENIED:
                out = S3Error(f"access denied to {where} ({action}: {code})", kind="denied")
            elif code in _BAD_CREDENTIALS:
                out = S3Error(f"{where} rejected the credentials ({code})", kind="credentials")
            elif code in _WRONG_REGION:
                out = S3Error(f"{where} is in another region: set region in [storage.s3] ({code})", kind="region")
            else:
                out = S3Error(f"S3 error {code} {action} in {where}: {detail}", kind="error")
        elif isinstance(exc, bex.NoCredentialsError | bex.PartialCredentialsError | bex.CredentialRetrievalError):
            out = S3Error(
                f"no usable credentials for {where}: set them in the environment, a profile or an instance role",
                kind="credentials",
            )
        elif isinstance(
            exc,
            bex.EndpointConnectionError | bex.ConnectTimeoutError | bex.ReadTimeoutError | bex.ConnectionClosedError,
        ):
            reason = type(exc).__name__
            out = S3Error(f"cannot reach S3 endpoint {self.endpoint} ({action}): {reason}", kind="unreachable")
        elif isinstance(exc, bex.BotoCoreError | OSError):
            # s3transfer wraps connection failures of multipart uploads in its own errors.
            out = S3Error(f"S3 {action} failed at {self.endpoint}: {exc}", kind="unreachable")
        else:
            out = S3Error(f"S3 {action} failed at {self.endpoint}: {type(exc).__name__}: {exc}", kind="error")
        return S3Error(self._scrub(str(out)), kind=out.kind)

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return " ".join(text.split())[:500]


def _without_userinfo(url: str) -> str:
    """An endpoint as shown in errors: ``user:password@`` (from the environment) never printed."""
    head, sep, rest = url.partition("://")
    return f"{head}{sep}{rest.split('/', 1)[0].rpartition('@')[2]}" if sep else url


def _credential_strings(session: boto3.session.Session) -> list[str]:
    try:
        creds = session.get_credentials()
    except Exception:  # noqa: BLE001 - resolved again (and reported) on first use
        return []
    if creds is None:
        return []
    frozen = creds.get_frozen_credentials()
    return [s for s in (frozen.access_key, frozen.secret_key, frozen.token) if s]


def expected_etag(path: Path, size: int, transfer: TransferConfig) -> str:
    """The ETag S3 gives an object uploaded with ``transfer``: the MD5 for a single PUT,
    else MD5 of the parts' MD5s + ``-<parts>`` (with the part size s3transfer really used)."""
    if size < transfer.multipart_threshold:
        md5 = hashlib.md5(usedforsecurity=False)
        with open(path, "rb") as fh:
            while chunk := fh.read(MIB):
                md5.update(chunk)
        return md5.hexdigest()
    part = ChunksizeAdjuster().adjust_chunksize(transfer.multipart_chunksize, size)
    digests = b""
    parts = 0
    with open(path, "rb") as fh:
        while True:
            md5 = hashlib.md5(usedforsecurity=False)
            left = part
            while left > 0:
                chunk = fh.read(min(MIB, left))
                if not chunk:
                    break
                md5.update(chunk)
                left -= len(chunk)
            if left == part:
                break  # no bytes for this part: done
            digests += md5.digest()
            parts += 1
            if left > 0:
                break
    return f"{hashlib.md5(digests, usedforsecurity=False).hexdigest()}-{parts}"
