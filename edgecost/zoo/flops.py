"""FLOP conventions of the zoo: analytic formulas for estimates, and a measured count to check them.

Convention (the same for the estimate and the count):

* convolution, linear, matmul, attention: 2 FLOPs per multiply-accumulate (bias not counted);
* every other op that writes a new tensor (elementwise, activations, norms, pooling,
  softmax, resize, concat, copies): 1 per element of the largest tensor it reads or writes;
* views (reshape of a contiguous tensor, flatten, permute without copy, split) count 0.

The estimate of a family (``Family.estimate_flops``) walks the same layer plan the family's
builder uses.  :func:`count_flops` runs a module once under a dispatch mode and counts what
PyTorch actually executes; tests check the two agree (see ``tests/zoo``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import flop_registry, sdpa_flop_count

aten = torch.ops.aten


def conv_out(size: int, kernel: int, stride: int = 1, padding: int | None = None) -> int:
    """Output side of a convolution or pooling (``padding`` defaults to ``kernel // 2``)."""
    pad = kernel // 2 if padding is None else padding
    return (size + 2 * pad - kernel) // stride + 1


def pool_out(size: int, kernel: int, stride: int, padding: int = 0, ceil_mode: bool = False) -> int:
    span = size + 2 * padding - kernel
    steps = math.ceil(span / stride) if ceil_mode else span // stride
    return steps + 1


def conv_flops(batch: int, cin: int, cout: int, kernel: int, h_out: int, w_out: int,
               groups: int = 1) -> int:
    """2 × MACs of a 2-D convolution."""
    return 2 * batch * cout * h_out * w_out * (cin // groups) * kernel * kernel


def matmul_flops(batch: int, m: int, k: int, n: int) -> int:
    """2 × MACs of ``batch`` products (m×k)·(k×n)."""
    return 2 * batch * m * k * n


def attention_flops(batch: int, heads: int, q_len: int, kv_len: int, head_dim: int) -> int:
    """2 × MACs of softmax(QKᵀ)V for the two batched products."""
    return 2 * matmul_flops(batch * heads, q_len, head_dim, kv_len)


def numel(*dims: int) -> int:
    return math.prod(dims)


# --- measured count ------------------------------------------------------------------

_NOT_COMPUTE = {
    aten.detach.default, aten.alias.default, aten.lift_fresh.default, aten._unsafe_view.default,
    aten.empty.memory_format, aten.empty_like.default, aten.zeros.default,
    aten.zeros_like.default, aten.ones.default, aten.full.default,
    aten.scalar_tensor.default, aten._local_scalar_dense.default,
}
# CPU flash attention is a leaf kernel that torch's own FLOP table does not list.
_CPU_ATTENTION_DEFAULT = getattr(
    getattr(aten, "_scaled_dot_product_flash_attention_for_cpu", None), "default", None)


class _FlopCountingMode(TorchDispatchMode):
    """Counts FLOPs of every aten op executed inside it, by the module docstring's convention."""

    def __init__(self) -> None:
        super().__init__()
        self.flops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        packet = func._overloadpacket
        if packet not in flop_registry and func is not _CPU_ATTENTION_DEFAULT:
            with self:  # the parts of a decomposed op are counted one by one
                decomposed = func.decompose(*args, **kwargs)
            if decomposed is not NotImplemented:
                return decomposed
        out = func(*args, **kwargs)
        self.flops += _op_flops(func, packet, args, kwargs, out)
        return out


def _op_flops(func: Any, packet: Any, args: Sequence[Any], kwargs: dict[str, Any], out: Any) -> int:
    if packet in flop_registry:
        return int(flop_registry[packet](*args, **kwargs, out_val=out))
    if func is _CPU_ATTENTION_DEFAULT:
        query, key, value = args[:3]
        return int(sdpa_flop_count(query.shape, key.shape, value.shape))
    if func.is_view or func in _NOT_COMPUTE:
        return 0
    tensors = [t for t in tree_flatten((args, kwargs, out))[0] if isinstance(t, torch.Tensor)]
    return max((t.numel() for t in tensors), default=0)


def count_flops(module: torch.nn.Module, inputs: Sequence[torch.Tensor]) -> int:
    """FLOPs PyTorch executes for one forward pass of ``module`` on ``inputs``.

    Runs with autograd enabled so that ``nn.MultiheadAttention`` takes its plain
    (decomposed) path instead of its fused inference kernel.
    """
    mode = _FlopCountingMode()
    with torch.enable_grad(), mode:
        module(*inputs)
    return mode.flops
