"""One kernel vocabulary across runtimes, so a predictor can train on ONNX Runtime and TFLite alike.

:func:`kernel_category` maps ONNX, ONNX Runtime (``com.microsoft``, ``com.microsoft.nchwc``)
and TFLite builtin op names to one of :data:`CATEGORIES`:

=================  =============================================================================
``conv``           dense convolution (Conv, FusedConv, nchwc Conv, QLinearConv, CONV_2D, CONV_3D)
``dwconv``         depthwise: group == Cin == Cout, or DEPTHWISE_CONV_2D
``gconv``          any other grouped convolution
``convtranspose``  ConvTranspose, TRANSPOSE_CONV
``gemm``           Gemm/FusedGemm/FULLY_CONNECTED, and MatMul-like ops whose B is a constant 2-D weight
``matmul``         activation × activation products (batched MatMul, BATCH_MATMUL, Einsum)
``pool``           windowed max/average pooling
``global_pool``    global pools, and ReduceMean/ReduceMax/MEAN over exactly the spatial axes of a 4-D
                   tensor (axes {2, 3}; for TFLite also {1, 2}, its NHWC spatial axes)
``elementwise``    binary arithmetic (Add, Sub, Mul, Div, Max, Min, Pow, comparisons, QLinearAdd ...)
``activation``     unary functions (Relu, Clip, Sigmoid, HardSwish, Gelu, Tanh, Exp, Sqrt ...)
``norm``           BatchNorm, LayerNorm and its fused/RMS forms, Instance/Group/Lp norms, LRN
``softmax``        Softmax, LogSoftmax
``reduce``         other reductions, ArgMax/ArgMin, TopK
``concat``         Concat, CONCATENATION, PACK
``split_slice``    Split, Slice, Gather, STRIDED_SLICE, UNPACK ...
``transpose``      Transpose, nchwc ReorderInput/ReorderOutput, DepthToSpace/SpaceToDepth
``reshape``        Reshape, Flatten, Squeeze, Unsqueeze, Identity, Dropout, EXPAND_DIMS (no data moves)
``resize``         Resize, Upsample, RESIZE_BILINEAR, RESIZE_NEAREST_NEIGHBOR
``pad``            Pad, PAD, PADV2, MIRROR_PAD
``attention``      Attention, MultiHeadAttention, GroupQueryAttention ...
``quant``          QuantizeLinear, DequantizeLinear, DynamicQuantizeLinear, QUANTIZE, DEQUANTIZE
``other``          everything else (Constant, Shape, Cast, Expand, Tile, custom ops ...)
=================  =============================================================================
"""

from __future__ import annotations

from typing import Optional

from ._common import KernelRecord

CATEGORIES = (
    "conv", "dwconv", "gconv", "convtranspose", "gemm", "matmul", "pool", "global_pool", "elementwise",
    "activation", "norm", "softmax", "reduce", "concat", "split_slice", "transpose", "reshape", "resize",
    "pad", "attention", "quant", "other",
)

_CONV = {"Conv", "ConvInteger", "QLinearConv", "FusedConv", "NhwcConv", "NhwcFusedConv", "CONV_2D", "CONV_3D"}
_NHWC_CONV = {"NhwcConv", "NhwcFusedConv"}
_GEMM = {"Gemm", "FusedGemm", "QGemm", "FULLY_CONNECTED"}
# MatMul-like op -> index of its B operand
_MATMUL_B = {
    "MatMul": 1, "FusedMatMul": 1, "MatMulInteger": 1, "QLinearMatMul": 3, "MatMulIntegerToFloat": 1,
    "DynamicQuantizeMatMul": 1, "MatMulInteger16": 1, "MatMulNBits": 1, "BATCH_MATMUL": 1,
}
_GLOBAL_REDUCE = {"ReduceMean", "ReduceMax", "MEAN", "REDUCE_MAX"}

_BY_NAME: dict[str, str] = {}


def _put(cat: str, *names: str) -> None:
    for n in names:
        _BY_NAME[n] = cat


