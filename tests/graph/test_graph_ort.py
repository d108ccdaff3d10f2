"""ORT-optimized graphs: com.microsoft / nchwc ops get shapes; executed kernels map back to the model's nodes."""

from __future__ import annotations

from collections import Counter

import onnxruntime as ort
import pytest

from edgecost.errors import ModelFileError, UsageError
from edgecost.graph import fused_activation, fused_sum, kernel_category, optimize_with_ort, read_model


def _check_mapping(original, optimized):
    """Every original node is covered by exactly one kernel or reported eliminated, for a reason."""
    names = [k.name for k in original.kernels]
    covered = Counter(n for k in optimized.kernels for n in k.attrs["covers"])
    eliminated = optimized.attrs["eliminated"]
    assert all(c == 1 for c in covered.values()), covered.most_common(3)
    assert set(covered) | set(eliminated) == set(names)
    assert not set(covered) & set(eliminated)
    assert "unmapped" not in eliminated.values(), [n for n, r in eliminated.items() if r == "unmapped"]
    assert optimized.attrs["covers_conflicts"] == []
    by_name = {k.name: k for k in original.kernels}
    for name, reason in eliminated.items():  # nothing that computes is lost
        k = by_name[name]
        assert reason in ("no-op", "constant", "shape")
        assert k.op_type in ("Identity", "Dropout", "Constant") or k.attrs.get("shape_only") or k.attrs.get("foldable")
    # the heavy work is accounted for: original conv/gemm MACs all live in covered nodes
    assert sum(by_name[n].macs for n in covered) == sum(k.macs for k in original.kernels)


@pytest.mark.parametrize("level", ["extended", "all"])
def test_conv_bn_relu_chain_becomes_one_kernel(conv_bn_relu_onnx, level):
    original = read_model(conv_bn_relu_onnx)
    g = optimize_with_ort(conv_bn_relu_onnx, level=level)
    _check_mapping(original, g)
    assert g.attrs["ort_level"] == level and g.attrs["ort_version"] == ort.__version__
    assert g.content_hash == original.content_hash and g.attrs["optimized_hash"] != g.content_hash
    first = next(k for k in g.kernels if "conv1" in k.attrs["covers"])
    assert first.attrs["covers"] == ["conv1", "bn1", "relu1"]  # BN folded into the weights, ReLU fused
    assert fused_activation(first) == "relu" and kernel_category(first) == "conv"
    if level == "extended":
        assert (first.domain, first.op_type) == ("com.microsoft", "FusedConv")
    else:
        assert (first.domain, first.op_type) == ("com.microsoft.nchwc", "Conv")
        # the residual Add and the ReLU after it are absorbed by the second convolution
        second = next(k for k in g.kernels if "conv2" in k.attrs["covers"])
        assert second.attrs["covers"] == ["conv2", "residual", "relu2"]
        assert fused_sum(second) and fused_activation(second) == "relu"
        assert second.output_shapes == ((1, 16, 20, 20),)
    assert g.attrs["eliminated"] == {"ident": "no-op", "drop": "no-op"}
    assert all(k.output_shapes and k.output_shapes[0] for k in g.kernels)


def test_mobilenetv2_extended_and_all(mobilenetv2_onnx):
    original = read_model(mobilenetv2_onnx)
    ext = optimize_with_ort(mobilenetv2_onnx, "extended")
    allg = optimize_with_ort(mobilenetv2_onnx, "all")
    for g in (ext, allg):
        _check_mapping(original, g)
        assert g.outputs == {"y": (1, 1000)}
        assert not any(k.attrs.get("shape_unknown") or k.attrs.get("unknown_cost") for k in g.kernels)
    ext_ops = Counter((k.domain, k.op_type) for k in ext.kernels)
    assert ext_ops[("com.microsoft", "FusedConv")] == 35  # every Conv+Clip(ReLU6)
    assert len(ext.kernels) < len(allg.kernels) + 20 and len(allg.kernels) < len(ext.kernels)
    # extended keeps the exact MACs; NCHWc pads channels to its block and computes them
    assert sum(k.macs for k in ext.kernels) == sum(k.macs for k in original.kernels)
    assert sum(k.macs for k in allg.kernels) >= sum(k.macs for k in original.kernels)
    nchwc = [k for k in allg.kernels if k.domain == "com.microsoft.nchwc"]
    assert nchwc and all(k.input_shapes[0] and k.output_shapes[0] for k in nchwc)
    assert any(k.op_type == "ReorderOutput" for k in nchwc)
    absorbed = [k for k in nchwc if fused_sum(k)]
    assert len(absorbed) == 10  # MobileNetV2's residual adds
    assert all(any(n.endswith("/Add") for n in k.attrs["covers"]) for k in absorbed)
    dw = [k for k in nchwc if kernel_category(k) == "dwconv"]
    assert len(dw) == 17
    block = allg.attrs["nchwc_block"]
    assert all(k.output_shapes[0][1] % block == 0 for k in nchwc if k.op_type == "Conv")


