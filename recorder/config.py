"""Capture configuration: TOML files under ``configs/`` plus CLI overrides, validated up front."""

from __future__ import annotations

import math
import re
import tomllib
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import msgspec

from recorder.config_s3 import S3Config, reject_credentials, validate_s3
from recorder.names import NameError_, check_session_id, check_venue_id, normalize_pair
from recorder.shard import Shard, ShardError, parse_shard

Format = Literal["jsonl", "parquet", "both"]
Storage = Literal["local", "s3"]


# ``--pairs all``: every instrument the venue lists (filtered by the venue's quote / types).
ALL_PAIRS = "all"


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
    # Levels asked of a REST book snapshot (Binance) or the subscription depth (Kraken); None: the
    # venue's default (Binance: the deepest its weight table allows for the universe's first sync).
    snapshot_limit: int | None = None
    # A feed whose delivery delay grows this far above its usual level is reported as lagging.
    lag_alert_s: float = 5.0
    # A REST snapshot request that takes longer than this is abandoned and retried.
    rest_timeout_s: float = 15.0
    # The venue's book channel where it offers several (OKX: books, books5, books-l2-tbt); None = default.
    channel: str | None = None
    # Venue limits (recorder/venues/limits.py) overridden; None = the venue's own numbers.
    max_streams_per_connection: int | None = None
    rest_weight_limit: int | None = None
    rest_window_s: float | None = None
    rest_safety: float | None = None
    # Filters for ``pairs = ["all"]`` (every instrument the venue lists): quote assets, types.
    quote: list[str] = []
    types: list[str] = []
    # What is captured: "book" (sampled books), "trades" (every public trade), "quotes" (every
    # change of the best bid/ask of the verified book). Venues without a trade feed ignore "trades".
    channels: list[str] = msgspec.field(default_factory=lambda: ["book", "trades"])
    # A subscribed trade stream that stays silent this long while the pair's book moves is
    # reported (the symptom of a wrong route, e.g. Binance USD-M after the 2026 URL split).
    trade_silence_s: float = 300.0


class WriterConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    # A file is finished at whichever comes first: rotate_seconds, rotate_mb of records held for
    # the open files (the writer's memory; half a venue's ring at most), midnight UTC, or (when
    # set) rotate_snapshots records of one venue. No count by default: a fixed count is a tick of
    # a universe (1000 pairs: a file a second), the memory bound scales with what is recorded.
    rotate_snapshots: int | None = None
    rotate_seconds: float = 300.0
    rotate_mb: float = 64.0
    # Shared-memory ring per venue process; overflow drops (and counts) rather than blocking.
    ring_mb: float = 64.0
    # Merge closed Parquet files (older than compact_older_than_s) in the background.
    compact: bool = False
    compact_older_than_s: float = 3600.0
    compact_target_mb: float = 128.0
    compact_every_s: float = 300.0


class ArchiveConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``[archive]``: every frame each venue process received, for exact replays (README: Archive)."""

    enabled: bool = True
    rotate_minutes: float = 60.0  # a file is finished after this long ...
    rotate_mb: float = 256.0  # ... or this many compressed MiB, whichever comes first
    flush_s: float = 1.0  # written this often: what a SIGKILL can lose
    level: int = 3  # zstd level (1 fastest .. 19 smallest)
    max_buffer_mb: float = 256.0  # records waiting to be written; past it they are left out, counted


class RedisStreamConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``[stream.redis]`` (``recorder/sinks/redis_stream.py``). A password may be in the URL: it is
    never logged (the URL is shown redacted)."""

    url: str = "redis://127.0.0.1:6379/0"
    maxlen: int = 100_000  # entries kept per stream (exact trim)
    datasets: list[str] = msgspec.field(default_factory=lambda: ["books"])
    key_prefix: str = "recorder"  # streams are <key_prefix>:books:<exchange>:<pair>
    queue: int = 100_000  # snapshots waiting for Redis; beyond that they are dropped
    timeout_s: float = 1.0  # socket timeout: a slower Redis counts as down for that batch


class StreamConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``[stream.*]``: live copies of what is stored (``recorder/sinks/redis_stream.py``)."""

    redis: RedisStreamConfig | None = None


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
    s3: S3Config | None = None  # from [storage.s3]
    stream: StreamConfig | None = None
    # "I/N": record only shard I of every venue's pairs split N ways (recorder/shard.py).
    shard: str | None = None
    archive: ArchiveConfig = msgspec.field(default_factory=ArchiveConfig)

    def shard_spec(self) -> Shard | None:
        return parse_shard(self.shard) if self.shard is not None else None

    def base_session_id(self) -> str:
        """The session id shared by every shard: the given one, else the venues and their pairs."""
        if self.session_id:
            return self.session_id
        parts: list[str] = []
        for venue, vc in self.venues.items():
            parts.append(venue)
            parts.extend(vc.pairs)
        return "_".join(parts)

    def resolved_session_id(self) -> str:
        spec = self.shard_spec()
        return self.base_session_id() + (spec.suffix if spec is not None else "")


_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}

# Bounds of what a capture accepts (CLI and config files alike). A capture meant to run for good
# has no duration; a bigger number is a typo (and 1e300 s would never end).
MIN_INTERVAL_S = 0.01
MAX_INTERVAL_S = 3600.0
MIN_DURATION_S = 1.0
MAX_DURATION_S = 366 * 86400.0
MAX_PORT = 65535
MAX_RING_MB = 16384


def parse_duration(value: str | float | int, default_unit: str = "m", what: str = "duration") -> float:
    """Seconds from ``10`` (default unit), ``30s``, ``10m``, ``2h``, ``500ms``; ``what`` names the
    setting in the error (``interval``, ``duration``)."""
    example = "1, 1.5s, 500ms" if default_unit == "s" else "10, 30s, 10m, 2h"
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ConfigError(f"invalid {what} {value!r}: use e.g. {example}")
    if isinstance(value, int | float):
        seconds = float(value) * _UNIT_S[default_unit]
    else:
        m = _DURATION_RE.match(value)
        if not m:
            raise ConfigError(f"invalid {what} {value!r}: use e.g. {example}")
        seconds = float(m.group(1)) * _UNIT_S[m.group(2) or default_unit]
    if not math.isfinite(seconds):
        raise ConfigError(f"invalid {what} {value!r}: must be a finite number")
    if seconds <= 0:
        raise ConfigError(f"invalid {what} {value!r}: must be positive")
    return seconds


def load_toml(path: str | Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a directory") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path} is not UTF-8 text (byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None


def _normalize_raw(raw: dict[str, Any]) -> dict[str, Any]:
    """Accept human spellings (``interval = "500ms"``, ``duration = "2h"``) in files."""
    out = dict(raw)
    if "interval" in out:
        out["interval_s"] = parse_duration(out.pop("interval"), default_unit="s", what="interval")
    if "duration" in out:
        out["duration_s"] = parse_duration(out.pop("duration"), default_unit="m")
    storage = out.get("storage")
    if isinstance(storage, dict):
        # [storage] backend = "s3" and [storage.s3] ...; a [storage.s3] section alone selects S3.
        storage = dict(storage)
        backend = storage.pop("backend", None)
        s3 = storage.pop("s3", None)
        if storage:
            raise ConfigError(f"unknown key(s) in [storage]: {', '.join(sorted(storage))} (use backend, [storage.s3])")
        if s3 is not None:
            out["s3"] = s3
        out["storage"] = backend if backend is not None else ("s3" if s3 is not None else "local")
    try:
        reject_credentials(out.get("s3"))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return out


def build_config(file_raw: dict[str, Any] | None, overrides: dict[str, Any]) -> CaptureConfig:
    """Merge a config file with CLI overrides (CLI wins) and validate everything."""
    raw = _normalize_raw(file_raw or {})
    _check_tables(raw)
    venue = overrides.pop("venue", None)
    pairs = overrides.pop("pairs", None)
    s3_overrides = {k[3:]: overrides.pop(k) for k in ("s3_bucket", "s3_prefix") if overrides.get(k) is not None}
    overrides = {k: v for k, v in overrides.items() if not k.startswith("s3_")}
    raw.update({k: v for k, v in overrides.items() if v is not None})
    if s3_overrides:
        if raw.get("storage", "local") != "s3":
            flags = " / ".join(f"--s3-{k}" for k in s3_overrides)
            raise ConfigError(f"{flags} needs --storage s3 (or a [storage.s3] section in the config)")
        raw["s3"] = {**(raw.get("s3") or {}), **s3_overrides}
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


def _check_tables(raw: dict[str, Any]) -> None:
    """The sections the merge below reaches into must be tables (``venues = 5`` is a one-line error)."""
    venues = raw.get("venues")
    if venues is not None and (not isinstance(venues, dict) or not all(isinstance(v, dict) for v in venues.values())):
        raise ConfigError("invalid configuration: venues must be [venues.NAME] tables")
    if raw.get("s3") is not None and not isinstance(raw["s3"], dict):
        raise ConfigError("invalid configuration: [storage.s3] must be a table")


# No setting needs more (seconds, counts, MiB); bigger values overflow timers, msgpack and shm sizes.
MAX_SETTING = 1e12


def _bad_number(struct: msgspec.Struct, where: str = "") -> str | None:
    """The first number setting that is NaN, infinite (TOML has both) or beyond ``MAX_SETTING``,
    as ``section.key``."""
    for field in struct.__struct_fields__:
        value = getattr(struct, field)
        name = f"{where}{field}"
        if isinstance(value, int | float) and not isinstance(value, bool):
            if not math.isfinite(value) or abs(value) > MAX_SETTING:
                return name
        if isinstance(value, msgspec.Struct) and (bad := _bad_number(value, f"{name}.")):
            return bad
        if isinstance(value, dict):
            for key, item in value.items():
                if isinstance(item, msgspec.Struct) and (bad := _bad_number(item, f"{name}.{key}.")):
                    return bad
    return None


def check_interval(seconds: float) -> None:
    """A sampling interval within bounds (a capture's, a replay's)."""
    if not MIN_INTERVAL_S <= seconds <= MAX_INTERVAL_S:
        raise ConfigError(f"invalid interval {seconds:g}s: must be at least 10ms and at most 1h")


def check_depth(depth: int) -> None:
    """Levels per side within bounds (a capture's, a replay's)."""
    if not 1 <= depth <= 1000:
        raise ConfigError(f"invalid depth {depth}: must be between 1 and 1000")


def validate(cfg: CaptureConfig) -> CaptureConfig:
    from recorder.venues import VENUES  # registry lives with the connectors

    for name, value in (("interval", cfg.interval_s), ("duration", cfg.duration_s)):
        if value is not None and not math.isfinite(value):
            raise ConfigError(f"invalid {name} {value}: must be a finite number")
    check_interval(cfg.interval_s)
    if (cfg.interval_s * 1000) % 1 > 1e-9:
        raise ConfigError(f"invalid interval {cfg.interval_s}s: must be a whole number of milliseconds")
    if cfg.duration_s is not None and not max(MIN_DURATION_S, cfg.interval_s) <= cfg.duration_s <= MAX_DURATION_S:
        raise ConfigError(
            f"invalid duration {cfg.duration_s:g}s: must be at least 1s and one interval, at most 366d"
            " (leave it out to capture until stopped)"
        )
    if (bad := _bad_number(cfg)) is not None:
        raise ConfigError(f"invalid {bad}: must be a finite number, at most {MAX_SETTING:g}")
    check_depth(cfg.depth)
    if cfg.metrics_port is not None and not 0 <= cfg.metrics_port <= MAX_PORT:
        raise ConfigError(f"invalid metrics port {cfg.metrics_port}: must be between 0 and {MAX_PORT}")
    if not re.fullmatch(r"[A-Za-z0-9.:\-\[\]]{1,253}", cfg.metrics_host):
        raise ConfigError(f"invalid metrics_host {cfg.metrics_host!r}: give an address such as 127.0.0.1")
    if not cfg.data_dir.strip() or "\0" in cfg.data_dir:
        raise ConfigError(f"invalid data dir {cfg.data_dir!r}: give a directory path")
    if cfg.hang_timeout_s <= 0:
        raise ConfigError(f"invalid hang_timeout_s {cfg.hang_timeout_s}: must be positive")
    if not cfg.venues:
        raise ConfigError("no venue given: use --venue or a [venues.NAME] section")
    try:
        cfg.shard_spec()
    except ShardError as exc:
        raise ConfigError(str(exc)) from None
    try:
        for name, vc in cfg.venues.items():
            check_venue_id(name)
            if name not in VENUES:
                raise ConfigError(f"unknown venue {name!r}: known venues are {', '.join(sorted(VENUES))}")
            if not vc.pairs:
                raise ConfigError(f"venue {name!r} has no pairs")
            if [p.strip().lower() for p in vc.pairs] == [ALL_PAIRS]:
                vc.pairs = [ALL_PAIRS]  # resolved from the venue's exchange info at start
            else:
                vc.pairs = list(dict.fromkeys(normalize_pair(p) for p in vc.pairs))
            _check_limits(name, vc)
            _check_channels(name, vc)
            _check_venue_config(name, vc)
        if cfg.session_id is not None:
            check_session_id(cfg.session_id)  # an empty id is refused, not taken as "the default"
        check_session_id(cfg.resolved_session_id())
    except NameError_ as exc:
        raise ConfigError(str(exc)) from None
    w = cfg.writer
    if w.rotate_snapshots is not None and w.rotate_snapshots < 1:
        raise ConfigError(f"invalid [writer] rotate_snapshots = {w.rotate_snapshots}: at least 1 (or unset: no count)")
    if w.rotate_seconds <= 0 or w.rotate_mb <= 0 or w.ring_mb < 1:
        raise ConfigError("invalid [writer] settings: rotation limits and ring_mb must be positive")
    if w.ring_mb > MAX_RING_MB:
        raise ConfigError(f"invalid [writer] ring_mb = {w.ring_mb:g}: at most {MAX_RING_MB} (shared memory per venue)")
    if w.compact_older_than_s < 0 or w.compact_target_mb <= 0 or w.compact_every_s <= 0:
        raise ConfigError("invalid [writer] compaction settings: must be positive")
    if w.compact and cfg.storage != "local":
        # The uploader ships (and may delete) the small files: merging them too would double rows.
        raise ConfigError("[writer] compact works with local storage only")
    if cfg.storage == "s3":
        check_s3_location(cfg.s3)
    if cfg.stream is not None and cfg.stream.redis is not None:
        from recorder.sinks.redis_stream import check_stream_config

        try:
            check_stream_config(cfg.stream.redis)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    _validate_archive(cfg.archive)
    return cfg


def _validate_archive(a: ArchiveConfig) -> None:
    for name in ("rotate_minutes", "rotate_mb", "max_buffer_mb"):
        if getattr(a, name) <= 0:
            raise ConfigError(f"invalid [archive] {name} = {getattr(a, name)}: must be positive")
    if not 0.05 <= a.flush_s <= 60:
        raise ConfigError(f"invalid [archive] flush_s = {a.flush_s}: use 0.05 to 60 seconds")
    if not 1 <= a.level <= 19:
        raise ConfigError(f"invalid [archive] level = {a.level}: zstd levels are 1 to 19")


CHANNELS = ("book", "trades", "quotes")


def _check_channels(name: str, vc: VenueConfig) -> None:
    bad = [c for c in vc.channels if c not in CHANNELS]
    if bad or not vc.channels:
        raise ConfigError(
            f"invalid [venues.{name}] channels = {vc.channels!r}: use one or more of {', '.join(CHANNELS)}"
        )
    vc.channels = list(dict.fromkeys(vc.channels))
    if vc.trade_silence_s <= 0:
        raise ConfigError(f"invalid [venues.{name}] trade_silence_s = {vc.trade_silence_s}: must be positive")


def _check_venue_config(name: str, vc: VenueConfig) -> None:
    """Venue-specific settings (e.g. OKX ``channel``), checked by the venue module if it has a
    ``check_config(vc)`` that raises ValueError — so a bad value fails here, not in a venue process."""
    from recorder.venues import venue_module

    check = getattr(venue_module(name), "check_config", None)
    if check is not None:
        try:
            check(vc)
        except ValueError as exc:
            raise ConfigError(f"venue {name!r}: {exc}") from None


def s3_destination(file_raw: dict[str, Any] | None, bucket: str | None, prefix: str | None) -> S3Config | None:
    """The S3 destination a config file (``[storage.s3]``) and ``--s3-bucket`` / ``--s3-prefix``
    name, validated; None when they name local storage."""
    raw = _normalize_raw(file_raw or {})
    _check_tables(raw)
    section = dict(raw.get("s3") or {})
    section.update({k: v for k, v in (("bucket", bucket), ("prefix", prefix)) if v is not None})
    if raw.get("storage", "local") != "s3" and bucket is None:
        return None
    try:
        s3 = msgspec.convert(section, S3Config)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"invalid [storage.s3]: {exc}") from None
    check_s3_location(s3)
    return s3


def check_s3_location(s3: S3Config | None) -> None:
    """Validate an S3 destination (a capture's, or one given outside a capture config: ``compact``)."""
    try:
        validate_s3(s3)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _check_urls(name: str, vc: VenueConfig) -> None:
    for field, schemes in (("ws_url", ("ws", "wss")), ("rest_url", ("http", "https"))):
        value = getattr(vc, field)
        if value is None:
            continue
        try:
            url = urlsplit(value)
            url.port  # noqa: B018 - raises ValueError for a port outside 0-65535
        except ValueError:
            url = None
        if url is None or url.scheme not in schemes or not url.hostname:
            raise ConfigError(f"invalid [venues.{name}] {field} {value!r}: expected {schemes[0]}(s)://host[:port]")


def _check_limits(name: str, vc: VenueConfig) -> None:
    _check_urls(name, vc)
    for field in ("max_connection_age_s", "stall_timeout_s", "lag_alert_s", "rest_timeout_s"):
        if getattr(vc, field) <= 0:
            raise ConfigError(f"invalid [venues.{name}] {field} = {getattr(vc, field)}: must be positive")
    # None: the venue's default (snapshot_limit; the others read the venue's limits table)
    for field in ("snapshot_limit", "max_streams_per_connection", "rest_weight_limit", "rest_window_s"):
        value = getattr(vc, field)
        if value is not None and value <= 0:
            raise ConfigError(f"invalid [venues.{name}] {field} = {value}: must be positive")
    if vc.rest_safety is not None and not 0 < vc.rest_safety <= 1:
        raise ConfigError(f"invalid [venues.{name}] rest_safety = {vc.rest_safety}: must be in (0, 1]")