_put("convtranspose", "ConvTranspose", "TRANSPOSE_CONV")
_put("matmul", "Einsum")
_put("pool", "MaxPool", "AveragePool", "LpPool", "NhwcMaxPool", "QLinearAveragePool", "MAX_POOL_2D",
     "AVERAGE_POOL_2D", "L2_POOL_2D")
_put("global_pool", "GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool", "QLinearGlobalAveragePool")
_put("elementwise", "Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum", "Mean", "Mod", "Where", "Equal",
     "Greater", "GreaterOrEqual", "Less", "LessOrEqual", "And", "Or", "Xor", "BitShift", "BiasAdd",
     "QLinearAdd", "QLinearMul", "ADD", "SUB", "MUL", "DIV", "MAXIMUM", "MINIMUM", "SQUARED_DIFFERENCE",
     "POW", "FLOOR_DIV", "FLOOR_MOD", "ADD_N", "EQUAL", "NOT_EQUAL", "LESS", "LESS_EQUAL", "GREATER",
     "GREATER_EQUAL", "LOGICAL_AND", "LOGICAL_OR", "SELECT", "SELECT_V2")
_put("activation", "Relu", "LeakyRelu", "PRelu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Elu", "Selu",
     "Celu", "ThresholdedRelu", "Softplus", "Softsign", "Mish", "Gelu", "BiasGelu", "FastGelu", "QuickGelu",
     "Swish", "Clip", "Erf", "Exp", "Log", "Sqrt", "Reciprocal", "Abs", "Neg", "Floor", "Ceil", "Round",
     "Sign", "Sin", "Cos", "Tan", "Not", "Shrink", "QLinearSigmoid", "QLinearLeakyRelu", "RELU", "RELU6",
     "RELU_N1_TO_1", "RELU_0_TO_1", "LOGISTIC", "TANH", "HARD_SWISH", "GELU", "LEAKY_RELU", "PRELU", "ELU",
     "EXP", "LOG", "SQRT", "RSQRT", "SQUARE", "ABS", "NEG", "SIN", "COS", "FLOOR", "CEIL", "ROUND", "SIGN",
     "LOGICAL_NOT")
_put("norm", "BatchNormalization", "LayerNormalization", "SkipLayerNormalization",
     "SimplifiedLayerNormalization", "SkipSimplifiedLayerNormalization", "InstanceNormalization",
     "GroupNormalization", "RMSNormalization", "LpNormalization", "MeanVarianceNormalization", "LRN",
     "EmbedLayerNormalization", "L2_NORMALIZATION", "LOCAL_RESPONSE_NORMALIZATION")
_put("softmax", "Softmax", "LogSoftmax", "BiasSoftmax", "QLinearSoftmax", "SOFTMAX", "LOG_SOFTMAX")
_put("reduce", "ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
     "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare", "ArgMax", "ArgMin", "TopK", "CumSum", "MEAN",
     "SUM", "REDUCE_MAX", "REDUCE_MIN", "REDUCE_PROD", "REDUCE_ANY", "ARG_MAX", "ARG_MIN", "CUMSUM")
_put("concat", "Concat", "QLinearConcat", "CONCATENATION", "PACK")
_put("split_slice", "Split", "Slice", "Gather", "GatherElements", "GatherND", "SPLIT", "SPLIT_V", "SLICE",
     "STRIDED_SLICE", "GATHER", "GATHER_ND", "UNPACK", "EMBEDDING_LOOKUP")
_put("transpose", "Transpose", "ReorderInput", "ReorderOutput", "DepthToSpace", "SpaceToDepth", "TRANSPOSE",
     "DEPTH_TO_SPACE", "SPACE_TO_DEPTH")
_put("reshape", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout", "RESHAPE", "SQUEEZE",
     "EXPAND_DIMS")
_put("resize", "Resize", "Upsample", "RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR")
_put("pad", "Pad", "PAD", "PADV2", "MIRROR_PAD")
_put("attention", "Attention", "MultiHeadAttention", "QAttention", "GroupQueryAttention",
     "PackedAttention", "PackedMultiHeadAttention", "DecoderMaskedMultiHeadAttention",
     "SparseAttention", "RotaryEmbedding")
