"""recorder.dataset on bad input: every wrong argument and every unreadable stored file is one
DatasetError line (or, with on_error="skip", a file left out and listed), never a raw TypeError,
OverflowError or ArrowInvalid."""

from __future__ import annotations

import datetime as dt
import json
import logging
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recorder.dataset import DatasetError, iso, open_dataset, to_ms
from tests.month_data import HOUR_MS, snapshot, write_segment

T0 = to_ms("2026-11-24T00:00:00Z")
PAIRS = ("BTC-USDT", "ETH-USDT")
MAX_DEPTH = 1000  # the README's bound of wide(depth=...): the deepest book a capture stores
ORDER = [("timestamp_ms", "ascending"), ("pair", "ascending"), ("side", "descending"), ("level", "ascending")]


def _write_hours(data: Path, hours: int = 3, formats: tuple[str, ...] = ("parquet", "jsonl")) -> None:
    """One file per hour and format, two pairs, a snapshot a minute."""
    for h in range(hours):
        snaps = [
            snapshot(
                pair, T0 + h * HOUR_MS + m * 60_000, h * 60 + m, 100.0 + h + m / 100 + (50 if pair[0] == "E" else 0)
            )
            for m in range(60)
            for pair in PAIRS
        ]
        write_segment(data, snaps, h, formats)


def _part(data: Path, fmt: str) -> Path:
    (part,) = {p.parent for p in (data / fmt).rglob(f"*.{fmt}")}
    return part


def _reference_parquet(files: list[Path]) -> pa.Table:
    """The rows of these files as plain pyarrow reads them."""
    return pa.concat_tables([pq.read_table(f) for f in files]).sort_by(ORDER)


def _reference_jsonl(files: list[Path]) -> list[tuple[str, int, float]]:
    """(pair, tick, best bid) of every well-formed line, parsed with the json module."""
    out = []
    for f in files:
        for line in f.read_bytes().split(b"\n"):
            try:
                s = json.loads(line)
            except ValueError:
                continue
            if isinstance(s, dict):
                out.append((s["pair"], s["timestamp_ms"], s["bids"][0]["price"]))
    return sorted(out)


def _one_line(exc: pytest.ExceptionInfo[DatasetError]) -> str:
    msg = str(exc.value)
    assert msg and "\n" not in msg and "Traceback" not in msg
    return msg


@pytest.fixture(scope="module")
def hours(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("hours") / "data"
    _write_hours(data)
    return data


# -- arguments ---------------------------------------------------------------------------------


BAD_OPEN: list[tuple[str, dict[str, Any], str]] = [
    ("none", {"location": None}, "invalid location None"),
    ("number", {"location": 123}, "invalid location 123"),
    ("bytes", {"location": b"data"}, "invalid location"),
    ("empty", {"location": ""}, "invalid location ''"),
    ("nul", {"location": "da\x00ta"}, "invalid location"),
    ("format", {"format": "csv"}, "invalid format 'csv'"),
    ("format type", {"format": None}, "invalid format None"),
    ("on_error", {"on_error": "ignore"}, "invalid on_error 'ignore'"),
    ("filesystem", {"filesystem": "local"}, "invalid filesystem 'local'"),
    ("endpoint for a directory", {"endpoint_url": "http://127.0.0.1:9"}, "s3:// locations only"),
    ("endpoint scheme", {"location": "s3://b/p", "endpoint_url": "127.0.0.1:9000"}, "invalid endpoint_url"),
    ("endpoint port", {"location": "s3://b/p", "endpoint_url": "http://h:99999"}, "invalid endpoint_url"),
    ("endpoint type", {"location": "s3://b/p", "endpoint_url": 9000}, "invalid endpoint_url 9000"),
    ("region", {"location": "s3://b/p", "region": "US East!"}, "invalid region"),
    ("bucket", {"location": "s3:///p"}, "invalid S3 URL"),
]


@pytest.mark.parametrize(("kwargs", "match"), [(k, m) for _, k, m in BAD_OPEN], ids=[i for i, _, _ in BAD_OPEN])
def test_open_dataset_arguments_are_checked(hours: Path, kwargs: dict[str, Any], match: str) -> None:
    kwargs = {"location": str(hours), **kwargs}
    with pytest.raises(DatasetError) as exc:
        open_dataset(kwargs.pop("location"), **kwargs)
    assert match in _one_line(exc)


def test_a_malformed_endpoint_in_the_environment_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "minio:9000")
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    with pytest.raises(DatasetError) as exc:
        open_dataset("s3://books/capture")
    assert "invalid AWS_ENDPOINT_URL (environment) 'minio:9000'" in _one_line(exc)


