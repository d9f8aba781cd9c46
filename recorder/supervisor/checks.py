"""What is checked before a capture starts any child: the data dir is writable, the pairs exist
(``all`` resolved), a shard gets its part, the venue allows the connections they need. Each
failure is a :class:`CaptureError`, one line for the user."""

from __future__ import annotations

import logging
import os
from collections import Counter
from pathlib import Path

from recorder.config import ALL_PAIRS, CaptureConfig, VenueConfig
from recorder.shard import Shard
from recorder.venues import venue_module

log = logging.getLogger("recorder.supervisor")


class CaptureError(RuntimeError):
    """A problem that stops a capture from starting; shown to the user as one line."""


def check_writable(data_dir: Path) -> None:
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        probe = data_dir / f".write-probe-{os.getpid()}"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        raise CaptureError(f"data dir {data_dir} is not writable: {exc.strerror or exc}") from None


def check_pairs(cfg: CaptureConfig, shard: Shard | None) -> None:
    """Every venue's pairs listed by the venue (``all``: resolved from its listing), cut to
    this shard's part, within the venue's connection limits. Narrows ``cfg``'s pair lists."""
    for venue, vc in cfg.venues.items():
        if vc.pairs == [ALL_PAIRS]:
            _resolve_all_pairs(venue, vc, shard)
        else:
            try:
                unknown = venue_module(venue).check_pairs(vc.rest_url, vc.pairs)
            except OSError as exc:
                raise CaptureError(f"cannot reach {venue} REST API to check pairs: {exc}") from None
            if unknown:
                raise CaptureError(f"unknown pair(s) on {venue}: {', '.join(unknown)}")
        _take_shard(venue, vc, shard)
        _check_connection_limits(venue, vc)


def _take_shard(venue: str, vc: VenueConfig, shard: Shard | None) -> None:
    """With ``--shard I/N``: keep only this shard's part of the venue's (whole) pair list."""
    if shard is None:
        return
    mine = shard.select(venue, vc.pairs)
    if not mine:
        raise CaptureError(f"shard {shard} gets none of the {len(vc.pairs)} {venue} pairs: use fewer shards")
    log.info("event=shard_pairs venue=%s shard=%s pairs=%d of=%d", venue, shard, len(mine), len(vc.pairs))
    vc.pairs = mine
    check = getattr(venue_module(venue), "check_config", None)
    try:
        if check is not None:
            check(vc)
    except ValueError as exc:
        raise CaptureError(f"shard {shard} of {venue}: {exc}") from None


def _check_connection_limits(venue: str, vc: VenueConfig) -> None:
    """Pairs that would need more connections than the venue allows per IP: fail now, not in a
    crash-looping venue process."""
    declared = getattr(venue_module(venue).CONNECTOR, "declared_limits", None)
    if declared is None:
        return
    limits = declared()
    per_conn = vc.max_streams_per_connection or limits.streams_per_connection
    # A pair may take several streams (Binance: depth and, with "trades", its trade stream).
    per_pair = getattr(venue_module(venue).CONNECTOR, "streams_per_pair", lambda cfg: 1)(vc)
    needed = -(-len(vc.pairs) // max(1, per_conn // per_pair))
    if limits.connections_per_ip is not None and needed > limits.connections_per_ip:
        raise CaptureError(
            f"{len(vc.pairs)} {venue} pairs need {needed} connections at {per_conn} streams each;"
            f" the venue allows {limits.connections_per_ip} per IP"
        )


def _resolve_all_pairs(venue: str, vc: VenueConfig, shard: Shard | None) -> None:
    """``--pairs all``: every listed instrument passing the config's quote / type filters."""
    module = venue_module(venue)
    if not hasattr(module, "list_pairs"):
        raise CaptureError(f"--pairs all is not supported for {venue} yet")
    try:
        pairs = module.list_pairs(vc.rest_url, vc.quote, vc.types)
    except OSError as exc:
        raise CaptureError(f"cannot reach {venue} REST API to list its instruments: {exc}") from None
    if not pairs:
        raise CaptureError(f"no {venue} instrument matches quote={vc.quote or 'any'} types={vc.types or 'any'}")
    log.info("event=pairs_resolved venue=%s pairs=%d", venue, len(pairs))
    vc.pairs = pairs
    check = getattr(module, "check_config", None)
    try:
        if check is not None and shard is None:  # a shard checks its own part
            check(vc)  # e.g. OKX / Kraken: at most N pairs on their one connection
    except ValueError as exc:
        n = len(pairs)
        raise CaptureError(f"--pairs all lists {n} {venue} instruments ({exc}): {_narrowing(pairs)}") from None


def _narrowing(pairs: list[str]) -> str:
    """Filter guidance for a universe too big for the venue: how many pairs each quote would keep."""
    by_quote = Counter(p.split("-")[1] for p in pairs if "-" in p)
    counts = ", ".join(f"{q} {n}" for q, n in by_quote.most_common(6))
    return f"narrow it with the venue's quote / types filters (pairs by quote: {counts}) or list pairs"