_put("quant", "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "QUANTIZE", "DEQUANTIZE")


def _shape(k: KernelRecord, i: int) -> tuple:
    return tuple(k.input_shapes[i]) if i < len(k.input_shapes) else ()


def _is_const(k: KernelRecord, i: int) -> bool:
    return i in (k.attrs.get("const_inputs") or ())


def _conv_category(k: KernelRecord) -> str:
    op = k.op_type
    x = _shape(k, 0)
    w = _shape(k, 3 if op == "QLinearConv" else 1)
    if k.domain == "tflite":
        if len(x) < 2 or len(w) < 2 or w[-1] <= 0:
            return "conv"
        cin, cout = x[-1], w[0]
        group = cin // w[-1] if w[-1] and cin % w[-1] == 0 else 1
    else:
        group = int(k.attrs.get("group", 1) or 1)
        if len(x) < 2 or not w:
            return "conv" if group == 1 else "gconv"
        cin = x[-1] if op in _NHWC_CONV or k.attrs.get("channels_last") else x[1]
        cout = w[0]
    if group <= 1:
        return "conv"
    if group == cin == cout:
        return "dwconv"
    return "gconv"


def _spatial_reduce(k: KernelRecord) -> bool:
    x = _shape(k, 0)
    axes = k.attrs.get("axes")
    if len(x) != 4 or axes is None:
        return False
    norm = {a + 4 if a < 0 else a for a in axes}
    # NCHW (ONNX, and TFLite graphs converted from PyTorch that keep NCHW around a MEAN) or NHWC
    return norm == {2, 3} or (norm == {1, 2} and k.domain == "tflite")


def kernel_category(k: KernelRecord) -> str:
    """The canonical category of a kernel (one of :data:`CATEGORIES`)."""
    op = k.op_type
    if op == "DEPTHWISE_CONV_2D":
        return "dwconv"
    if op in _CONV:
        return _conv_category(k)
    if op in _GEMM:
        return "gemm"
    if op in _MATMUL_B:
        b = _MATMUL_B[op]
        return "gemm" if _is_const(k, b) and len(_shape(k, b)) == 2 else "matmul"
    if op in _GLOBAL_REDUCE and _spatial_reduce(k):
        return "global_pool"
    if op in ("Max", "Min", "Sum", "Mean") and len(k.inputs) == 1:
        return "activation"
    return _BY_NAME.get(op, "other")


_TFL_ACT = {"RELU": "relu", "RELU6": "relu6", "RELU_N1_TO_1": "relu_n1_to_1", "RELU_0_TO_1": "relu_0_to_1",
            "TANH": "tanh", "SIGN_BIT": "sign_bit"}


def fused_activation(k: KernelRecord) -> Optional[str]:
    """The activation a kernel applies to its output, lower-case (``relu``, ``relu6``, ``clip`` ...), or None.

    Reads ORT's ``activation`` attribute (FusedConv, FusedGemm, nchwc Conv; a Clip to
    [0, 6] is reported as ``relu6``) and TFLite's ``fused_activation_function``.
    """
    act = k.attrs.get("activation")
    if act:
        name = str(act)
        if name == "Clip":
            params = k.attrs.get("activation_params") or []
            if len(params) == 2 and float(params[0]) == 0.0 and float(params[1]) == 6.0:
                return "relu6"
        return name.lower()
    tfl = k.attrs.get("fused_activation_function")
    if tfl and tfl != "NONE":
        return _TFL_ACT.get(str(tfl), str(tfl).lower())
    return None


def fused_sum(k: KernelRecord) -> bool:
    """True when the kernel also adds a residual tensor: nchwc Conv's 4th "Sum" input, FusedConv's Z."""
    if k.op_type in ("Conv", "FusedConv", "NhwcFusedConv") and k.domain in ("com.microsoft", "com.microsoft.nchwc"):
        return len(k.inputs) > 3 and bool(k.inputs[3])
    return False
