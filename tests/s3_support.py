"""The AWS environment of an S3 test: throwaway credentials only, nothing from this machine."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def isolate_aws_env(mp: pytest.MonkeyPatch, home: Path, access_key: str, secret_key: str, **extra: str) -> None:
    """Drop every proxy and ``AWS_*`` variable, then point the standard AWS chain at the given
    credentials alone (no config or credentials file, no instance metadata): the recorder finds
    them as it would for a user, and a developer's own profile can never leak into a test.
    ``extra`` sets more variables (e.g. ``AWS_ENDPOINT_URL``)."""
    for key in list(os.environ):
        if "proxy" in key.lower() or key.startswith("AWS_"):
            mp.delenv(key)
    for key, value in {
        "AWS_ACCESS_KEY_ID": access_key,
        "AWS_SECRET_ACCESS_KEY": secret_key,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(home / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(home / "no-aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        **extra,
    }.items():
        mp.setenv(key, value)
