"""Our own shape propagation, used where ONNX's shape inference leaves a tensor without a shape.

ONNX's inference does not know the ``com.microsoft`` and ``com.microsoft.nchwc`` ops that
ONNX Runtime writes into its optimized graphs, and everything downstream of an unknown op
loses its shape.  The functions here fill those gaps, one per (domain, op_type).  Each takes

- ``a``: the node's attributes as plain Python values,
- ``s``: the input shapes (``None`` where unknown, ``-1`` for an unknown dimension),
- ``v``: ``v(i)`` gives input ``i``'s value as a NumPy array when it is a small constant
  or a shape computation we can evaluate (else ``None``),
- ``n``: the number of outputs,
- ``env``: graph-wide facts (the NCHWc block size),

and returns a list of output shapes (``None`` where it cannot tell).

nchwc tensors keep their logical NCHW shape with the channel dimension padded to the
NCHWc block size, exactly as ONNX Runtime's own schemas do (``ReorderInput`` pads,
``ReorderOutput`` restores ``channels``); an ``nchwc.Conv`` has as many output channels as
its (padded) reordered filter.  The FLOPs computed from these shapes are what MLAS runs.

Output dtypes are decided by :func:`output_dtypes`.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional, Sequence

import numpy as np

from ._common import Shape, batch_transposed

ValueFn = Callable[[int], Optional[np.ndarray]]

MS = "com.microsoft"
NCHWC = "com.microsoft.nchwc"


class Env:
    """Graph-wide facts a shape function may need."""

    __slots__ = ("nchwc_block",)

    def __init__(self, nchwc_block: int = 8):
        self.nchwc_block = nchwc_block


# ----------------------------------------------------------------------------- helpers


def broadcast(shapes: Sequence[Shape]) -> Shape:
    """Numpy-style broadcast of known-rank shapes; -1 stays unknown; None if any rank unknown."""
    shapes = [s for s in shapes]
    if not shapes or any(s is None for s in shapes):
        return None
    rank = max(len(s) for s in shapes)
    out = []
    for i in range(rank):
        dim = 1
        for s in shapes:
            j = i - (rank - len(s))
            if j < 0:
                continue
            d = s[j]
            if d == 1:
                continue
            if d < 0:
                dim = -1 if dim in (1, -1) else dim
            elif dim in (1, -1):
                dim = d
        out.append(dim)
    return tuple(out)


def _ints(x: Any, default: Sequence[int]) -> list[int]:
    return list(x) if x else list(default)


def conv_out_dim(size: int, k: int, stride: int, dil: int, pb: int, pe: int, ceil_mode: bool = False) -> int:
    if size < 0:
        return -1
    eff = dil * (k - 1) + 1
    num = size + pb + pe - eff
    if num < 0:
        return 0
    out = (-(-num // stride) if ceil_mode else num // stride) + 1
    if ceil_mode and (out - 1) * stride >= size + pb:  # ONNX/PyTorch rule: last window starts inside
        out -= 1
    return out


def resolve_pads(a: dict, spatial: Sequence[int], kernel: Sequence[int], strides: Sequence[int],
                 dil: Sequence[int]) -> list[int]:
    """Explicit begin/end pads for ``auto_pad``: [b0, b1, ..., e0, e1, ...]."""
    nd = len(spatial)
    auto = a.get("auto_pad", "NOTSET") or "NOTSET"
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        begins, ends = [], []
        for i in range(nd):
            size = spatial[i]
            if size < 0:
                begins.append(0)
                ends.append(0)
                continue
            out = -(-size // strides[i])
            total = max(0, (out - 1) * strides[i] + dil[i] * (kernel[i] - 1) + 1 - size)
            small = total // 2
            if auto == "SAME_UPPER":
                begins.append(small)
                ends.append(total - small)
            else:
                begins.append(total - small)
                ends.append(small)
        return begins + ends
    if auto == "VALID":
        return [0] * (2 * nd)
    pads = a.get("pads")
    return list(pads) if pads else [0] * (2 * nd)


def conv_geometry(a: dict, x: Sequence[int], kernel: Sequence[int]) -> dict:
    """Normalized conv/pool attributes for the spatial dims of NCHW input ``x``."""
    spatial = list(x[2:])
    nd = len(spatial)
    strides = _ints(a.get("strides"), [1] * nd)
    dil = _ints(a.get("dilations"), [1] * nd)
    pads = resolve_pads(a, spatial, kernel, strides, dil)
    return {"kernel_shape": list(kernel), "strides": strides, "dilations": dil, "pads": pads}


def spatial_out(x: Sequence[int], g: dict, ceil_mode: bool = False) -> list[int]:
    nd = len(g["kernel_shape"])
    return [
        conv_out_dim(x[2 + i], g["kernel_shape"][i], g["strides"][i], g["dilations"][i],
                     g["pads"][i], g["pads"][nd + i], ceil_mode)
        for i in range(nd)
    ]


def _axis(axis: int, rank: int) -> int:
    return axis + rank if axis < 0 else axis


def _val_list(v: ValueFn, i: int) -> Optional[list]:
    arr = v(i)
    return None if arr is None else [int(x) for x in np.asarray(arr).reshape(-1)]


# ----------------------------------------------------------------------------- shape functions


def same(a, s, v, n, env):  # output 0 (and any others) like input 0
    return [s[0] if s else None] + [None] * (n - 1)


def elementwise(a, s, v, n, env):
    return [broadcast(s)] + [None] * (n - 1)


def _conv(x: Shape, w: Shape, a: dict) -> Shape:
    if x is None or w is None or len(x) < 3 or len(w) != len(x):
        return None
    kernel = a.get("kernel_shape") or list(w[2:])
    g = conv_geometry(a, x, kernel)
    return (x[0], w[0], *spatial_out(x, g))


def conv(a, s, v, n, env):
    return [_conv(s[0], s[1] if len(s) > 1 else None, a)]


def conv_at(xi: int, wi: int):
    def fn(a, s, v, n, env):
        return [_conv(s[xi] if len(s) > xi else None, s[wi] if len(s) > wi else None, a)] + [None] * (n - 1)
    return fn


def conv_transpose(a, s, v, n, env):
    x, w = s[0], s[1] if len(s) > 1 else None
    if x is None or w is None or len(x) < 3:
        return [None]
    nd = len(x) - 2
    group = int(a.get("group", 1))
    kernel = a.get("kernel_shape") or list(w[2:])
    strides = _ints(a.get("strides"), [1] * nd)
    dil = _ints(a.get("dilations"), [1] * nd)
    outpad = _ints(a.get("output_padding"), [0] * nd)
    cout = w[1] * group
    if a.get("output_shape"):
        return [(x[0], cout, *list(a["output_shape"])[-nd:])]
    auto = a.get("auto_pad", "NOTSET") or "NOTSET"
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        return [(x[0], cout, *[d * strides[i] if d >= 0 else -1 for i, d in enumerate(x[2:])])]
    pads = _ints(a.get("pads"), [0] * (2 * nd))
    sp = []
    for i in range(nd):
        d = x[2 + i]
        sp.append(-1 if d < 0 else strides[i] * (d - 1) + outpad[i] + (kernel[i] - 1) * dil[i] + 1
                  - pads[i] - pads[nd + i])
    return [(x[0], cout, *sp)]


def pool(a, s, v, n, env):
    x = s[0]
    if x is None or len(x) < 3 or not a.get("kernel_shape"):
        return [None] * n
    g = conv_geometry(a, x, a["kernel_shape"])
    out = (x[0], x[1], *spatial_out(x, g, bool(a.get("ceil_mode", 0))))
    return [out] + [out] * (n - 1)  # MaxPool's Indices has the same shape


def nhwc_pool(a, s, v, n, env):
    x = s[0]
    if x is None or len(x) < 3:
        return [None]
    nchw = (x[0], x[-1], *x[1:-1])
    if a.get("global_pooling"):
        return [(x[0], *[1] * (len(x) - 2), x[-1])]
    out = pool(a, [nchw], v, 1, env)[0]
    return [None if out is None else (out[0], *out[2:], out[1])]


def global_pool(a, s, v, n, env):
    x = s[0]
    return [None if x is None else (x[0], x[1], *[1] * (len(x) - 2))]


def qlinear_global_pool(a, s, v, n, env):
    x = s[0]
    if x is None:
        return [None]
    if a.get("channels_last"):
        return [(x[0], *[1] * (len(x) - 2), x[-1])]
    return [(x[0], x[1], *[1] * (len(x) - 2))]


def _gemm(a_s: Shape, b_s: Shape, ta: int, tb: int) -> Shape:
    if a_s is None or b_s is None or len(a_s) != 2 or len(b_s) != 2:
        return None
    m = a_s[1] if ta else a_s[0]
    nn = b_s[0] if tb else b_s[1]
    return (m, nn)


def gemm(a, s, v, n, env):
    return [_gemm(s[0], s[1], int(a.get("transA", 0)), int(a.get("transB", 0)))]


def matmul_shape(a_s: Shape, b_s: Shape, ta: int = 0, tb: int = 0) -> Shape:
    if a_s is None or b_s is None or not a_s or not b_s:
        return None
    a1 = len(a_s) == 1
    b1 = len(b_s) == 1
    A = (1, a_s[0]) if a1 else tuple(a_s)
    B = (b_s[0], 1) if b1 else tuple(b_s)
    if ta:
        A = A[:-2] + (A[-1], A[-2])
    if tb:
        B = B[:-2] + (B[-1], B[-2])
    batch = broadcast([A[:-2], B[:-2]])
    if batch is None:
        return None
    out = list(batch) + [A[-2], B[-1]]
    if b1:
        out.pop(-1)
    if a1:
        out.pop(-2 if not b1 else -1)
    return tuple(out)


def matmul_at(ai: int, bi: int):
    def fn(a, s, v, n, env):
        return [matmul_shape(s[ai] if len(s) > ai else None, s[bi] if len(s) > bi else None)] + [None] * (n - 1)
    return fn


def fused_matmul(a, s, v, n, env):
    lhs = batch_transposed(s[0], int(a.get("transBatchA", 0)))
    rhs = batch_transposed(s[1], int(a.get("transBatchB", 0)))
    return [matmul_shape(lhs, rhs, int(a.get("transA", 0)), int(a.get("transB", 0)))]


def fused_gemm(a, s, v, n, env):
    return gemm(a, s, v, n, env)


def flatten(a, s, v, n, env):
    x = s[0]
    if x is None:
        return [None]
    axis = _axis(int(a.get("axis", 1)), len(x))
    left, right = x[:axis], x[axis:]
    lm = -1 if any(d < 0 for d in left) else math.prod(left)
    rm = -1 if any(d < 0 for d in right) else math.prod(right)
    return [(lm, rm)]


def reshape(a, s, v, n, env):
    x = s[0]
    target = _val_list(v, 1) if len(s) > 1 else (list(a["shape"]) if a.get("shape") else None)
    if target is None:
        return [None]
    allowzero = int(a.get("allowzero", 0))
    out = []
    for i, d in enumerate(target):
        if d == 0 and not allowzero:
            out.append(x[i] if x is not None and i < len(x) else -1)
        else:
            out.append(d)
    if -1 in out:
        total = -1 if x is None or any(d < 0 for d in x) else math.prod(x)
        rest = math.prod(d for d in out if d != -1)
        out[out.index(-1)] = total // rest if total >= 0 and rest > 0 else -1
    return [tuple(out)]


def transpose(a, s, v, n, env):
    x = s[0]
    if x is None:
        return [None]
    perm = a.get("perm") or list(range(len(x)))[::-1]
    return [tuple(x[p] for p in perm)]


def concat(a, s, v, n, env):
    if any(x is None for x in s) or not s:
        return [None]
    rank = len(s[0])
    axis = _axis(int(a.get("axis", 0)), rank)
    out = list(s[0])
    out[axis] = -1 if any(x[axis] < 0 for x in s) else sum(x[axis] for x in s)
    return [tuple(out)]


def qlinear_concat(a, s, v, n, env):
    return concat(a, [s[i] for i in range(2, len(s), 3)], v, n, env)


def split(a, s, v, n, env):
    x = s[0]
    if x is None:
        return [None] * n
    axis = _axis(int(a.get("axis", 0)), len(x))
    sizes = _val_list(v, 1) if len(s) > 1 and s[1] is not None else None
    if sizes is None and a.get("split"):
        sizes = list(a["split"])
    if sizes is None:
        d = x[axis]
        if d < 0:
            return [None] * n
        chunk = -(-d // n)
        sizes = [min(chunk, d - i * chunk) for i in range(n)]
    outs = []
    for size in sizes[:n]:
        o = list(x)
        o[axis] = size
        outs.append(tuple(o))
    return outs + [None] * (n - len(outs))


def slice_(a, s, v, n, env):
    x = s[0]
    if x is None:
        return [None]
    if len(s) > 1:
        starts, ends = _val_list(v, 1), _val_list(v, 2)
        axes = _val_list(v, 3) if len(s) > 3 and s[3] is not None else None
        steps = _val_list(v, 4) if len(s) > 4 and s[4] is not None else None
    else:
        starts, ends, axes, steps = a.get("starts"), a.get("ends"), a.get("axes"), None
    if starts is None or ends is None:
        return [None]
    axes = axes or list(range(len(starts)))
    steps = steps or [1] * len(starts)
    out = list(x)
    for st, en, ax, sp in zip(starts, ends, axes, steps):
        ax = _axis(ax, len(x))
        d = x[ax]
        if d < 0:
            out[ax] = -1
            continue
        out[ax] = len(range(*slice(st, en, sp).indices(d)))
    return [tuple(out)]


def squeeze(a, s, v, n, env):
    x = s[0]
    if x is None:
        return [None]
    axes = _val_list(v, 1) if len(s) > 1 else a.get("axes")
    if axes is None:
        return [tuple(d for d in x if d != 1)]
    axes = {_axis(i, len(x)) for i in axes}
    return [tuple(d for i, d in enumerate(x) if i not in axes)]


def unsqueeze(a, s, v, n, env):
    x = s[0]
    if x is None:
        return [None]
    axes = _val_list(v, 1) if len(s) > 1 else a.get("axes")
    if axes is None:
        return [None]
    rank = len(x) + len(axes)
    axes = sorted(_axis(i, rank) for i in axes)
    out = list(x)
    for ax in axes:
        out.insert(ax, 1)
    return [tuple(out)]


def reduce_(a, s, v, n, env):
    x = s[0]
    if x is None:
        return [None]
    axes = a.get("axes")
    if axes is None and len(s) > 1 and s[1] is not None:
        axes = _val_list(v, 1)
        if axes is None:
            return [None]
    keep = int(a.get("keepdims", 1))
    if not axes:
        if int(a.get("noop_with_empty_axes", 0)):
            return [x]
        axes = list(range(len(x)))
    axes = {_axis(i, len(x)) for i in axes}
    if keep:
        return [tuple(1 if i in axes else d for i, d in enumerate(x))]
    return [tuple(d for i, d in enumerate(x) if i not in axes)]


def arg_reduce(a, s, v, n, env):
    x = s[0]
    if x is None:
        return [None]
    axis = _axis(int(a.get("axis", 0)), len(x))
    if int(a.get("keepdims", 1)):
        return [tuple(1 if i == axis else d for i, d in enumerate(x))]
    return [tuple(d for i, d in enumerate(x) if i != axis)]


def shape_op(a, s, v, n, env):
    x = s[0]
    if x is None:
        return [None]
    start = int(a.get("start", 0))
    end = a.get("end")
    length = len(range(*slice(start, None if end is None else int(end)).indices(len(x))))
    return [(length,)]


def scalar(a, s, v, n, env):
    return [()]


def gather(a, s, v, n, env):
    x, idx = s[0], s[1]
    if x is None or idx is None:
        return [None]
    axis = _axis(int(a.get("axis", 0)), len(x))
    return [tuple(x[:axis]) + tuple(idx) + tuple(x[axis + 1:])]


def gather_elements(a, s, v, n, env):
    return [s[1]]


def expand(a, s, v, n, env):
    target = _val_list(v, 1)
    if target is None or s[0] is None:
        return [None]
    return [broadcast([s[0], tuple(target)])]


def tile(a, s, v, n, env):
    reps = _val_list(v, 1)
    x = s[0]
    if reps is None or x is None:
        return [None]
    return [tuple(-1 if d < 0 else d * r for d, r in zip(x, reps))]


def pad(a, s, v, n, env):
    x = s[0]
    if x is None:
        return [None]
    pads = _val_list(v, 1) if len(s) > 1 else a.get("pads")
    if pads is None:
        return [None]
    axes = _val_list(v, 3) if len(s) > 3 and s[3] is not None else None
    rank = len(x)
    axes = [_axis(i, rank) for i in axes] if axes else list(range(rank))
    k = len(axes)
    out = list(x)
    for j, ax in enumerate(axes):
        if out[ax] >= 0:
            out[ax] = out[ax] + pads[j] + pads[k + j]
    return [tuple(out)]


def resize(a, s, v, n, env):
    x = s[0]
    if x is None:
        return [None]
    sizes = _val_list(v, 3) if len(s) > 3 and s[3] is not None else None
    axes = a.get("axes")
    if sizes:
        if axes:
            out = list(x)
            for ax, d in zip(axes, sizes):
                out[_axis(ax, len(x))] = d
            return [tuple(out)]
        return [tuple(sizes)]
    scales = None
    for i in (2, 1):  # opset 11+: (X, roi, scales, sizes); opset 10 Upsample/Resize: (X, scales)
        if len(s) > i and s[i] is not None and (s[i] == () or numel_nonzero(s[i])):
            arr = v(i)
            if arr is not None and arr.size:
                scales = [float(t) for t in arr.reshape(-1)]
                break
    if scales is None and a.get("scales"):
        scales = list(a["scales"])
    if scales is None:
        return [None]
    if axes:
        full = [1.0] * len(x)
        for ax, sc in zip(axes, scales):
            full[_axis(ax, len(x))] = sc
        scales = full
    return [tuple(-1 if d < 0 else int(math.floor(d * sc)) for d, sc in zip(x, scales))]


def numel_nonzero(shape: Sequence[int]) -> bool:
    return all(d > 0 for d in shape)


def depth_to_space(a, s, v, n, env):
    x = s[0]
    b = int(a.get("blocksize", 1))
    return [None if x is None or len(x) != 4 else (x[0], x[1] // (b * b), x[2] * b, x[3] * b)]


def space_to_depth(a, s, v, n, env):
    x = s[0]
    b = int(a.get("blocksize", 1))
    return [None if x is None or len(x) != 4 else (x[0], x[1] * b * b, x[2] // b, x[3] // b)]


def constant_of_shape(a, s, v, n, env):
    target = _val_list(v, 0)
    return [None if target is None else tuple(target)]


def topk(a, s, v, n, env):
    x = s[0]
    k = _val_list(v, 1)
    if x is None or not k:
        return [None, None]
    axis = _axis(int(a.get("axis", -1)), len(x))
    out = tuple(k[0] if i == axis else d for i, d in enumerate(x))
    return [out, out]


def einsum(a, s, v, n, env):
    eq = str(a.get("equation", "")).replace(" ", "")
    if "->" not in eq or any(x is None for x in s) or "." in eq:
        return [None]
    lhs, rhs = eq.split("->")
    sizes: dict[str, int] = {}
    for term, shp in zip(lhs.split(","), s):
        for ch, d in zip(term, shp):
            sizes[ch] = max(sizes.get(ch, 1), d)
    return [tuple(sizes.get(ch, -1) for ch in rhs)]


def layer_norm(a, s, v, n, env):
    x = s[0]
    if x is None:
        return [None] * n
    axis = _axis(int(a.get("axis", -1)), len(x))
    stat = tuple(d if i < axis else 1 for i, d in enumerate(x))
    return [x] + [stat] * (n - 1)


def skip_layer_norm(a, s, v, n, env):
    x = s[0]
    if x is None:
        return [None] * n
    stat = tuple(x[:-1]) + (1,)
    outs = [x, stat, stat, x]
    return outs[:n] + [None] * (n - 4)


def dropout(a, s, v, n, env):
    return [s[0]] * n


def batch_norm(a, s, v, n, env):
    out = [s[0]]
    if n > 1:
        out += [s[1]] * (n - 1)
    return out


def attention(a, s, v, n, env):
    x, w = s[0], s[1] if len(s) > 1 else None
    if x is None or w is None or len(x) != 3:
        return [None] * n
    hid = a.get("qkv_hidden_sizes")
    v_hidden = int(hid[2]) if hid else w[-1] // 3
    return [(x[0], x[1], v_hidden)] + [None] * (n - 1)


def multi_head_attention(a, s, v, n, env):
    q = s[0]
    if q is None or len(q) != 3:
        return [None] * n
    value = s[2] if len(s) > 2 else None
    if value is not None and len(value) == 3:
        dv = value[2]
    elif value is not None and len(value) == 4:
        dv = value[1] * value[3]
    else:
        dv = q[2]
    return [(q[0], q[1], dv)] + [None] * (n - 1)


def dynamic_quantize_linear(a, s, v, n, env):
    return [s[0], (), ()]


def qlinear_binary(a, s, v, n, env):
    return [broadcast([s[0], s[3]]) if len(s) > 3 else s[0]]


# nchwc -----------------------------------------------------------------------


def reorder_input(a, s, v, n, env):
    x = s[0]
    if x is None or len(x) < 3:
        return [None]
    block = env.nchwc_block
    if a.get("channels_last"):
        c = x[-1]
        spatial = x[1:-1]
    else:
        c = x[1]
        spatial = x[2:]
    cp = -1 if c < 0 else -(-c // block) * block
    return [(x[0], cp, *spatial)]


def reorder_output(a, s, v, n, env):
    x = s[0]
    if x is None or len(x) < 3:
        return [None]
    c = int(a.get("channels", x[1]))
    if a.get("channels_last"):
        return [(x[0], *x[2:], c)]
    return [(x[0], c, *x[2:])]


def nchwc_upsample(a, s, v, n, env):
    x = s[0]
    scales = a.get("scales")
    if x is None or not scales:
        return [None]
    return [tuple(-1 if d < 0 else d * int(sc) for d, sc in zip(x, scales))]


# ----------------------------------------------------------------------------- the table

UNARY_OPS = (
    "Relu", "LeakyRelu", "PRelu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Elu", "Selu",
    "Celu", "ThresholdedRelu", "Softplus", "Softsign", "Mish", "Gelu", "Exp", "Log", "Sqrt",
    "Reciprocal", "Abs", "Neg", "Floor", "Ceil", "Round", "Sign", "Erf", "Sin", "Cos", "Tan",
    "Asin", "Acos", "Atan", "Sinh", "Cosh", "Asinh", "Acosh", "Atanh", "Not", "IsNaN", "IsInf",
    "Clip", "Identity", "Softmax", "LogSoftmax", "Hardmax", "Cast", "CastLike",
    "InstanceNormalization", "LpNormalization", "MeanVarianceNormalization", "LRN",
    "QuantizeLinear", "DequantizeLinear", "Shrink", "CumSum", "Trilu", "BitwiseNot",
    "GroupNormalization", "RMSNormalization", "Swish",
)
BINARY_OPS = (
    "Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum", "Mean", "Mod", "Where", "Equal",
    "Greater", "GreaterOrEqual", "Less", "LessOrEqual", "And", "Or", "Xor", "BitShift",
    "BitwiseAnd", "BitwiseOr", "BitwiseXor",
)

SHAPE_FNS: dict[tuple[str, str], Callable] = {}
for _op in UNARY_OPS:
    SHAPE_FNS[("", _op)] = same
for _op in BINARY_OPS:
    SHAPE_FNS[("", _op)] = elementwise
SHAPE_FNS.update({
    ("", "Conv"): conv,
    ("", "ConvInteger"): conv,
    ("", "QLinearConv"): conv_at(0, 3),
    ("", "ConvTranspose"): conv_transpose,
    ("", "MaxPool"): pool,
    ("", "AveragePool"): pool,
    ("", "LpPool"): pool,
    ("", "GlobalAveragePool"): global_pool,
    ("", "GlobalMaxPool"): global_pool,
    ("", "GlobalLpPool"): global_pool,
    ("", "Gemm"): gemm,
    ("", "MatMul"): matmul_at(0, 1),
    ("", "MatMulInteger"): matmul_at(0, 1),
    ("", "QLinearMatMul"): matmul_at(0, 3),
    ("", "Flatten"): flatten,
    ("", "Reshape"): reshape,
    ("", "Transpose"): transpose,
    ("", "Concat"): concat,
    ("", "Split"): split,
    ("", "Slice"): slice_,
    ("", "Squeeze"): squeeze,
    ("", "Unsqueeze"): unsqueeze,
    ("", "ArgMax"): arg_reduce,
    ("", "ArgMin"): arg_reduce,
    ("", "Shape"): shape_op,
    ("", "Size"): scalar,
    ("", "Gather"): gather,
    ("", "GatherElements"): gather_elements,
    ("", "Expand"): expand,
    ("", "Tile"): tile,
    ("", "Pad"): pad,
    ("", "Resize"): resize,
    ("", "Upsample"): resize,
    ("", "DepthToSpace"): depth_to_space,
    ("", "SpaceToDepth"): space_to_depth,
    ("", "ConstantOfShape"): constant_of_shape,
    ("", "TopK"): topk,
    ("", "Einsum"): einsum,
    ("", "LayerNormalization"): layer_norm,
    ("", "SimplifiedLayerNormalization"): layer_norm,  # ORT registers it in the ONNX domain
    ("", "BatchNormalization"): batch_norm,
    ("", "Dropout"): dropout,
    ("", "DynamicQuantizeLinear"): dynamic_quantize_linear,
    # com.microsoft
    (MS, "FusedConv"): conv,
    (MS, "FusedGemm"): fused_gemm,
    (MS, "FusedMatMul"): fused_matmul,
    (MS, "Gelu"): same,
    (MS, "BiasGelu"): elementwise,
    (MS, "FastGelu"): same,
    (MS, "QuickGelu"): same,
    (MS, "BiasAdd"): elementwise,
    (MS, "BiasSoftmax"): same,
    (MS, "SkipLayerNormalization"): skip_layer_norm,
    (MS, "SkipSimplifiedLayerNormalization"): skip_layer_norm,
    (MS, "LayerNormalization"): layer_norm,
    (MS, "SimplifiedLayerNormalization"): layer_norm,
    (MS, "Attention"): attention,
    (MS, "MultiHeadAttention"): multi_head_attention,
    (MS, "NhwcMaxPool"): nhwc_pool,
    (MS, "QLinearConv"): lambda a, s, v, n, env: (
        nhwc_conv(a, [s[0], s[3] if len(s) > 3 else None]) if a.get("channels_last")
        else conv_at(0, 3)(a, s, v, n, env)),
    (MS, "QLinearAdd"): qlinear_binary,
    (MS, "QLinearMul"): qlinear_binary,
    (MS, "QLinearSigmoid"): same,
    (MS, "QLinearLeakyRelu"): same,
    (MS, "QLinearSoftmax"): same,
    (MS, "QLinearAveragePool"): lambda a, s, v, n, env: (
        nhwc_pool(a, s, v, n, env) if a.get("channels_last") else pool(a, s, v, n, env)),
    (MS, "QLinearGlobalAveragePool"): qlinear_global_pool,
    (MS, "QLinearConcat"): qlinear_concat,
    (MS, "QGemm"): lambda a, s, v, n, env: [_gemm(s[0], s[3], int(a.get("transA", 0)), int(a.get("transB", 0)))],
    (MS, "MatMulIntegerToFloat"): matmul_at(0, 1),
    (MS, "DynamicQuantizeMatMul"): matmul_at(0, 1),
    (MS, "MatMulInteger16"): matmul_at(0, 1),
    (MS, "QuantizeLinear"): same,
    (MS, "DequantizeLinear"): same,
    (MS, "QAttention"): attention,
    (MS, "NhwcConv"): lambda a, s, v, n, env: nhwc_conv(a, s),
    (MS, "NhwcFusedConv"): lambda a, s, v, n, env: nhwc_conv(a, s),
    # com.microsoft.nchwc
    (NCHWC, "Conv"): conv,
    (NCHWC, "MaxPool"): pool,
    (NCHWC, "AveragePool"): pool,
    (NCHWC, "GlobalAveragePool"): global_pool,
    (NCHWC, "GlobalMaxPool"): global_pool,
    (NCHWC, "ReorderInput"): reorder_input,
    (NCHWC, "ReorderOutput"): reorder_output,
    (NCHWC, "Upsample"): nchwc_upsample,
})
for _op in ("ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
            "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare"):
    SHAPE_FNS[("", _op)] = reduce_


def nhwc_conv(a: dict, s: list) -> list:
    x, w = s[0], s[1] if len(s) > 1 else None
    if x is None or w is None or len(x) < 3:
        return [None]
    nchw = (x[0], x[-1], *x[1:-1])
    out = _conv(nchw, w, a)
    return [None if out is None else (out[0], *out[2:], out[1])]


# ----------------------------------------------------------------------------- output dtypes

_FLOAT_OUT = {(MS, "MatMulIntegerToFloat"), (MS, "DynamicQuantizeMatMul"), ("", "DequantizeLinear"),
              (MS, "DequantizeLinear")}
_BOOL_OUT = {"Equal", "Greater", "GreaterOrEqual", "Less", "LessOrEqual", "And", "Or", "Xor", "Not",
             "IsNaN", "IsInf"}
_INT64_OUT = {"Shape", "Size", "ArgMax", "ArgMin", "NonZero"}
_INT32_OUT = {"MatMulInteger", "ConvInteger"}
_DT_ONNX = {1: "float32", 2: "uint8", 3: "int8", 6: "int32", 7: "int64", 9: "bool", 10: "float16",
            11: "float64", 16: "bfloat16", 4: "uint16", 5: "int16"}


def output_dtypes(domain: str, op: str, a: dict, in_dtypes: Sequence[Optional[str]], n: int) -> list[Optional[str]]:
    """Dtype of each output of a node, from its inputs' dtypes (None where unknown)."""
    first = next((d for d in in_dtypes if d), None)
    if domain == "" and op in _BOOL_OUT:
        return ["bool"] * n
    if domain == "" and op in _INT64_OUT:
        return ["int64"] * n
    if domain == "" and op in _INT32_OUT:
        return ["int32"] * n
    if op == "Cast":
        return [_DT_ONNX.get(int(a.get("to", 1)), "unknown")]
    if op == "CastLike":
        return [in_dtypes[1] if len(in_dtypes) > 1 else first]
    if (domain, op) in _FLOAT_OUT:
        return ["float32"] * n
    if op == "QuantizeLinear":
        zp = in_dtypes[2] if len(in_dtypes) > 2 and in_dtypes[2] else "uint8"
        return [zp] * n
    if op == "DynamicQuantizeLinear":
        return ["uint8", "float32", "uint8"][:n]
    if op == "TopK":
        return [first, "int64"]
    if op == "MaxPool" and n > 1:
        return [first, "int64"]
    if op == "ConstantOfShape":
        value = a.get("value")
        return [value.get("dtype", "float32") if isinstance(value, dict) else "float32"]
    return [first] * n


def infer(domain: str, op: str, a: dict, s: list[Shape], v: ValueFn, n: int, env: Env) -> Optional[list[Shape]]:
    """Output shapes of one node by our rules; None when we have no rule for the op."""
    fn = SHAPE_FNS.get((domain, op))
    if fn is None:
        return None
    try:
        out = fn(a, s, v, n, env)
    except (ValueError, IndexError, TypeError, ZeroDivisionError, KeyError):
        return [None] * n
    out = list(out)[:n]
    return out + [None] * (n - len(out))
