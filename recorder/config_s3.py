"""``[storage.s3]``: where finished files go, and the checks of a destination: the bucket name,
the key prefix (it becomes keys), the endpoint, and no credentials in the file (boto3 takes them
from the standard AWS chain). A bad value is a ValueError (``recorder.config`` makes it a
ConfigError, one line for the user)."""

from __future__ import annotations

import re
from typing import Any, Literal
from urllib.parse import urlsplit

import msgspec


class S3Config(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``[storage.s3]``: where finished files go. Credentials never live here: boto3 takes them
    from the standard AWS chain (environment, shared profile, instance role)."""

    bucket: str = ""
    # Keys mirror the local layout: <prefix>/parquet/exchange=../date=../<file>.parquet
    prefix: str = "orderbook_data"
    region: str | None = None
    endpoint_url: str | None = None  # any S3-compatible server; None: AWS (or AWS_ENDPOINT_URL)
    profile: str | None = None  # a profile *name* from ~/.aws/config, not a secret
    addressing_style: Literal["auto", "path", "virtual"] = "auto"
    part_size_mb: float = 16.0  # multipart threshold and part size
    upload_concurrency: int = 4  # parallel parts of one multipart upload
    delete_after_upload: bool = True  # drop the local copy once S3 confirmed size and ETag
    start_anyway: bool = False  # start (and spool locally) even if the bucket check fails
    verify: Literal["etag", "size"] = "etag"  # "size" for servers whose ETag is not an MD5
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 60.0
    drain_timeout_s: float = 60.0  # on stop, keep uploading the spool this long


_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")
_PREFIX_PART_RE = re.compile(r"^[A-Za-z0-9_.=\-]+$")


def validate_s3(s3: S3Config | None) -> None:
    """A usable destination: a bucket named as S3 allows, a safe prefix, an http(s) endpoint without
    credentials, part size, concurrency and timeouts in range (ValueError: one line why not)."""
    if s3 is None or not s3.bucket:
        raise ValueError("--storage s3 needs a bucket: set bucket in [storage.s3] or pass --s3-bucket")
    if not _BUCKET_RE.match(s3.bucket) or ".." in s3.bucket:
        raise ValueError(f"invalid S3 bucket name {s3.bucket!r}: 3-63 lowercase letters, digits, '.', '-'")
    s3.prefix = s3.prefix.strip("/")
    if s3.prefix and any(p in ("", ".", "..") or not _PREFIX_PART_RE.match(p) for p in s3.prefix.split("/")):
        raise ValueError(f"invalid S3 prefix {s3.prefix!r}: use letters, digits, '_', '-', '.', '=' and '/'")
    if s3.endpoint_url is not None:
        url = urlsplit(s3.endpoint_url)
        if "@" in url.netloc:  # checked first: the message below echoes the URL
            raise ValueError("S3 endpoint_url must not contain credentials: use the AWS credential chain")
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"invalid S3 endpoint_url {s3.endpoint_url!r}: expected http(s)://host[:port]")
    if not 5 <= s3.part_size_mb <= 5120:
        raise ValueError(f"invalid S3 part_size_mb {s3.part_size_mb}: S3 allows 5 to 5120 MiB")
    if not 1 <= s3.upload_concurrency <= 64:
        raise ValueError(f"invalid S3 upload_concurrency {s3.upload_concurrency}: 1 to 64")
    if min(s3.connect_timeout_s, s3.read_timeout_s, s3.drain_timeout_s) <= 0:
        raise ValueError("invalid [storage.s3] timeouts: must be positive")


_CREDENTIAL_WORDS = ("secret", "access_key", "session_token", "credential", "password", "token")


def reject_credentials(section: Any) -> None:
    """Credentials in a config file would end up in repos and backups: refuse them by name
    (never echoing the value)."""
    if not isinstance(section, dict):
        return
    for key in section:
        if any(word in str(key).lower() for word in _CREDENTIAL_WORDS):
            raise ValueError(
                f"[storage.s3] must not hold credentials ({key!r}): use the AWS credential chain "
                "(environment, profile, instance role)"
            )
