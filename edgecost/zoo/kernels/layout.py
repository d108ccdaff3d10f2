"""Single data-movement ops: concatenation, transposes and reshapes.

* ``concat``: the input joined with 1–3 constants along channels (B, C, H, W) or features
  (B, T, D); params ``others`` (their sizes along the joined axis).
* ``transpose``: ``nchw_to_nhwc``, ``nhwc_to_nchw``, ``channel_shuffle`` (reshape,
  transpose, reshape), ``tokens`` ((B, C, H, W) → (B, HW, C), as ViT does), ``heads``
  ((B, T, D) → (B, H, T, D/H)), or ``reshape`` alone (no data moves).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .. import sampling
from ..family import Family, Params, Shape, shrink_input
from ..flops import numel
from ..layers import channel_shuffle

TRANSPOSES = ("nchw_to_nhwc", "nhwc_to_nchw", "channel_shuffle", "tokens", "heads", "reshape")


class ConcatConstants(nn.Module):
    def __init__(self, others: list[torch.Tensor], dim: int):
        super().__init__()
        self.dim = dim
        for index, other in enumerate(others):
            self.register_buffer(f"other_{index}", other)
        self.count = len(others)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        others = [getattr(self, f"other_{i}") for i in range(self.count)]
        return torch.cat([x, *others], dim=self.dim)


def _axis(shape: Shape) -> int:
    return 1 if len(shape) == 4 else len(shape) - 1


def build_concat(params: Params, shape: Shape) -> nn.Module:
    axis = _axis(shape)
    others = []
    for size in params["others"]:
        other_shape = list(shape)
        other_shape[axis] = size
        others.append(torch.randn(other_shape))
    return ConcatConstants(others, axis)


def concat_flops(params: Params, shape: Shape) -> int:
    return numel(*shape) // shape[_axis(shape)] * (shape[_axis(shape)] + sum(params["others"]))


def sample_concat(rng: np.random.Generator, batch: int) -> tuple[Params, Shape]:
    if sampling.coin(rng, 0.7):
        side = sampling.choice(rng, [7, 14, 28, 56]) if sampling.coin(rng, 0.6) else sampling.randint(rng, 4, 56)
        shape: Shape = (batch, sampling.channels(rng, 8, 512), side, side)
    else:
        shape = (batch, sampling.log_uniform_int(rng, 1, 512), sampling.channels(rng, 16, 512))
    others = [sampling.channels(rng, 8, 512) for _ in range(sampling.randint(rng, 1, 3))]
    return {"others": others}, shape


class Rearrange(nn.Module):
    def __init__(self, op: str, groups: int):
        super().__init__()
        self.op, self.groups = op, groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.op == "nchw_to_nhwc":
            return x.permute(0, 2, 3, 1).contiguous()
        if self.op == "nhwc_to_nchw":
            return x.permute(0, 3, 1, 2).contiguous()
        if self.op == "channel_shuffle":
            return channel_shuffle(x, self.groups)
        if self.op == "tokens":
            return x.flatten(2).transpose(1, 2).contiguous()
        if self.op == "heads":
            batch, tokens, dim = x.shape
            return x.view(batch, tokens, self.groups, dim // self.groups).transpose(1, 2).contiguous()
        return x.reshape(x.shape[0], x.shape[1], -1)


def build_transpose(params: Params, shape: Shape) -> nn.Module:
    return Rearrange(params["op"], params["groups"])


def transpose_flops(params: Params, shape: Shape) -> int:
    return 0 if params["op"] == "reshape" else numel(*shape)


def sample_transpose(rng: np.random.Generator, batch: int) -> tuple[Params, Shape]:
    op = sampling.choice(rng, TRANSPOSES)
    side = sampling.choice(rng, [7, 14, 28, 56]) if sampling.coin(rng, 0.6) else sampling.randint(rng, 4, 112)
    groups = 1
    if op == "heads":
        groups = sampling.choice(rng, [2, 4, 8, 12])
        shape: Shape = (batch, sampling.log_uniform_int(rng, 4, 1024), groups * sampling.choice(rng, [16, 32, 64]))
    elif op == "channel_shuffle":
        groups = sampling.choice(rng, [2, 3, 4, 8])
        shape = (batch, groups * sampling.log_uniform_int(rng, 4, 128), side, side)
    elif op == "nhwc_to_nchw":
        shape = (batch, side, side, sampling.channels(rng, 3, 512))
    else:
        shape = (batch, sampling.channels(rng, 3, 512), side, side)
    return {"op": op, "groups": groups}, shape


FAMILIES = (
    Family(name="concat", kind="kernel",
           description="concat of the input with 1–3 constants along channels or features",
           sample_params=sample_concat, build_module=build_concat, flops=concat_flops,
           shrink=shrink_input),
    Family(name="transpose", kind="kernel",
           description="NCHW↔NHWC, channel shuffle, image→tokens, tokens→heads, or a bare reshape",
           sample_params=sample_transpose, build_module=build_transpose, flops=transpose_flops,
           shrink=shrink_input),
)
