"""Building blocks shared by the zoo's families, each with the FLOP formula of what it runs.

Every ``*_flops`` function follows the convention in :mod:`edgecost.zoo.flops` and mirrors
the ops the matching module executes, so family estimates stay close to measured counts.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UsageError
from .flops import attention_flops, conv_flops, conv_out, matmul_flops

ACTIVATIONS = ("relu", "relu6", "hardswish", "hardsigmoid", "sigmoid", "tanh", "gelu", "silu",
               "leaky_relu", "none")
ATTENTION_IMPLS = ("matmul", "sdpa", "mha")


def activation(name: str) -> nn.Module:
    """The module for an activation name (``"none"`` is the identity)."""
    modules = {
        "relu": nn.ReLU, "relu6": nn.ReLU6, "hardswish": nn.Hardswish,
        "hardsigmoid": nn.Hardsigmoid, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh,
        "gelu": nn.GELU, "silu": nn.SiLU, "leaky_relu": nn.LeakyReLU, "none": nn.Identity,
    }
    if name not in modules:
        raise UsageError(f"unknown activation {name!r}", f"use one of: {', '.join(ACTIVATIONS)}")
    return modules[name]()


def activation_flops(name: str, elements: int) -> int:
    return 0 if name == "none" else elements


class ConvBNAct(nn.Sequential):
    """Conv2d (same padding) → optional BatchNorm2d → activation."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1,
                 act: str = "relu", bn: bool = True, bias: bool = False):
        layers: list[nn.Module] = [
            nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=bias)]
        if bn:
            layers.append(nn.BatchNorm2d(cout))
        if act != "none":
            layers.append(activation(act))
        super().__init__(*layers)


def conv_bn_act_flops(batch: int, cin: int, cout: int, kernel: int, size: tuple[int, int],
                      stride: int = 1, groups: int = 1, act: str = "relu",
                      bn: bool = True) -> tuple[int, tuple[int, int]]:
    """FLOPs of :class:`ConvBNAct` on a ``size`` = (H, W) input, and its output (H, W)."""
    h, w = conv_out(size[0], kernel, stride), conv_out(size[1], kernel, stride)
    out_elems = batch * cout * h * w
    flops = conv_flops(batch, cin, cout, kernel, h, w, groups)
    flops += out_elems if bn else 0
    flops += activation_flops(act, out_elems)
    return flops, (h, w)


class SqueezeExcite(nn.Module):
    """Global pool → 1×1 conv → act → 1×1 conv → gate → scale the input."""

    def __init__(self, channels: int, squeeze: int, act: str = "relu", gate: str = "hardsigmoid"):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reduce = nn.Conv2d(channels, squeeze, 1)
        self.act = activation(act)
        self.expand = nn.Conv2d(squeeze, channels, 1)
        self.gate = activation(gate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.gate(self.expand(self.act(self.reduce(self.pool(x)))))
        return x * scale


def squeeze_excite_flops(batch: int, channels: int, squeeze: int, size: tuple[int, int]) -> int:
    elems = batch * channels * size[0] * size[1]
    return (elems  # pool
            + conv_flops(batch, channels, squeeze, 1, 1, 1) + batch * squeeze  # reduce, act
            + conv_flops(batch, squeeze, channels, 1, 1, 1) + batch * channels  # expand, gate
            + elems)  # scale


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """ShuffleNet's channel shuffle: reshape to groups, swap, flatten back (one copy)."""
    batch, chans, height, width = x.shape
    x = x.view(batch, groups, chans // groups, height, width).transpose(1, 2).contiguous()
    return x.view(batch, chans, height, width)


class ChannelShuffle(nn.Module):
    def __init__(self, groups: int):
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return channel_shuffle(x, self.groups)


# --- attention ---------------------------------------------------------------------


class SelfAttention(nn.Module):
    """Multi-head self-attention on (B, T, D) tokens, computed three ways.

    ``impl="matmul"``: softmax(QKᵀ·scale)V with plain matmul and softmax ops;
    ``impl="sdpa"``: the same projections with ``F.scaled_dot_product_attention``;
    ``impl="mha"``: ``nn.MultiheadAttention`` (its own fused in-projection).
    """

    def __init__(self, dim: int, heads: int, impl: str = "matmul", qkv_bias: bool = True):
        super().__init__()
        if impl not in ATTENTION_IMPLS:
            raise UsageError(f"unknown attention implementation {impl!r}",
                             f"use one of: {', '.join(ATTENTION_IMPLS)}")
        if dim % heads:
            raise UsageError(f"attention width {dim} is not divisible by {heads} heads",
                             "pick a width that is a multiple of the head count")
        self.impl, self.heads, self.head_dim = impl, heads, dim // heads
        self.scale = self.head_dim ** -0.5
        if impl == "mha":
            self.mha = nn.MultiheadAttention(dim, heads, bias=qkv_bias, batch_first=True)
        else:
            self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
            self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.impl == "mha":
            return self.mha(x, x, x, need_weights=False)[0]
        batch, tokens, dim = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        if self.impl == "sdpa":
            out = F.scaled_dot_product_attention(q, k, v)
        else:
            weights = torch.softmax(torch.matmul(q, k.transpose(-2, -1)) * self.scale, dim=-1)
            out = torch.matmul(weights, v)
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, dim))


def self_attention_flops(batch: int, tokens: int, dim: int, heads: int, impl: str) -> int:
    """FLOPs of :class:`SelfAttention` (projections, the two products, and the copies between)."""
    elems = batch * tokens * dim
    flops = matmul_flops(1, batch * tokens, dim, 3 * dim) + matmul_flops(1, batch * tokens, dim, dim)
    flops += attention_flops(batch, heads, tokens, tokens, dim // heads)
    if impl == "matmul":
        scores = batch * heads * tokens * tokens
        flops += 2 * scores  # scale, softmax
        flops += 3 * elems  # q, k, v made contiguous for the batched products
    elif impl == "mha":
        flops += 4 * elems  # nn.MultiheadAttention's (T, B, D) layout copies
    flops += elems  # heads merged back into (B, T, D)
    return flops


def mlp_flops(batch: int, tokens: int, dim: int, hidden: int) -> int:
    rows = batch * tokens
    return matmul_flops(1, rows, dim, hidden) + rows * hidden + matmul_flops(1, rows, hidden, dim)