def test_resnet18_all_absorbs_residuals(resnet18_onnx):
    original = read_model(resnet18_onnx)
    g = optimize_with_ort(resnet18_onnx, "all", threads=2)
    _check_mapping(original, g)
    assert g.attrs["threads"] == 2
    sums = [k for k in g.kernels if fused_sum(k)]
    assert len(sums) == 8
    for k in sums:
        ops = [original.kernels[[o.name for o in original.kernels].index(n)].op_type for n in k.attrs["covers"]]
        assert ops == ["Conv", "Add", "Relu"]
    assert sum(k.macs for k in g.kernels) == sum(k.macs for k in original.kernels)  # channels already aligned


def test_nchwc_reorder_pool_upsample_shapes(nchwc_onnx):
    original = read_model(nchwc_onnx)
    g = optimize_with_ort(nchwc_onnx, "all")
    _check_mapping(original, g)
    kinds = [(k.op_type, k.input_shapes[0], k.output_shapes[0]) for k in g.kernels
             if k.domain == "com.microsoft.nchwc"]
    ops = [op for op, _, _ in kinds]
    assert ops[0] == "ReorderInput" and {"AveragePool", "Upsample", "MaxPool", "ReorderOutput"} <= set(ops)
    shapes = {op: (i, o) for op, i, o in kinds}
    assert shapes["ReorderInput"] == ((1, 32, 10, 10), (1, 32, 10, 10))
    assert shapes["Upsample"] == ((1, 32, 10, 10), (1, 32, 20, 20))
    convs = [k for k in g.kernels if k.op_type == "Conv"]
    assert [k.output_shapes[0] for k in convs] == [(1, 32, 10, 10), (1, 48, 10, 10), (1, 48, 10, 10)]
    dilated = convs[2]
    assert dilated.attrs["dilations"] == [2, 2] and kernel_category(dilated) == "gconv" and fused_sum(dilated)
    assert dilated.macs == 48 * 100 * 16 * 9
    assert fused_activation(convs[1]) == "sigmoid"
    assert g.outputs == {"y": (1, 48)} and g.kernels[-1].output_shapes == ((1, 48),)


def test_transformer_fusions(transformer_onnx):
    original = read_model(transformer_onnx)
    g = optimize_with_ort(transformer_onnx, "extended")
    _check_mapping(original, g)
    ops = Counter((k.domain, k.op_type) for k in g.kernels)
    assert ops[("com.microsoft", "Gelu")] == 1 and ops[("com.microsoft", "FusedMatMul")] == 1
    gelu = next(k for k in g.kernels if k.op_type == "Gelu")
    op_of = {k.name: k.op_type for k in original.kernels}
    assert sorted(op_of[n] for n in gelu.attrs["covers"]) == ["Add", "Div", "Erf", "Mul", "Mul"]
    assert gelu.output_shapes == ((1, 16, 128),) and kernel_category(gelu) == "activation"
    # the Gemm between the Reshapes ORT inserts owns the MatMul and its bias Add
    for k in g.kernels:
        if k.op_type == "Gemm":
            assert sorted(op_of[n] for n in k.attrs["covers"])[:2] == ["Add", "MatMul"]
            assert kernel_category(k) == "gemm"
    fmm = next(k for k in g.kernels if k.op_type == "FusedMatMul")
    assert kernel_category(fmm) == "matmul" and fmm.output_shapes == ((1, 4, 16, 16),)


