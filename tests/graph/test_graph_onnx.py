"""ONNX reading: kernels, shapes, parameters, dynamic shapes, bad files, unknown ops, speed."""

from __future__ import annotations

import os
import random
import statistics
import subprocess
import sys
import time

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgecost.errors import DynamicShapeError, EdgecostError, ModelFileError, UsageError
from edgecost.graph import AnnotatedGraph, read_model, read_onnx_model
from edgecost.records import ModelGraph


def _by_op(g, op):
    return [k for k in g.kernels if k.op_type == op]


def test_small_net_kernels_and_shapes(small_onnx):
    g = read_model(small_onnx)
    assert isinstance(g, ModelGraph) and isinstance(g, AnnotatedGraph)
    assert g.format == "onnx" and len(g.content_hash) == 64
    assert g.inputs == {"x": (1, 8, 32, 32)} and g.outputs == {"y": (1, 10)}
    ops = [k.op_type for k in g.kernels if not k.attrs.get("shape_only")]
    assert ops == ["Conv", "Relu", "Conv", "Add", "Clip", "Conv", "MaxPool", "GlobalAveragePool", "Flatten", "Gemm"]
    conv1, dw, pw = _by_op(g, "Conv")
    assert conv1.input_shapes == ((1, 8, 32, 32), (8, 8, 3, 3), (8,))  # BN folded by the exporter
    assert conv1.output_shapes == ((1, 8, 32, 32),)
    assert conv1.attrs["group"] == 1 and conv1.attrs["pads"] == [1, 1, 1, 1]
    assert conv1.attrs["strides"] == [1, 1] and conv1.attrs["kernel_shape"] == [3, 3]
    assert dw.attrs["group"] == 8 and dw.input_shapes[1] == (8, 1, 3, 3)
    assert pw.output_shapes == ((1, 16, 32, 32),)
    assert _by_op(g, "MaxPool")[0].output_shapes == ((1, 16, 16, 16),)
    assert _by_op(g, "Gemm")[0].input_shapes == ((1, 16), (10, 16), (10,))
    assert all(k.dtype == "float32" for k in g.kernels if not k.attrs.get("shape_only"))
    assert not any(k.attrs.get("shape_unknown") or k.attrs.get("unknown_cost") for k in g.kernels)
    # Constant nodes are kept and flagged
    consts = _by_op(g, "Constant")
    assert consts and all(k.attrs["shape_only"] for k in consts)
    # same file, same hash; summary/to_dict round trip
    assert read_model(small_onnx).content_hash == g.content_hash
    again = AnnotatedGraph.from_dict(g.to_dict())
    assert again.kernels == g.kernels and again.attrs == g.attrs


def test_conv_linear_depthwise_flops_exactly(small_onnx):
    g = read_model(small_onnx)
    conv1, dw, pw = _by_op(g, "Conv")
    out = 1 * 8 * 32 * 32
    assert conv1.macs == out * 8 * 3 * 3                      # N·Cout·H·W·(Cin/g)·kh·kw
    assert conv1.flops == 2 * conv1.macs + out                # + bias
    assert dw.macs == out * 1 * 3 * 3
    assert dw.flops == 2 * dw.macs + out
    assert pw.macs == 16 * 32 * 32 * 8
    gemm = _by_op(g, "Gemm")[0]
    assert gemm.macs == 1 * 10 * 16 and gemm.flops == 2 * 160 + 10
    # bytes: inputs (activation + weights) and outputs at 4 bytes each
    assert conv1.bytes_read == 4 * (8 * 32 * 32 + 8 * 8 * 9 + 8)
    assert conv1.bytes_written == 4 * out
    flat = _by_op(g, "Flatten")[0]
    assert flat.flops == 0 and flat.bytes_read == 0 and flat.bytes_written == 0
    # params: weights + biases once each
    assert conv1.params == 8 * 8 * 9 + 8 and gemm.params == 170
    # conv1 (bias from the folded BN) + depthwise + pointwise + fc; Clip's scalar bounds are not weights
    assert g.params == (8 * 8 * 9 + 8) + (8 * 9 + 8) + (16 * 8 + 16) + (10 * 16 + 10)


def test_dynamic_batch_needs_an_override(small_dynamic_onnx):
    with pytest.raises(DynamicShapeError) as err:
        read_model(small_dynamic_onnx)
    text = str(err.value)
    assert text == "input 'x' has a dynamic dimension 'batch' (axis 0); pass --input-shape x=1x8x32x32"
    assert err.value.exit_code == 2
    g = read_model(small_dynamic_onnx, {"x": (4, 8, 32, 32)})
    assert g.inputs == {"x": (4, 8, 32, 32)} and g.outputs == {"y": (4, 10)}
    conv1 = _by_op(g, "Conv")[0]
    assert conv1.output_shapes == ((4, 8, 32, 32),) and conv1.macs == 4 * 8 * 32 * 32 * 72
    assert not any(k.attrs.get("shape_unknown") for k in g.kernels)


