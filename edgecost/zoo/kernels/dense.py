"""Single dense products: linear layers, matmuls against a constant, one self-attention.

* ``linear``: ``nn.Linear`` on (B, K) (a GEMM) or (B, T, K) tokens; params
  ``out_features``, ``bias``.
* ``matmul``: (B, M, K) @ constant, the constant either (K, N) shared (``rhs="weight"``)
  or (B, K, N) (``rhs="batched"``, a batched 3-D GEMM); params ``n``, ``rhs``.
* ``attention``: one multi-head self-attention sublayer (QKV projection, attention, output
  projection) on (B, T, D), computed with plain matmul+softmax, SDPA or
  ``nn.MultiheadAttention``; params ``heads``, ``impl``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .. import sampling
from ..family import Family, Params, Shape, shrink_input
from ..flops import matmul_flops, numel
from ..layers import ATTENTION_IMPLS, SelfAttention, self_attention_flops

MAX_CONSTANT_ELEMENTS = 1 << 22  # 16 MiB of float32 weights at most


def build_linear(params: Params, shape: Shape) -> nn.Module:
    return nn.Linear(shape[-1], params["out_features"], bias=params["bias"])


def linear_flops(params: Params, shape: Shape) -> int:
    return matmul_flops(1, numel(*shape[:-1]), shape[-1], params["out_features"])


def sample_linear(rng: np.random.Generator, batch: int) -> tuple[Params, Shape]:
    features = sampling.channels(rng, 16, 4096)
    out_features = sampling.channels(rng, 16, 4096)
    while features * out_features > MAX_CONSTANT_ELEMENTS:
        out_features //= 2
    params = {"out_features": out_features, "bias": sampling.coin(rng, 0.7)}
    if sampling.coin(rng, 0.5):
        return params, (batch, features)
    return params, (batch, sampling.log_uniform_int(rng, 1, 512), features)


class MatMulConstant(nn.Module):
    def __init__(self, rhs: torch.Tensor):
        super().__init__()
        self.register_buffer("rhs", rhs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.matmul(x, self.rhs)


def build_matmul(params: Params, shape: Shape) -> nn.Module:
    if params["rhs"] == "grouped":  # (B, G, M, K) @ (G, K, N): many small matrices, as in windowed attention
        _, groups, _, k = shape
        return MatMulConstant(torch.randn(groups, k, params["n"]) * k ** -0.5)
    batch, _, k = shape
    rhs_shape = (k, params["n"]) if params["rhs"] == "weight" else (batch, k, params["n"])
    return MatMulConstant(torch.randn(rhs_shape) * k ** -0.5)


def matmul_kernel_flops(params: Params, shape: Shape) -> int:
    if params["rhs"] == "grouped":
        batch, groups, m, k = shape
        return matmul_flops(batch * groups, m, k, params["n"])
    batch, m, k = shape
    return matmul_flops(batch, m, k, params["n"])


def sample_matmul(rng: np.random.Generator, batch: int) -> tuple[Params, Shape]:
    rhs = sampling.choice(rng, ["weight", "batched", "grouped"], p=[0.4, 0.3, 0.3])
    if rhs == "grouped":
        n, k = sampling.channels(rng, 4, 128), sampling.channels(rng, 4, 128)
        groups = sampling.log_uniform_int(rng, 2, 1024)
        while groups * k * n > MAX_CONSTANT_ELEMENTS:
            groups //= 2
        return {"n": n, "rhs": rhs}, (batch, groups, sampling.log_uniform_int(rng, 1, 64), k)
    n, k = sampling.channels(rng, 8, 2048), sampling.channels(rng, 8, 2048)
    while n * k * (batch if rhs == "batched" else 1) > MAX_CONSTANT_ELEMENTS and n > 1:
        n //= 2
    return {"n": n, "rhs": rhs}, (batch, sampling.log_uniform_int(rng, 1, 1024), k)


def build_attention(params: Params, shape: Shape) -> nn.Module:
    return SelfAttention(shape[2], params["heads"], params["impl"])


def attention_kernel_flops(params: Params, shape: Shape) -> int:
    batch, tokens, dim = shape
    return self_attention_flops(batch, tokens, dim, params["heads"], params["impl"])


def sample_attention(rng: np.random.Generator, batch: int) -> tuple[Params, Shape]:
    heads, head_dim = sampling.choice(rng, [(h, d) for h in (1, 2, 4, 6, 8, 12, 16)
                                            for d in (16, 32, 64, 128) if 32 <= h * d <= 768])
    params = {"heads": heads, "impl": sampling.choice(rng, ATTENTION_IMPLS)}
    return params, (batch, sampling.log_uniform_int(rng, 4, 1024), heads * head_dim)


FAMILIES = (
    Family(name="linear", kind="kernel",
           description="nn.Linear, 16–4096 in/out features, on (B, K) or (B, T≤512, K)",
           sample_params=sample_linear, build_module=build_linear, flops=linear_flops,
           shrink=shrink_input),
    Family(name="matmul", kind="kernel",
           description="(B, M≤1024, K) @ constant (K, N) or batched (B, K, N), K, N 8–2048; or"
                       " (B, G≤1024, M≤64, K) @ (G, K, N): many small matrices",
           sample_params=sample_matmul, build_module=build_matmul, flops=matmul_kernel_flops,
           shrink=shrink_input),
    Family(name="attention", kind="kernel",
           description="one self-attention sublayer, 4–1024 tokens, width 32–768, matmul/SDPA/MHA",
           sample_params=sample_attention, build_module=build_attention, flops=attention_kernel_flops,
           shrink=shrink_input),
)
