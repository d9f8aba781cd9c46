"""Atomic local files: prepare -> publish, idempotence, temp cleanup, clear errors."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recorder.sinks import (
    SinkError,
    clean_temp_files,
    prepare_jsonl,
    prepare_parquet,
    publish,
    temp_path_for,
)


def test_prepare_then_publish_parquet_and_jsonl(tmp_path: Path) -> None:
    table = pa.table({"pair": ["A", "B", "A"], "x": [1.0, 2.0, 3.0]})
    final = tmp_path / "parquet" / "exchange=x" / "date=2024-01-01" / "s-1-000000.parquet"
    prepared = prepare_parquet(table, final)
    assert Path(prepared.tmp_path).name == ".s-1-000000.parquet.tmp"
    assert not final.exists() and prepared.rows == 3 and prepared.size_bytes > 0
    assert pq.ParquetFile(prepared.tmp_path).metadata.row_group(0).column(0).compression == "ZSTD"
    publish(prepared)
    assert pq.read_table(final).equals(table)
    publish(prepared)  # idempotent: already published

    jfinal = tmp_path / "jsonl" / "s-1-000000.jsonl"
    pj = prepare_jsonl(b'{"a":1}\n{"a":2}\n', jfinal)
    assert pj.rows == 2
    publish(pj)
    assert jfinal.read_bytes() == b'{"a":1}\n{"a":2}\n'
    assert not any(p.name.startswith(".") for p in tmp_path.rglob("*"))


def test_publish_without_any_file_raises(tmp_path: Path) -> None:
    pj = prepare_jsonl(b"x\n", tmp_path / "a.jsonl")
    os.unlink(pj.tmp_path)
    with pytest.raises(SinkError) as exc:
        publish(pj)
    assert exc.value.filename == str(tmp_path / "a.jsonl")


def test_unwritable_directory_is_a_clear_oserror(tmp_path: Path) -> None:
    (tmp_path / "parquet").write_text("in the way")
    final = tmp_path / "parquet" / "exchange=x" / "f.parquet"
    with pytest.raises(OSError) as exc:
        prepare_parquet(pa.table({"x": [1]}), final)
    assert isinstance(exc.value, SinkError)
    assert "parquet" in str(exc.value) and exc.value.errno is not None
    assert not list(tmp_path.rglob(".*.tmp"))


def test_clean_temp_files_only_touches_that_session(tmp_path: Path) -> None:
    d = tmp_path / "parquet" / "exchange=x" / "date=2024-01-01"
    d.mkdir(parents=True)
    names = {
        "mine": temp_path_for(d / "sess-1700000000000-000001.parquet"),
        "mine_jsonl": temp_path_for(d / "sess-1700000000000-000002.jsonl"),
        "other_prefix": temp_path_for(d / "sess-b-1700000000000-000001.parquet"),
        "other_numeric": temp_path_for(d / "sess-1-1700000000000-000001.parquet"),
        "final": d / "sess-1700000000000-000001.parquet",
    }
    for p in names.values():
        p.write_bytes(b"x")
    removed = clean_temp_files(tmp_path, "sess")
    assert sorted(removed) == sorted([names["mine"], names["mine_jsonl"]])
    assert names["other_prefix"].exists() and names["other_numeric"].exists() and names["final"].exists()
