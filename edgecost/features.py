"""Kernel features: the named columns a kernel-latency regressor learns from.

One schema serves every runtime: the kernel's canonical category (one-hot), its cost
figures (FLOPs, bytes, parameters, arithmetic intensity), its geometry in NCHW terms
(TFLite's NHWC tensors are turned around), convolution and matmul specifics (kernel
size, stride, groups, M/N/K), channel alignment (XNNPACK and MLAS pack channels in
blocks of 4/8/16), what the runtime fused into it (activation, residual sum), and which
operator it is within its category (``op_code``: Gelu, QuickGelu and Relu are all
"activation" but cost very differently; a standalone activation also sets ``activation``
to its own function, so it shares what fused activations teach), and two facts of the
model around it: whether it is a network or a single-kernel probe, and the network's
memory footprint (whether its weights stay in the last-level cache from one inference to
the next).
Missing values are ``-1``: the trees learn that "not applicable" is its own case.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence

import numpy as np

from .graph._common import DTYPE_BITS, batch_transposed
from .graph.categories import CATEGORIES, fused_activation, fused_sum, kernel_category
from .records import KernelRecord

MISSING = -1.0

_ACTIVATIONS = {None: 0, "relu": 1, "leakyrelu": 2, "clip": 3, "relu6": 3, "hardswish": 4, "hard_swish": 4,
                "hardsigmoid": 5, "sigmoid": 6, "silu": 7, "swish": 7, "tanh": 8, "gelu": 9}
#: An activation the table does not know.
_OTHER_ACTIVATION = 10
#: Standalone activation ops (ONNX / ORT contrib / TFLite spellings) -> the function they apply.
_ACTIVATION_OPS = {"Relu": "relu", "RELU": "relu", "Clip": "clip", "RELU6": "relu6", "HardSwish": "hardswish",
                   "HARD_SWISH": "hardswish", "Sigmoid": "sigmoid", "LOGISTIC": "sigmoid",
                   "HardSigmoid": "hardsigmoid", "QuickGelu": "silu", "Gelu": "gelu", "BiasGelu": "gelu",
                   "FastGelu": "gelu", "GELU": "gelu", "Tanh": "tanh", "TANH": "tanh", "LeakyRelu": "leakyrelu",
                   "LEAKY_RELU": "leakyrelu"}

_BASE_FEATURES = (
    "log2_flops", "log2_macs", "log2_bytes_read", "log2_bytes_written", "log2_params", "intensity",
    "log2_out_elems", "log2_in_elems",
    "n", "c_in", "h_in", "w_in", "c_out", "h_out", "w_out",
    "kernel_h", "kernel_w", "stride", "dilation", "groups", "depthwise", "c_in_per_group", "c_out_per_group",
    "c_in_mod8", "c_in_mod16", "c_out_mod8", "c_out_mod16", "c_in_align8", "c_out_align8",
    "mm_m", "mm_n", "mm_k", "log2_mm_batch",
    "activation", "fused_sum", "n_inputs", "out_rank", "nchwc", "last_dim", "log2_last_dim", "op_code",
    "in_network", "log2_model_footprint_bytes",
)

FEATURE_NAMES: tuple[str, ...] = _BASE_FEATURES + tuple(f"cat_{c}" for c in CATEGORIES)
_CAT_OFFSET = len(_BASE_FEATURES)
_CAT_INDEX = {c: i for i, c in enumerate(CATEGORIES)}
_I_IN_NETWORK = FEATURE_NAMES.index("in_network")
_I_FOOTPRINT = FEATURE_NAMES.index("log2_model_footprint_bytes")
_I_PARAMS = FEATURE_NAMES.index("log2_params")
#: A model of at least this many kernels is a network; fewer, a kernel probe timed (nearly) alone.
NETWORK_MIN_KERNELS = 16
#: The model footprint is clipped to 1 MiB .. 32 MiB (log2).  Below it everything stays cached;
#: above it the weights stream from DRAM on every device edgecost targets (a Pi 4's 1 MiB L2,
#: a phone's few MiB of system cache, a shared VM's slice of a server L3), and once they stream a
#: kernel reads its own weights from DRAM whether the network holds 64 MiB or 500 MiB.  The clip
#: keeps a network larger than any profiled one from landing in an unseen range, and gives the
#: top of the range enough networks to learn from.  Schema 3; schemas 1 and 2 clipped at 128 MiB,
#: where the top leaf held a few campaign networks and said more: on an ORT 1-thread campaign of
#: this project's Intel VM (490 models), the realistic ImageNet models with footprints past
#: 64 MiB came out high (ResNet-50 +9.3 %, VGG-11 +12.6 %, DeiT-S +14.4 %; 11 of 13 within ±10 %);
#: clipped at 32 MiB, +1.2 / +5.1 / +1.0 % and 13 of 13, with the random split (76.3 -> 76.6 %
#: within ±10 %) and the families left out (59.8 -> 61.6 %) no worse (refits on the same
#: measurements, a noisy host whose revisits differed by 12 % on average).
FOOTPRINT_LOG2_RANGE = (20.0, 25.0)
#: The clip of profiles fitted with feature schema 1 or 2.
FOOTPRINT_LOG2_RANGE_BEFORE_3 = (20.0, 27.0)
#: Kernels whose channel alignment columns stay ``-1`` (schema 2): a dense product's operands
#: are packed by the GEMM, which takes a K or N tail at little cost (a Mixer's token-mixing
#: GEMMs with K = 196 ran at the GFLOP/s of ViT's, all multiples of 16), while a convolution in
#: ONNX Runtime's NCHWc blocks or XNNPACK pays for a partial channel block.  Given the same
#: columns, the trees carried the convolutions' penalty over to GEMMs: with the Mixer family
#: left out (ONNX Runtime, 1 thread) its GEMMs were predicted 1.39x slow where K was not a
#: multiple of 16, and 60 % of Mixers landed within ±10 %; with the columns off, 88.6 %.
DENSE_CATEGORIES = ("gemm", "matmul", "attention")
#: The feature semantics profiles are fitted with now; schema 1 (profiles saved before
#: 2026-12-05) gave dense kernels channel alignment columns too; schemas 1 and 2 clipped the
#: model footprint at 128 MiB (``FOOTPRINT_LOG2_RANGE_BEFORE_3``), schema 3 at 32 MiB.
FEATURE_SCHEMA = 3

#: Features a kernel's time can only grow with (the regressor is constrained to that).
MONOTONE_INCREASING = ("log2_model_footprint_bytes",)


def _log2(x: float) -> float:
    return math.log2(1.0 + x) if x > 0 else 0.0


def _numel(shape: Sequence[int]) -> int:
    """Elements of a tensor; 0 if a dimension is unknown (negative)."""
    return int(math.prod(shape)) if not shape or min(shape) >= 0 else 0


def is_nhwc(k: KernelRecord) -> bool:
    return k.domain == "tflite" or k.attrs.get("layout") == "NHWC"


def _nchw(shape: Sequence[int], nhwc: bool) -> tuple[float, float, float, float]:
    """(N, C, H, W) of a 4-D (or lower-rank) activation; -1 where there is no such axis."""
    rank = len(shape)
    if rank == 4:
        n, a, b, c = shape
        return (n, c, a, b) if nhwc else (n, a, b, c)
    s = [int(d) for d in shape]
    if rank == 3:  # (batch, tokens, features): tokens play H, features play C
        return s[0], s[2], s[1], 1
    if len(s) == 2:
        return s[0], s[1], 1, 1
    if len(s) == 1:
        return 1, s[0], 1, 1
    return MISSING, MISSING, MISSING, MISSING


_OP_CODES: dict[str, float] = {}


def op_code(op_type: str) -> float:
    """A stable number for an op type (CRC-32 based: the same in every version, no table to keep in step)."""
    code = _OP_CODES.get(op_type)
    if code is None:
        code = _OP_CODES[op_type] = float(zlib.crc32(op_type.encode("utf-8")) % 1_000_003)
    return code


def kernel_features(k: KernelRecord, category: str | None = None, schema: int = FEATURE_SCHEMA) -> np.ndarray:
    """One row of FEATURE_NAMES for a kernel."""
    return np.asarray(_feature_row(k, category, schema), dtype=np.float64)


def _feature_row(k: KernelRecord, category: str | None = None, schema: int = FEATURE_SCHEMA) -> list[float]:
    # A list, turned into an array once per model: item assignment into a numpy row costs
    # several times more, and this runs for every kernel of every model predicted.
    cat = category or kernel_category(k)
    row: list[float] = [MISSING] * len(FEATURE_NAMES)
    nhwc = is_nhwc(k)
    ins = [s for s in k.input_shapes if s is not None]
    outs = [s for s in k.output_shapes if s is not None]
    x = ins[0] if ins else ()
    y = outs[0] if outs else ()
    total_bytes = k.bytes_read + k.bytes_written
    row[0] = _log2(k.flops)
    row[1] = _log2(k.macs)
    row[2] = _log2(k.bytes_read)
    row[3] = _log2(k.bytes_written)
    row[4] = _log2(k.params)
    row[5] = k.flops / total_bytes if total_bytes else 0.0
    row[6] = _log2(_numel(y)) if y else MISSING
    row[7] = _log2(_numel(x)) if x else MISSING
    n, c_in, h_in, w_in = _nchw(x, nhwc) if x else (MISSING,) * 4
    _, c_out, h_out, w_out = _nchw(y, nhwc) if y else (MISSING,) * 4
    row[8:15] = (n, c_in, h_in, w_in, c_out, h_out, w_out)
    a = k.attrs
    if cat in ("conv", "dwconv", "gconv", "convtranspose", "pool"):
        ks = a.get("kernel_shape") or a.get("kernel") or _weight_kernel(k, nhwc)
        if ks:
            row[15], row[16] = (ks[0], ks[-1])
        strides = a.get("strides") or [a.get("stride_h", 1)]
        row[17] = max(int(s) for s in strides) if strides else 1
        dil = a.get("dilations") or [a.get("dilation_h_factor", 1)]
        row[18] = max(int(d) for d in dil) if dil else 1
    if cat in ("conv", "dwconv", "gconv", "convtranspose"):
        groups = int(a.get("group") or 0) or _groups(k, cat, c_in, nhwc)
        row[19] = groups
        row[20] = 1.0 if cat == "dwconv" else 0.0
        if groups > 0 and c_in > 0 and c_out > 0:
            row[21] = c_in / groups
            row[22] = c_out / groups
    aligned = schema < 2 or cat not in DENSE_CATEGORIES
    if c_in > 0 and aligned:
        row[23], row[24], row[27] = c_in % 8, c_in % 16, float(c_in % 8 == 0)
    if c_out > 0 and aligned:
        row[25], row[26], row[28] = c_out % 8, c_out % 16, float(c_out % 8 == 0)
    if cat in DENSE_CATEGORIES and len(ins) >= 2 and y:
        m, nn, kk, batch = _mnk(ins[0], ins[1], y, a)
        row[29], row[30], row[31], row[32] = m, nn, kk, _log2(batch)
    act = fused_activation(k) or (_ACTIVATION_OPS.get(k.op_type) if cat == "activation" else None)
    row[33] = _ACTIVATIONS.get(act.lower() if isinstance(act, str) else act, _OTHER_ACTIVATION)
    row[34] = 1.0 if fused_sum(k) else 0.0
    row[35] = len(ins)
    row[36] = len(y) if y else MISSING
    row[37] = 1.0 if k.domain == "com.microsoft.nchwc" else 0.0
    if y:
        row[38] = y[-1]
        row[39] = _log2(y[-1])
    row[40] = op_code(k.op_type)
    idx = _CAT_INDEX.get(cat, _CAT_INDEX.get("other"))
    row[_CAT_OFFSET + idx] = 1.0
    return row


def feature_matrix(kernels: Sequence[KernelRecord], categories: Sequence[str] | None = None,
                   schema: int = FEATURE_SCHEMA) -> np.ndarray:
    """Rows of FEATURE_NAMES for the kernels of *one* model.

    ``in_network`` says whether the model is a network or a kernel probe: a kernel inside
    a network runs with colder caches than the same kernel timed alone, and the
    regressor learns that offset, also for kernels that only probes showed it.
    ``log2_model_footprint_bytes`` is what one inference touches once (weights plus every
    activation written), given to the kernels that read weights (``-1`` on the others):
    when it fits in the last-level cache, a weight-bound kernel finds its weights there on
    the next run (a CIFAR-size network's 1×1 convolutions ran 1.3× faster than the same
    shapes inside ImageNet-size networks).  ``schema``: the feature semantics a profile was
    fitted with (``FEATURE_SCHEMA`` for new ones; see ``DENSE_CATEGORIES``).
    """
    if not kernels:
        return np.zeros((0, len(FEATURE_NAMES)))
    cats = categories or [kernel_category(k) for k in kernels]
    X = np.array([_feature_row(k, c, schema) for k, c in zip(kernels, cats)], dtype=np.float64)
    X[:, _I_IN_NETWORK] = float(len(kernels) >= NETWORK_MIN_KERNELS)
    # Only a kernel that reads weights has something to lose when they leave the cache.
    X[:, _I_FOOTPRINT] = np.where(X[:, _I_PARAMS] > 0, model_footprint_log2(kernels, schema), MISSING)
    return X


def model_footprint_log2(kernels: Sequence[KernelRecord], schema: int = FEATURE_SCHEMA) -> float:
    """log2 of the bytes one inference touches once (weights + activations written), clipped
    to ``FOOTPRINT_LOG2_RANGE`` (profiles of feature schema 1 and 2: ``..._BEFORE_3``)."""
    total = sum(k.params * (DTYPE_BITS.get(k.dtype, 0) or 32) // 8 + k.bytes_written for k in kernels)
    lo, hi = FOOTPRINT_LOG2_RANGE if schema >= 3 else FOOTPRINT_LOG2_RANGE_BEFORE_3
    return min(max(_log2(total), lo), hi)


def _weight_kernel(k: KernelRecord, nhwc: bool):
    if len(k.input_shapes) < 2 or len(k.input_shapes[1]) != 4:
        return None
    w = k.input_shapes[1]
    return (w[1], w[2]) if nhwc else (w[2], w[3])


def _groups(k: KernelRecord, cat: str, c_in: float, nhwc: bool) -> int:
    if cat == "dwconv":
        return int(c_in) if c_in > 0 else 1
    if len(k.input_shapes) >= 2 and len(k.input_shapes[1]) == 4 and c_in > 0:
        w = k.input_shapes[1]
        per_group = w[3] if nhwc else w[1]
        if per_group > 0:
            return max(1, int(c_in) // int(per_group))
    return 1


def _mnk(a_shape, b_shape, y_shape, attrs) -> tuple[float, float, float, float]:
    """(M, N, K, batch) of a (batched) matmul or a fully connected layer."""
    if len(a_shape) < 1 or len(b_shape) < 1 or len(y_shape) < 1:
        return MISSING, MISSING, MISSING, 1
    n = y_shape[-1]
    m = y_shape[-2] if len(y_shape) >= 2 else 1
    trans_a = int(attrs.get("transA", 0) or 0)
    a_shape = batch_transposed(tuple(a_shape), int(attrs.get("transBatchA", 0) or 0))
    k = a_shape[-2] if trans_a and len(a_shape) >= 2 else a_shape[-1]
    batch = _numel(y_shape[:-2]) if len(y_shape) > 2 else 1
    return float(m), float(n), float(k), float(batch)
