"""FLOPs/MACs/bytes: reference totals and the formula table."""

from __future__ import annotations

import pytest

from edgecost.graph import kernel_cost, read_model
from edgecost.graph.cost import ELEMENT_FLOPS, SOFTMAX, TABLE, cost_of


def _macs(g):
    return sum(k.macs for k in g.kernels)


def test_resnet18_reference_total(resnet18_onnx):
    g = read_model(resnet18_onnx)
    assert _macs(g) / 1e9 == pytest.approx(1.814, rel=0.005)  # the published 1.82 GMACs
    assert g.flops == pytest.approx(2 * _macs(g), rel=0.01)   # 1 MAC = 2 FLOPs, plus the small rest
    # the parameter count is torchvision's 11.69 M minus the BN parameters folded into conv biases
    assert g.params / 1e6 == pytest.approx(11.68, abs=0.01)


def test_mobilenetv2_reference_total(mobilenetv2_onnx):
    g = read_model(mobilenetv2_onnx)
    assert _macs(g) / 1e9 == pytest.approx(0.300, rel=0.01)  # the published 300 M MACs
    assert g.params / 1e6 == pytest.approx(3.47, abs=0.01)


def test_every_conv_macs_match_the_formula(resnet18_onnx):
    g = read_model(resnet18_onnx)
    for k in g.kernels:
        if k.op_type != "Conv":
            continue
        n, cout, h, w = k.output_shapes[0]
        kh, kw = k.attrs["kernel_shape"]
        cin_g = k.input_shapes[0][1] // k.attrs["group"]
        assert k.macs == n * cout * h * w * cin_g * kh * kw


def _cost(op, ins, outs, attrs=None, domain="", dtypes=None):
    dt = dtypes or ["float32"] * len(ins)
    return kernel_cost(domain, op, ins, outs, dt, ["float32"] * len(outs), attrs or {})


def test_formulas():
    c = _cost("MatMul", [(2, 3, 5, 7), (7, 11)], [(2, 3, 5, 11)])
    assert c.macs == 2 * 3 * 5 * 11 * 7 and c.flops == 2 * c.macs
    c = _cost("FusedMatMul", [(4, 7, 5), (4, 7, 9)], [(4, 5, 9)], {"transA": 1, "alpha": 0.5}, "com.microsoft")
    assert c.macs == 4 * 5 * 9 * 7 and c.flops == 2 * c.macs + 4 * 5 * 9
    c = _cost("Gemm", [(8, 16), (32, 16), (32,)], [(8, 32)], {"transB": 1})
    assert c.macs == 8 * 32 * 16 and c.flops == 2 * c.macs + 8 * 32
    c = _cost("FusedConv", [(1, 8, 10, 10), (16, 8, 3, 3), (16,), (1, 16, 8, 8)], [(1, 16, 8, 8)],
              {"activation": "Relu"}, "com.microsoft")
    out = 16 * 64
    assert c.macs == out * 8 * 9 and c.flops == 2 * c.macs + out + out + out  # bias + sum + relu
    c = _cost("ConvTranspose", [(1, 4, 5, 5), (4, 2, 3, 3)], [(1, 2, 11, 11)], {"strides": [2, 2]})
    assert c.macs == 4 * 25 * 2 * 9
    c = _cost("MaxPool", [(1, 3, 8, 8)], [(1, 3, 4, 4)], {"kernel_shape": [3, 3]})
    assert c.macs == 0 and c.flops == 3 * 16 * 9
    c = _cost("GlobalAveragePool", [(1, 3, 8, 8)], [(1, 3, 1, 1)])
    assert c.flops == 3 * 64 + 3
    c = _cost("Softmax", [(2, 10)], [(2, 10)])
    assert c.flops == 20 * SOFTMAX
    c = _cost("Sigmoid", [(100,)], [(100,)])
    assert c.flops == 100 * ELEMENT_FLOPS["Sigmoid"] and ELEMENT_FLOPS["Sigmoid"] > ELEMENT_FLOPS["Relu"]
    c = _cost("Einsum", [(2, 3, 4), (2, 4, 5)], [(2, 3, 5)], {"equation": "bij,bjk->bik"})
    assert c.macs == 2 * 3 * 4 * 5
    c = _cost("Einsum", [(3, 4)], [(4, 3)], {"equation": "ij->ji"})
    assert c.macs == 0
    c = _cost("Attention", [(1, 16, 32), (32, 96), (96,)], [(1, 16, 32)], {"num_heads": 4}, "com.microsoft")
    assert c.macs == 16 * 32 * 96 + 16 * 16 * 32 * 2
    c = _cost("Resize", [(1, 3, 4, 4), None, (4,)], [(1, 3, 8, 8)], {"mode": "linear"})
    assert c.flops == 3 * 64 * 2 * 4
    c = _cost("Resize", [(1, 3, 4, 4), None, (4,)], [(1, 3, 8, 8)], {"mode": "nearest"})
    assert c.flops == 0 and c.bytes_written == 4 * 3 * 64


