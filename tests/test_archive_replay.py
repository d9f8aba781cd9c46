"""The archive of a live capture of all six venues (simulators) replays into the very rows the
capture stored (books, and trades and quotes where captured), and re-samples at another interval
and depth like a rebuild written here."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds
import pytest
import zstandard

from tests.conftest import every_pair_sampled, read_jsonl, read_parquet_rows, run_cli, running_cli, stop_cli, wait_for

VENUE_PAIRS = {
    "binance": ["BTC-USDT", "ETH-USDT"],
    "binance-futures": ["BTC-USDT-PERP"],
    "coinbase": ["BTC-USD"],
    "kraken": ["BTC-USD"],
    "okx": ["BTC-USDT"],
    "bybit": ["BTC-USDT", "BTC-USDT-PERP"],
}
SESSION = "arc"


def archive_files(data: Path, venue: str) -> list[Path]:
    return sorted((data / "archive" / f"exchange={venue}").rglob(f"{SESSION}-*.jsonl.zst"))


def archive_lines(files: list[Path]) -> Iterator[dict[str, Any]]:
    """The archive read independently of the recorder: zstd frames, JSON lines, file seq order."""
    for path in sorted(files, key=lambda p: int(p.name.split("-")[-1].split(".")[0])):
        with open(path, "rb") as fh:
            reader = zstandard.ZstdDecompressor().stream_reader(fh, read_across_frames=True)
            text = reader.read().decode()
        for line in text.splitlines():
            yield json.loads(line)


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("archive")
    data = root / "data"
    lines = [f'data_dir = "{data}"', f'session_id = "{SESSION}"', "simulate = true", 'interval = "500ms"', "depth = 10"]
    for venue, pairs in VENUE_PAIRS.items():
        lines += ["", f'[venues."{venue}"]', "pairs = [" + ", ".join(f'"{p}"' for p in pairs) + "]"]
        lines.append('channels = ["book", "trades", "quotes"]')
    lines += ["", "[archive]", "flush_s = 0.2"]
    cfg = root / "six.toml"
    cfg.write_text("\n".join(lines) + "\n")
    with running_cli("start-capture", "--config", str(cfg)) as proc:
        wait_for(lambda: every_pair_sampled(data, SESSION, 8), 150, "8 samples of every pair of six venues")
        stop_cli(proc)
    return data


def replay(data: Path, venue: str, out: Path, *extra: str, whole_dir: bool = False) -> dict[str, Any]:
    files = [str(p) for p in archive_files(data, venue)]
    assert files, venue
    args = ["replay", "--venue", venue, "--data-dir", str(out), "--session-id", SESSION, *extra]
    for f in [str(data / "archive" / f"exchange={venue}")] if whole_dir else files:
        args += ["--input", f]
    res = run_cli(*args)
    assert res.returncode == 0, res.stderr[-2000:]
    return json.loads(res.stdout)


def _key(r: dict[str, Any]) -> tuple:
    return (r["exchange"], r["pair"], r["sequence_number"], r.get("side") or "", r.get("level") or 0)


def test_each_venue_archive_replays_into_the_live_rows(capture: Path, tmp_path: Path) -> None:
    live_parquet = defaultdict(list)
    for r in read_parquet_rows(capture):
        live_parquet[r["exchange"]].append(r)
    live_jsonl = defaultdict(list)
    for s in read_jsonl(capture):
        live_jsonl[s["exchange"]].append(s)
    trades_seen: dict[str, int] = defaultdict(int)
    for venue in VENUE_PAIRS:
        out = tmp_path / venue
        summary = replay(capture, venue, out)
        assert summary["mode"] == "recorded ticks" and summary["skipped_calls"] == 0, summary
        replayed = sorted(read_parquet_rows(out), key=_key)
        live = sorted(live_parquet[venue], key=_key)
        assert len(live) > 0 and len(replayed) == len(live), (venue, len(replayed), len(live))
        for a, b in zip(replayed, live, strict=True):
            assert a == b, (venue, a, b)  # every column: ticks, levels, flags, ids, sequence numbers
        by = lambda s: (s["pair"], s["sequence_number"])  # noqa: E731
        assert sorted(read_jsonl(out), key=by) == sorted(live_jsonl[venue], key=by), venue
        for dataset in ("trades", "quotes"):  # what the venue's Feeds emit besides books, if stored
            live_rows = stored_rows(capture, dataset, venue)
            assert stored_rows(out, dataset, venue) == live_rows, (venue, dataset)
            trades_seen[dataset] += len(live_rows)
            assert live_rows, (venue, dataset)  # every venue's simulator trades, every book quotes


def stored_rows(data: Path, dataset: str, venue: str) -> list[dict[str, Any]]:
    root = data / dataset / "parquet"
    if not root.exists():
        return []
    rows = ds.dataset(root, format="parquet", partitioning="hive").to_table().to_pylist()
    return sorted((r for r in rows if r["exchange"] == venue), key=lambda r: (r["pair"], r["sequence_number"]))


def _bybit_reference(lines: list[dict[str, Any]], interval: int, depth: int) -> dict[tuple[str, int], tuple]:
    """Bybit books from the archived frames with plain dicts, sampled on the grid: a tick is
    sampled before the first record received at or after it (the order of the archive)."""
    pair_of_conn: dict[str, str] = {}
    books: dict[tuple[str, str], dict[str, dict[float, float]]] = {}
    out: dict[tuple[str, int], tuple] = {}
    tick = None
    for obj in lines:
        if "ns" not in obj or obj["t"] == "header":
            continue
        t = obj["ns"] / 1e6
        if tick is None:
            tick = (int(t // interval) + 1) * interval
        while t >= tick:
            for (conn, symbol), book in books.items():
                market = "-PERP" if "/linear" in pair_of_conn.get(conn, "") else ""
                pair = symbol.removesuffix("USDT") + "-USDT" + market
                bids = sorted(book["b"].items(), reverse=True)[:depth]
                asks = sorted(book["a"].items())[:depth]
                out[(pair, tick)] = (tuple(bids), tuple(asks))
            tick += interval
        if obj["t"] == "connect":
            pair_of_conn[obj["conn"]] = obj["url"]
        if obj["t"] != "recv":
            continue
        msg = json.loads(obj["data"])
        if not str(msg.get("topic", "")).startswith("orderbook."):
            continue
        d = msg["data"]
        key = (obj["conn"], d["s"])
        if msg["type"] == "snapshot":
            books[key] = {"b": {}, "a": {}}
        book = books[key]
        for side in ("b", "a"):
            for price, qty in d[side]:
                if float(qty) == 0:
                    book[side].pop(float(price), None)
                else:
                    book[side][float(price)] = float(qty)
    return out


def test_archive_resampled_at_another_interval_and_depth(capture: Path, tmp_path: Path) -> None:
    out = tmp_path / "bybit-300"
    summary = replay(capture, "bybit", out, "--interval", "300ms", "--depth", "3", whole_dir=True)
    assert summary["mode"] == "resampled" and summary["interval_ms"] == 300 and summary["depth"] == 3
    rows = read_jsonl(out)
    got = {
        (s["pair"], s["timestamp_ms"]): (
            tuple((b["price"], b["qty"]) for b in s["bids"]),
            tuple((a["price"], a["qty"]) for a in s["asks"]),
        )
        for s in rows
    }
    expected = _bybit_reference(list(archive_lines(archive_files(capture, "bybit"))), 300, 3)
    assert len(got) >= 20 and all(ts % 300 == 0 for _, ts in got)
    assert got == expected


def test_report_shows_archive_coverage_per_venue(capture: Path) -> None:
    res = run_cli("report", "--data-dir", str(capture), "--session-id", SESSION, "--json")
    assert res.returncode == 0, res.stderr[-2000:]
    coverage = json.loads(res.stdout)["sessions"][0]["archive"]
    assert set(coverage) == set(VENUE_PAIRS)
    for venue, v in coverage.items():
        files = archive_files(capture, venue)
        lines = list(archive_lines(files))
        span_h = (max(o["ns"] for o in lines if "ns" in o) - min(o["ns"] for o in lines if "ns" in o)) / 3.6e12
        assert v["files"] == len(files) and v["bytes"] == sum(p.stat().st_size for p in files), venue
        assert v["frames"] == sum(1 for o in lines if o["t"] == "recv") > 0, venue
        assert 0 < v["hours"] <= span_h + 1e-4, venue
    text = run_cli("report", "--data-dir", str(capture), "--session-id", SESSION).stdout
    assert "archive: binance " in text and " frames" in text


def test_binance_feeds_are_rebuilt_with_the_live_snapshot_limit(capture: Path) -> None:
    """``depth_complete`` rests on the depth each REST snapshot was asked for: the archive's ``feed``
    records carry the live ``snapshot_limit`` (the default for this many pairs, README: spot 5000,
    USD-M 1000), which the replay builds each Feed with; the recorded requests asked for it."""
    for venue, limit in (("binance", 5000), ("binance-futures", 1000)):
        lines = list(archive_lines(archive_files(capture, venue)))
        feeds = [o for o in lines if o["t"] == "feed"]
        assert feeds and all(o["kw"]["snapshot_limit"] == limit for o in feeds), (venue, feeds[:1])
        urls = [o["url"] for o in lines if o["t"] == "http" and "depth?" in o["url"]]
        assert urls and all(f"limit={limit}" in u.split("?")[1].split("&") for u in urls), (venue, urls[:3])
