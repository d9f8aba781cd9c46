"""``depth_complete``: a stored book says whether it shows the requested depth, and never shows a
level the feed did not prove.

The real Binance recordings, with their REST snapshots cut to a few levels in the test, are replayed
deeper than the snapshots reach; every stored book is checked against an independent rebuild in
this file (plain dicts, the documented sync rules, and the snapshot's floor: below the deepest
level a cut snapshot held, a level may exist that no message ever told about).
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
from collections import defaultdict
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from recorder.dataset import open_dataset
from recorder.model import Level, Snapshot
from recorder.supervisor.prometheus import exposition
from recorder.venues import venue_module
from recorder.venues.binance_feed import BinanceFeed
from recorder.writer.batches import SCHEMA, data_file_path, snapshot_jsonl, snapshots_to_batch
from tests.conftest import (
    Sim,
    read_jsonl,
    run_cli,
    running_cli,
    snapshots_from_rows,
    status,
    stop_cli,
    wait_for,
    write_config,
)
from tests.test_replay import Reference

RECORDINGS = Path(__file__).resolve().parent / "data" / "recordings" / "binance"
QUOTES = ("USDT", "EUR", "ETH", "BTC")


def _pair(symbol: str, futures: bool) -> str:
    quote = next(q for q in QUOTES if symbol.endswith(q))
    return f"{symbol[: -len(quote)]}-{quote}" + ("-PERP" if futures else "")


def _cut_snapshots(src: Path, dst: Path, bids: int, asks: int, limit: int | None) -> None:
    """The recorded REST snapshots with each side cut to its best ``bids`` / ``asks`` levels and
    the request URL's ``limit=`` set to ``limit`` (None: dropped, a request whose limit the replay
    cannot know); everything else byte for byte. A side cut to ``limit`` levels is what a request
    of that limit returns from a deeper book; a side cut to fewer is what it returns from a book
    that thin."""
    out = []
    for line in src.read_text().splitlines():
        if " -> " not in line:
            out.append(line)
            continue
        head, body = line.split(": ", 1)
        url, arrow, t = head.partition(" -> ")
        base, query = url.split("?", 1)
        params = [kv for kv in query.split("&") if not kv.startswith("limit=")]
        params += [f"limit={limit}"] if limit is not None else []
        snap = json.loads(body)
        snap["bids"], snap["asks"] = snap["bids"][:bids], snap["asks"][:asks]
        out.append(f"{base}?{'&'.join(params)}{arrow}{t}: {json.dumps(snap, separators=(',', ':'))}")
    dst.write_text("\n".join(out) + "\n")


class FlooredReference(Reference):
    """test_replay's plain-dict rebuild (the documented sync rule) plus, per symbol and side, the
    snapshot's floor: its deepest level when the side may have been cut there (it holds the
    request's ``limit`` levels, or the limit is unknown); None for a side thinner than the limit,
    which is the venue's whole side."""

    def __init__(self, futures: bool) -> None:
        super().__init__(futures)
        self.floors: dict[str, tuple[float | None, float | None]] = {}
        self.limits: dict[str, int | None] = {}  # the limit of the snapshot a book waits for

    def request(self, symbol: str, body: dict, limit: int | None) -> None:
        """A recorded snapshot, asked for with ``limit`` levels per side (None: unknown)."""
        if symbol not in self.books:  # a book already built ignores it
            self.limits[symbol] = limit
        self.snapshot(symbol, body)

    def snapshot(self, symbol: str, body: dict) -> None:
        joined = symbol in self.books
        super().snapshot(symbol, body)
        if not joined and symbol in self.books:  # this snapshot (the newest recorded) started the book
            limit = self.limits.get(symbol)

            def floor(prices: list[float], deepest: Any) -> float | None:
                cut = limit is None or len(prices) >= limit
                return deepest(prices) if prices and cut else None

            self.floors[symbol] = (
                floor([float(p) for p, _ in body["bids"]], min),
                floor([float(p) for p, _ in body["asks"]], max),
            )

    def sample(self, s: str, depth: int) -> dict[str, Any]:
        """What may be stored: the known levels no deeper than the floor, and whether both sides
        reach ``depth`` or hold the venue's whole side (no floor)."""
        bids, asks = self.books[s]
        bid_floor, ask_floor = self.floors[s]
        shown_bids = sorted(((p, q) for p, q in bids.items() if bid_floor is None or p >= bid_floor), reverse=True)
        shown_asks = sorted((p, q) for p, q in asks.items() if ask_floor is None or p <= ask_floor)
        shown_bids, shown_asks = shown_bids[:depth], shown_asks[:depth]
        return {
            "bids": shown_bids,
            "asks": shown_asks,
            "update_id": self.last[s],
            "depth_complete": (len(shown_bids) == depth or bid_floor is None)
            and (len(shown_asks) == depth or ask_floor is None),
            "floors": (bid_floor, ask_floor),
        }


