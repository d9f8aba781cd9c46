"""The venue process: one uvloop event loop running a venue's connector and its sampler."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Callable

import msgspec

from recorder.archive.format import FORMAT_VERSION
from recorder.archive.tap import Archive, SampledConnector, install
from recorder.archive.tap import current as current_archive
from recorder.archive.writer import ArchiveSettings, ArchiveWriter
from recorder.config import ArchiveConfig, VenueConfig
from recorder.logs import setup_logging
from recorder.metrics import SharedCounters
from recorder.model import Trade
from recorder.parent import parent_alive, spawning_parent_pid
from recorder.ring.shm_ring import ShmRing
from recorder.sampler.emitter import EMITTER_FIELDS, RecordEmitter, emitter_pair_fields
from recorder.sampler.sampler import SAMPLER_FIELDS, Sampler, sampler_pair_fields
from recorder.venues import connector_class
from recorder.venues.base import CONNECTOR_FIELDS, LagMonitor, pair_fields

log = logging.getLogger("recorder.venue")

PROCESS_FIELDS = ["heartbeat_ms", "started_ms", "pid", "archive_lost_frames", "archive_buffer_bytes"]


class VenueSpec(msgspec.Struct, kw_only=True):
    venue: str
    pairs: list[str]
    depth: int
    interval_ms: int
    session_id: str
    venue_config: VenueConfig
    ring_name: str
    counters_name: str
    log_level: str = "INFO"
    # Where the sampler appends its runs of missed ticks ("" = nowhere); see sampler/misslog.py.
    misslog_path: str = ""
    # The archive of every frame (README: Archive) goes under data_dir ("" = no archive).
    data_dir: str = ""
    archive: ArchiveConfig = msgspec.field(default_factory=ArchiveConfig)


def venue_counter_fields(pairs: list[str]) -> list[str]:
    fields = [*CONNECTOR_FIELDS, *SAMPLER_FIELDS, *EMITTER_FIELDS, *PROCESS_FIELDS]
    for pair in pairs:
        fields += pair_fields(pair) + sampler_pair_fields(pair) + emitter_pair_fields(pair)
    return fields


def run_venue_process(spec_bytes: bytes) -> None:
    spec = msgspec.msgpack.decode(spec_bytes, type=VenueSpec)
    setup_logging(f"venue-{spec.venue}", spec.log_level)
    # Ctrl-C reaches the whole process group; the supervisor orders the shutdown with SIGTERM.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        import uvloop

        uvloop.run(_main(spec))
    except Exception:
        log.exception("event=venue_process_crashed venue=%s", spec.venue)
        raise


async def _main(spec: VenueSpec) -> None:
    counters = SharedCounters.attach(spec.counters_name, venue_counter_fields(spec.pairs))
    ring = ShmRing.attach(spec.ring_name)
    counters.set("pid", os.getpid())
    counters.set("started_ms", time.time() * 1000.0)
    archive = _start_archive(spec)
    connector = connector_class(spec.venue)(spec.venue_config, spec.pairs, counters)
    sampler = Sampler(
        spec.venue,
        spec.pairs,
        spec.depth,
        spec.interval_ms,
        SampledConnector(connector, current_archive()) if archive is not None else connector,
        ring,
        counters,
        misslog_path=spec.misslog_path,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    channels = spec.venue_config.channels
    log.info(
        "event=venue_started venue=%s pairs=%s interval_ms=%d channels=%s",
        spec.venue,
        ",".join(spec.pairs),
        spec.interval_ms,
        ",".join(channels),
    )
    # Venue-neutral: every book carries the receive and exchange time of its last update, and
    # every trade its own (see _trades_watched_for_lag).
    lag = LagMonitor(spec.venue, counters, spec.venue_config.lag_alert_s, log)
    tasks = [
        loop.create_task(connector.run(), name="connector"),
        loop.create_task(_heartbeat(spec, connector, counters, lag, stop, archive), name="heartbeat"),
    ]
    if "book" in channels:
        tasks.append(loop.create_task(sampler.run(stop), name="sampler"))
    # Trades and quotes share the ring with the books (one producer: this event loop).
    emitter = RecordEmitter(spec.venue, spec.pairs, ring, counters)
    if "trades" in channels:
        if hasattr(connector, "on_trade"):
            connector.on_trade = _trades_watched_for_lag(emitter.trade, lag)
            silence = emitter.watch_silence(connector, spec.venue_config.trade_silence_s, stop)
            tasks.append(loop.create_task(silence, name="trade-silence"))
        else:
            log.warning("event=trades_unsupported venue=%s detail=this venue's connector has no trade feed", spec.venue)
    if "quotes" in channels:
        if hasattr(connector, "on_quote"):
            connector.on_quote = emitter.quote
        else:
            log.warning("event=quotes_unsupported venue=%s detail=this venue's connector has no quote feed", spec.venue)
    await stop.wait()
    # The sampler sees `stop` and returns; whatever it pushed is already in the ring.
    await connector.close()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    if archive is not None:
        install(None)
        archive.close()
    log.info("event=venue_stopped venue=%s samples=%d", spec.venue, counters.get("samples"))
    # Detach explicitly: left to interpreter shutdown, SharedMemory.__del__ meets our live
    # views and prints "BufferError: cannot close exported pointers exist".
    ring.close()
    counters.close()


def _start_archive(spec: VenueSpec) -> ArchiveWriter | None:
    """The venue's archive writer, installed for the connectors to find (None: archive off)."""
    if not spec.data_dir or not spec.archive.enabled:
        return None
    a = spec.archive
    settings = ArchiveSettings(
        rotate_s=a.rotate_minutes * 60.0,
        rotate_bytes=int(a.rotate_mb * 1024 * 1024),
        flush_s=a.flush_s,
        level=a.level,
        max_buffer_bytes=int(a.max_buffer_mb * 1024 * 1024),
    )
    header = {
        "format": FORMAT_VERSION,
        "venue": spec.venue,
        "session": spec.session_id,
        "pid": os.getpid(),
        "pairs": spec.pairs,
        "depth": spec.depth,
        "interval_ms": spec.interval_ms,
        "channels": list(spec.venue_config.channels),  # which of its Feeds' records were stored
    }
    writer = ArchiveWriter(spec.data_dir, spec.venue, spec.session_id, settings, header)
    writer.start()
    install(Archive(writer.queue))
    return writer