def test_bytes_views_copies_and_unknown_ops():
    reshape = _cost("Reshape", [(2, 3, 4), (2,)], [(6, 4)], dtypes=["float32", "int64"])
    assert reshape.bytes_read == reshape.bytes_written == reshape.flops == 0
    squeeze = _cost("Squeeze", [(1, 5)], [(5,)])
    assert squeeze.bytes_read == 0
    transpose = _cost("Transpose", [(2, 3, 4)], [(4, 3, 2)])
    assert transpose.flops == 0 and transpose.bytes_read == transpose.bytes_written == 96
    concat = _cost("Concat", [(1, 2, 4), (1, 3, 4)], [(1, 5, 4)])
    assert concat.bytes_read == 80 and concat.bytes_written == 80
    sl = _cost("Slice", [(10, 10), (1,), (1,)], [(2, 10)], dtypes=["float32", "int64", "int64"])
    assert sl.bytes_written == 80 and sl.bytes_read == 80 + 16  # the slice it copies, plus the indices
    q = kernel_cost("", "QuantizeLinear", [(100,), (), ()], [(100,)], ["float32", "float32", "int8"], ["int8"], {})
    assert q.bytes_read == 400 + 4 + 1 and q.bytes_written == 100
    unk = _cost("Frobnicate", [(10,)], [(10,)], domain="x.y")
    assert unk.unknown and unk.flops == 0 and unk.bytes_read == 40


def test_cost_of_recomputes_a_record(small_onnx):
    g = read_model(small_onnx)
    for k in g.kernels:
        c = cost_of(k)
        assert (c.flops, c.macs) == (k.flops, k.macs)


def test_table_covers_the_required_ops():
    need = {
        ("", "Conv"), ("", "ConvTranspose"), ("com.microsoft", "FusedConv"), ("com.microsoft.nchwc", "Conv"),
        ("", "Gemm"), ("com.microsoft", "FusedGemm"), ("", "MatMul"), ("com.microsoft", "FusedMatMul"),
        ("", "MaxPool"), ("", "AveragePool"), ("", "GlobalAveragePool"), ("", "GlobalMaxPool"), ("", "Add"),
        ("", "Exp"), ("", "Erf"), ("", "Tanh"), ("", "Sigmoid"), ("", "HardSwish"), ("com.microsoft", "Gelu"),
        ("", "BatchNormalization"), ("", "LayerNormalization"), ("com.microsoft", "SkipLayerNormalization"),
        ("", "Softmax"), ("", "ReduceMean"), ("", "Concat"), ("", "Split"), ("", "Slice"), ("", "Transpose"),
        ("", "Reshape"), ("", "Flatten"), ("", "Squeeze"), ("", "Resize"), ("", "Pad"),
        ("com.microsoft", "Attention"), ("", "Einsum"), ("tflite", "CONV_2D"), ("tflite", "DEPTHWISE_CONV_2D"),
        ("tflite", "FULLY_CONNECTED"), ("tflite", "MEAN"), ("tflite", "TRANSPOSE"), ("tflite", "ADD"),
    }
    assert need <= set(TABLE)
