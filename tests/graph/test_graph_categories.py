"""One kernel vocabulary across ONNX, ONNX Runtime and TFLite."""

from __future__ import annotations

from edgecost.graph import CATEGORIES, fused_activation, fused_sum, kernel_category, read_model
from edgecost.records import KernelRecord


def K(op, domain="", ins=(), outs=(), inputs=None, **attrs):
    return KernelRecord(name=op, op_type=op, domain=domain, inputs=inputs or tuple(f"t{i}" for i in range(len(ins))),
                        input_shapes=tuple(ins), output_shapes=tuple(outs), attrs=attrs)


def test_conv_family():
    assert kernel_category(K("Conv", ins=[(1, 8, 5, 5), (16, 8, 3, 3)], group=1)) == "conv"
    assert kernel_category(K("Conv", ins=[(1, 8, 5, 5), (8, 1, 3, 3)], group=8)) == "dwconv"
    assert kernel_category(K("Conv", ins=[(1, 8, 5, 5), (16, 1, 3, 3)], group=8)) == "gconv"  # multiplier 2
    assert kernel_category(K("Conv", ins=[(1, 8, 5, 5), (8, 4, 3, 3)], group=2)) == "gconv"
    assert kernel_category(K("FusedConv", "com.microsoft", [(1, 8, 5, 5), (8, 1, 3, 3)], group=8)) == "dwconv"
    assert kernel_category(K("Conv", "com.microsoft.nchwc", [(1, 16, 5, 5), (16, 1, 3, 3)], group=16)) == "dwconv"
    assert kernel_category(K("QLinearConv", ins=[(1, 8, 5, 5), (), (), (8, 1, 3, 3)], group=8)) == "dwconv"
    assert kernel_category(K("ConvTranspose", ins=[(1, 8, 5, 5), (8, 4, 3, 3)])) == "convtranspose"
    assert kernel_category(K("CONV_2D", "tflite", [(1, 5, 5, 8), (16, 3, 3, 8)])) == "conv"
    assert kernel_category(K("CONV_2D", "tflite", [(1, 5, 5, 8), (8, 3, 3, 4)])) == "gconv"
    assert kernel_category(K("DEPTHWISE_CONV_2D", "tflite", [(1, 5, 5, 8), (1, 3, 3, 8)])) == "dwconv"
    assert kernel_category(K("TRANSPOSE_CONV", "tflite")) == "convtranspose"


def test_gemm_versus_matmul():
    assert kernel_category(K("MatMul", ins=[(4, 8), (8, 16)], const_inputs=[1])) == "gemm"
    assert kernel_category(K("MatMul", ins=[(2, 4, 8), (2, 8, 16)])) == "matmul"
    assert kernel_category(K("MatMul", ins=[(4, 8), (8, 16)])) == "matmul"  # activation x activation
    assert kernel_category(K("FusedMatMul", "com.microsoft", [(4, 8), (8, 16)], const_inputs=[1])) == "gemm"
    assert kernel_category(K("Gemm", ins=[(4, 8), (16, 8)])) == "gemm"
    assert kernel_category(K("FULLY_CONNECTED", "tflite", [(1, 8), (4, 8)], const_inputs=[1])) == "gemm"
    assert kernel_category(K("BATCH_MATMUL", "tflite", [(2, 4, 8), (2, 8, 4)])) == "matmul"
    assert kernel_category(K("DynamicQuantizeMatMul", "com.microsoft", [(4, 8), (8, 16)], const_inputs=[1])) == "gemm"
    assert kernel_category(K("Einsum", ins=[(2, 3), (3, 4)])) == "matmul"


def test_pools_and_reductions():
    assert kernel_category(K("MaxPool")) == "pool" and kernel_category(K("AVERAGE_POOL_2D", "tflite")) == "pool"
    assert kernel_category(K("MaxPool", "com.microsoft.nchwc")) == "pool"
    assert kernel_category(K("GlobalAveragePool", "com.microsoft.nchwc")) == "global_pool"
    assert kernel_category(K("ReduceMean", ins=[(1, 8, 7, 7)], axes=[2, 3])) == "global_pool"
    assert kernel_category(K("ReduceMean", ins=[(1, 8, 7, 7)], axes=[-1, -2])) == "global_pool"
    assert kernel_category(K("ReduceMean", ins=[(1, 16, 32)], axes=[2])) == "reduce"
    assert kernel_category(K("MEAN", "tflite", [(1, 7, 7, 8), (2,)], axes=[1, 2])) == "global_pool"
    assert kernel_category(K("SUM", "tflite", [(1, 7, 7, 8), (1,)], axes=[3])) == "reduce"


