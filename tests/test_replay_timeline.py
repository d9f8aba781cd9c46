"""`cli.py replay` over several sockets and files, and over recordings with bad timestamps.

Every case is built from the real recordings in tests/data/recordings; every stored book is checked
against a rebuild written here (plain dicts, the venue's documented rules), never the venue's Feed.
"""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path
from typing import Any

import zstandard

from recorder.replay.readers import Kind, Record, capture_files, read_capture
from tests.test_replay import SPOT, _replay, _stored, expected_samples, ns_records

BYBIT = SPOT.parent.parent / "bybit" / "BYBIT.jsonl.zst"
Top = tuple[list[tuple[float, float]], list[tuple[float, float]]]


# --- a Bybit rebuild from the raw file (zstd + json, no project code) -------------------------


def _raw_jsonl(path: Path) -> list[dict[str, Any]]:
    with zstandard.ZstdDecompressor().stream_reader(path.open("rb")) as fh:
        text = io.TextIOWrapper(fh, encoding="utf-8").read()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _write_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    text = "".join(json.dumps(r) + "\n" for r in records)
    path.write_bytes(zstandard.ZstdCompressor().compress(text.encode()))


def _bybit_pair(category: str, symbol: str) -> str:
    return f"{symbol.removesuffix('USDT')}-USDT" + ("-PERP" if category == "linear" else "")


class BybitBooks:
    """Books per pair from orderbook frames: a snapshot replaces the book, a delta sets levels
    (size 0 deletes) and must carry the previous ``u`` + 1."""

    def __init__(self) -> None:
        self.books: dict[str, tuple[dict[float, float], dict[float, float], int]] = {}

    def frame(self, pair: str, msg: dict[str, Any]) -> None:
        data = msg["data"]
        if msg["type"] == "snapshot":
            self.books[pair] = ({}, {}, data["u"])
        bids, asks, u = self.books[pair]
        assert msg["type"] == "snapshot" or data["u"] == u + 1, (pair, u, data["u"])
        for side, levels in ((bids, data["b"]), (asks, data["a"])):
            for p, q in levels:
                if float(q) == 0:
                    side.pop(float(p), None)
                else:
                    side[float(p)] = float(q)
        self.books[pair] = (bids, asks, data["u"])

    def top(self, pair: str, depth: int = 20) -> dict[str, Any]:
        bids, asks, u = self.books[pair]
        return {
            "bids": sorted(bids.items(), reverse=True)[:depth],
            "asks": sorted(asks.items())[:depth],
            "update_id": u,
        }


