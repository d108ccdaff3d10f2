"""TFLite flatbuffers: kernels, builtin options, quantized tensors, bad files."""

from __future__ import annotations

import math

import pytest

from edgecost.errors import ModelFileError, UsageError
from edgecost.graph import fused_activation, kernel_category, read_model, read_tflite


def _op(g, name):
    return [k for k in g.kernels if k.op_type == name]


def test_float_model_kernels_attrs_and_costs(tflite_float):
    g = read_model(tflite_float)
    assert g.format == "tflite" and len(g.content_hash) == 64
    assert list(g.inputs.values()) == [(1, 3, 32, 32)] and list(g.outputs.values()) == [(1, 10)]
    ops = [k.op_type for k in g.kernels]
    for need in ("CONV_2D", "DEPTHWISE_CONV_2D", "HARD_SWISH", "CONCATENATION", "MUL", "ADD", "MAX_POOL_2D",
                 "MEAN", "FULLY_CONNECTED", "SOFTMAX"):
        assert need in ops
    assert all(k.domain == "tflite" and k.dtype == "float32" for k in g.kernels)

    c1, pw = _op(g, "CONV_2D")
    assert c1.input_shapes[1] == (16, 3, 3, 3)  # OHWI
    assert c1.output_shapes == ((1, 16, 16, 16),)  # NHWC
    assert c1.attrs["stride_h"] == 2 and c1.attrs["strides"] == [2, 2]
    assert c1.attrs["padding"] in ("SAME", "VALID") and c1.attrs["fused_activation_function"] == "RELU"
    assert c1.attrs["kernel_shape"] == [3, 3] and c1.attrs["group"] == 1
    assert c1.macs == 16 * 16 * 16 * 3 * 3 * 3 and c1.flops == 2 * c1.macs + 2 * 16 * 16 * 16  # + bias + relu
    assert c1.params == 16 * 27 + 16

    dw = _op(g, "DEPTHWISE_CONV_2D")[0]
    assert dw.input_shapes[1] == (1, 3, 3, 16)  # 1HWO
    assert dw.attrs["depth_multiplier"] == 1 and dw.attrs["fused_activation_function"] == "RELU6"
    assert dw.macs == 16 * 16 * 16 * 9 and dw.attrs["group"] == 16
    assert pw.macs == 16 * 16 * 32 * 16

    fc = _op(g, "FULLY_CONNECTED")[0]
    assert fc.input_shapes[:2] == ((1, 32), (10, 32)) and fc.macs == 320
    pool = _op(g, "MAX_POOL_2D")[0]
    assert pool.attrs["filter_height"] == 2 and pool.attrs["kernel_shape"] == [2, 2]
    assert pool.flops == 8 * 8 * 32 * 4
    mean = _op(g, "MEAN")[0]
    assert len(mean.attrs["axes"]) == 2 and "keep_dims" in mean.attrs
    # bytes: weights and activations at 4 bytes, the axis tensor at its int32 size
    assert c1.bytes_read == 4 * sum(math.prod(s) for s in c1.input_shapes)
    assert c1.bytes_written == 4 * 16 * 16 * 16
    assert g.params == (16 * 27 + 16) + (9 * 16 + 16) + (32 * 16 + 32) + (32 * 10 + 10)
    assert not any(k.attrs.get("unknown_cost") for k in g.kernels)
    assert read_tflite(tflite_float).kernels == g.kernels


def test_int8_model(tflite_int8):
    g = read_model(tflite_int8)
    int8 = [k for k in g.kernels if k.dtype == "int8"]
    assert int8 and all(k.attrs.get("quantized") for k in int8)
    deq = next(k for k in g.kernels if k.op_type == "DEQUANTIZE" and k.input_shapes[0] == (8, 3, 3, 3))
    assert deq.bytes_read == 8 * 27 and deq.bytes_written == 4 * 8 * 27  # int8 in, float32 out
    assert {kernel_category(k) for k in g.kernels if k.op_type in ("QUANTIZE", "DEQUANTIZE")} == {"quant"}
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"} <= {k.op_type for k in g.kernels}
    assert g.params == (8 * 27 + 8) + (8 * 9 + 8) + (4 * 8 + 4)


def test_input_names_and_resizing(tflite_float):
    name = next(iter(read_model(tflite_float).inputs))
    assert read_model(tflite_float, {name: (1, 3, 32, 32)}).inputs == {name: (1, 3, 32, 32)}
    with pytest.raises(UsageError, match=f"its inputs are: {name}"):
        read_model(tflite_float, {"nope": (1, 3, 32, 32)})
    with pytest.raises(UsageError, match="stored shapes"):
        read_model(tflite_float, {name: (2, 3, 32, 32)})


@pytest.mark.parametrize("cut", [12, 100, 1000, -200, -8])
def test_truncated_tflite(tflite_float, tmp_path, cut):
    data = tflite_float.read_bytes()
    path = tmp_path / "cut.tflite"
    path.write_bytes(data[:cut])
    with pytest.raises(ModelFileError, match="cut.tflite"):
        read_model(path)


def test_tflite_suffix_without_identifier(tmp_path):
    path = tmp_path / "fake.tflite"
    path.write_bytes(b"\x00" * 64)
    with pytest.raises(ModelFileError, match="no 'TFL3' identifier"):
        read_model(path)


def test_content_not_suffix_decides(tflite_float, tmp_path):
    path = tmp_path / "actually_tflite.onnx"
    path.write_bytes(tflite_float.read_bytes())
    assert read_model(path).format == "tflite"


def test_categories_and_activations(tflite_float):
    g = read_model(tflite_float)
    cat = {k.op_type: kernel_category(k) for k in g.kernels}
    assert cat["CONV_2D"] == "conv" and cat["DEPTHWISE_CONV_2D"] == "dwconv" and cat["FULLY_CONNECTED"] == "gemm"
    assert cat["MAX_POOL_2D"] == "pool" and cat["MEAN"] == "global_pool" and cat["ADD"] == "elementwise"
    assert cat["HARD_SWISH"] == "activation" and cat["SOFTMAX"] == "softmax" and cat["CONCATENATION"] == "concat"
    assert cat.get("TRANSPOSE", "transpose") == "transpose"
    acts = {k.op_type: fused_activation(k) for k in g.kernels if k.op_type in ("CONV_2D", "DEPTHWISE_CONV_2D")}
    assert acts["DEPTHWISE_CONV_2D"] == "relu6"
    assert fused_activation(_op(g, "ADD")[0]) is None
