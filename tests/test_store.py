"""The SQLite store: round trips, uniqueness of campaign items, concurrent writers, export."""

from __future__ import annotations

import csv
import multiprocessing as mp
import sqlite3
import threading

import pytest

from edgecost.errors import StoreError, UsageError
from edgecost.records import KernelRecord, LatencyStats, Measurement, ModelGraph, Target
from edgecost.store import Store, export


def _graph(tag: str = "a") -> ModelGraph:
    k = KernelRecord(name="conv", op_type="Conv", input_shapes=((1, 3, 8, 8),), output_shapes=((1, 4, 8, 8),),
                     flops=1000, params=108)
    return ModelGraph(content_hash=f"hash-{tag}", format="onnx", kernels=(k,), inputs={"x": (1, 3, 8, 8)},
                      outputs={"y": (1, 4, 8, 8)}, source=f"{tag}.onnx")


def _meas(model_hash: str, target: Target, median: float = 1.0) -> Measurement:
    stats = LatencyStats(n=10, median_ms=median, p10_ms=median * 0.9, p90_ms=median * 1.1, mean_ms=median,
                         std_ms=0.01, min_ms=median * 0.8, max_ms=median * 1.3, p95_ms=median * 1.2,
                         p99_ms=median * 1.25)
    return Measurement(model_hash=model_hash, target=target, stats=stats, runtime_version="1.0",
                       agent_version="0.1.0", measured_at="2026-01-01T00:00:00+00:00",
                       node_profile=({"name": "conv", "median_us": 900.0},),
                       optimized_nodes=({"name": "conv", "op_type": "FusedConv"},))


T = Target("local", "onnxruntime", 1)


def test_round_trip(tmp_path):
    st = Store(tmp_path / "s.sqlite")
    st.put_model(_graph(), family="resnet", spec={"a": 1})
    mid = st.add_measurement(_meas("hash-a", T, 2.5))
    assert mid is not None
    [row] = st.measurements(T)
    assert row.measurement.stats.median_ms == 2.5
    assert row.measurement.node_profile[0]["median_us"] == 900.0
    assert st.model("hash-a").family == "resnet"
    assert st.model_graph("hash-a").kernels[0].flops == 1000
    assert st.targets() == [T]


def test_model_put_is_idempotent_and_keeps_family(tmp_path):
    st = Store(tmp_path / "s.sqlite")
    st.put_model(_graph(), family="resnet")
    st.put_model(_graph(), family=None)
    assert len(st.models()) == 1
    assert st.model("hash-a").family == "resnet"


def test_campaign_items_are_unique(tmp_path):
    st = Store(tmp_path / "s.sqlite")
    st.put_model(_graph())
    cid = st.create_campaign(T, 0, {})
    assert st.add_measurement(_meas("hash-a", T), campaign_id=cid, campaign_item="0:x") is not None
    assert st.add_measurement(_meas("hash-a", T), campaign_id=cid, campaign_item="0:x") is None
    assert st.add_failure("hash-a", T, "crash", "boom", campaign_id=cid, campaign_item="0:x") is None
    assert st.add_failure("hash-a", T, "crash", "boom", campaign_id=cid, campaign_item="1:y") is not None
    assert st.campaign_items_done(cid) == {"0:x", "1:y"}
    c = st.campaign(cid)
    assert (c["measured_ok"], c["measured_failed"]) == (1, 1)


def test_failed_write_rolls_back(tmp_path):
    st = Store(tmp_path / "s.sqlite")
    # A measurement for an unknown model violates the foreign key: nothing is written.
    with pytest.raises(StoreError):
        st.add_measurement(_meas("nope", T))
    assert st.count_measurements() == 0


def test_corrupt_store_file_is_a_clear_error(tmp_path):
    p = tmp_path / "s.sqlite"
    p.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="cannot open the measurement store"):
        Store(p)


def test_newer_schema_refused(tmp_path):
    p = tmp_path / "s.sqlite"
    Store(p).close()
    con = sqlite3.connect(p)
    con.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    con.commit()
    con.close()
    with pytest.raises(StoreError, match="newer edgecost"):
        Store(p)


def _writer(path: str, start: int, n: int) -> None:
    st = Store(path)
    cid = st.create_campaign(Target("dev", "onnxruntime", 1), 0, {})
    for i in range(start, start + n):
        st.put_model(_graph(str(i)))
        st.add_measurement(_meas(f"hash-{i}", Target("dev", "onnxruntime", 1)), campaign_id=cid,
                           campaign_item=str(i))


def test_concurrent_processes_and_threads(tmp_path):
    path = str(tmp_path / "s.sqlite")
    Store(path).close()
    procs = [mp.get_context("spawn").Process(target=_writer, args=(path, k * 100, 40)) for k in range(2)]
    threads = [threading.Thread(target=_writer, args=(path, 1000 + k * 100, 40)) for k in range(2)]
    for p in procs:
        p.start()
    for t in threads:
        t.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    for t in threads:
        t.join(60)
    assert Store(path).count_measurements() == 160


def test_export_csv_and_parquet(tmp_path):
    st = Store(tmp_path / "s.sqlite")
    st.put_model(_graph(), family="resnet")
    st.add_measurement(_meas("hash-a", T, 3.0))
    st.add_failure("hash-a", T, "oom", "out of memory")
    n = export(st, tmp_path / "m.csv", "csv")
    rows = list(csv.DictReader((tmp_path / "m.csv").open()))
    assert n == 2 and rows[0]["family"] == "resnet" and float(rows[0]["median_ms"]) == 3.0
    assert rows[1]["status"] == "failed" and rows[1]["error_kind"] == "oom"
    pq = pytest.importorskip("pyarrow.parquet")
    export(st, tmp_path / "m.parquet", "parquet")
    table = pq.read_table(tmp_path / "m.parquet")
    assert table.num_rows == 2 and "median_ms" in table.column_names
    with pytest.raises(UsageError):
        export(st, tmp_path / "m.xls", "xls")