def _bybit_truth(records: list[dict[str, Any]], interval_ms: int) -> dict[tuple[str, int], dict[str, Any]]:
    """(pair, tick) -> the pair's book on its own socket, for every tick of the capture, the
    records taken by receive time whatever the file order (a tick is sampled before the first
    record at or after it)."""
    category: dict[str, str] = {}
    timed = sorted((r for r in records if "ts" in r), key=lambda r: r["ts"])
    books = BybitBooks()
    out: dict[tuple[str, int], dict[str, Any]] = {}
    tick = None
    for r in timed:
        ms = r["ts"] * 1000
        if tick is None:
            tick = (int(ms) // interval_ms + 1) * interval_ms
        while ms >= tick:
            out.update(((pair, tick), books.top(pair)) for pair in books.books)
            tick += interval_ms
        if r["t"] == "connect":
            category[r["conn"]] = r["addr"].rsplit("/", 1)[1]
        elif r["t"] == "recv" and '"orderbook.' in r["data"][:60]:
            msg = json.loads(r["data"])
            books.frame(_bybit_pair(category[r["conn"]], msg["data"]["s"]), msg)
    return out


# --- section 2: sockets and files -------------------------------------------------------------


def test_multi_socket_capture_is_replayed_by_receive_time(tmp_path: Path) -> None:
    """BYBIT.jsonl.zst holds the linear socket's records, then the spot socket's: replayed in file
    order the spot books got 3 snapshots at 100 ms instead of one per tick."""
    summary, data = _replay(tmp_path, "bybit", BYBIT, extra=("--interval", "100ms"))
    expected = _bybit_truth(_raw_jsonl(BYBIT), 100)
    stored = _stored(data)
    assert stored == expected
    for pair in ("BTC-USDT", "ETH-USDT"):
        ticks = sorted(t for p, t in expected if p == pair)
        assert len(ticks) > 400
        per = summary["pairs"][pair]
        assert per["snapshots_written"] == len(ticks) and per["missed_ticks"] == 0
        assert (per["first_stored_tick_ms"], per["last_stored_tick_ms"]) == (ticks[0], ticks[-1])
    assert len(summary["sockets"]) == 2
    # The same records written as they arrive (the sockets interleaved, read through the
    # reorder buffer): the same books.
    records = _raw_jsonl(BYBIT)
    interleaved = tmp_path / "interleaved.jsonl.zst"
    _write_jsonl(interleaved, [records[0], *sorted(records[1:], key=lambda r: r["ts"])])
    again, data = _replay(tmp_path / "again", "bybit", interleaved, extra=("--interval", "100ms"))
    assert _stored(data) == expected and again["pairs"] == summary["pairs"]


def _reconnect_capture(tmp_path: Path, close: bool) -> tuple[Path, float, float, float]:
    """The real linear socket, cut at T; a new socket (new ``conn``) connects at T and starts
    with its own snapshots at T + 2 s (built from the rebuild's books at that instant, as the venue
    sends them), then carries the recording's deltas from there on."""
    records = _raw_jsonl(BYBIT)
    linear = [r for r in records if r.get("conn") == "BYBIT.ws.2"]
    recv = [r for r in linear if r["t"] == "recv"]
    t_cut = recv[len(recv) // 3]["ts"]
    t_snap = t_cut + 2.0
    books = BybitBooks()
    out = [records[0]]  # the header
    for r in linear:
        if r["t"] == "recv" and '"orderbook.' in r["data"][:60] and r["ts"] < t_snap:
            msg = json.loads(r["data"])
            books.frame(_bybit_pair("linear", msg["data"]["s"]), msg)
        if r["ts"] < t_cut:
            out.append(r)
    end = t_cut if close else max(r["ts"] for r in out[1:])  # where the old socket is known gone
    if close:
        out.append({"t": "close", "conn": "BYBIT.ws.2", "ts": t_cut})
    addr = "wss://stream.bybit.com/v5/public/linear"
    out.append({"t": "connect", "conn": "BYBIT.ws.9", "ts": t_cut + 0.5, "addr": addr})
    for pair, (bids, asks, u) in books.books.items():
        symbol = pair.split("-")[0] + "USDT"
        snap = {
            "topic": f"orderbook.200.{symbol}",
            "type": "snapshot",
            "ts": int(t_snap * 1000),
            "data": {
                "s": symbol,
                "b": [[repr(p), repr(q)] for p, q in sorted(bids.items(), reverse=True)],
                "a": [[repr(p), repr(q)] for p, q in sorted(asks.items())],
                "u": u,
                "seq": 1,
            },
        }
        out.append({"t": "recv", "conn": "BYBIT.ws.9", "ts": t_snap, "data": json.dumps(snap)})
    out += [dict(r, conn="BYBIT.ws.9") for r in linear if r["t"] == "recv" and r["ts"] > t_snap]
    path = tmp_path / f"reconnect{int(close)}.jsonl.zst"
    _write_jsonl(path, out)
    return path, end * 1000, (t_cut + 0.5) * 1000, t_snap * 1000


def test_reconnect_serves_the_new_socket_and_never_the_quiet_old_one(tmp_path: Path) -> None:
    for close in (False, True):
        path, end_ms, connect_ms, snap_ms = _reconnect_capture(tmp_path, close)
        summary, data = _replay(tmp_path / str(close), "bybit", path, extra=("--interval", "100ms"))
        # The truth: the one real socket, uncut.
        truth = _bybit_truth([r for r in _raw_jsonl(BYBIT) if r.get("conn") in (None, "BYBIT.ws.2")], 100)
        stored = _stored(data)
        for pair in ("BTC-USDT-PERP", "ETH-USDT-PERP", "SOL-USDT-PERP", "DOGE-USDT-PERP"):
            ticks = {t for p, t in truth if p == pair}
            mine = {t for p, t in stored if p == pair}
            # From the old socket's end (its close record, or its last record: a newer socket carries
            # the pair) to the new socket's snapshot nothing is stored...
            gone = {t for t in ticks if end_ms < t <= connect_ms}
            unsynced = {t for t in ticks if connect_ms < t <= snap_ms}
            assert gone and unsynced and not mine & (gone | unsynced), pair
            # ...and every other tick is, equal to the truth (the new socket's books after it).
            assert mine == {t for t in ticks if t <= end_ms or t > snap_ms} and max(mine) > snap_ms + 10_000
            for t in mine:
                assert stored[(pair, t)] == truth[(pair, t)], (pair, t)
            per = summary["pairs"][pair]
            ended = "socket_closed" if close else "socket_ended"
            assert per["missed_by_cause"] == {ended: len(gone), "not_synced": len(unsynced)}
            assert per["last_stored_tick_ms"] == max(ticks)
        assert len(summary["sockets"]) == 2 and summary["sockets"][0]["closed"] is close


def _ns_lines(records: list[Record]) -> list[bytes]:
    return [b"%d %s\n" % (round(r.recv_ms * 1e6), r.payload) for r in records]


def test_rotated_files_continue_one_socket(tmp_path: Path) -> None:
    """A day's capture rotated at midnight into two files: the second continues the first's socket
    (its books move on), as `cat a b` does; it is not a new socket frozen at the first's last book."""
    records = ns_records()
    lines = _ns_lines(records)
    half = len(lines) // 2
    day1, day2 = tmp_path / "binance-2021-10-11.txt.gz", tmp_path / "binance-2021-10-12.txt.gz"
    day1.write_bytes(gzip.compress(b"".join(lines[:half])))
    day2.write_bytes(gzip.compress(b"".join(lines[half:])))
    summary, data = _replay(tmp_path, "binance", day1, day2, extra=("--interval", "500ms"))
    expected = expected_samples(records, False, interval_ms=500)
    stored = _stored(data)
    assert stored == expected
    second_day = [t for _, t in stored if t > records[half].recv_ms]
    assert len(second_day) > 20
    assert len(summary["sockets"]) == 1 and len(summary["sockets"][0]["inputs"]) == 2
    assert summary["gaps"] == 0 and summary["missed_ticks"] == 0


# --- section 3: time --------------------------------------------------------------------------


def _with_lines(tmp_path: Path, inserts: dict[int, str]) -> Path:
    """BINANCE.ws.1.0 with lines inserted after the given line numbers (its REST file beside it)."""
    lines = SPOT.read_text().splitlines(keepends=True)
    for at in sorted(inserts, reverse=True):
        lines.insert(at + 1, inserts[at] + "\n")
    path = tmp_path / "BINANCE.ws.1.0"
    path.write_text("".join(lines))
    (tmp_path / "BINANCE.http.0.0").write_bytes((SPOT.parent / "BINANCE.http.0.0").read_bytes())
    return path


def test_a_line_an_hour_off_never_moves_the_clock(tmp_path: Path) -> None:
    lines = SPOT.read_text().splitlines()
    mid = len(lines) // 2
    ts = float(lines[mid].split(": ", 1)[0])
    inserts = {
        mid: f"{ts + 3600:.6f}: {{not json, rejected as malformed",  # 1 h ahead
        mid + 10: f"{ts - 3600:.6f}: {lines[mid + 10].split(': ', 1)[1]}",  # 1 h behind, a real (repeated) frame
    }
    summary, data = _replay(tmp_path, "binance", _with_lines(tmp_path, inserts))
    expected = expected_samples(list(read_capture(capture_files(SPOT))), False)
    assert _stored(data) == expected
    assert summary["timestamps_ahead"] == 1 and summary["timestamps_backwards"] == 1
    assert summary["last_tick_ms"] == max(t for _, t in expected)
    assert summary["malformed"] == 1


def test_an_absurd_timestamp_is_skipped_not_sampled_up_to(tmp_path: Path) -> None:
    """99999999999 (year 5138) made the replay sample every tick up to it: 1.3 GB in 60 s."""
    lines = SPOT.read_text().splitlines()
    mid = len(lines) // 2
    path = _with_lines(tmp_path, {mid: f"99999999999: {lines[mid].split(': ', 1)[1]}"})
    summary, data = _replay(tmp_path, "binance", path, timeout=60)
    assert _stored(data) == expected_samples(list(read_capture(capture_files(SPOT))), False)
    assert summary["timestamps_ahead"] == 1


def test_a_socket_silent_past_the_stall_timeout_serves_nothing_until_it_speaks(tmp_path: Path) -> None:
    """The live connector drops a socket silent for 30 s: replay stores no book from it then."""
    lines = [line for line in SPOT.read_text().splitlines() if line.strip()]
    mid = len(lines) // 2
    for i in range(mid + 1, len(lines)):
        ts, frame = lines[i].split(": ", 1)
        lines[i] = f"{float(ts) + 90:.6f}: {frame}"
    path = tmp_path / "BINANCE.ws.1.0"
    path.write_text("\n".join(lines) + "\n")
    (tmp_path / "BINANCE.http.0.0").write_bytes((SPOT.parent / "BINANCE.http.0.0").read_bytes())
    summary, data = _replay(tmp_path, "binance", path)
    silent_from = float(lines[mid].split(": ", 1)[0]) * 1000 + 30_000
    resumed = float(lines[mid + 1].split(": ", 1)[0]) * 1000
    expected = expected_samples(list(read_capture(capture_files(path))), False)
    silent = {key for key in expected if silent_from < key[1] <= resumed}
    assert len(silent) >= 4 * 59
    assert _stored(data) == {k: v for k, v in expected.items() if k not in silent}
    for pair, per in summary["pairs"].items():
        assert per["missed_by_cause"] == {"socket_silent": sum(1 for p, _ in silent if p == pair)}


def test_time_check_dates_bad_records_by_their_neighbours() -> None:
    """The rules on one socket's timestamps (ms): a step back, a lone hour ahead, a first record an
    hour early, a segment that starts with an absurd date."""
    from recorder.replay.timeline import TimeCheck

    base = 1_633_998_512_000.0

    def dated(times: list[float]) -> tuple[list[float], dict[str, int]]:
        counts: dict[str, int] = {}
        check = TimeCheck(counts, base + 86_400_000)
        out = [r for t in times for r in check.push(Record(t, "c", Kind.WS, b"{}"))] + check.finish()
        return [r.recv_ms - base for r in out], counts

    steady = [base + 100 * i for i in range(20)]
    assert dated(steady) == ([100 * i for i in range(20)], {})
    back = steady[:10] + [base - 50_000] + steady[10:]
    assert dated(back) == (
        [100 * i for i in range(10)] + [900] + [100 * i for i in range(10, 20)],
        {"timestamps_backwards": 1},
    )
    ahead = steady[:10] + [base + 3_600_000] + steady[10:]
    assert dated(ahead)[1] == {"timestamps_ahead": 1} and max(dated(ahead)[0]) == 1900
    assert dated(steady + [base + 3_600_000])[0][-1] == 1900  # a last line an hour ahead
    assert dated(steady + [base + 30_000])[0][-1] == 30_000  # a last record after a 28 s silence
    silence = steady + [base + 90_000 + 100 * i for i in range(20)]  # a real silence: believed
    assert dated(silence) == ([t - base for t in silence], {})
    early = [base - 3_600_000] + steady
    assert dated(early) == ([0] + [100 * i for i in range(20)], {"timestamps_backwards": 1})
    absurd = [99_999_999_999_000.0] + steady
    assert dated(absurd) == ([0] + [100 * i for i in range(20)], {"timestamps_ahead": 1})


def test_rotated_json_lines_files_continue_their_sockets(tmp_path: Path) -> None:
    """BYBIT.jsonl.zst split at a moment into two files (each with its header, the second without
    connect records, as a collector's rotation writes them), given in reverse order: both sockets
    go on across the files, each with its own market (the second file alone names none)."""
    records = _raw_jsonl(BYBIT)
    timed = [r for r in records if "ts" in r]
    cut = sorted(r["ts"] for r in timed)[len(timed) // 2]
    first, second = tmp_path / "BYBIT-1.jsonl.zst", tmp_path / "BYBIT-2.jsonl.zst"
    _write_jsonl(first, [records[0]] + [r for r in timed if r["ts"] < cut])
    _write_jsonl(second, [records[0]] + [r for r in timed if r["ts"] >= cut and r["t"] != "connect"])
    summary, data = _replay(tmp_path, "bybit", second, first, extra=("--interval", "100ms"))
    assert _stored(data) == _bybit_truth(records, 100)
    assert [len(s["inputs"]) for s in summary["sockets"]] == [2, 2]
    assert summary["gaps"] == 0 and summary["missed_ticks"] == 0