NAN, INF = float("nan"), float("inf")
BAD_CALLS: list[tuple[str, Callable[[Any], Any], str]] = [
    ("start huge", lambda ds: ds.table(start=1e30), "invalid time 1e+30: outside years 1 to 9999"),
    ("start nan", lambda ds: ds.table(start=NAN), "invalid time nan: not a finite number"),
    ("end inf", lambda ds: ds.table(end=INF), "invalid time inf"),
    ("end int huge", lambda ds: ds.table(end=10**20), "outside years 1 to 9999"),
    ("start numpy nat", lambda ds: ds.table(start=np.datetime64("NaT")), "invalid time"),
    ("start list", lambda ds: ds.table(start=[1]), "invalid time [1]"),
    ("start bool", lambda ds: ds.table(start=True), "invalid time True"),
    ("pairs number", lambda ds: ds.table(pairs=123), "invalid pair 123"),
    ("pairs list of numbers", lambda ds: ds.table(pairs=["BTC-USDT", 5]), "invalid pair 5"),
    ("exchange path", lambda ds: ds.table(exchanges="../x"), "invalid exchange '../x'"),
    ("exchange number", lambda ds: ds.table(exchanges=7), "invalid exchange 7"),
    ("session path", lambda ds: ds.table(sessions="a/b"), "invalid session id 'a/b'"),
    ("session dots", lambda ds: ds.table(sessions=[".."]), "invalid session id '..'"),
    ("columns number", lambda ds: ds.table(columns=5), "invalid columns 5"),
    ("columns unknown", lambda ds: ds.table(columns=["pair", "nope"]), "unknown column(s) nope"),
    ("keyword typo", lambda ds: ds.table(pair="BTC-USDT"), "unknown argument(s) pair"),
    ("files time", lambda ds: ds.files(end=-1e300), "invalid time"),
    ("depth text", lambda ds: ds.wide(depth="5"), "invalid depth '5'"),
    ("depth huge", lambda ds: ds.wide(depth=10_000), f"invalid depth 10000: must be between 1 and {MAX_DEPTH}"),
    ("depth zero", lambda ds: ds.wide(depth=0), "invalid depth 0"),
    ("depth float", lambda ds: ds.wide(depth=2.5), "invalid depth 2.5"),
    ("depth bool", lambda ds: ds.wide(depth=True), "invalid depth True"),
    ("pandas depth", lambda ds: ds.to_pandas(depth="5"), "invalid depth '5'"),
    ("polars depth", lambda ds: ds.to_polars(depth=0), "invalid depth 0"),
    ("chunk nan", lambda ds: ds.snapshots(chunk=NAN), "invalid chunk nan"),
    ("chunk inf", lambda ds: ds.snapshots(chunk=INF), "invalid chunk inf"),
    ("chunk negative", lambda ds: ds.snapshots(chunk=-5), "invalid chunk -5: must be positive"),
    ("chunk text", lambda ds: ds.snapshots(chunk="1e400h"), "invalid chunk '1e400h'"),
    ("chunk huge", lambda ds: ds.snapshots(chunk="99999999999999d"), "longer than the whole calendar"),
    ("only_valid", lambda ds: ds.snapshots(only_valid="yes"), "invalid only_valid 'yes'"),
    ("asof nan", lambda ds: ds.asof(NAN, exchange="binance", pair="BTC-USDT"), "invalid time nan"),
    ("asof exchange", lambda ds: ds.asof(T0, exchange=None, pair="BTC-USDT"), "invalid exchange None"),
    ("asof exchanges", lambda ds: ds.asof(T0, exchange=["binance"], pair="BTC-USDT"), "give one name"),
    ("asof pair", lambda ds: ds.asof(T0, exchange="binance", pair=123), "invalid pair 123"),
    ("asof session", lambda ds: ds.asof(T0, exchange="binance", pair="BTC-USDT", session="a/b"), "invalid session"),
    ("lookback negative", lambda ds: ds.asof(T0, exchange="binance", pair="BTC-USDT", lookback=-1), "lookback -1"),
    ("lookback huge", lambda ds: ds.asof(T0, exchange="binance", pair="BTC-USDT", lookback=1e30), "invalid lookback"),
    ("lookback text", lambda ds: ds.asof(T0, exchange="binance", pair="BTC-USDT", lookback="a week"), "lookback"),
    ("to_ms", lambda ds: to_ms(dt.timedelta(1)), "invalid time"),
    ("iso", lambda ds: iso(1e30), "invalid time"),
]


