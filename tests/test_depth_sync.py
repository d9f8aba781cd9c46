"""A live Binance book deepened by a fresh snapshot joins its update-id chain exactly; depth-limited
feeds flag a side short only when it holds every level the feed carries; ``snapshot_limit`` is
checked against what the venue accepts. References: plain dicts in this file."""

from __future__ import annotations

import json
import random
from pathlib import Path

import msgspec
import pytest

from recorder.venues.binance import BookSync, DepthEvent, DepthSnapshot, Outcome
from tests.conftest import run_cli

# -- the refetch joins the live chain: a randomised venue against plain dicts --------------------


class _Venue:
    """A venue book as plain dicts; ids contiguous (spot); snapshots cut to ``limit`` levels."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.bids = {100.0 - i: 1.0 for i in range(1, 60)}
        self.asks = {100.0 + i: 1.0 for i in range(1, 60)}
        self.id = 1

    def diff(self) -> DepthEvent:
        """A diff that walks the price down: the top bids go, new asks appear below the old."""
        rng, first = self.rng, self.id + 1
        b: list[tuple[str, str]] = []
        a: list[tuple[str, str]] = []
        for _ in range(rng.randint(1, 3)):
            if rng.random() < 0.6 and self.bids:
                top = max(self.bids)
                del self.bids[top]
                b.append((str(top), "0"))
                self.asks[top + 1.0] = 2.0
                a.append((str(top + 1.0), "2"))
            else:
                p = float(rng.randint(1, 99))
                q = float(rng.randint(0, 3))
                side, out = (self.bids, b) if p < min(self.asks, default=200.0) else (self.asks, a)
                if q:
                    side[p] = q
                else:
                    side.pop(p, None)
                out.append((str(p), str(q)))
            self.id += 1
        return msgspec.convert({"e": "depthUpdate", "U": first, "u": self.id, "b": b, "a": a}, DepthEvent, strict=False)

    def snapshot(self, limit: int) -> DepthSnapshot:
        return DepthSnapshot(
            lastUpdateId=self.id,
            bids=sorted(self.bids.items(), reverse=True)[:limit],
            asks=sorted(self.asks.items())[:limit],
        )

    def top(self, depth: int) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
        return sorted(self.bids.items(), reverse=True)[:depth], sorted(self.asks.items())[:depth]


def _shown(sync: BookSync, depth: int) -> tuple[list[tuple[float, float]], list[tuple[float, float]], bool]:
    bid_px, bid_qty, ask_px, ask_qty = sync.book.top_columns(depth)
    complete = sync.book.depth_complete(depth, len(bid_px), len(ask_px))
    return list(zip(bid_px, bid_qty, strict=True)), list(zip(ask_px, ask_qty, strict=True)), complete


@pytest.mark.parametrize("seed", range(20))
def test_a_refetched_snapshot_joins_the_live_book_as_the_venue_has_it(seed: int) -> None:
    """Sync on a 12-level snapshot, walk the price down until the bids run short, fetch a fresh
    snapshot (its request sent at one id, its body taken at a later id, answered before or after
    the diffs up to it arrive): the book is never lost and, once rebuilt, equals the venue's."""
    rng, depth, limit = random.Random(seed), 5, 12
    venue, sync = _Venue(rng), BookSync("X-USDT")
    sync.snapshot_limit = limit
    first = venue.diff()
    sync.on_diff(first, 0.0)
    snap = venue.snapshot(limit)
    pending = [venue.diff() for _ in range(2)]
    for ev in pending:
        sync.on_diff(ev, 0.0)
    assert sync.on_snapshot(snap) is Outcome.SYNCED
    refetches = 0
    for _ in range(200):
        bids, asks, complete = _shown(sync, depth)
        want_bids, want_asks = venue.top(depth)
        # Shown levels are the venue's best, in order; never complete while the venue has more.
        assert bids == want_bids[: len(bids)] and asks == want_asks[: len(asks)]
        if len(bids) < len(want_bids[:depth]) or len(asks) < len(want_asks[:depth]):
            assert not complete
        elif len(bids) == len(asks) == depth:
            assert complete
        # (A side the venue has thinner than the depth, past the snapshot's cut: the recorder
        # cannot know nothing lies there, so it may say short; never the other way round.)
        if not complete and sync.since_refetch is None:
            refetches += 1
            sync.begin_refetch()  # the request goes on the wire now...
            ahead = rng.randint(0, 4)
            lag = [venue.diff() for _ in range(ahead)]  # ...the venue moves before it answers
            snap = venue.snapshot(limit)
            before = rng.random() < 0.5
            if before:  # the answer arrives before the diffs it already contains
                outcome = sync.on_refetch(snap)
                assert outcome is (Outcome.BUFFERED if ahead else Outcome.SYNCED)
            for ev in lag:
                assert sync.on_diff(ev, 0.0) is Outcome.APPLIED
            if not before:
                assert sync.on_refetch(snap) is Outcome.SYNCED
            assert sync.since_refetch is None and sync.synced
            bids, asks, complete = _shown(sync, depth)
            assert (bids, asks) == venue.top(depth)  # deep again, as the venue has it
            assert complete or min(len(bids), len(asks)) < depth
            continue
        assert sync.on_diff(venue.diff(), 0.0) is Outcome.APPLIED
    assert sync.book.update_id == venue.id and refetches >= 3


