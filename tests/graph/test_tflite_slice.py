"""Single-operator .tflite slices: each one runs in LiteRT and computes exactly its operator."""

from __future__ import annotations

import numpy as np
import pytest

from edgecost.errors import ModelFileError
from edgecost.graph import read_model
from edgecost.graph.tflite_slice import (
    TFLiteSlicer,
    distinct_slices,
    op_profile,
    op_signature,
)

litert = pytest.importorskip("ai_edge_litert.interpreter")


def _interpreter(content: bytes):
    return litert.Interpreter(model_content=content, num_threads=1, experimental_preserve_all_tensors=True,
                              experimental_op_resolver_type=litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)


def _random_inputs(it, rng):
    for d in it.get_input_details():
        if np.issubdtype(d["dtype"], np.floating):
            it.set_tensor(d["index"], rng.standard_normal(d["shape"]).astype(d["dtype"]))
        else:
            info = np.iinfo(d["dtype"])
            it.set_tensor(d["index"], rng.integers(max(info.min, -100), min(info.max, 100), d["shape"]).astype(d["dtype"]))


@pytest.mark.parametrize("fixture", ["tflite_float", "tflite_int8"])
def test_every_slice_recomputes_its_operator(fixture, request):
    """Feed each slice the tensors its operator saw in the full model: it must give the same outputs."""
    data = request.getfixturevalue(fixture).read_bytes()
    full = _interpreter(data)
    full.allocate_tensors()
    _random_inputs(full, np.random.default_rng(0))
    full.invoke()
    slicer = TFLiteSlicer(data)
    graph = full._get_ops_details()
    assert slicer.n_ops == len(graph) > 5
    for i, op in enumerate(graph):
        sl = _interpreter(slicer.slice(i))
        sl.allocate_tensors()
        names = {d["name"]: d["index"] for d in sl.get_tensor_details()}
        full_names = {d["index"]: d["name"] for d in full.get_tensor_details()}
        for d in sl.get_input_details():
            src = next(t for t in op["inputs"] if t >= 0 and full_names[t] == d["name"])
            sl.set_tensor(d["index"], full.get_tensor(src))
        sl.invoke()
        assert len(sl.get_output_details()) == len([t for t in op["outputs"] if t >= 0])
        for t in op["outputs"]:
            want = full.get_tensor(t)
            got = sl.get_tensor(names[full_names[t]])
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, err_msg=f"op {i} {op['op_name']}")


def test_distinct_slices_one_per_signature_and_skip(tflite_float):
    g = read_model(tflite_float)
    data = tflite_float.read_bytes()
    kernels = list(g.kernels) + [k for k in g.kernels if k.op_type == "ADD"]  # repeats: no new slice
    slices = list(distinct_slices(data, kernels))
    sigs = [s.signature for s in slices]
    assert len(sigs) == len(set(sigs)) == len({op_signature(k) for k in g.kernels})
    assert all(s.content[4:8] == b"TFL3" for s in slices)
    again = list(distinct_slices(data, list(g.kernels), skip=set(sigs[:3])))
    assert [s.signature for s in again] == sigs[3:]
    from edgecost.graph.tflite import read_tflite_bytes

    assert all(len(read_tflite_bytes(s.content).kernels) == 1 for s in slices)


def test_signature_ignores_position_not_shape(tflite_float):
    g = read_model(tflite_float)
    k = g.kernels[0]
    from dataclasses import replace

    moved = replace(k, name="elsewhere", attrs={**k.attrs, "op_index": 99})
    assert op_signature(moved) == op_signature(k)
    reshaped = replace(k, output_shapes=((1, 8, 8, 16),))
    assert op_signature(reshaped) != op_signature(k)


def test_op_profile_names_the_kernels_it_has_times_for(tflite_float):
    g = read_model(tflite_float)
    times = {op_signature(k): 10.0 + i for i, k in enumerate(g.kernels[:4])}
    prof = op_profile(list(g.kernels), times)
    assert [p["name"] for p in prof] == [k.name for k in g.kernels if op_signature(k) in times]
    assert all(p["source"] == "op-slice" and p["median_us"] >= 10.0 for p in prof)


def test_corrupt_or_foreign_bytes_are_model_file_errors(tflite_float):
    with pytest.raises(ModelFileError):
        TFLiteSlicer(b"not a flatbuffer at all")
    data = tflite_float.read_bytes()
    with pytest.raises(ModelFileError):
        TFLiteSlicer(data[:64])
