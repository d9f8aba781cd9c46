"""Capture configuration: TOML files under ``configs/`` plus CLI overrides, validated up front."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any, Literal

import msgspec

from recorder.names import NameError_, check_session_id, check_venue_id, normalize_pair

Format = Literal["jsonl", "parquet", "both"]
Storage = Literal["local"]


class ConfigError(ValueError):
    """A configuration problem, reported to the user as one line."""


class VenueConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    pairs: list[str] = []
    # None means the venue's real public endpoint.
    ws_url: str | None = None
    rest_url: str | None = None
    # Planned reconnect before the venue's own hard connection limit (Binance: 24 h).
    max_connection_age_s: float = 23.5 * 3600
    # Reconnect when nothing (data or ping) arrived for this long.
    stall_timeout_s: float = 30.0
    snapshot_limit: int = 1000
    # A feed whose delivery delay grows this far above its usual level is reported as lagging.
    lag_alert_s: float = 5.0
    # A REST snapshot request that takes longer than this is abandoned and retried.
    rest_timeout_s: float = 15.0


class WriterConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    rotate_snapshots: int = 1000
    rotate_seconds: float = 300.0
    rotate_mb: float = 64.0
    # Shared-memory ring per venue process; overflow drops (and counts) rather than blocking.
    ring_mb: float = 64.0


class CaptureConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    session_id: str | None = None
    interval_s: float = 1.0
    depth: int = 20
    duration_s: float | None = None
    format: Format = "both"
    storage: Storage = "local"
    data_dir: str = "data"
    simulate: bool = False
    # Prometheus text exposition of the capture's metrics (None: off; 0: any free port).
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    # A child whose heartbeat is older than this (alive but hung, e.g. a blocked event loop)
    # is killed and restarted by the supervisor.
    hang_timeout_s: float = 30.0
    venues: dict[str, VenueConfig] = {}
    writer: WriterConfig = msgspec.field(default_factory=WriterConfig)

    def resolved_session_id(self) -> str:
        if self.session_id:
            return self.session_id
        parts: list[str] = []
        for venue, vc in self.venues.items():
            parts.append(venue)
            parts.extend(vc.pairs)
        return "_".join(parts)


_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: str | float | int, default_unit: str = "m") -> float:
    """Seconds from ``10`` (default unit), ``30s``, ``10m``, ``2h``, ``500ms``."""
    if isinstance(value, int | float):
        seconds = float(value) * _UNIT_S[default_unit]
    else:
        m = _DURATION_RE.match(value)
        if not m:
            raise ConfigError(f"invalid duration {value!r}: use e.g. 10, 30s, 10m, 2h")
        seconds = float(m.group(1)) * _UNIT_S[m.group(2) or default_unit]
    if seconds <= 0:
        raise ConfigError(f"invalid duration {value!r}: must be positive")
    return seconds


def load_toml(path: str | Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


def _normalize_raw(raw: dict[str, Any]) -> dict[str, Any]:
    """Accept human spellings (``interval = "500ms"``, ``duration = "2h"``) in files."""
    out = dict(raw)
    if "interval" in out:
        out["interval_s"] = parse_duration(out.pop("interval"), default_unit="s")
    if "duration" in out:
        out["duration_s"] = parse_duration(out.pop("duration"), default_unit="m")
    return out


def build_config(file_raw: dict[str, Any] | None, overrides: dict[str, Any]) -> CaptureConfig:
    """Merge a config file with CLI overrides (CLI wins) and validate everything."""
    raw = _normalize_raw(file_raw or {})
    venue = overrides.pop("venue", None)
    pairs = overrides.pop("pairs", None)
    raw.update({k: v for k, v in overrides.items() if v is not None})
    if venue is not None:
        venues = raw.get("venues") or {}
        section = dict(venues.get(venue) or {})
        if pairs is not None:
            section["pairs"] = pairs
        raw["venues"] = {venue: section}
    elif pairs is not None:
        venues = raw.get("venues") or {}
        if len(venues) != 1:
            raise ConfigError("--pairs needs --venue when the config names several venues")
        (name,) = venues
        raw["venues"] = {name: {**venues[name], "pairs": pairs}}
    try:
        cfg = msgspec.convert(raw, CaptureConfig)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"invalid configuration: {exc}") from None
    return validate(cfg)


def validate(cfg: CaptureConfig) -> CaptureConfig:
    from recorder.venues import VENUES  # registry lives with the connectors

    if cfg.interval_s < 0.01:
        raise ConfigError(f"invalid interval {cfg.interval_s}s: must be at least 10ms")
    if (cfg.interval_s * 1000) % 1 > 1e-9:
        raise ConfigError(f"invalid interval {cfg.interval_s}s: must be a whole number of milliseconds")
    if not 1 <= cfg.depth <= 1000:
        raise ConfigError(f"invalid depth {cfg.depth}: must be between 1 and 1000")
    if not cfg.venues:
        raise ConfigError("no venue given: use --venue or a [venues.NAME] section")
    try:
        for name, vc in cfg.venues.items():
            check_venue_id(name)
            if name not in VENUES:
                raise ConfigError(f"unknown venue {name!r}: known venues are {', '.join(sorted(VENUES))}")
            if not vc.pairs:
                raise ConfigError(f"venue {name!r} has no pairs")
            vc.pairs = list(dict.fromkeys(normalize_pair(p) for p in vc.pairs))
        check_session_id(cfg.resolved_session_id())
    except NameError_ as exc:
        raise ConfigError(str(exc)) from None
    w = cfg.writer
    if w.rotate_snapshots < 1 or w.rotate_seconds <= 0 or w.rotate_mb <= 0 or w.ring_mb < 1:
        raise ConfigError("invalid [writer] settings: rotation limits and ring_mb must be positive")
    return cfg