@pytest.mark.parametrize(("call", "match"), [(c, m) for _, c, m in BAD_CALLS], ids=[i for i, _, _ in BAD_CALLS])
@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_every_reader_argument_is_checked(hours: Path, fmt: str, call: Callable[[Any], Any], match: str) -> None:
    ds = open_dataset(hours, format=fmt)
    with pytest.raises(DatasetError) as exc:
        call(ds)  # snapshots() checks its arguments when called, before the first snapshot
    assert match in _one_line(exc)


def test_good_arguments_still_read_the_same_rows(hours: Path) -> None:
    ds = open_dataset(hours)
    ref = _reference_parquet(sorted(_part(hours, "parquet").glob("*.parquet")))
    one_hour = ref.filter(pa.compute.less(ref["timestamp_ms"], T0 + HOUR_MS))
    # names are normalised like pairs are; times as numpy / float / text agree
    assert ds.table(exchanges=" BINANCE ", pairs=["btc/usdt", "ETH-USDT"]).sort_by(ORDER).equals(ref)
    assert ds.table(start=np.int64(T0), end=float(T0 + HOUR_MS)).sort_by(ORDER).equals(one_hour)
    assert ds.table(columns="pair", end="2026-11-24T01:00Z").num_rows == one_hour.num_rows
    # the deepest documented depth is allowed (four columns a level plus the snapshot's own)
    wide = ds.wide(depth=MAX_DEPTH, end=T0 + 60_000)
    assert wide.num_rows == 2 and f"ask_qty_{MAX_DEPTH - 1}" in wide.column_names
    assert wide.column("bid_px_0").to_pylist() == [s.bids[0].price for s in _first_tick_snaps()]
    # a lookback of centuries ends (twice as far back each round) and finds the last valid book
    at = ds.asof(T0 + 10 * HOUR_MS, exchange="binance", pair="BTC-USDT", lookback="36500d")
    assert at is not None and at.timestamp_ms == T0 + 3 * HOUR_MS - 60_000
    assert ds.asof(T0 - 1, exchange="binance", pair="BTC-USDT", lookback="36500d") is None


def _first_tick_snaps() -> list[Any]:
    return [snapshot(pair, T0, 0, 100.0 + (50 if pair[0] == "E" else 0)) for pair in PAIRS]


# -- unreadable files ----------------------------------------------------------------------------


def _random_bytes(path: Path) -> None:
    path.write_bytes(random.Random(3).randbytes(4000))


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _truncated(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _footer_cut(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-3])  # the last bytes of the footer