def test_a_stale_refetch_or_a_gap_leaves_no_refetch_behind() -> None:
    rng = random.Random(1)
    venue, sync = _Venue(rng), BookSync("X-USDT")
    sync.snapshot_limit = 12
    sync.on_diff(venue.diff(), 0.0)
    old = venue.snapshot(12)
    assert sync.on_snapshot(old) is Outcome.SYNCED
    for _ in range(3):
        sync.on_diff(venue.diff(), 0.0)
    sync.begin_refetch()
    book = sync.book
    assert sync.on_refetch(old) is Outcome.STALE  # older than the book when asked: not used
    assert sync.book is book and sync.since_refetch is None
    sync.begin_refetch()
    ev = venue.diff()
    sync.on_diff(DepthEvent(e="depthUpdate", U=ev.U + 1, u=ev.u + 1), 0.0)  # a gap: book lost
    assert not sync.synced and sync.since_refetch is None
    assert sync.on_refetch(venue.snapshot(12)) is Outcome.IGNORED


# -- depth-limited feeds: a full side of the subscribed depth hides deeper levels ----------------


def _levels(n: int, start: float, step: float) -> list[tuple[str, str]]:
    return [(f"{start + step * i:.1f}", "1") for i in range(n)]


def _kraken_snapshot(n: int) -> bytes:
    def side(levels: list[tuple[str, str]]) -> str:
        return ",".join(f'{{"price":{p},"qty":{q}}}' for p, q in levels)

    return (
        f'{{"channel":"book","type":"snapshot","data":[{{"symbol":"BTC/USD","bids":[{side(_levels(n, 99, -1))}],'
        f'"asks":[{side(_levels(n, 101, 1))}],"timestamp":"2026-11-25T10:00:00.123456Z"}}]}}'
    ).encode()


def _okx_snapshot(n: int, channel: str) -> bytes:
    data = {
        "bids": [[p, q, "0", "1"] for p, q in _levels(n, 99, -1)],
        "asks": [[p, q, "0", "1"] for p, q in _levels(n, 101, 1)],
        "ts": "1764064800123",
        "seqId": 5,
    }
    return json.dumps({"arg": {"channel": channel, "instId": "BTC-USDT"}, "data": [data]}).encode()


def _bybit_snapshot(n: int, depth: int) -> bytes:
    data = {"s": "BTCUSDT", "b": _levels(n, 99, -1), "a": _levels(n, 101, 1), "u": 1, "seq": 10}
    return json.dumps({"topic": f"orderbook.{depth}.BTCUSDT", "type": "snapshot", "ts": 1, "data": data}).encode()


@pytest.mark.parametrize(
    ("venue", "snapshot", "feed_depth"),
    [
        ("kraken", _kraken_snapshot, 10),
        ("okx", lambda n: _okx_snapshot(n, "books5"), 5),
        ("bybit", lambda n: _bybit_snapshot(n, 50), 50),
    ],
)
def test_a_depth_limited_feed_is_short_only_when_a_side_fills_its_depth(venue: str, snapshot, feed_depth: int) -> None:
    """Subscribed to ``feed_depth`` levels and sampled deeper: a side holding all of them may hide
    more (short); a side holding fewer is the venue's whole side (complete). Sampled no deeper
    than the feed, the book is complete."""
    from recorder.venues.bybit import BybitFeed
    from recorder.venues.kraken import KrakenFeed
    from recorder.venues.okx import OkxFeed

    pair = {"kraken": "BTC-USD", "okx": "BTC-USDT", "bybit": "BTC-USDT"}[venue]

    def sampled(n_levels: int, depth: int) -> bool:
        feed = {
            "kraken": lambda: KrakenFeed([pair], depth=feed_depth),
            "okx": lambda: OkxFeed([pair], channel="books5"),
            "bybit": lambda: BybitFeed("spot", [pair], feed_depth),
        }[venue]()
        feed.on_frame(snapshot(n_levels), 1.0)
        book = feed.book(pair)
        assert book is not None
        bid_px, _, ask_px, _ = book.top_columns(depth)
        assert len(bid_px) == len(ask_px) == min(depth, n_levels)
        return book.depth_complete(depth, len(bid_px), len(ask_px))

    assert sampled(feed_depth, feed_depth * 2) is False  # full to the feed's depth: more may exist
    assert sampled(feed_depth - 1, feed_depth * 2) is True  # thinner than the feed: the whole book
    assert sampled(feed_depth, feed_depth) is True  # sampled within the feed's depth


def test_a_snapshot_limit_the_venue_refuses_is_one_line(tmp_path: Path) -> None:
    for venue, pair, limit, allowed in (
        ("binance", "BTC-USDT", 7000, "1 to 5000"),
        ("binance-futures", "BTC-USDT-PERP", 200, "5, 10, 20, 50, 100, 500, 1000"),
    ):
        cfg = tmp_path / f"{venue}.toml"
        cfg.write_text(
            f'data_dir = "{tmp_path / "d"}"\n[venues.{venue}]\npairs = ["{pair}"]\nsnapshot_limit = {limit}\n'
        )
        res = run_cli("start-capture", "--config", str(cfg))
        assert res.returncode == 2, res.stderr
        assert res.stderr.strip().splitlines() == [
            f"Error: venue {venue!r}: snapshot_limit {limit} is "
            + ("not one the venue accepts: " if "," in allowed else "out of the venue's range: ")
            + allowed
        ]
    # Not positive at all: the config's own check, before any venue's range.
    cfg.write_text(f'data_dir = "{tmp_path / "d"}"\n[venues.binance]\npairs = ["BTC-USDT"]\nsnapshot_limit = 0\n')
    res = run_cli("start-capture", "--config", str(cfg))
    assert res.returncode == 2 and res.stderr.strip().splitlines() == [
        "Error: invalid [venues.binance] snapshot_limit = 0: must be positive"
    ], res.stderr
