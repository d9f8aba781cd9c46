"""The capture readers on the real recordings in tests/data/recordings and on converted copies."""

from __future__ import annotations

import gzip
import io
import json
from collections import Counter
from pathlib import Path

import pytest
import zstandard

from recorder.replay.readers import (
    CaptureFormatError,
    CaptureReader,
    Kind,
    Record,
    capture_files,
    conn_id_for,
    read_capture,
)

RECORDINGS = Path(__file__).resolve().parent / "data" / "recordings"
BINANCE_WS = RECORDINGS / "binance" / "BINANCE.ws.1.0"
BINANCE_HTTP = RECORDINGS / "binance" / "BINANCE.http.0.0"


def _text_lines(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line.strip()]


def test_text_capture_ws_file_yields_every_received_frame() -> None:
    records = list(CaptureReader(BINANCE_WS, strict=True))
    lines = _text_lines(BINANCE_WS)
    frames = [r for r in records if r.kind is Kind.WS]
    assert len(frames) == len(lines) - 1  # the first line is the URL connected to
    assert records[0].kind is Kind.CONNECT
    assert records[0].url is not None and records[0].url.startswith("wss://stream.binance.com:9443/stream?streams=")
    assert records[0].recv_ms == pytest.approx(1633998511159.679)
    ts, _, frame = lines[1].partition(": ")
    assert frames[0].payload == frame.encode()
    assert frames[0].recv_ms == pytest.approx(float(ts) * 1000.0)
    assert {r.conn for r in records} == {"BINANCE.ws.1"}
    assert all(json.loads(r.payload)["stream"] for r in frames)
    assert sum(b'"depthUpdate"' in r.payload for r in frames) == 177  # the README's diff count


def test_text_capture_http_file_names_each_snapshot_url() -> None:
    records = list(CaptureReader(BINANCE_HTTP, strict=True))
    assert [r.kind for r in records] == [Kind.HTTP] * 4
    symbols = [r.url.split("symbol=")[1].split("&")[0] for r in records if r.url]
    assert symbols == ["NKNUSDT", "BLZETH", "LRCBTC", "RUNEEUR"]
    for r in records:
        assert json.loads(r.payload)["lastUpdateId"] > 0
    assert records[0].recv_ms == pytest.approx(1633998512320.639)


def test_text_capture_sent_frames_and_configuration_lines() -> None:
    kraken = list(CaptureReader(RECORDINGS / "kraken" / "KRAKEN.ws.50.0", strict=True))
    sent = [r for r in kraken if r.kind is Kind.SENT]
    assert len(sent) == 1 and json.loads(sent[0].payload)["event"] == "subscribe"
    assert sent[0].url == "wss://ws.kraken.com"
    # KRAKEN.0 holds one HTTP response and a configuration line that is not a record.
    rest = list(CaptureReader(RECORDINGS / "kraken" / "KRAKEN.0", strict=True))
    assert [r.kind for r in rest] == [Kind.HTTP]
    assert "XXBTZUSD" in json.loads(rest[0].payload)["result"]


def test_jsonl_zst_matches_an_independent_decode() -> None:
    path = RECORDINGS / "bybit" / "BYBIT.jsonl.zst"
    raw = zstandard.ZstdDecompressor().stream_reader(path.open("rb")).read().decode()
    objs = [json.loads(line) for line in raw.splitlines() if line.strip()]
    expected = Counter((o["conn"], o["t"]) for o in objs if o["t"] != "header")
    reader = CaptureReader(path, strict=True)
    assert reader.format == "jsonl"
    records = list(reader)
    names = {Kind.WS: "recv", Kind.SENT: "send", Kind.HTTP: "http", Kind.CONNECT: "connect"}
    assert Counter((r.conn, names[r.kind]) for r in records) == expected
    # Two sockets subscribe to the same symbol: they must stay apart.
    assert {r.conn for r in records if r.kind is Kind.WS} == {"BYBIT.ws.2", "BYBIT.ws.3"}
    recv = [o for o in objs if o["t"] == "recv"]
    frames = [r for r in records if r.kind is Kind.WS]
    assert [r.payload.decode() for r in frames] == [o["data"] for o in recv]
    assert [r.recv_ms for r in frames] == [o["ts"] * 1000.0 for o in recv]
    http = [r for r in records if r.kind is Kind.HTTP]
    assert all(r.url and r.url.startswith("https://api.bybit.com/v5/market/instruments-info") for r in http)


def test_jsonl_zst_coinbase() -> None:
    records = list(CaptureReader(RECORDINGS / "coinbase" / "COINBASE.jsonl.zst", strict=True))
    frames = [r for r in records if r.kind is Kind.WS]
    assert len(frames) == 1030
    l2 = [json.loads(r.payload) for r in frames if b'"l2_data"' in r.payload]
    assert l2 and all("sequence_num" in m for m in l2)