def test_the_rest_of_the_vocabulary():
    cases = {
        ("Add", ""): "elementwise", ("MUL", "tflite"): "elementwise", ("QLinearAdd", "com.microsoft"): "elementwise",
        ("Relu", ""): "activation", ("HardSwish", ""): "activation", ("Gelu", "com.microsoft"): "activation",
        ("FastGelu", "com.microsoft"): "activation", ("LOGISTIC", "tflite"): "activation",
        ("BatchNormalization", ""): "norm", ("SkipLayerNormalization", "com.microsoft"): "norm",
        ("SimplifiedLayerNormalization", ""): "norm", ("InstanceNormalization", ""): "norm",
        ("Softmax", ""): "softmax", ("SOFTMAX", "tflite"): "softmax", ("ArgMax", ""): "reduce",
        ("Concat", ""): "concat", ("CONCATENATION", "tflite"): "concat", ("Split", ""): "split_slice",
        ("STRIDED_SLICE", "tflite"): "split_slice", ("Transpose", ""): "transpose",
        ("ReorderInput", "com.microsoft.nchwc"): "transpose", ("ReorderOutput", "com.microsoft.nchwc"): "transpose",
        ("Reshape", ""): "reshape", ("Flatten", ""): "reshape", ("EXPAND_DIMS", "tflite"): "reshape",
        ("Resize", ""): "resize", ("Upsample", "com.microsoft.nchwc"): "resize",
        ("RESIZE_BILINEAR", "tflite"): "resize", ("Pad", ""): "pad", ("PADV2", "tflite"): "pad",
        ("Attention", "com.microsoft"): "attention", ("MultiHeadAttention", "com.microsoft"): "attention",
        ("QuantizeLinear", ""): "quant", ("DEQUANTIZE", "tflite"): "quant", ("Constant", ""): "other",
        ("MyOp", "my.ops"): "other",
    }
    for (op, domain), want in cases.items():
        assert kernel_category(K(op, domain)) == want, op
    assert set(cases.values()) <= set(CATEGORIES)


def test_fused_activation_and_sum():
    assert fused_activation(K("FusedConv", "com.microsoft", activation="Relu")) == "relu"
    nchwc = "com.microsoft.nchwc"
    assert fused_activation(K("Conv", nchwc, activation="Clip", activation_params=[0.0, 6.0])) == "relu6"
    assert fused_activation(K("Conv", nchwc, activation="Clip", activation_params=[-1.0, 1.0])) == "clip"
    assert fused_activation(K("CONV_2D", "tflite", fused_activation_function="RELU6")) == "relu6"
    assert fused_activation(K("CONV_2D", "tflite", fused_activation_function="NONE")) is None
    assert fused_activation(K("Conv")) is None
    assert fused_sum(K("Conv", "com.microsoft.nchwc", inputs=("x", "w", "b", "s")))
    assert not fused_sum(K("Conv", "com.microsoft.nchwc", inputs=("x", "w", "b")))
    assert fused_sum(K("FusedConv", "com.microsoft", inputs=("x", "w", "", "z")))
    assert not fused_sum(K("FusedConv", "com.microsoft", inputs=("x", "w", "b", "")))
    assert not fused_sum(K("Conv", inputs=("x", "w", "b", "s")))


def test_every_kernel_of_real_models_has_a_category(mobilenetv2_onnx, tflite_float):
    for path in (mobilenetv2_onnx, tflite_float):
        for k in read_model(path).kernels:
            assert kernel_category(k) in CATEGORIES
    cats = [kernel_category(k) for k in read_model(mobilenetv2_onnx).kernels]
    assert cats.count("dwconv") == 17 and cats.count("conv") == 35 and cats.count("global_pool") == 1