def test_levels_and_errors(small_onnx, tflite_float, tmp_path):
    basic = optimize_with_ort(small_onnx, "basic")
    assert not any(k.domain for k in basic.kernels)
    same = optimize_with_ort(small_onnx.read_bytes(), "extended")
    assert same.source == "" and any(k.op_type == "FusedConv" for k in same.kernels)
    with pytest.raises(UsageError, match="unknown ORT optimization level"):
        optimize_with_ort(small_onnx, "max")
    with pytest.raises(UsageError, match="threads"):
        optimize_with_ort(small_onnx, threads=0)
    with pytest.raises(UsageError, match="TFLite"):
        optimize_with_ort(tflite_float)
    with pytest.raises(ModelFileError):
        optimize_with_ort(tmp_path / "missing.onnx")


def test_saved_optimized_model_reads_on_its_own(mobilenetv2_onnx, tmp_path):
    """A file ORT saved by itself (no original at hand) reads with full shapes too."""
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.optimized_model_filepath = str(tmp_path / "opt.onnx")
    so.log_severity_level = 3
    ort.InferenceSession(str(mobilenetv2_onnx), so, providers=["CPUExecutionProvider"])
    g = read_model(tmp_path / "opt.onnx")
    assert not any(k.attrs.get("shape_unknown") for k in g.kernels)
    assert g.outputs == {"y": (1, 1000)}
    assert sum(k.macs for k in g.kernels) >= 0.3e9


