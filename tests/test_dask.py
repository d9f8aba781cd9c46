"""``Dataset.to_dask`` on a ``dask.distributed`` cluster of worker processes, over a dataset on moto's
S3 server: the same rows as ``table()`` and the same per-pair daily statistics as one process."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from recorder.dataset import DatasetError, open_dataset
from tests.month_data import write_month
from tests.s3_support import isolate_aws_env
from tests.test_s3 import MotoS3

dd = pytest.importorskip("dask.dataframe", reason="pip install -e '.[fleet]'")
distributed = pytest.importorskip("distributed", reason="pip install -e '.[fleet]'")

DAY_MS = 86_400_000
START_MS = 1_767_225_600_000  # 2026-01-01T00:00Z
FILES = 3 * 24  # write_month: one file per hour per format


@pytest.fixture
def s3_data(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """Three days of two pairs uploaded to a bucket on moto's server; (s3 url, endpoint)."""
    server = MotoS3()
    # Set before the cluster starts: its worker processes inherit the environment, so they find the
    # endpoint and the throwaway credentials through the AWS chain like the test process.
    isolate_aws_env(monkeypatch, tmp_path, "AKIADASKTEST00000001", "dask-test-secret", AWS_ENDPOINT_URL=server.url)
    server.start()
    data = tmp_path / "data"
    assert write_month(data, START_MS, 3, step_ms=120_000) == FILES
    bucket = server.create_bucket()
    client = server.client()
    for path in data.rglob("*"):
        if path.is_file():
            client.upload_file(str(path), bucket, f"hist/{path.relative_to(data).as_posix()}")
    yield f"s3://{bucket}/hist", server.url
    server.stop()


def _daily_stats(frame: pd.DataFrame) -> pd.DataFrame:
    """Per pair and UTC day: snapshot count, mean mid, spread quantiles (plain pandas)."""
    frame = pd.DataFrame(
        {
            "pair": frame["pair"].astype(object),
            "day": frame["timestamp_ms"].astype("int64") // DAY_MS,
            "mid": frame["mid"].astype("float64"),
            "spread": frame["spread"].astype("float64"),
        }
    )
    g = frame.groupby(["pair", "day"])
    out = pd.DataFrame(
        {
            "count": g.size(),
            "mean_mid": g["mid"].mean(),
            "spread_p50": g["spread"].quantile(0.5),
            "spread_p90": g["spread"].quantile(0.9),
        }
    )
    return out.astype("float64").sort_index()


def test_to_dask_on_a_local_cluster_equals_one_process(s3_data: tuple[str, str]) -> None:
    url, endpoint = s3_data
    ds = open_dataset(url, endpoint_url=endpoint)

    # Long form: one partition per file, the same rows as table().
    frame = ds.to_dask()
    assert frame.npartitions == FILES == len(ds.files())
    # Same pruning as table(): one day and one pair reads that day's 24 files only.
    sel = {"pairs": "ETH-USDT", "start": START_MS + DAY_MS, "end": START_MS + 2 * DAY_MS}
    assert ds.to_dask(**sel).npartitions == 24

    with (
        distributed.LocalCluster(n_workers=3, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        distributed.Client(cluster) as client,
    ):
        pids = set(client.run(os.getpid).values())
        assert len(pids) == 3 and os.getpid() not in pids  # worker processes, not threads of ours
        long = frame.compute()
        one_day = ds.to_dask(columns=["pair", "timestamp_ms", "price"], **sel).compute()
        wide = ds.to_dask(depth=1).compute()
        # Per-pair daily statistics computed on the workers: partial aggregates combined by Dask,
        # spread quantiles by a groupby-apply after a shuffle.
        w = ds.to_dask(depth=1)
        w = w.assign(day=w["timestamp_ms"] // DAY_MS, spread=w["spread"].astype("float64"))
        on_cluster = w.groupby(["pair", "day"]).agg(count=("mid", "size"), mean_mid=("mid", "mean")).compute()
        for q in (0.5, 0.9):
            quantile = w.groupby(["pair", "day"])["spread"].apply(lambda s, q=q: s.quantile(q), meta=("spread", "f8"))
            on_cluster[f"spread_p{round(q * 100)}"] = quantile.compute()

    expected = ds.table()
    got = pa.Table.from_pandas(long, preserve_index=False).cast(expected.schema)
    keys = [("timestamp_ms", "ascending"), ("pair", "ascending"), ("side", "ascending"), ("level", "ascending")]
    assert got.sort_by(keys).equals(expected.sort_by(keys))
    assert len(long) == expected.num_rows > 0

    ref_day = ds.table(columns=["pair", "timestamp_ms", "price"], **sel).to_pandas()
    assert sorted(map(tuple, one_day.astype(object).values.tolist())) == sorted(
        map(tuple, ref_day.astype(object).values.tolist())
    )
    assert set(one_day["pair"]) == {"ETH-USDT"}

    one_process = _daily_stats(ds.wide(depth=1).to_pandas())
    assert len(one_process) == 2 * 3  # two pairs, three days
    pd.testing.assert_frame_equal(_daily_stats(wide), one_process, check_index_type=False)
    on_cluster = on_cluster.reset_index().astype({"pair": object, "day": "int64"}).set_index(["pair", "day"])
    on_cluster = on_cluster.astype("float64").sort_index()
    pd.testing.assert_frame_equal(on_cluster, one_process, check_index_type=False)


def test_to_dask_bad_arguments_and_an_empty_selection(tmp_path: Path) -> None:
    write_month(tmp_path, START_MS, 1, step_ms=600_000)
    ds = open_dataset(str(tmp_path))
    with pytest.raises(DatasetError, match="not both"):
        ds.to_dask(columns=["pair"], depth=2)
    with pytest.raises(DatasetError):
        ds.to_dask(columns=["nope"])
    empty = ds.to_dask(pairs="SOL-USDT", start=START_MS + 10 * DAY_MS)
    assert empty.npartitions == 1 and len(empty.compute()) == 0
    assert list(empty.columns) == ds.table().column_names
