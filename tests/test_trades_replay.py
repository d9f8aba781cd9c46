"""`cli.py replay` of the real Binance recordings yields their trades (the recordings carry
``@aggTrade``) and quotes, beside the books, through the live Feed and writer.

Reference: the recording parsed here line by line (``<recv seconds>: <frame>``), independently of
the recorder's readers and Feed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import run_cli, stored_trade_rows

REC = Path(__file__).parent / "data" / "recordings" / "binance"


def _expected(ws: Path, suffix: str) -> list[dict]:
    out = []
    for line in ws.read_text().splitlines():
        ts, sep, body = line.partition(": ")
        if not sep or not body.startswith("{"):
            continue
        msg = json.loads(body)
        data = msg.get("data") or {}
        if data.get("e") != "aggTrade":
            continue
        sym = data["s"]
        quote = next(q for q in ("USDT", "BTC", "ETH", "EUR") if sym.endswith(q))
        out.append(
            {
                "pair": f"{sym[: -len(quote)]}-{quote}{suffix}",
                "trade_id": str(data["a"]),
                "price": float(data["p"]),
                "quantity": float(data["q"]),
                "side": "sell" if data["m"] else "buy",
                "exchange_time": data["T"] * 1000,
                "local_time": float(ts) * 1e6,
            }
        )
    return out


@pytest.mark.parametrize(
    ("venue", "stem", "suffix"),
    [("binance-futures", "BINANCE_FUTURES", "-PERP"), ("binance", "BINANCE", "")],
)
def test_replay_stores_every_recorded_trade_once(tmp_path: Path, venue: str, stem: str, suffix: str) -> None:
    data = tmp_path / "data"
    ws = REC / f"{stem}.ws.1.0"
    res = run_cli(
        "replay", "--venue", venue, "--input", str(ws), "--input", str(REC / f"{stem}.http.0.0"),
        "--data-dir", str(data), "--format", "both", "--session-id", "rp",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    rows = stored_trade_rows(data)
    pairs = set(summary["pairs"])
    want = [w for w in _expected(ws, suffix) if w["pair"] in pairs]  # trades of the pairs replayed
    assert want and summary["trades_written"] == len(want) == len(rows)
    rows.sort(key=lambda r: (r["pair"], r["sequence_number"]))
    for pair in pairs:
        got = [r for r in rows if r["pair"] == pair]
        ref = [w for w in want if w["pair"] == pair]
        assert [r["sequence_number"] for r in got] == list(range(len(got)))
        assert len(got) == len(ref)
        for r, w in zip(got, ref, strict=True):
            assert r["exchange"] == venue and r["session_id"] == "rp"
            for key in ("trade_id", "price", "quantity", "side", "exchange_time"):
                assert r[key] == w[key], (key, r, w)
            assert abs(r["local_time"] - w["local_time"]) <= 2  # µs, from the recorded receive time
    # Aggregate ids are contiguous in these captures: no trade gap.
    assert summary["trade_gaps"] == 0
    assert summary["quotes_written"] > 0 and summary["snapshots_written"] > 0
    # Every quote carries the recorded clock (the first one of a book too, made when its REST
    # snapshot joined), never the wall clock of the replay.
    recorded = [w["local_time"] for w in _expected(ws, suffix)]
    for path in (data / "quotes" / "parquet").rglob("*.parquet"):
        local = pq.read_table(path)["local_time"].cast(pa.int64()).to_pylist()
        assert all(min(recorded) - 60_000_000 <= t <= max(recorded) + 60_000_000 for t in local), path