def _expected(ws: Path, http: Path, futures: bool, interval_ms: int, depth: int) -> dict[tuple[str, int], dict]:
    """(pair, tick) -> the reference's sample, taken before the first record at or after the tick
    (records merged by receive time, as the capture was)."""
    records: list[tuple[float, str, Any]] = []
    for line in ws.read_text().splitlines()[1:]:
        if line.strip() and "<-" not in line:
            t, frame = line.split(": ", 1)
            records.append((float(t) * 1000, "ws", json.loads(frame)))
    for line in http.read_text().splitlines():
        if " -> " in line:
            head, body = line.split(": ", 1)
            url, t = head.split(" -> ")
            query = dict(kv.split("=", 1) for kv in url.split("?", 1)[1].split("&"))
            limit = int(query["limit"]) if "limit" in query else None
            records.append((float(t) * 1000, "http", (query["symbol"], json.loads(body), limit)))
    records.sort(key=lambda r: r[0])
    ref = FlooredReference(futures)
    out: dict[tuple[str, int], dict] = {}
    tick = (int(records[0][0]) // interval_ms + 1) * interval_ms
    for t, kind, payload in records:
        while t >= tick:
            for s in ref.books:
                out[(_pair(s, futures), tick)] = ref.sample(s, depth)
            tick += interval_ms
        if kind == "http":
            ref.request(*payload)
        elif payload.get("data", {}).get("e") == "depthUpdate":
            ref.diff(payload["data"])
    return out


def _replay_against_reference(
    tmp_path: Path, venue: str, name: str, futures: bool, cut: tuple[int, int, int | None], depth: int
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Replay the real recording with its snapshots cut (``_cut_snapshots``), at 100 ms, check
    every stored book (JSONL and Parquet) against the reference and the summary's short counts;
    the (stored book, reference sample) pairs."""
    interval_ms = 100
    ws, http = tmp_path / f"{name}.ws.1.0", tmp_path / f"{name}.http.0.0"
    ws.write_bytes((RECORDINGS / f"{name}.ws.1.0").read_bytes())
    _cut_snapshots(RECORDINGS / f"{name}.http.0.0", http, *cut)
    data = tmp_path / "data"
    res = run_cli(
        "replay", "--venue", venue, "--input", str(ws), "--data-dir", str(data), "--format", "both",
        "--depth", str(depth), "--interval", f"{interval_ms}ms",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads(res.stdout)
    expected = _expected(ws, http, futures, interval_ms, depth)

    rows = ds.dataset(data / "parquet", format="parquet", partitioning="hive").to_table().to_pylist()
    parquet = snapshots_from_rows(rows)
    complete_of_rows: dict[tuple[str, int], set[bool]] = defaultdict(set)
    for r in rows:
        complete_of_rows[(r["pair"], r["sequence_number"])].add(r["depth_complete"])
    stored = read_jsonl(data)
    assert len(stored) == len(parquet) == len(expected)
    short: dict[str, int] = defaultdict(int)
    checked = []
    for s in stored:
        want = expected[(s["pair"], s["timestamp_ms"])]
        bids = [(lv["price"], lv["qty"]) for lv in s["bids"]]
        asks = [(lv["price"], lv["qty"]) for lv in s["asks"]]
        assert (bids, asks, s["update_id"]) == (want["bids"], want["asks"], want["update_id"])
        # The flag: the test's own judgement, the same in JSONL and on every Parquet row.
        assert s["depth_complete"] is want["depth_complete"], (s["pair"], s["timestamp_ms"])
        assert complete_of_rows[(s["pair"], s["sequence_number"])] == {want["depth_complete"]}
        p = parquet[(s["pair"], s["sequence_number"])]
        assert (p["bids"], p["asks"]) == (bids, asks)
        # No side claims a level past what the cut snapshot proved.
        bid_floor, ask_floor = want["floors"]
        assert all(px >= bid_floor for px, _ in bids) if bid_floor is not None else True
        assert all(px <= ask_floor for px, _ in asks) if ask_floor is not None else True
        short[s["pair"]] += not want["depth_complete"]
        checked.append((s, want))
    assert summary["depth_short"] == sum(short.values())
    assert {p: v["depth_short"] for p, v in summary["pairs"].items()} == {p: short[p] for p in summary["pairs"]}
    return checked


VENUES = [("binance", "BINANCE", False), ("binance-futures", "BINANCE_FUTURES", True)]


@pytest.mark.parametrize(("levels", "depth"), [(5, 10), (12, 10)])
@pytest.mark.parametrize(("venue", "name", "futures"), VENUES)
def test_replay_deeper_than_the_snapshot_stores_only_proven_levels(
    tmp_path: Path, venue: str, name: str, futures: bool, levels: int, depth: int
) -> None:
    """Snapshots asked for and cut at 5 levels, sampled at 10: short; at 12: complete until the
    price moves past the cut (the issue's real captures: 1 in 5 short, 1 in 7 with no bids, all
    verified). (12 is no USD-M limit: the replay cannot trust it, and counts both sides as cut.)"""
    checked = _replay_against_reference(tmp_path, venue, name, futures, (levels, levels, levels), depth)
    short = sum(not s["depth_complete"] for s, _ in checked)
    # Every side holds its request's limit: each has a floor, and with the deeper cut both outcomes occur.
    assert all(None not in want["floors"] for _, want in checked)
    assert short > 0
    if levels > depth:
        assert short < len(checked)


@pytest.mark.parametrize(
    ("bids", "asks", "limit"),
    [(10, 6, 10), (6, 10, 10), (10, 6, None)],
    ids=["thin-asks", "thin-bids", "limit-unknown"],
)
@pytest.mark.parametrize(("venue", "name", "futures"), VENUES)
def test_replay_reads_each_snapshot_requests_limit(
    tmp_path: Path, venue: str, name: str, futures: bool, bids: int, asks: int, limit: int | None
) -> None:
    """The replay reads the ``limit=`` of each recorded snapshot request: a side that came back
    with fewer levels is the venue's whole side (complete however few levels it shows, and diffs
    may add levels past its deepest one); a side that filled the limit was cut. A request without
    ``limit=`` keeps the conservative rule: both sides cut."""
    depth = 10
    checked = _replay_against_reference(tmp_path, venue, name, futures, (bids, asks, limit), depth)
    thin = 0 if bids < asks else 1  # the side the snapshot held fewer levels of
    if limit is None:
        assert all(None not in want["floors"] for _, want in checked)
        assert not any(s["depth_complete"] and min(len(s["bids"]), len(s["asks"])) < depth for s, _ in checked)
        return
    assert all(want["floors"][thin] is None and want["floors"][1 - thin] is not None for _, want in checked)
    side = ("bids", "asks")[thin]
    # Complete books whose thin side shows fewer than the depth: today's rule would call them short.
    assert any(s["depth_complete"] and len(s[side]) < depth for s, _ in checked)
    # The full side still runs short where the price moved past its cut.
    assert any(not s["depth_complete"] for s, _ in checked)


def test_a_request_limit_counts_only_as_the_venue_serves_it() -> None:
    """``limit=`` is trusted only where the venue returns that many levels of a deeper book: spot
    caps a larger one at 5000, USD-M refuses values off its list; no (or a garbled) limit is unknown."""
    spot, usdm = venue_module("binance"), venue_module("binance-futures")
    url = "https://api.binance.com/api/v3/depth?symbol=BTCUSDT&limit="
    assert [spot.snapshot_limit_of(url + v) for v in ("1000", "7", "5000")] == [1000, 7, 5000]
    assert [spot.snapshot_limit_of(url + v) for v in ("5001", "0", "-5", "1e3", "", "9" * 30)] == [None] * 6
    assert spot.snapshot_limit_of("https://api.binance.com/api/v3/depth?symbol=BTCUSDT") is None
    assert spot.snapshot_limit_of("inline:depth?symbol=BTCUSDT") is None  # an inline snapshot of a ns capture
    url = "https://fapi.binance.com/fapi/v1/depth?limit={}&symbol=BTCUSDT"
    assert [usdm.snapshot_limit_of(url.format(v)) for v in (5, 1000, 7, 5000)] == [5, 1000, None, None]


def test_a_recorded_snapshot_waiting_for_its_first_diff_keeps_its_limit() -> None:
    """Recorded before any diff of its pair, the snapshot waits; joined, its request's limit says
    which side was cut: bids filled the limit (a level below the deepest stays hidden), asks did
    not (a new level past the deepest shows, and the thin side is complete)."""
    feed = BinanceFeed(["BTC-USDT"])
    body = b'{"lastUpdateId":100,"bids":[["99","1"],["98","1"]],"asks":[["101","1"]]}'
    feed.on_rest_snapshot("BTC-USDT", body, 1.0, limit=2)
    assert feed.book("BTC-USDT") is None
    data = {"e": "depthUpdate", "E": 5, "s": "BTCUSDT", "U": 100, "u": 101, "b": [["97", "1"]], "a": [["103", "1"]]}
    feed.on_frame(json.dumps({"stream": "btcusdt@depth@100ms", "data": data}).encode(), 2.0)
    book = feed.book("BTC-USDT")
    assert book is not None and book.update_id == 101
    bids, asks = book.top(10)
    assert [lv.price for lv in bids] == [99.0, 98.0] and [lv.price for lv in asks] == [101.0, 103.0]
    assert not book.depth_complete(10, 2, 10)  # the bids may go deeper than anything seen
    assert book.depth_complete(10, 10, 2)  # the asks are the venue's whole side


# -- files from before the field, and after it, in one tree ------------------------------------


def _snaps(session: str, first_ms: int, complete: bool | None) -> list[Snapshot]:
    return [
        Snapshot(
            exchange="binance",
            pair=pair,
            timestamp_ms=first_ms + k * 1000,
            bids=[Level(100.0 - j, 1.0 + j) for j in range(3)],
            asks=[Level(101.0 + j, 2.0 + j) for j in range(3 if k % 4 else 0)],  # some one-sided
            capture_latency_ms=1.0,
            sequence_number=k,
            update_id=k,
            depth_complete=None if complete is None else complete == (k % 3 != 0),
            session_id=session,
        )
        for k in range(6)
        for pair in ("BTC-USDT", "ETH-USDT")
    ]


def _write(data: Path, snaps: list[Snapshot], old_schema: bool, segment: int) -> None:
    """One file per format as the writer of that time stored it: before the field, Parquet had no
    such column and JSONL no such key."""
    s0 = snaps[0]
    date = time.strftime("%Y-%m-%d", time.gmtime(s0.timestamp_ms / 1000))
    table = pa.Table.from_batches([snapshots_to_batch(snaps)])
    lines = [json.loads(snapshot_jsonl(s)) for s in snaps]
    if old_schema:
        table = table.drop_columns(["depth_complete"])
        for line in lines:
            del line["depth_complete"]
    for fmt in ("parquet", "jsonl"):
        path = data_file_path(data, fmt, "binance", date, s0.session_id, s0.timestamp_ms, segment)
        path.parent.mkdir(parents=True, exist_ok=True)
        if fmt == "parquet":
            pq.write_table(table, path)
        else:
            path.write_text("".join(json.dumps(line) + "\n" for line in lines))
        os.utime(path, (time.time() - 7200, time.time() - 7200))


def _flags(data: Path, fmt: str) -> dict[tuple[str, str, int], bool | None]:
    """(session, pair, sequence) -> depth_complete as the reader gives it, checked to be the same
    in the long table, the wide table and the snapshot objects."""
    dset = open_dataset(data, format=fmt)
    long = {(r["session_id"], r["pair"], r["sequence_number"]): r["depth_complete"] for r in dset.table().to_pylist()}
    wide = {
        (r["session_id"], r["pair"], r["sequence_number"]): r["depth_complete"] for r in dset.wide(depth=3).to_pylist()
    }
    objects = {(b.session_id, b.pair, b.sequence_number): b.depth_complete for b in dset.snapshots()}
    assert long == wide == objects
    return long


def test_old_and_new_files_read_and_compact_together(tmp_path: Path) -> None:
    data = tmp_path / "data"
    t0 = 1_795_000_000_000 - (1_795_000_000_000 % 86_400_000)
    old, new = _snaps("old", t0, None), _snaps("new", t0 + 60_000, True)
    _write(data, old, old_schema=True, segment=0)
    _write(data, new, old_schema=False, segment=1)
    want = {(s.session_id, s.pair, s.sequence_number): s.depth_complete for s in old + new}
    assert {v for k, v in want.items() if k[0] == "old"} == {None}
    assert {v for k, v in want.items() if k[0] == "new"} == {True, False}
    for fmt in ("parquet", "jsonl"):
        assert _flags(data, fmt) == want, fmt
    res = run_cli("compact", "--data-dir", str(data), "--older-than", "1m")
    assert res.returncode == 0, res.stderr
    assert "compacted 4 files" in res.stdout, res.stdout
    for fmt in ("parquet", "jsonl"):
        assert len(list((data / fmt).rglob(f"*.{fmt}"))) == 1
        assert _flags(data, fmt) == want, fmt
    (merged,) = (data / "parquet").rglob("*.parquet")
    assert pq.read_schema(merged).names == SCHEMA.names  # the new column in its place


# -- live: a book the price walk outran gets a deeper snapshot -----------------------------------


def test_live_capture_refetches_a_book_the_price_walk_outran(sim: Sim, tmp_path: Path) -> None:
    """Snapshots of 30 levels, sampled at 10: the simulator's price walk soon moves a side past the
    snapshot's range. Those ticks are stored (not missed) marked short and counted; the connector
    fetches a fresh snapshot (spaced, in budget: no 429) and the book is complete again. Every
    stored book is checked against the simulator's own book at its update id."""
    # The simulator serves a REST snapshot of exactly the levels asked for (its book is deeper).
    with urllib.request.urlopen(f"{sim.urls['rest_url']}/api/v3/depth?symbol=BTCUSDT&limit=30", timeout=10) as r:
        cut = json.load(r)
    assert len(cut["bids"]) == len(cut["asks"]) == 30
    data, depth = tmp_path / "data", 10
    pairs = ["BTC-USDT", "ETH-USDT"]
    cfg = write_config(
        tmp_path / "c.toml", sim.urls, pairs, data, interval="200ms", depth=depth, format="jsonl",
        venue_extra={"snapshot_limit": 30},
    )  # fmt: skip

    def refetched_and_sampled_on() -> bool:
        v = ((status(data, "deep") or {}).get("venues") or {}).get("binance")
        if not v or v["depth_short"] == 0 or v["snapshots_fetched"] <= v["resyncs"]:
            return False
        seen = wait.setdefault("samples", v["samples"])
        return v["samples"] >= seen + 20  # two seconds of both pairs after the first refetch

    wait: dict[str, int] = {}
    with running_cli("start-capture", "--config", str(cfg), "--session-id", "deep") as proc:
        wait_for(refetched_and_sampled_on, 90, "a refetch and samples after it")
        stop_cli(proc)
    v = status(data, "deep")["venues"]["binance"]  # type: ignore[index]
    assert v["http_429"] == 0 and v["http_418"] == 0
    assert v["missed_ticks"] == 0  # a refetch never takes the book away from the sampler
    assert v["snapshots_fetched"] > v["resyncs"]  # fresh snapshots beyond the ones that synced books

    stored = sorted(read_jsonl(data), key=lambda s: (s["pair"], s["timestamp_ms"]))
    flags: dict[str, list[bool]] = defaultdict(list)
    for s in stored:
        symbol = s["pair"].replace("-", "")
        code, ref = sim.get(f"/sim/book?symbol={symbol}&update_id={s['update_id']}&limit=1000")
        assert code == 200, ref
        bids = [(lv["price"], lv["qty"]) for lv in s["bids"]]
        asks = [(lv["price"], lv["qty"]) for lv in s["asks"]]
        ref_bids = [(float(p), float(q)) for p, q in ref["bids"]]
        ref_asks = [(float(p), float(q)) for p, q in ref["asks"]]
        # Never an invented level: what is stored is the venue's best levels, in order.
        assert bids == ref_bids[: len(bids)] and asks == ref_asks[: len(asks)], (s["pair"], s["update_id"])
        # The flag is the truth: complete iff both sides show the depth (the venue had it).
        shown_all = len(bids) == min(depth, len(ref_bids)) and len(asks) == min(depth, len(ref_asks))
        assert s["depth_complete"] is shown_all, (s["pair"], s["update_id"], len(bids), len(asks))
        flags[s["pair"]].append(s["depth_complete"])
    assert sum(not f for fs in flags.values() for f in fs) == v["depth_short"]
    assert {p: sum(not f for f in flags[p]) for p in pairs} == {p: v["pairs"][p]["depth_short"] for p in pairs}
    # The same counts in capture-status and in the Prometheus exposition.
    res = run_cli("capture-status", "--session-id", "deep", "--data-dir", str(data))
    assert res.returncode == 0, res.stderr
    assert f"depth short {v['depth_short']}" in res.stdout
    text = exposition(status(data, "deep"))  # type: ignore[arg-type]
    assert f'recorder_venue_depth_short_total{{venue="binance"}} {v["depth_short"]}' in text.splitlines()
    for p in pairs:
        line = f'recorder_pair_depth_short_total{{venue="binance",pair="{p}"}} {v["pairs"][p]["depth_short"]}'
        assert line in text.splitlines()
        assert any(row.strip().startswith(p) and f"depth short {v['pairs'][p]['depth_short']}" in row
                   for row in res.stdout.splitlines())  # fmt: skip
    # A short run is followed by complete books again: the refetch deepened the book.
    assert any("01" in "".join("1" if f else "0" for f in fs) for fs in flags.values()), {
        p: "".join("1" if f else "0" for f in fs) for p, fs in flags.items()
    }
