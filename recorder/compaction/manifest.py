"""The commit record of a compaction on an object store, and the rule readers apply to it.

S3 has no rename, so a partition cannot be swapped in one step. Instead a compaction writes,
in this order (``s3store.py``)::

    1. PUT  <partition>/_compaction-<token>.json   {inputs, outputs with their sizes}
    2. PUT  every output  <partition>/compacted-<token>-<first tick>-<n>.<ext>
    3. DELETE every input
    4. DELETE the manifest

The compaction is *committed* at the moment the last output exists: while a manifest is in a
partition, a reader hides its inputs if every output is present with the size the manifest
names, and hides its outputs otherwise. So a reader sees the small files up to the commit and
the merged ones from then on, never both and never a part. Inputs are deleted only after the
commit and the manifest only after the inputs, so the rule stays true at every step; a restarted
compactor rolls a manifest forward (finish 3 and 4) or back (delete the outputs, then it).

The manifest is named with a leading ``_``, which every reader skips as a data file.
"""

from __future__ import annotations

import re

import msgspec

MANIFEST_PREFIX = "_compaction-"
MANIFEST_SUFFIX = ".json"
_MANIFEST_RE = re.compile(rf"^{re.escape(MANIFEST_PREFIX)}[0-9a-z]+{re.escape(MANIFEST_SUFFIX)}$")


class Output(msgspec.Struct, frozen=True):
    name: str
    size: int


class Manifest(msgspec.Struct, kw_only=True):
    version: int = 1
    token: str
    inputs: list[str]
    outputs: list[Output]
    group_sizes: list[int] = []  # inputs per output, in order (deleted one group at a time)
    created_ms: int = 0


_decoder = msgspec.json.Decoder(Manifest)


def manifest_name(token: str) -> str:
    return f"{MANIFEST_PREFIX}{token}{MANIFEST_SUFFIX}"


def is_manifest(name: str) -> bool:
    return bool(_MANIFEST_RE.match(name))


def encode(manifest: Manifest) -> bytes:
    return msgspec.json.encode(manifest)


def decode(data: bytes) -> Manifest:
    return _decoder.decode(data)


def committed(manifest: Manifest, sizes: dict[str, int]) -> bool:
    """Every output is present (in ``sizes``: name -> size, one listing) with its full size."""
    return all(sizes.get(o.name) == o.size for o in manifest.outputs)


def hidden_names(manifests: list[Manifest], sizes: dict[str, int]) -> set[str]:
    """Names in a partition listing that a reader must not read while these manifests exist."""
    hidden: set[str] = set()
    for m in manifests:
        if committed(m, sizes):
            hidden.update(m.inputs)
        else:
            hidden.update(o.name for o in m.outputs)
    return hidden