def _as_ns_capture(records: list[Record]) -> bytes:
    """The Binance recording rewritten in the third format: snapshots inline, bare, just before
    the diffs of their symbol (as tools that record this way write them)."""
    out = io.BytesIO()
    for r in records:
        if r.kind in (Kind.WS, Kind.HTTP):
            out.write(b"%d %s\n" % (round(r.recv_ms * 1e6), r.payload))
    return out.getvalue()


@pytest.mark.parametrize("compress", [False, True])
def test_ns_format_plain_and_gzip_with_inline_snapshots(tmp_path: Path, compress: bool) -> None:
    original = [r for r in read_capture(capture_files(BINANCE_WS)) if r.kind is not Kind.CONNECT]
    # Move each snapshot to just before the first diff of its symbol that follows it.
    snapshots = [r for r in original if r.kind is Kind.HTTP]
    frames = [r for r in original if r.kind is Kind.WS]
    ordered: list[Record] = []
    waiting = {r.url.split("symbol=")[1].split("&")[0].lower(): r for r in snapshots if r.url}
    for f in frames:
        stream = json.loads(f.payload)["stream"]
        symbol = stream.split("@")[0]
        if "@depth" in stream and symbol in waiting:
            ordered.append(waiting.pop(symbol))
        ordered.append(f)
    data = _as_ns_capture(ordered)
    path = tmp_path / ("capture.txt.gz" if compress else "capture.txt")
    path.write_bytes(gzip.compress(data) if compress else data)

    reader = CaptureReader(path, strict=True)
    assert reader.format == "ns"
    got = list(reader)
    assert [r.payload for r in got] == [r.payload for r in ordered]
    assert [r.recv_ms for r in got] == pytest.approx([r.recv_ms for r in ordered], abs=1e-3)
    inline = [r for r in got if r.kind is Kind.HTTP]
    assert [r.url for r in inline] == [f"inline:depth?symbol={s}" for s in ("NKNUSDT", "BLZETH", "LRCBTC", "RUNEEUR")]
    assert all(r.kind is Kind.WS for r in got if not r.payload.startswith(b'{"lastUpdateId"'))
    assert {r.conn for r in got} == {"capture"}


def test_truncated_last_line_is_counted_or_raised(tmp_path: Path) -> None:
    lines = BINANCE_WS.read_bytes().splitlines(keepends=True)[:10]
    path = tmp_path / "CUT.ws.1.0"
    path.write_bytes(b"".join(lines) + b"16339985")  # a crash mid-write
    reader = CaptureReader(path)
    assert sum(r.kind is Kind.WS for r in reader) == 9
    assert reader.bad_lines == 1
    with pytest.raises(CaptureFormatError, match=r"CUT\.ws\.1\.0:11: not a text-capture line"):
        list(CaptureReader(path, strict=True))


def test_bad_jsonl_record_and_unreadable_files(tmp_path: Path) -> None:
    path = tmp_path / "X.jsonl.zst"
    good = json.dumps({"t": "recv", "conn": "X.ws.1", "ts": 1.5, "data": "{}"})
    path.write_bytes(zstandard.ZstdCompressor().compress(f'{good}\n{{"t": "recv"}}\n'.encode()))
    reader = CaptureReader(path)
    assert [(r.recv_ms, r.conn, r.payload) for r in reader] == [(1500.0, "X.ws.1", b"{}")]
    assert reader.bad_lines == 1
    with pytest.raises(CaptureFormatError, match=r"X\.jsonl\.zst:2: not a capture record"):
        list(CaptureReader(path, strict=True))
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"\n\n")
    with pytest.raises(CaptureFormatError, match="empty capture"):
        CaptureReader(empty)
    broken = tmp_path / "broken.gz"
    broken.write_bytes(b"\x1f\x8b\x08\x00garbage")
    with pytest.raises(CaptureFormatError, match="cannot read"):
        CaptureReader(broken)


def test_capture_files_and_merge_order() -> None:
    assert capture_files(BINANCE_WS) == [BINANCE_HTTP, BINANCE_WS]
    coinbase = RECORDINGS / "coinbase" / "COINBASE.jsonl.zst"
    assert capture_files(coinbase) == [coinbase]
    merged = list(read_capture(capture_files(BINANCE_WS)))
    assert len(merged) == 4 + 266
    times = [r.recv_ms for r in merged]
    assert times == sorted(times)
    assert conn_id_for(Path("BINANCE_FUTURES.http.0.0")) == "BINANCE_FUTURES.http.0"
    assert conn_id_for(Path("feed.txt.gz")) == "feed"