def test_override_errors(small_dynamic_onnx):
    with pytest.raises(UsageError, match=r"no input named 'image'; its inputs are: x"):
        read_model(small_dynamic_onnx, {"image": (1, 8, 32, 32)})
    with pytest.raises(UsageError, match="fixed size 32 on axis 2"):
        read_model(small_dynamic_onnx, {"x": (1, 8, 64, 32)})
    with pytest.raises(UsageError, match="has 3 dimensions but the input has 4"):
        read_model(small_dynamic_onnx, {"x": (1, 8, 32)})


def test_dynamic_spatial_dims_name_every_unknown():
    x = helper.make_tensor_value_info("img", TensorProto.FLOAT, ["N", 3, "H", "W"])
    y = helper.make_tensor_value_info("out", TensorProto.FLOAT, None)
    model = helper.make_model(helper.make_graph([helper.make_node("Relu", ["img"], ["out"])], "g", [x], [y]),
                              opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(DynamicShapeError) as err:
        read_onnx_model(model)
    assert str(err.value) == ("input 'img' has a dynamic dimension 'N' (axis 0); "
                              "pass --input-shape img=1x3xHxW")
    g = read_onnx_model(model, {"img": (2, 3, 5, 7)})
    assert g.kernels[0].output_shapes == ((2, 3, 5, 7),)


def test_shape_subgraph_is_flagged(model_dir, onnx_exporter):
    import torch

    class ViewNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.c = torch.nn.Conv2d(3, 4, 3)
            self.fc = torch.nn.Linear(4 * 6 * 6, 5)

        def forward(self, x):
            y = self.c(x)
            return self.fc(y.view(y.size(0), -1))

    path = onnx_exporter(ViewNet(), (2, 3, 8, 8), model_dir / "view.onnx", dynamic_batch=True)
    g = read_model(path, {"x": (3, 3, 8, 8)})
    flagged = {k.op_type for k in g.kernels if k.attrs.get("shape_only")}
    assert {"Shape", "Gather", "Unsqueeze", "Concat", "Constant"} <= flagged
    assert not any(k.attrs.get("shape_only") for k in g.kernels if k.op_type in ("Conv", "Reshape", "Gemm"))
    reshape = _by_op(g, "Reshape")[0]
    assert reshape.output_shapes == ((3, 144),) and reshape.bytes_read == 0
    assert _by_op(g, "Gemm")[0].output_shapes == ((3, 5),)


def test_shared_initializer_counted_once():
    w = numpy_helper.from_array(np.ones((4, 4), np.float32), "w")
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"], name="m1"),
             helper.make_node("MatMul", ["h", "w"], ["y"], name="m2")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w])
    g = read_onnx_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    assert [k.params for k in g.kernels] == [16, 0] and g.params == 16
    assert [k.macs for k in g.kernels] == [2 * 4 * 4, 2 * 4 * 4]


def test_unknown_custom_op_is_kept_with_shapes():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])
    w = numpy_helper.from_array(np.ones((6, 4, 3, 3), np.float32), "w")
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="relu"),
        helper.make_node("MySwizzle", ["r"], ["s"], name="custom", domain="my.ops", alpha=0.5),
        helper.make_node("Conv", ["s", "w"], ["c"], name="conv"),
        helper.make_node("MyMerge", ["c", "r"], ["m"], name="merge", domain="my.ops"),
        helper.make_node("Relu", ["m"], ["y"], name="relu2"),
    ]
    graph = helper.make_graph(nodes, "g", [x], [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("my.ops", 1)])
    g = read_onnx_model(model)
    assert [k.op_type for k in g.kernels] == ["Relu", "MySwizzle", "Conv", "MyMerge", "Relu"]
    custom = g.kernels[1]
    assert custom.domain == "my.ops" and custom.attrs["alpha"] == 0.5
    assert custom.input_shapes == ((1, 4, 8, 8),) and custom.output_shapes == ((1, 4, 8, 8),)
    assert custom.attrs["shape_guessed"] and custom.attrs["unknown_cost"]
    assert custom.flops == 0 and custom.bytes_read == custom.bytes_written == 4 * 256
    assert g.kernels[2].output_shapes == ((1, 6, 6, 6),) and g.kernels[2].macs == 6 * 36 * 36
    merge = g.kernels[3]  # two activation inputs: no guess, kept with what is known
    assert merge.input_shapes == ((1, 6, 6, 6), (1, 4, 8, 8)) and merge.output_shapes == ((),)
    assert merge.attrs["shape_unknown"] and merge.attrs["unknown_cost"]
    # with a value_info in the file, the custom op's output shape is known
    model.graph.value_info.append(helper.make_tensor_value_info("m", TensorProto.FLOAT, [1, 6, 6, 6]))
    g = read_onnx_model(model)
    assert g.kernels[3].output_shapes == ((1, 6, 6, 6),) and g.kernels[4].output_shapes == ((1, 6, 6, 6),)


