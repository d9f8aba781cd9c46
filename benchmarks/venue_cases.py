"""One table row per venue for the decode+apply benchmarks, and the machinery they share.

A row names the venue's recording in ``tests/data/recordings``, which frames are book frames, the
msgspec decode-only baseline (the venue module's own wire decoders, nothing else: the ceiling
for Python) and, where cryptofeed has the exchange, how to drive cryptofeed's book path on the
same frames. The live path is the venue's ``Feed`` (what the connector and ``replay`` drive),
wired exactly as ``replay`` wires it: one Feed per recorded socket, REST snapshots joined.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from recorder.replay.engine import _Feeds, _scan  # replay's wiring, reused as-is
from recorder.replay.readers import Kind, Record
from recorder.replay.timeline import Timeline
from recorder.venues import VENUES, venue_module

RECORDINGS = Path(__file__).resolve().parent.parent / "tests" / "data" / "recordings"

Call = tuple[Callable[[Any, float], None], Any, float]


@dataclass
class Recording:
    """A venue's capture split into the warm-up (until every book that syncs has synced) and the
    timed part; both are replayed through fresh Feeds for every benchmark round."""

    case: VenueCase
    records: list[Record]
    pairs_by_conn: dict[str, list[str]]
    start: int  # index of the first timed record
    book_frames: list[bytes] = field(default_factory=list)  # the timed book frames
    timeline: Timeline | None = None
    sockets: list[int | None] = field(default_factory=list)  # each record's recorded socket

    @property
    def module(self) -> Any:
        return venue_module(self.case.venue)

    def feeds(self, upto: int) -> _Feeds:
        """Fresh Feeds, one per recorded socket, fed the first ``upto`` records."""
        assert self.timeline is not None
        feeds = _Feeds(self.module, self.timeline.sockets, lambda s: list(s.pairs))
        for r, sock in zip(self.records[:upto], self.sockets, strict=False):
            feeds.on_record(r, sock)
        return feeds

    def timed_calls(self) -> tuple[_Feeds, list[Call]]:
        """Fresh Feeds past the warm-up, and the timed records as bound calls (no routing cost)."""
        feeds = self.feeds(self.start)
        calls: list[Call] = []
        for r, sock in zip(self.records[self.start :], self.sockets[self.start :], strict=True):
            if r.kind is Kind.WS and self.case.is_book_frame(r.payload) and sock is not None:
                calls.append((feeds.sockets[sock].feed.on_frame, r.payload, r.recv_ms))
            elif r.kind is Kind.HTTP:
                calls.append((lambda rec, _t, feeds=feeds, sock=sock: feeds.on_record(rec, sock), r, r.recv_ms))
        return feeds, calls


@dataclass(frozen=True)
class VenueCase:
    venue: str
    files: tuple[str, ...]  # the capture (and its REST snapshots), relative to RECORDINGS
    is_book_frame: Callable[[bytes], bool]
    # venue module -> a frame's decoder (msgspec, no more), picked per frame before the timing
    decoder: Callable[[Any], Callable[[bytes], Callable[[bytes], object]]]
    cryptofeed: Callable[[Recording], CryptofeedRun] | None = None

    def load(self) -> Recording:
        timeline = Timeline([RECORDINGS / f for f in self.files])
        _scan(venue_module(self.venue), timeline, None)
        items = list(timeline)
        records = [r for r, _ in items]
        pairs_by_conn: dict[str, list[str]] = {}
        for sock in timeline.sockets:
            pairs_by_conn.setdefault(sock.conn, []).extend(sock.pairs)
        rec = Recording(self, records, pairs_by_conn, 0, timeline=timeline, sockets=[s for _, s in items])
        rec.start = _first_all_synced(rec)
        rec.book_frames = [
            r.payload for r in records[rec.start :] if r.kind is Kind.WS and self.is_book_frame(r.payload)
        ]
        return rec


def _first_all_synced(rec: Recording) -> int:
    """Index after which every pair that ever syncs in the capture has synced once."""
    feeds = rec.feeds(0)
    pairs = {p for ps in rec.pairs_by_conn.values() for p in ps}
    seen: set[str] = set()
    first_seen: list[int] = []
    for i, (r, sock) in enumerate(zip(rec.records, rec.sockets, strict=True)):
        feeds.on_record(r, sock)
        feeds.tick_ms = int(r.recv_ms)
        for p in pairs - seen:
            if feeds.book(p) is not None:
                seen.add(p)
                first_seen.append(i + 1)
    if not seen:
        raise AssertionError(f"no {rec.case.venue} book ever syncs in {rec.case.files}")
    return max(first_seen)


# --- cryptofeed: its feed classes, fed the same text frames (no network) ---------------------


@dataclass
class CryptofeedRun:
    """How to build a cryptofeed feed that is synced like ours, and the timed frames for it."""

    make: Callable[[], Any]  # a new feed (symbols pre-filled), before warm-up
    warmup: list[tuple[str, Any]]  # (text frame, conn) for message_handler
    timed: list[tuple[str, Any]]


def _cf_frames(rec: Recording, records: Iterable[Record]) -> list[tuple[str, Any]]:
    urls = {r.conn: r.url for r in rec.records if r.kind is Kind.CONNECT and r.url}
    out = []
    for r in records:
        if r.kind is Kind.WS and rec.case.is_book_frame(r.payload):
            conn = SimpleNamespace(uuid=r.conn, address=urls.get(r.conn, ""))
            out.append((r.payload.decode(), conn))
    return out


def cryptofeed_run(rec: Recording, make: Callable[[], Any]) -> CryptofeedRun:
    return CryptofeedRun(make, _cf_frames(rec, rec.records[: rec.start]), _cf_frames(rec, rec.records[rec.start :]))


def _noop_callbacks() -> dict[str, Any]:
    from cryptofeed.defines import L2_BOOK

    async def noop(*_a: object, **_k: object) -> None:
        return None

    return {L2_BOOK: noop}


def _binance_cf(futures: bool) -> Callable[[Recording], CryptofeedRun]:
    def build(rec: Recording) -> CryptofeedRun:
        from cryptofeed.defines import L2_BOOK
        from cryptofeed.exchanges import Binance, BinanceFutures
        from cryptofeed.symbols import Symbols

        cls = BinanceFutures if futures else Binance
        snaps = {}
        for r in rec.records:
            if r.kind is Kind.HTTP and r.url and "symbol=" in r.url:
                snaps[r.url.split("symbol=")[1].split("&")[0]] = r.payload
        module = rec.module
        symbols = sorted({module.symbol_for(p) for ps in rec.pairs_by_conn.values() for p in ps} & set(snaps))
        info: dict[str, list[dict[str, object]]] = {"symbols": []}
        for s in symbols:
            base, quote = module.pair_for(s).split("-")[:2]
            entry = {"symbol": s, "baseAsset": base, "quoteAsset": quote, "filters": [{"tickSize": "0.00000001"}]}
            if futures:
                entry["contractType"] = "PERPETUAL"
            info["symbols"].append(entry)
        Symbols.set(cls.id, *cls._parse_symbol_data(info))  # no internet: the list it would download
        std = {v: k for k, v in Symbols.get(cls.id)[0].items()}

        async def snapshot(url: str, *_a: object, **_k: object) -> bytes:
            return snaps[url.split("symbol=")[1].split("&")[0]]

        def make() -> Any:
            feed = cls(symbols=[std[s] for s in symbols], channels=[L2_BOOK], callbacks=_noop_callbacks())
            feed.http_conn.read = snapshot  # the recorded REST snapshot instead of the network
            return feed

        return cryptofeed_run(rec, make)

    return build


def _bybit_cf(rec: Recording) -> CryptofeedRun:
    from cryptofeed.defines import L2_BOOK
    from cryptofeed.exchanges import Bybit
    from cryptofeed.symbols import Symbols

    # The capture holds the instrument lists cryptofeed would download.
    info = [json.loads(r.payload) for r in rec.records if r.kind is Kind.HTTP and "instruments-info" in (r.url or "")]
    Symbols.set(Bybit.id, *Bybit._parse_symbol_data(info))
    wanted = []
    for pair in {p for ps in rec.pairs_by_conn.values() for p in ps}:
        parts = pair.split("-")
        wanted.append(f"{parts[0]}-{parts[1]}-PERP" if pair.endswith("-PERP") else f"{parts[0]}-{parts[1]}")

    def make() -> Any:
        return Bybit(symbols=sorted(wanted), channels=[L2_BOOK], callbacks=_noop_callbacks())

    return cryptofeed_run(rec, make)


def _coinbase_cf(rec: Recording) -> CryptofeedRun:
    from cryptofeed.defines import L2_BOOK
    from cryptofeed.exchanges import Coinbase
    from cryptofeed.symbols import Symbols

    products = next(json.loads(r.payload) for r in rec.records if r.kind is Kind.HTTP and "products" in (r.url or ""))
    Symbols.set(Coinbase.id, *Coinbase._parse_symbol_data(products))
    pairs = sorted({p for ps in rec.pairs_by_conn.values() for p in ps})

    def make() -> Any:
        return Coinbase(symbols=pairs, channels=[L2_BOOK], callbacks=_noop_callbacks())

    return cryptofeed_run(rec, make)


def _kraken_cf(rec: Recording) -> CryptofeedRun:
    from cryptofeed.defines import L2_BOOK
    from cryptofeed.exchanges import Kraken
    from cryptofeed.symbols import Symbols

    # The same session's REST AssetPairs (beside the capture): the symbol table cryptofeed downloads.
    line = (RECORDINGS / "kraken" / "KRAKEN.0").read_text().splitlines()[0]
    Symbols.set(Kraken.id, *Kraken._parse_symbol_data(json.loads(line.split(": ", 1)[1])))
    pairs = sorted({p for ps in rec.pairs_by_conn.values() for p in ps})

    def make() -> Any:
        # Checksums verified as ours are (cryptofeed reads the "c" of a frame's first dict only).
        return Kraken(symbols=pairs, channels=[L2_BOOK], callbacks=_noop_callbacks(), checksum_validation=True)

    return cryptofeed_run(rec, make)


def _okx_cf(rec: Recording) -> CryptofeedRun:
    from cryptofeed.defines import L2_BOOK
    from cryptofeed.exchanges import OKX
    from cryptofeed.symbols import Symbols

    # No instrument list in the capture: the entries cryptofeed would download, for its instIds.
    module = rec.module
    entries = []
    for pair in sorted({p for ps in rec.pairs_by_conn.values() for p in ps}):
        inst = module.symbol_for(pair)
        base, quote = inst.split("-")[:2]
        kind = module.inst_type(inst)
        entries.append({"instType": kind, "instId": inst, "baseCcy": base, "quoteCcy": quote, "tickSz": "0.1"})
    Symbols.set(OKX.id, *OKX._parse_symbol_data([{"data": entries}]))
    std = {v: k for k, v in Symbols.get(OKX.id)[0].items()}

    def make() -> Any:
        symbols = [std[e["instId"]] for e in entries]
        return OKX(symbols=symbols, channels=[L2_BOOK], callbacks=_noop_callbacks(), checksum_validation=True)

    return cryptofeed_run(rec, make)


def run_cryptofeed(feed: Any, frames: list[tuple[str, Any]], loop: asyncio.AbstractEventLoop) -> int:
    async def main() -> int:
        handler = feed.message_handler
        for text, conn in frames:
            await handler(text, conn, 0.0)
        return len(frames)

    return loop.run_until_complete(main())


# --- the table -------------------------------------------------------------------------------


def _binance_decoder(module: Any) -> Callable[[bytes], Callable[[bytes], object]]:
    from recorder.venues import binance_wire

    decode = binance_wire._stream_depth.decode
    return lambda frame: decode


def _bybit_decoder(module: Any) -> Callable[[bytes], Callable[[bytes], object]]:
    decode = module._book_message.decode  # one typed pass, as the Feed's hot path
    return lambda frame: decode


def _coinbase_decoder(module: Any) -> Callable[[bytes], Callable[[bytes], object]]:
    l2_data, envelope = module._l2_data.decode, module._envelope.decode
    # As the Feed: l2_data in one typed pass, the other channels' envelope only.
    return lambda frame: l2_data if b'"l2_data"' in frame[:48] else envelope


def _kraken_decoder(module: Any) -> Callable[[bytes], Callable[[bytes], object]]:
    book_frame, envelope = module._v1_book_frame.decode, module._envelope.decode
    update_frame = getattr(module, "_v1_update_frame", None)  # main before issue 19's checksum work: none
    errors = (module.msgspec.DecodeError, module.msgspec.ValidationError)

    def pick(frame: bytes) -> Callable[[bytes], object]:
        # As the Feed: a v1 book frame in one pass, the one-level update [channelID, {update},
        # "book-N", "PAIR"] typed where the Feed has that decoder; the frame's shape is found
        # here, before the timing, so the ceiling pays no failed attempt.
        if frame[:1] != b"[":
            return envelope
        if update_frame is not None:
            try:
                update_frame.decode(frame)
                return update_frame.decode
            except errors:
                pass
        return book_frame

    return pick


def _okx_decoder(module: Any) -> Callable[[bytes], Callable[[bytes], object]]:
    envelope, data = module._envelope.decode, module._book_data.decode
    book_frame = getattr(module, "_book_frame", None)  # main before issue 19's checksum work: none
    if book_frame is not None:  # as the Feed: a book push in one pass
        return lambda frame: book_frame.decode
    return lambda frame: lambda f: data(envelope(f).data)


def _binance_book_frame(payload: bytes) -> bool:
    return b"@depth" in payload[:64]


CASES = [
    VenueCase(
        "binance",
        ("binance/BINANCE.ws.1.0", "binance/BINANCE.http.0.0"),
        _binance_book_frame,
        _binance_decoder,
        _binance_cf(futures=False),
    ),
    VenueCase(
        "binance-futures",
        ("binance/BINANCE_FUTURES.ws.1.0", "binance/BINANCE_FUTURES.http.0.0"),
        _binance_book_frame,
        _binance_decoder,
        _binance_cf(futures=True),
    ),
    VenueCase(
        "bybit", ("bybit/BYBIT.jsonl.zst",), lambda p: b'"topic":"orderbook.' in p[:64], _bybit_decoder, _bybit_cf
    ),
    # Every frame: Coinbase's sequence_num runs over all channels of the socket, so the book
    # path must see trades and tickers too (a book frame alone would look like a gap).
    VenueCase("coinbase", ("coinbase/COINBASE.jsonl.zst",), lambda p: True, _coinbase_decoder, _coinbase_cf),
    VenueCase("kraken", ("kraken/KRAKEN.ws.50.0",), lambda p: b'"book-' in p[-40:], _kraken_decoder, _kraken_cf),
    VenueCase("okx", ("okx/OKX.ws.1.0",), lambda p: b'"channel":"books"' in p[:64], _okx_decoder, _okx_cf),
]


def available_cases() -> list[VenueCase]:
    """The venues this checkout has (others land later). Their recordings are part of the repository
    (tests/data/recordings): a missing one fails its benchmarks rather than silently dropping them."""
    return [c for c in CASES if c.venue in VENUES]