def _cut_last_line(path: Path) -> None:
    """A crash mid-write: the last line is half a JSON object, no newline."""
    body = path.read_bytes()
    last = body.rstrip(b"\n").rsplit(b"\n", 1)[-1]
    path.write_bytes(body[: len(body) - 1 - len(last) // 2])


def _garbage_line(path: Path) -> None:
    lines = path.read_bytes().split(b"\n")
    lines.insert(5, b"\x00\xff not json")
    path.write_bytes(b"\n".join(lines))


CORRUPT = {
    "parquet": {"random bytes": _random_bytes, "empty": _empty, "truncated": _truncated, "footer cut": _footer_cut},
    "jsonl": {
        "random bytes": _random_bytes,
        "empty": _empty,
        "last line cut": _cut_last_line,
        "garbage line": _garbage_line,
    },
}
CASES = [(fmt, name) for fmt, kinds in CORRUPT.items() for name in kinds]


@pytest.mark.parametrize(("fmt", "kind"), CASES, ids=[f"{f}-{k}" for f, k in CASES])
def test_an_unreadable_file_is_named_or_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, fmt: str, kind: str
) -> None:
    data = tmp_path / "data"
    _write_hours(data, formats=(fmt,))
    files = sorted(_part(data, fmt).glob(f"*.{fmt}"))
    bad = files[1]
    intact = [f for f in files if f != bad]
    if fmt == "parquet":
        # a file the writer never finished (but a stray file of another layout is the same case)
        CORRUPT[fmt][kind](bad)
        expected: Any = _reference_parquet(intact)
    else:
        CORRUPT[fmt][kind](bad)
        expected = _reference_jsonl(files)  # the good lines of the damaged file count too

    if kind == "empty" and fmt == "jsonl":
        # an empty JSONL file holds no snapshot: nothing to name
        ds = open_dataset(data)
        assert _jsonl_rows(ds) == expected and ds.skipped == {}
        return

    ds = open_dataset(data)
    with pytest.raises(DatasetError) as exc:
        ds.table()
    assert _one_line(exc).startswith(f"cannot read {bad}: ")
    with pytest.raises(DatasetError, match=f"cannot read {bad}"):
        list(ds.snapshots(chunk="30m"))

    caplog.set_level(logging.WARNING, logger="recorder.dataset")
    skip = open_dataset(data, on_error="skip")
    if fmt == "parquet":
        assert skip.table().sort_by(ORDER).equals(expected)
    else:
        assert _jsonl_rows(skip) == expected
    assert list(skip.skipped) == [str(bad)] and "\n" not in skip.skipped[str(bad)]
    # every read method skips it the same way; the warning is logged once per file
    assert skip.wide(depth=1).num_rows == len({(p, t) for p, t, _ in _rows_of(expected, fmt)})
    assert len(list(skip.snapshots(chunk="30m"))) == skip.wide(depth=1).num_rows
    warnings = [r for r in caplog.records if "dataset_file_skipped" in r.getMessage()]
    assert len(warnings) == 1 and str(bad) in warnings[0].getMessage()


def _jsonl_rows(ds: Any) -> list[tuple[str, int, float]]:
    return sorted((s.pair, s.timestamp_ms, float(s.bids[0, 0])) for s in ds.snapshots(chunk="1d"))


def _rows_of(expected: Any, fmt: str) -> list[tuple[str, int, float]]:
    if fmt == "jsonl":
        return expected
    best = expected.filter(
        pa.compute.and_(pa.compute.equal(expected["side"], "bid"), pa.compute.equal(expected["level"], 0))
    )
    return list(zip(best["pair"].to_pylist(), best["timestamp_ms"].to_pylist(), best["price"].to_pylist(), strict=True))


def test_an_unreadable_file_outside_the_selection_is_not_opened(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _write_hours(data, formats=("parquet",))
    files = sorted(_part(data, "parquet").glob("*.parquet"))
    _random_bytes(files[2])  # the third hour
    ds = open_dataset(data)
    first_hour = ds.table(end=T0 + HOUR_MS)  # files named after a later first tick are not read
    assert first_hour.sort_by(ORDER).equals(_reference_parquet(files[:1]))
    assert ds.skipped == {} and first_hour.num_rows == 60 * 2 * 4  # two levels a side