def test_external_data_beside_the_model(tmp_path, small_onnx):
    model = onnx.load(str(small_onnx))
    path = tmp_path / "ext.onnx"
    onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="ext.onnx.data", size_threshold=0)
    g = read_model(path)
    assert g.params == read_model(small_onnx).params
    assert [k.output_shapes for k in g.kernels] == [k.output_shapes for k in read_model(small_onnx).kernels]
    os.rename(tmp_path / "ext.onnx.data", tmp_path / "moved.data")
    with pytest.raises(ModelFileError, match="ext.onnx.data"):
        read_model(path)


def test_read_onnx_model_in_memory(small_onnx):
    model = onnx.load(str(small_onnx))
    g = read_onnx_model(model)
    assert [k.op_type for k in g.kernels] == [k.op_type for k in read_model(small_onnx).kernels]
    assert g.content_hash and g.source == ""


@pytest.mark.parametrize("case", ["truncated", "random", "empty", "missing", "text", "folder", "zip"])
def test_bad_files_raise_model_file_error(tmp_path, small_onnx, case):
    data = small_onnx.read_bytes()
    path = tmp_path / "model.onnx"
    if case == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif case == "random":
        path.write_bytes(random.Random(1).randbytes(4096))
    elif case == "empty":
        path.write_bytes(b"")
    elif case == "text":
        path = tmp_path / "notes.txt"
        path.write_text("this is not a model\n" * 10)
    elif case == "folder":
        path = tmp_path / "dir.onnx"
        path.mkdir()
    elif case == "zip":
        path.write_bytes(b"PK\x03\x04" + b"\0" * 100)
    with pytest.raises(ModelFileError) as err:
        read_model(path)
    text = str(err.value)
    assert "\n" not in text and ";" in text  # one line: what was wrong; what to do
    assert isinstance(err.value, EdgecostError) and err.value.exit_code == 2
    expected = {"truncated": "not a valid ONNX model", "random": "not a valid ONNX model", "empty": "empty",
                "missing": "does not exist", "text": "text file", "folder": "folder", "zip": "zip archive"}[case]
    assert expected in text


def test_truncated_at_node_boundary_is_detected(small_onnx):
    model = onnx.load(str(small_onnx))
    del model.graph.node[2]  # what a cut between two nodes looks like once parsed
    with pytest.raises(ModelFileError, match="nothing produces"):
        read_onnx_model(model)


def test_graph_package_does_not_import_torch():
    code = ("import sys, edgecost.graph as g, edgecost.graph.onnx_reader, edgecost.graph.tflite, "
            "edgecost.graph.ort_optimized, edgecost.graph.cost, edgecost.graph.categories; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_read_speed_200_node_model(mobilenetv2_onnx, capsys):
    g = read_model(mobilenetv2_onnx)  # warm imports
    assert len(g.kernels) > 200
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        read_model(mobilenetv2_onnx)
        times.append(time.perf_counter() - t0)
    median_ms = statistics.median(times) * 1e3
    with capsys.disabled():
        print(f"\n[graph] MobileNetV2 ONNX ({len(g.kernels)} nodes, 14 MB) read in {median_ms:.1f} ms (median of 5)")
    assert median_ms < 400  # ~25 ms on a quiet 2-core VM; generous for a shared machine


def test_records_are_json_ready(small_onnx, tflite_float):
    import json

    from edgecost.graph import optimize_with_ort

    for g in (read_model(small_onnx), read_model(tflite_float), optimize_with_ort(small_onnx, "all")):
        d = json.loads(json.dumps(g.to_dict()))
        back = AnnotatedGraph.from_dict(d)
        assert [k.name for k in back.kernels] == [k.name for k in g.kernels]
        assert back.flops == g.flops and back.params == g.params and back.attrs.keys() == g.attrs.keys()