def _trades_watched_for_lag(on_trade: Callable[[Trade], None], lag: LagMonitor) -> Callable[[Trade], None]:
    """``on_trade`` that also shows each trade's delivery delay to the lag monitor. The heartbeat
    sees a book's delay only as of its last update: on a link throttled to a few messages a second
    that mostly carry trades, the books seldom move and a slow link would go unnoticed."""

    def watched(trade: Trade) -> None:
        if trade.exchange_time_us:
            lag.observe(trade.local_time_us / 1000.0, trade.exchange_time_us // 1000)
        on_trade(trade)

    return watched


async def _heartbeat(
    spec: VenueSpec,
    connector: object,
    counters: SharedCounters,
    lag: LagMonitor,
    stop: asyncio.Event,
    archive: ArchiveWriter | None,
) -> None:
    parent = spawning_parent_pid()
    while not stop.is_set():
        counters.set("heartbeat_ms", time.time() * 1000.0)
        if archive is not None:
            counters.set("archive_lost_frames", archive.lost_frames)
            counters.set("archive_buffer_bytes", archive.queue.buffered_bytes)
        for pair in spec.pairs:
            book = connector.book(pair)  # type: ignore[attr-defined]
            counters.set(f"synced:{pair}", 1.0 if book is not None else 0.0)
            if book is not None and book.receive_time_ms is not None and book.exchange_time_ms is not None:
                lag.observe(book.receive_time_ms, book.exchange_time_ms)
        if not parent_alive(parent):
            # The supervisor is gone (kill -9); an orphan capture would write into nothing.
            log.error("event=parent_gone venue=%s", spec.venue)
            stop.set()
        await asyncio.sleep(0.25)
