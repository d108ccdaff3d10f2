"""The executed-kernel cache: same predictions from memory, disk or a fresh optimization; stale or corrupt entries never used."""

from __future__ import annotations

import gzip
import shutil

import pytest

import edgecost
from edgecost import kernel_cache, paths


@pytest.fixture()
def home(profiled, monkeypatch):
    monkeypatch.setenv("EDGECOST_HOME", str(profiled.home))
    kernel_cache.clear_memory()
    cache = paths.cache_dir()
    shutil.rmtree(cache, ignore_errors=True)
    yield profiled
    kernel_cache.clear_memory()
    shutil.rmtree(cache, ignore_errors=True)


def _entries():
    return sorted((paths.cache_dir() / "executed-kernels").rglob("*.json.gz"))


def test_disk_and_memory_hits_predict_the_same(home):
    model = sorted(home.models_dir.glob("*.onnx"))[0]
    fresh = edgecost.predict(model, "local", runtime="onnxruntime", threads=1)
    assert len(_entries()) == 1
    again = edgecost.predict(model, "local", runtime="onnxruntime", threads=1)  # memory
    kernel_cache.clear_memory()
    from_disk = edgecost.predict(model, "local", runtime="onnxruntime", threads=1)
    assert fresh.latency_ms == again.latency_ms == from_disk.latency_ms
    assert [k.to_dict() for k in fresh.kernels] == [k.to_dict() for k in from_disk.kernels]


def test_corrupt_entry_is_rebuilt(home):
    model = sorted(home.models_dir.glob("*.onnx"))[0]
    fresh = edgecost.predict(model, "local", runtime="onnxruntime", threads=1)
    (entry,) = _entries()
    entry.write_bytes(gzip.compress(b"{not json")[:-4])  # truncated and corrupt
    kernel_cache.clear_memory()
    again = edgecost.predict(model, "local", runtime="onnxruntime", threads=1)
    assert again.latency_ms == fresh.latency_ms
    kernel_cache.clear_memory()
    assert kernel_cache.load_kernels(entry.name[: -len(".json.gz")]) is not None  # rewritten whole


def test_changed_file_is_not_served_from_memory(home, tmp_path):
    a, b = sorted(home.models_dir.glob("*.onnx"))[:2]
    model = tmp_path / "m.onnx"
    shutil.copy(a, model)
    pa = edgecost.predict(model, "local", runtime="onnxruntime", threads=1)
    shutil.copy(b, model)
    pb = edgecost.predict(model, "local", runtime="onnxruntime", threads=1)
    assert pb.latency_ms == edgecost.predict(b, "local", runtime="onnxruntime", threads=1).latency_ms
    assert pa.latency_ms != pb.latency_ms


def test_unwritable_cache_still_predicts(home, tmp_path, monkeypatch):
    blocker = tmp_path / "file-not-dir"
    blocker.write_text("x")
    monkeypatch.setattr(paths, "cache_dir", lambda: blocker / "cache")
    model = sorted(home.models_dir.glob("*.onnx"))[0]
    assert edgecost.predict(model, "local", runtime="onnxruntime", threads=1).latency_ms > 0