@pytest.fixture(scope="module")
def small_qdq_onnx(small_onnx, tmp_path_factory):
    import numpy as np
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.left = [{"x": np.random.default_rng(0).random((1, 8, 32, 32), dtype=np.float32)}]

        def get_next(self):
            return self.left.pop() if self.left else None

    path = tmp_path_factory.mktemp("qdq") / "small_qdq.onnx"
    quantize_static(str(small_onnx), str(path), Reader(), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return path


@pytest.mark.parametrize("level", ["extended", "all"])
def test_static_qdq_model(small_qdq_onnx, level):
    original = read_model(small_qdq_onnx)
    g = optimize_with_ort(small_qdq_onnx, level)
    _check_mapping(original, g)
    assert not any(k.attrs.get("shape_unknown") for k in g.kernels)
    qconv = [k for k in g.kernels if k.op_type == "QLinearConv"]
    assert len(qconv) == 3 and all(k.dtype == "uint8" for k in qconv)
    assert [kernel_category(k) for k in qconv] == ["conv", "dwconv", "conv"]
    assert [k.macs for k in qconv] == [8 * 1024 * 72, 8 * 1024 * 9, 16 * 1024 * 8]
    op_of = {k.name: k.op_type for k in original.kernels}
    for k in qconv:  # each QLinearConv runs its Conv, the DequantizeLinear before and QuantizeLinear after
        assert sorted(op_of[n] for n in k.attrs["covers"]) == ["Conv", "DequantizeLinear", "QuantizeLinear"]
    if level == "all":  # ORT's NHWC transformer: channels-last QLinearConv and NhwcMaxPool
        assert all(k.domain == "com.microsoft" and k.attrs["channels_last"] == 1 for k in qconv)
        assert qconv[2].output_shapes == ((1, 32, 32, 16),)
        pool = next(k for k in g.kernels if k.op_type == "NhwcMaxPool")
        assert pool.output_shapes == ((1, 16, 16, 16),) and kernel_category(pool) == "pool"
    assert any(k.op_type == "QLinearAdd" and kernel_category(k) == "elementwise" for k in g.kernels)


def test_contrib_op_shapes_match_what_ort_computes(tmp_path):
    """Our shapes for com.microsoft ops equal the shapes ORT's kernels produce when run."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)

    def w(name, shape, dtype=np.float32):
        return numpy_helper.from_array((rng.standard_normal(shape) * 0.1).astype(dtype), name)

    ms = "com.microsoft"
    inits = [w("g", (32,)), w("b", (32,)), w("bias", (32,)), w("wqkv", (32, 96)), w("bqkv", (96,)),
             w("w2", (32, 64)), numpy_helper.from_array(rng.integers(-5, 5, (64, 32)).astype(np.int8), "wq"),
             numpy_helper.from_array(np.array([0.01], np.float32), "sc"),
             numpy_helper.from_array(np.array([0], np.int8), "zp"), w("wg", (64, 16)), w("bg", (16,)),
             numpy_helper.from_array(np.array([16, 64], np.int64), "shp")]
    nodes = [
        helper.make_node("SkipLayerNormalization", ["x", "x", "g", "b", "bias"], ["y1"], domain=ms),
        helper.make_node("Attention", ["y1", "wqkv", "bqkv"], ["y2"], domain=ms, num_heads=4),
        helper.make_node("MultiHeadAttention", ["y2", "y2", "y2"], ["y3"], domain=ms, num_heads=4),
        helper.make_node("BiasGelu", ["y3", "bias"], ["y4"], domain=ms),
        helper.make_node("FastGelu", ["y4", "bias"], ["y5"], domain=ms),
        helper.make_node("QuickGelu", ["y5"], ["y6"], domain=ms, alpha=1.702),
        helper.make_node("SimplifiedLayerNormalization", ["y6", "g"], ["y7"], axis=-1),
        helper.make_node("FusedMatMul", ["y7", "w2"], ["y8"], domain=ms, alpha=0.5),
        helper.make_node("DynamicQuantizeMatMul", ["y8", "wq", "sc", "zp"], ["y9"], domain=ms),
        helper.make_node("Reshape", ["y8", "shp"], ["y8r"]),
        helper.make_node("FusedGemm", ["y8r", "wg", "bg"], ["y10"], domain=ms, activation="Relu"),
        helper.make_node("Gelu", ["y10"], ["y11"], domain=ms),
    ]
    outs = ["y1", "y2", "y3", "y4", "y5", "y6", "y7", "y8", "y9", "y10", "y11"]
    graph = helper.make_graph(nodes, "ms", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16, 32])],
                              [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outs], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(ms, 1)])
    model.ir_version = 8
    path = tmp_path / "contrib.onnx"
    onnx.save(model, str(path))
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    real = sess.run(None, {"x": rng.standard_normal((1, 16, 32)).astype(np.float32)})
    g = read_model(path)
    ours = {k.outputs[0]: k.output_shapes[0] for k in g.kernels}
    assert {o: ours[o] for o in outs} == {o: tuple(a.shape) for o, a in zip(outs, real)}
    assert not any(k.attrs.get("unknown_cost") or k.attrs.get("shape_guessed") for k in g.kernels)
    cats = [kernel_category(k) for k in g.kernels]
    assert cats == ["norm", "attention", "attention", "activation", "activation", "activation", "norm", "gemm",
                    "gemm", "reshape", "gemm", "activation"]
    att = g.kernels[1]
    assert att.macs == 16 * 32 * 96 + 2 * 16 * 16 * 32  # QKV projection + scores + weighted sum
    assert g.kernels[7].macs == 16 * 64 * 32 and g.kernels[10].macs == 16 * 16 * 64


def test_kernel_shapes_match_the_ort_profile_for_every_attention_layout(tmp_path, onnx_exporter):
    """Every executed kernel's output shape is the one ORT's profiler reports for that node.

    nn.MultiheadAttention exports (T, B, H, hd) tensors that ORT multiplies as (B, H, T, hd)
    through FusedMatMul's transBatchA/transBatchB: a shape read without them put the
    attention scores at (T, B, H, H) and their softmax 65x too small.
    """
    import json

    import numpy as np

    from edgecost.zoo.layers import ATTENTION_IMPLS, SelfAttention

    tokens, dim, heads = 20, 48, 4
    for impl in ATTENTION_IMPLS:
        path = onnx_exporter(SelfAttention(dim, heads, impl).eval(), (1, tokens, dim), tmp_path / f"{impl}.onnx")
        g = optimize_with_ort(path, "all")
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.intra_op_num_threads = 1
        so.enable_profiling = True
        so.profile_file_prefix = str(tmp_path / impl)
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        sess.run(None, {sess.get_inputs()[0].name: np.zeros((1, tokens, dim), np.float32)})
        events = json.loads(open(sess.end_profiling()).read())
        profiled = {e["name"][: -len("_kernel_time")]: tuple(next(iter(e["args"]["output_type_shape"][0].values())))
                    for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")
                    and e["args"].get("output_type_shape")}
        ours = {k.name: k.output_shapes[0] for k in g.kernels if k.name in profiled}
        assert len(ours) >= 4, (impl, sorted(profiled))
        assert ours == {n: profiled[n] for n in ours}, impl
        fmm = [k for k in g.kernels if k.op_type == "FusedMatMul"]
        if impl == "mha":
            assert any(k.attrs.get("transBatchA") or k.attrs.get("transBatchB") for k in fmm)
            scores = next(k for k in fmm if k.attrs.get("transBatchA"))
            assert scores.output_shapes == ((1, heads, tokens, tokens),)
            assert scores.macs == heads * tokens * tokens * (dim // heads)
