"""`cli.py replay` on inputs that must not fail silently: a gzip capture cut mid-stream, a Binance
capture without its REST snapshots, a Binance COIN-M capture. Built from the real recordings; the
stored books are checked against the rebuild in tests/test_replay.py (plain dicts)."""

from __future__ import annotations

import gzip
import json
import zlib
from pathlib import Path

import zstandard

from recorder.replay.readers import Kind, Record
from tests.conftest import run_cli
from tests.test_replay import RECORDINGS, SPOT, _replay, _stored, expected_samples, ns_records
from tests.test_replay_timeline import _ns_lines

FUTURES = RECORDINGS / "BINANCE_FUTURES.ws.1.0"


def _one_line_error(res: object, *needles: str) -> str:
    assert res.returncode == 2, (res.returncode, res.stdout[-500:], res.stderr[-2000:])  # type: ignore[attr-defined]
    err = res.stderr.strip()  # type: ignore[attr-defined]
    assert len(err.splitlines()) == 1 and err.startswith("Error: ") and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
    return err


def test_gzip_capture_cut_mid_stream_is_read_up_to_the_cut(tmp_path: Path) -> None:
    records = ns_records()
    whole = gzip.compress(b"".join(_ns_lines(records)))
    cut = whole[: len(whole) * 3 // 5]
    path = tmp_path / "binance-cut.txt.gz"
    path.write_bytes(cut)
    # What survives the cut, decompressed here: every complete line, and one partial line.
    text = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(cut)
    complete = text.count(b"\n")
    assert 20 < complete < len(records) and not text.endswith(b"\n")
    summary, data = _replay(tmp_path, "binance", path, extra=("--interval", "500ms"))
    kept = records[:complete]
    assert _stored(data) == expected_samples(kept, False, interval_ms=500)
    assert summary["bad_lines"] == 1 and summary["truncated_inputs"] == [str(path)]
    assert summary["records"] == complete


def test_zstd_capture_cut_mid_frame_is_read_up_to_the_cut(tmp_path: Path) -> None:
    """A collector that flushes a zstd frame every 40 lines, killed while writing one."""
    records = ns_records()
    lines = _ns_lines(records)
    frames = [zstandard.ZstdCompressor().compress(b"".join(lines[i : i + 40])) for i in range(0, len(lines), 40)]
    whole = len(frames) // 2
    path = tmp_path / "binance-cut.txt.zst"
    path.write_bytes(b"".join(frames[:whole]) + frames[whole][: len(frames[whole]) // 2])
    summary, data = _replay(tmp_path, "binance", path, extra=("--interval", "500ms"))
    kept = records[: whole * 40]  # a zstd block is decoded whole or not at all
    assert _stored(data) == expected_samples(kept, False, interval_ms=500)
    assert summary["records"] == len(kept) and summary["truncated_inputs"] == [str(path)]


def test_binance_capture_without_its_rest_snapshots_says_so(tmp_path: Path) -> None:
    alone = tmp_path / "BINANCE.ws.1.0"
    alone.write_bytes(SPOT.read_bytes())  # no BINANCE.http.* beside it
    data = tmp_path / "data"
    res = run_cli("replay", "--venue", "binance", "--input", str(alone), "--data-dir", str(data))
    _one_line_error(res, "no REST depth snapshot", "NAME.http.*")
    assert not list(data.rglob("*.jsonl")) and not list(data.rglob("*.parquet"))


def test_a_capture_whose_books_never_sync_stores_nothing_and_says_so(tmp_path: Path) -> None:
    """REST snapshots present, but none joins its diffs (all taken before the recorded diffs)."""
    records = [r for r in ns_records() if r.kind is not Kind.HTTP]
    first = records[0].recv_ms
    stale = [
        Record(first - 1, "x", Kind.HTTP, json.dumps({"lastUpdateId": 1, "bids": [], "asks": []}).encode())
    ]  # an inline snapshot older than every diff
    path = tmp_path / "stale.txt"
    path.write_bytes(b"".join(_ns_lines(stale + records)))
    res = run_cli("replay", "--venue", "binance", "--input", str(path), "--data-dir", str(tmp_path / "d"))
    _one_line_error(res, "nothing stored")


def test_binance_coin_m_capture_is_named_unsupported(tmp_path: Path) -> None:
    """The real USD-M frames dressed as COIN-M (dstream / dapi, ``<COIN>USD_PERP`` symbols)."""

    def coin_m(text: str) -> str:
        for sym in ("SUSHI", "AKRO", "KEEP", "CTK"):
            text = text.replace(f"{sym}USDT", f"{sym}USD_PERP").replace(f"{sym.lower()}usdt", f"{sym.lower()}usd_perp")
        return text.replace("fstream.binance.com", "dstream.binance.com").replace("fapi", "dapi")

    ws = tmp_path / "BINANCE_FUTURES.ws.1.0"
    ws.write_text(coin_m(FUTURES.read_text()))
    (tmp_path / "BINANCE_FUTURES.http.0.0").write_text(coin_m((RECORDINGS / "BINANCE_FUTURES.http.0.0").read_text()))
    assert ws.read_text().count('"e":"depthUpdate"') == 764
    for venue in ("binance-futures", "binance"):
        res = run_cli("replay", "--venue", venue, "--input", str(ws), "--data-dir", str(tmp_path / "d"))
        _one_line_error(res, "COIN-M", "not supported")
