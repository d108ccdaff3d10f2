"""FLOPs, MACs and bytes of one kernel, from one formula table keyed by (domain, op_type).

Conventions
-----------
- **1 MAC = 2 FLOPs.**  ``macs`` counts the multiply-accumulates of convolutions, matrix
  products, attention and einsum contractions only.  ``flops`` = ``2 * macs`` plus every
  other arithmetic operation of the kernel (bias adds, fused activations, fused residual
  sums, elementwise ops, pooling windows, reductions, normalizations ...).
- Elementwise and activation ops cost a fixed number of FLOPs **per output element**
  (:data:`ELEMENT_FLOPS`).  Simple arithmetic, comparisons and ReLU count 1; Clip,
  LeakyReLU and PReLU 2; HardSigmoid 4; HardSwish 5.  A transcendental function (exp, log,
  erf, tanh, sin, pow, ...) counts :data:`TRANSCENDENTAL` = 8, a nominal cost of the
  vectorised polynomial runtimes use; composite functions add up their parts: Sigmoid 10
  (exp + add + reciprocal), SiLU/Swish 11, GELU (erf form) 12, QuickGelu 12, FastGelu
  (tanh form) 15, Softplus 17, Mish 26.
- Softmax counts 12 per element (max, subtract, exp, sum, divide).  Inference
  BatchNormalization is a per-channel scale and shift: 2 per element.  LayerNormalization,
  InstanceNormalization and GroupNormalization count 7 per element (mean, centre, square,
  variance, normalize, scale, shift); the RMS ("simplified") form 4; the skip forms add one
  per element for the skip add and one for the bias.
- Pooling counts one operation per window element per output (max: compares; average:
  adds, the division folded in).  Global pools count one per input element (average adds
  one divide per output).  Reductions count one per input element; ReduceMean adds one per
  output, ReduceL2/LogSumExp follow their parts.
- Resize: nearest 0; linear 2·2^d and cubic 2·4^d per output element, d the number of
  resized axes.  QuantizeLinear 3, DequantizeLinear 2 per element.  Cast, Pad, Concat,
  Split, Slice, Gather, Transpose, Expand, Tile, DepthToSpace and the like: 0 FLOPs.
- ``bytes_read`` is the sum of the bytes of all inputs (activations and weights, each
  tensor at its own dtype size; int4 counts half a byte), ``bytes_written`` the sum of the
  outputs.  Ops that only change how data is viewed — Reshape, Flatten, Squeeze,
  Unsqueeze, Identity, Dropout (inference), Constant, Shape, Size, and TFLite's RESHAPE,
  SQUEEZE, EXPAND_DIMS — move no data: 0 bytes.  Ops that copy a part of their input
  (Slice, Gather, StridedSlice ...) read as many bytes as they write, plus their index
  inputs.
- An op without a formula gets 0 FLOPs, bytes from its shapes, and ``unknown_cost=True``.

TFLite ops live in the same table under the domain ``"tflite"``; their formulas are the
ONNX ones applied to TFLite's layouts (tensors NHWC, conv weights OHWI, depthwise weights
1HWO, FULLY_CONNECTED weights (out, in)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Callable, Optional, Sequence

from ._common import KernelRecord, Shape, batch_transposed, nbytes, numel

TRANSCENDENTAL = 8
SIGMOID = TRANSCENDENTAL + 2
GELU = TRANSCENDENTAL + 4
SOFTMAX = 12
NORM = 7
RMS_NORM = 4

ELEMENT_FLOPS: dict[str, int] = {
    # arithmetic, comparisons, logic
    "Add": 1, "Sub": 1, "Mul": 1, "Div": 1, "Mod": 1, "Max": 1, "Min": 1, "Abs": 1, "Neg": 1,
    "Floor": 1, "Ceil": 1, "Round": 1, "Sign": 1, "Reciprocal": 1, "Sqrt": 1, "Equal": 1,
    "Greater": 1, "GreaterOrEqual": 1, "Less": 1, "LessOrEqual": 1, "And": 1, "Or": 1, "Xor": 1,
    "Not": 1, "Where": 1, "BitShift": 1, "BitwiseAnd": 1, "BitwiseOr": 1, "BitwiseXor": 1,
    "BitwiseNot": 1, "IsNaN": 1, "IsInf": 1, "Mean": 1, "Sum": 1, "BiasAdd": 1,
    # activations
    "Relu": 1, "ThresholdedRelu": 1, "Clip": 2, "LeakyRelu": 2, "PRelu": 2, "Shrink": 2,
    "HardSigmoid": 4, "HardSwish": 5, "Softsign": 3,
    "Exp": TRANSCENDENTAL, "Log": TRANSCENDENTAL, "Erf": TRANSCENDENTAL, "Tanh": TRANSCENDENTAL,
    "Pow": TRANSCENDENTAL, "Sin": TRANSCENDENTAL, "Cos": TRANSCENDENTAL, "Tan": TRANSCENDENTAL,
    "Asin": TRANSCENDENTAL, "Acos": TRANSCENDENTAL, "Atan": TRANSCENDENTAL, "Sinh": TRANSCENDENTAL,
    "Cosh": TRANSCENDENTAL, "Asinh": TRANSCENDENTAL, "Acosh": TRANSCENDENTAL, "Atanh": TRANSCENDENTAL,
    "Sigmoid": SIGMOID, "Elu": TRANSCENDENTAL + 2, "Celu": TRANSCENDENTAL + 3, "Selu": TRANSCENDENTAL + 3,
    "Swish": SIGMOID + 1, "Gelu": GELU, "QuickGelu": SIGMOID + 2, "FastGelu": TRANSCENDENTAL + 7,
    "BiasGelu": GELU + 1, "Softplus": 2 * TRANSCENDENTAL + 1, "Mish": 3 * TRANSCENDENTAL + 2,
    # quantization
    "QuantizeLinear": 3, "DequantizeLinear": 2, "QLinearAdd": 5, "QLinearMul": 5,
    "QLinearSigmoid": SIGMOID + 5, "QLinearLeakyRelu": 7,
    "Cast": 0, "CastLike": 0,
}

# Cost per output element of an activation fused into a conv/gemm kernel, by the names
# ORT (``activation`` attribute) and TFLite (``fused_activation_function``) use.
FUSED_ACTIVATION_FLOPS: dict[str, int] = {
    "Relu": 1, "Clip": 2, "LeakyRelu": 2, "Sigmoid": SIGMOID, "Tanh": TRANSCENDENTAL,
    "HardSigmoid": 4, "HardSwish": 5, "Gelu": GELU,
    "RELU": 1, "RELU6": 2, "RELU_N1_TO_1": 2, "RELU_0_TO_1": 2, "TANH": TRANSCENDENTAL,
    "SIGN_BIT": 1, "NONE": 0,
}


@dataclass(frozen=True)
class Cost:
    flops: int
    macs: int
    bytes_read: int
    bytes_written: int
    unknown: bool = False


class _K:
    """What a formula sees: shapes, dtypes, attributes of one kernel."""

    __slots__ = ("ins", "outs", "a", "in_dt", "out_dt")

    def __init__(self, ins, outs, a, in_dt, out_dt):
        self.ins: list[Shape] = ins
        self.outs: list[Shape] = outs
        self.a: dict = a
        self.in_dt = in_dt
        self.out_dt = out_dt

    def i(self, idx: int) -> Shape:
        return self.ins[idx] if idx < len(self.ins) else None

    def has(self, idx: int) -> bool:
        s = self.i(idx)
        return s is not None

    def out0(self) -> int:
        return numel(self.outs[0]) if self.outs else 0

    def in0(self) -> int:
        return numel(self.ins[0]) if self.ins else 0


# Formulas return (macs, other_flops).
Formula = Callable[[_K], "tuple[int, int]"]


def _act(k: _K) -> int:
    name = k.a.get("activation") or k.a.get("fused_activation_function")
    if not name:
        return 0
    return FUSED_ACTIVATION_FLOPS.get(str(name), 1)


def _prod(xs: Sequence[int]) -> int:
    return math.prod(xs) if xs else 1


def conv_at(xi: int = 0, wi: int = 1, bi: Optional[int] = 2, sum_i: Optional[int] = None) -> Formula:
    """Conv-like kernels with weights (Cout, Cin/group, k...): MACs = out · Cin/group · Πk."""

    def f(k: _K) -> tuple[int, int]:
        w = k.i(wi)
        out = k.out0()
        if w is None or len(w) < 2:
            return 0, 0
        macs = out * _prod(w[1:])
        other = 0
        if bi is not None and k.has(bi):
            other += out
        if sum_i is not None and k.has(sum_i):
            other += out
        return macs, other + out * _act(k)

    return f


def _fused_conv(k: _K) -> tuple[int, int]:
    macs, other = conv_at(0, 1, 2, 3)(k)
    return macs, other


def _conv_transpose(k: _K) -> tuple[int, int]:
    x, w = k.i(0), k.i(1)
    if x is None or w is None:
        return 0, 0
    macs = numel(x) * _prod(w[1:])
    return macs, (k.out0() if k.has(2) else 0)


def _matmul_k(a: Shape, trans: int) -> int:
    if a is None or not a:
        return 0
    if len(a) == 1:
        return a[0]
    return a[-2] if trans else a[-1]


def matmul_at(ai: int = 0, bias_i: Optional[int] = None, extra_per_out: int = 0,
              quant_a: bool = False) -> Formula:
    """MatMul-like: MACs = Πout · K (batched, broadcast)."""

    def f(k: _K) -> tuple[int, int]:
        kk = _matmul_k(batch_transposed(k.i(ai), int(k.a.get("transBatchA", 0))), int(k.a.get("transA", 0)))
        out = k.out0()
        other = out * extra_per_out
        if bias_i is not None and k.has(bias_i):
            other += out
        if float(k.a.get("alpha", 1.0)) != 1.0:
            other += out
        if quant_a:
            other += 3 * numel(k.i(ai))
        return out * kk, other + out * _act(k)

    return f


def _gemm_at(ai: int, ci: Optional[int]) -> Formula:
    def f(k: _K) -> tuple[int, int]:
        a = k.i(ai)
        if a is None or len(a) != 2:
            return 0, 0
        kk = a[0] if int(k.a.get("transA", 0)) else a[1]
        out = k.out0()
        other = out if ci is not None and k.has(ci) else 0
        if float(k.a.get("alpha", 1.0)) != 1.0:
            other += out
        return out * kk, other + out * _act(k)

    return f


def per_out(n: int) -> Formula:
    return lambda k: (0, k.out0() * n)


def per_in(n: int, plus_out: int = 0) -> Formula:
    return lambda k: (0, k.in0() * n + k.out0() * plus_out)


def _variadic(k: _K) -> tuple[int, int]:
    n = sum(1 for s in k.ins if s is not None)
    return 0, k.out0() * max(1, n - 1)


def _pool(k: _K) -> tuple[int, int]:
    ks = k.a.get("kernel_shape") or [k.a.get("filter_height", 1), k.a.get("filter_width", 1)]
    return 0, k.out0() * _prod(ks)


def _lp_pool(k: _K) -> tuple[int, int]:
    m, o = _pool(k)
    return m, 2 * o + k.out0() * TRANSCENDENTAL


def _norm(per_elem: int, skip: bool = False) -> Formula:
    def f(k: _K) -> tuple[int, int]:
        out = k.out0()
        extra = 0
        if skip:
            extra = out + (out if k.has(4) else 0)
        return 0, out * per_elem + extra

    return f


def _softmax(k: _K) -> tuple[int, int]:
    return 0, k.out0() * SOFTMAX


def _resize(k: _K) -> tuple[int, int]:
    mode = str(k.a.get("mode", "nearest")).lower()
    x, y = k.i(0), k.outs[0] if k.outs else None
    if x is None or y is None or len(x) != len(y):
        d = 2
    else:
        d = sum(1 for a, b in zip(x, y) if a != b)
    if "linear" in mode:
        return 0, k.out0() * 2 * (2 ** d)
    if "cubic" in mode:
        return 0, k.out0() * 2 * (4 ** d)
    return 0, 0


def _tfl_resize(mode: str) -> Formula:
    def f(k: _K) -> tuple[int, int]:
        return 0, (k.out0() * 2 * 4 if mode == "linear" else 0)

    return f


def _reduce(per_in_elem: int, per_out_elem: int = 0) -> Formula:
    return lambda k: (0, k.in0() * per_in_elem + k.out0() * per_out_elem)


def _einsum(k: _K) -> tuple[int, int]:
    eq = str(k.a.get("equation", "")).replace(" ", "")
    terms = eq.split("->")[0].split(",") if eq else []
    if not terms or "." in eq or any(s is None for s in k.ins[: len(terms)]):
        return 0, 0
    sizes: dict[str, int] = {}
    for term, shape in zip(terms, k.ins):
        for ch, d in zip(term, shape):
            sizes[ch] = max(sizes.get(ch, 1), d)
    out_letters = set(eq.split("->")[1]) if "->" in eq else {
        c for c in sizes if sum(t.count(c) for t in terms) == 1}
    total = _prod(list(sizes.values()))
    contracted = [c for c in sizes if c not in out_letters]
    if contracted or len(terms) > 1:
        return total * max(1, len(terms) - 1), 0
    return 0, 0 if len(terms) == 1 else total


def _attention_ms(k: _K) -> tuple[int, int]:
    """com.microsoft.Attention: input (B,S,Din) · weights (Din, Hq+Hk+Hv), then SDPA."""
    x, w = k.i(0), k.i(1)
    if x is None or w is None or len(x) != 3:
        return 0, 0
    b, s, din = x
    sizes = k.a.get("qkv_hidden_sizes")
    hq, hk, hv = (int(t) for t in sizes) if sizes else (w[-1] // 3,) * 3
    heads = int(k.a.get("num_heads", 1)) or 1
    past = k.i(4)
    skv = s + (past[3] if past is not None and len(past) == 5 else 0)
    proj = b * s * din * (hq + hk + hv)
    scores = b * s * skv * hq
    av = b * s * skv * hv
    other = (b * s * (hq + hk + hv) if k.has(2) else 0) + SOFTMAX * b * heads * s * skv
    return proj + scores + av, other


def _sdpa(k: _K) -> tuple[int, int]:
    """MultiHeadAttention / ONNX Attention: scores and weighted sum, no projections."""
    q = k.i(0)
    if q is None:
        return 0, 0
    key, val = k.i(1), k.i(2)
    heads = int(k.a.get("num_heads", k.a.get("q_num_heads", 1)) or 1)
    if len(q) == 4:  # (B, N, S, H)
        b, heads, s, h = q
        d = heads * h
    elif len(q) == 5:  # packed (B, S, N, 3, H)
        b, s, heads, _, h = q
        d = heads * h
        key = val = None
    elif len(q) == 3:
        b, s, d = q
    else:
        return 0, 0
    if key is not None and len(key) == 4:
        length = key[2] if key[1] == heads or len(q) == 4 else key[1]
    elif key is not None and len(key) == 3:
        length = key[1]
    else:
        length = s
    if val is not None and len(val) == 4:
        dv = val[1] * val[3] if len(q) != 4 else heads * val[3]
    elif val is not None and len(val) == 3:
        dv = val[2]
    else:
        dv = d
    macs = b * s * length * d + b * s * length * dv
    return macs, SOFTMAX * b * heads * s * length


def _zero(k: _K) -> tuple[int, int]:
    return 0, 0


# bytes modes
FULL, VIEW, PART = "full", "view", "part"

# (domain, op_type) -> (formula, bytes mode)
TABLE: dict[tuple[str, str], tuple[Formula, str]] = {}
MS, NCHWC, TFL = "com.microsoft", "com.microsoft.nchwc", "tflite"

for _op, _n in ELEMENT_FLOPS.items():
    TABLE[("", _op)] = (per_out(_n), FULL)
for _op in ("Sum", "Mean", "Max", "Min"):
    TABLE[("", _op)] = (_variadic, FULL)
for _op in ("Gelu", "FastGelu", "QuickGelu", "BiasGelu", "BiasAdd", "QLinearAdd", "QLinearMul",
            "QLinearSigmoid", "QLinearLeakyRelu", "QuantizeLinear", "DequantizeLinear"):
    TABLE[(MS, _op)] = (per_out(ELEMENT_FLOPS[_op]), FULL)

TABLE.update({
    ("", "Conv"): (conv_at(0, 1, 2), FULL),
    ("", "ConvInteger"): (conv_at(0, 1, None), FULL),
    ("", "QLinearConv"): (conv_at(0, 3, 8), FULL),
    (MS, "QLinearConv"): (conv_at(0, 3, 8), FULL),
    (MS, "FusedConv"): (_fused_conv, FULL),
    (NCHWC, "Conv"): (_fused_conv, FULL),
    (MS, "NhwcConv"): (conv_at(0, 1, 2), FULL),
    (MS, "NhwcFusedConv"): (_fused_conv, FULL),
    ("", "ConvTranspose"): (_conv_transpose, FULL),
    ("", "Gemm"): (_gemm_at(0, 2), FULL),
    (MS, "FusedGemm"): (_gemm_at(0, 2), FULL),
    (MS, "QGemm"): (_gemm_at(0, 6), FULL),
    ("", "MatMul"): (matmul_at(0), FULL),
    (MS, "FusedMatMul"): (matmul_at(0), FULL),
    ("", "MatMulInteger"): (matmul_at(0), FULL),
    ("", "QLinearMatMul"): (matmul_at(0, extra_per_out=2), FULL),
    (MS, "MatMulInteger16"): (matmul_at(0), FULL),
    (MS, "MatMulIntegerToFloat"): (matmul_at(0, bias_i=6, extra_per_out=1), FULL),
    (MS, "DynamicQuantizeMatMul"): (matmul_at(0, bias_i=4, extra_per_out=2, quant_a=True), FULL),
    ("", "MaxPool"): (_pool, FULL),
    ("", "AveragePool"): (_pool, FULL),
    ("", "LpPool"): (_lp_pool, FULL),
    (NCHWC, "MaxPool"): (_pool, FULL),
    (NCHWC, "AveragePool"): (_pool, FULL),
    (MS, "NhwcMaxPool"): (_pool, FULL),
    (MS, "QLinearAveragePool"): (_pool, FULL),
    ("", "GlobalAveragePool"): (per_in(1, 1), FULL),
    ("", "GlobalMaxPool"): (per_in(1), FULL),
    ("", "GlobalLpPool"): (per_in(2, TRANSCENDENTAL), FULL),
    (NCHWC, "GlobalAveragePool"): (per_in(1, 1), FULL),
    (NCHWC, "GlobalMaxPool"): (per_in(1), FULL),
    (MS, "QLinearGlobalAveragePool"): (per_in(1, 3), FULL),
    ("", "BatchNormalization"): (per_out(2), FULL),
    ("", "InstanceNormalization"): (_norm(NORM), FULL),
    ("", "GroupNormalization"): (_norm(NORM), FULL),
    ("", "LayerNormalization"): (_norm(NORM), FULL),
    ("", "MeanVarianceNormalization"): (_norm(NORM - 2), FULL),
    ("", "LpNormalization"): (_norm(3), FULL),
    ("", "RMSNormalization"): (_norm(RMS_NORM), FULL),
    ("", "SimplifiedLayerNormalization"): (_norm(RMS_NORM), FULL),  # ORT registers it in the ONNX domain
    ("", "LRN"): (lambda k: (0, k.out0() * (int(k.a.get("size", 5)) + TRANSCENDENTAL + 2)), FULL),
    (MS, "LayerNormalization"): (_norm(NORM), FULL),
    (MS, "SimplifiedLayerNormalization"): (_norm(RMS_NORM), FULL),
    (MS, "SkipLayerNormalization"): (_norm(NORM, skip=True), FULL),
    (MS, "SkipSimplifiedLayerNormalization"): (_norm(RMS_NORM, skip=True), FULL),
    ("", "Softmax"): (_softmax, FULL),
    ("", "LogSoftmax"): (_softmax, FULL),
    ("", "Hardmax"): (per_out(2), FULL),
    (MS, "BiasSoftmax"): (lambda k: (0, k.out0() * (SOFTMAX + 1)), FULL),
    (MS, "QLinearSoftmax"): (lambda k: (0, k.out0() * (SOFTMAX + 5)), FULL),
    ("", "ReduceMean"): (_reduce(1, 1), FULL),
    ("", "ReduceSum"): (_reduce(1), FULL),
    ("", "ReduceMax"): (_reduce(1), FULL),
    ("", "ReduceMin"): (_reduce(1), FULL),
    ("", "ReduceProd"): (_reduce(1), FULL),
    ("", "ReduceL1"): (_reduce(2), FULL),
    ("", "ReduceL2"): (_reduce(2, 1), FULL),
    ("", "ReduceSumSquare"): (_reduce(2), FULL),
    ("", "ReduceLogSum"): (_reduce(1, TRANSCENDENTAL), FULL),
    ("", "ReduceLogSumExp"): (_reduce(TRANSCENDENTAL + 2, TRANSCENDENTAL), FULL),
    ("", "ArgMax"): (_reduce(1), FULL),
    ("", "ArgMin"): (_reduce(1), FULL),
    ("", "TopK"): (_reduce(2), FULL),
    ("", "CumSum"): (per_out(1), FULL),
    ("", "Resize"): (_resize, FULL),
    ("", "Upsample"): (_resize, FULL),
    (NCHWC, "Upsample"): (_resize, FULL),
    ("", "Einsum"): (_einsum, FULL),
    (MS, "Attention"): (_attention_ms, FULL),
    (MS, "QAttention"): (_attention_ms, FULL),
    (MS, "MultiHeadAttention"): (_sdpa, FULL),
    ("", "Attention"): (_sdpa, FULL),
    (MS, "DynamicQuantizeLinear"): (per_out(5), FULL),
    ("", "DynamicQuantizeLinear"): (lambda k: (0, k.in0() * 5), FULL),
    (MS, "QLinearConcat"): (per_out(2), FULL),
    # data movement, 0 FLOPs
    ("", "Concat"): (_zero, FULL),
    ("", "Split"): (_zero, FULL),
    ("", "Transpose"): (_zero, FULL),
    ("", "Pad"): (_zero, FULL),
    ("", "Expand"): (_zero, FULL),
    ("", "Tile"): (_zero, FULL),
    ("", "DepthToSpace"): (_zero, FULL),
    ("", "SpaceToDepth"): (_zero, FULL),
    ("", "ConstantOfShape"): (_zero, FULL),
    ("", "Range"): (_zero, FULL),
    ("", "Trilu"): (_zero, FULL),
    ("", "Slice"): (_zero, PART),
    ("", "Gather"): (_zero, PART),
    ("", "GatherElements"): (_zero, PART),
    ("", "GatherND"): (_zero, PART),
    ("", "ScatterND"): (_zero, FULL),
    ("", "ScatterElements"): (_zero, FULL),
    ("", "NonZero"): (per_in(1), FULL),
    (NCHWC, "ReorderInput"): (_zero, FULL),
    (NCHWC, "ReorderOutput"): (_zero, FULL),
    # views: no data moves
    ("", "Reshape"): (_zero, VIEW),
    ("", "Flatten"): (_zero, VIEW),
    ("", "Squeeze"): (_zero, VIEW),
    ("", "Unsqueeze"): (_zero, VIEW),
    ("", "Identity"): (_zero, VIEW),
    ("", "Dropout"): (_zero, VIEW),
    ("", "Constant"): (_zero, VIEW),
    ("", "Shape"): (_zero, VIEW),
    ("", "Size"): (_zero, VIEW),
})

# TFLite builtins: the same formulas on TFLite layouts.
_TFL_UNARY = {
    "RELU": 1, "RELU6": 2, "RELU_N1_TO_1": 2, "RELU_0_TO_1": 2, "LEAKY_RELU": 2, "PRELU": 2,
    "LOGISTIC": SIGMOID, "TANH": TRANSCENDENTAL, "HARD_SWISH": 5, "ELU": TRANSCENDENTAL + 2,
    "EXP": TRANSCENDENTAL, "LOG": TRANSCENDENTAL, "SIN": TRANSCENDENTAL, "COS": TRANSCENDENTAL,
    "SQRT": 1, "RSQRT": 2, "SQUARE": 1, "ABS": 1, "NEG": 1, "FLOOR": 1, "CEIL": 1, "ROUND": 1,
    "SIGN": 1, "LOGICAL_NOT": 1, "QUANTIZE": 3, "DEQUANTIZE": 2, "CAST": 0,
    "ADD": 1, "SUB": 1, "MUL": 1, "DIV": 1, "MAXIMUM": 1, "MINIMUM": 1, "SQUARED_DIFFERENCE": 2,
    "FLOOR_DIV": 2, "FLOOR_MOD": 2, "POW": TRANSCENDENTAL, "EQUAL": 1, "NOT_EQUAL": 1, "LESS": 1,
    "LESS_EQUAL": 1, "GREATER": 1, "GREATER_EQUAL": 1, "LOGICAL_AND": 1, "LOGICAL_OR": 1,
    "SELECT": 1, "SELECT_V2": 1, "ADD_N": 1, "L2_NORMALIZATION": 3,
}
for _op, _n in _TFL_UNARY.items():
    TABLE[(TFL, _op)] = (lambda k, _n=_n: (0, k.out0() * (_n + _act(k))), FULL)


def _tfl_gelu(k: _K) -> tuple[int, int]:
    return 0, k.out0() * (TRANSCENDENTAL + 7 if k.a.get("approximate") else GELU)


def _tfl_conv(k: _K) -> tuple[int, int]:  # weights OHWI: Πw[1:] = kh·kw·Cin/group
    return conv_at(0, 1, 2)(k)


def _tfl_dwconv(k: _K) -> tuple[int, int]:  # weights 1HWO: one kh·kw window per output
    w = k.i(1)
    out = k.out0()
    if w is None or len(w) != 4:
        return 0, 0
    return out * w[1] * w[2], (out if k.has(2) else 0) + out * _act(k)


def _tfl_conv3d(k: _K) -> tuple[int, int]:  # weights (kd, kh, kw, Cin, Cout)
    w = k.i(1)
    out = k.out0()
    if w is None or len(w) != 5:
        return 0, 0
    return out * _prod(w[:4]), (out if k.has(2) else 0) + out * _act(k)


def _tfl_transpose_conv(k: _K) -> tuple[int, int]:  # (output_shape, W OHWI, X, bias)
    w, x = k.i(1), k.i(2)
    if w is None or x is None:
        return 0, 0
    return numel(x) * _prod(w[:3]), (k.out0() if k.has(3) else 0) + k.out0() * _act(k)


def _tfl_fc(k: _K) -> tuple[int, int]:  # weights (out, in)
    w = k.i(1)
    out = k.out0()
    if w is None or len(w) != 2:
        return 0, 0
    return out * w[1], (out if k.has(2) else 0) + out * _act(k)


def _tfl_bmm(k: _K) -> tuple[int, int]:
    kk = _matmul_k(k.i(0), int(bool(k.a.get("adj_x", False))))
    return k.out0() * kk, 0


TABLE.update({
    (TFL, "CONV_2D"): (_tfl_conv, FULL),
    (TFL, "DEPTHWISE_CONV_2D"): (_tfl_dwconv, FULL),
    (TFL, "CONV_3D"): (_tfl_conv3d, FULL),
    (TFL, "TRANSPOSE_CONV"): (_tfl_transpose_conv, FULL),
    (TFL, "FULLY_CONNECTED"): (_tfl_fc, FULL),
    (TFL, "BATCH_MATMUL"): (_tfl_bmm, FULL),
    (TFL, "AVERAGE_POOL_2D"): (lambda k: (0, _pool(k)[1] + k.out0() * _act(k)), FULL),
    (TFL, "MAX_POOL_2D"): (lambda k: (0, _pool(k)[1] + k.out0() * _act(k)), FULL),
    (TFL, "L2_POOL_2D"): (lambda k: (0, 2 * _pool(k)[1] + k.out0()), FULL),
    (TFL, "MEAN"): (_reduce(1, 1), FULL),
    (TFL, "SUM"): (_reduce(1), FULL),
    (TFL, "REDUCE_MAX"): (_reduce(1), FULL),
    (TFL, "REDUCE_MIN"): (_reduce(1), FULL),
    (TFL, "REDUCE_PROD"): (_reduce(1), FULL),
    (TFL, "REDUCE_ANY"): (_reduce(1), FULL),
    (TFL, "ARG_MAX"): (_reduce(1), FULL),
    (TFL, "ARG_MIN"): (_reduce(1), FULL),
    (TFL, "SOFTMAX"): (_softmax, FULL),
    (TFL, "LOG_SOFTMAX"): (_softmax, FULL),
    (TFL, "GELU"): (_tfl_gelu, FULL),
    (TFL, "LOCAL_RESPONSE_NORMALIZATION"): (per_out(TRANSCENDENTAL + 7), FULL),
    (TFL, "RESIZE_BILINEAR"): (_tfl_resize("linear"), FULL),
    (TFL, "RESIZE_NEAREST_NEIGHBOR"): (_tfl_resize("nearest"), FULL),
    (TFL, "CUMSUM"): (per_out(1), FULL),
})
for _op in ("CONCATENATION", "TRANSPOSE", "PACK", "UNPACK", "SPLIT", "SPLIT_V", "PAD", "PADV2",
            "MIRROR_PAD", "BROADCAST_TO", "TILE", "DEPTH_TO_SPACE", "SPACE_TO_DEPTH",
            "SPACE_TO_BATCH_ND", "BATCH_TO_SPACE_ND", "REVERSE_V2", "FILL", "ZEROS_LIKE", "ONES_LIKE"):
    TABLE[(TFL, _op)] = (_zero, FULL)
for _op in ("SLICE", "STRIDED_SLICE", "GATHER", "GATHER_ND", "EMBEDDING_LOOKUP"):
    TABLE[(TFL, _op)] = (_zero, PART)
for _op in ("RESHAPE", "SQUEEZE", "EXPAND_DIMS", "SHAPE"):
    TABLE[(TFL, _op)] = (_zero, VIEW)


def kernel_cost(domain: str, op_type: str, input_shapes: Sequence[Shape], output_shapes: Sequence[Shape],
                input_dtypes: Sequence[Optional[str]], output_dtypes: Sequence[Optional[str]],
                attrs: dict[str, Any]) -> Cost:
    """FLOPs, MACs and bytes of one kernel (see the module docstring for the conventions).

    Shapes may be ``None`` (unknown) and dtypes ``None`` (taken as float32).
    """
    ins = list(input_shapes)
    outs = list(output_shapes)
    in_dt = [d or "float32" for d in input_dtypes]
    out_dt = [d or "float32" for d in output_dtypes]
    entry = TABLE.get((domain, op_type))
    written = sum(nbytes(s, d) for s, d in zip(outs, out_dt))
    if entry is None:
        read = sum(nbytes(s, d) for s, d in zip(ins, in_dt))
        return Cost(0, 0, read, written, unknown=True)
    formula, mode = entry
    if mode == VIEW:
        read = written = 0
    elif mode == PART:
        read = written + sum(nbytes(s, d) for s, d in zip(ins[1:], in_dt[1:]))
    else:
        read = sum(nbytes(s, d) for s, d in zip(ins, in_dt))
    try:
        macs, other = formula(_K(ins, outs, attrs, in_dt, out_dt))
    except (TypeError, ValueError, IndexError, ZeroDivisionError):
        macs, other = 0, 0
    return Cost(2 * int(macs) + int(other), int(macs), int(read), int(written))


def cost_of(k: KernelRecord) -> Cost:
    """Recompute the cost of a record (all tensors taken at ``k.dtype``; missing shapes as unknown)."""
    unknown_shape = bool(k.attrs.get("shape_unknown"))
    ins = [None if (unknown_shape and s == ()) else tuple(s) for s in k.input_shapes]
    outs = [None if (unknown_shape and s == ()) else tuple(s) for s in k.output_shapes]
    return kernel_cost(k.domain, k.op_type, ins, outs, [k.dtype] * len(ins), [k.dtype] * len(outs), k.attrs)


def with_cost(k: KernelRecord) -> KernelRecord:
    """The record with its FLOPs, MACs and bytes recomputed by ``cost_of`` (parameters kept)."""
    c = cost_of(k)
    return replace(k, flops=c.flops, macs=c.macs, bytes_read=c.bytes_read, bytes_written=c.bytes_written)
