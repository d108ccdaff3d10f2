"""Single elementwise and normalization ops.

* ``elementwise``: x (op) constant, op add/sub/mul/div, the constant full-shape or
  broadcast over channels, over space/tokens, or a scalar; input (B, C, H, W) or (B, T, D).
* ``activation``: relu, relu6, sigmoid, tanh, gelu, hardswish, hardsigmoid, silu, leaky_relu.
* ``softmax`` over the last axis of (B, N), (B, T, T), (B, H, T, T) or many short rows
  (B, G ≤ 2048, T ≤ 64, T) as windowed attention makes them.
* ``layernorm`` over D of (B, T, D); ``batchnorm`` (inference) on (B, C, H, W).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .. import sampling
from ..family import Family, Params, Shape, shrink_input
from ..flops import numel
from ..layers import activation

ELEMENTWISE_OPS = ("add", "sub", "mul", "div")
BROADCASTS = ("none", "channel", "spatial", "scalar")
ACTIVATION_OPS = ("relu", "relu6", "sigmoid", "tanh", "gelu", "hardswish", "hardsigmoid", "silu",
                  "leaky_relu")


def _feature_map(rng: np.random.Generator, batch: int) -> Shape:
    """(B, C, H, W) with 8–512 channels and sides 7–112, or (B, T, D) tokens."""
    if sampling.coin(rng, 0.65):
        side = sampling.choice(rng, [7, 14, 28, 56, 112]) if sampling.coin(rng, 0.6) else sampling.randint(rng, 4, 112)
        return batch, sampling.channels(rng, 8, 512), side, side
    return batch, sampling.log_uniform_int(rng, 1, 1024), sampling.channels(rng, 16, 1024)


class ElementwiseConstant(nn.Module):
    def __init__(self, op: str, other: torch.Tensor | float):
        super().__init__()
        self.op = op
        if isinstance(other, torch.Tensor):
            self.register_buffer("other", other)
        else:
            self.other = other

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.op == "add":
            return x + self.other
        if self.op == "sub":
            return x - self.other
        if self.op == "mul":
            return x * self.other
        return x / self.other


def _broadcast_shape(broadcast: str, shape: Shape) -> Shape:
    if broadcast == "none":
        return shape
    if broadcast == "channel":  # per channel (rank 4) or per feature (rank 3)
        return (1, shape[1], 1, 1) if len(shape) == 4 else (1, 1, shape[-1])
    return (1, 1) + tuple(shape[2:]) if len(shape) == 4 else (1, shape[1], 1)  # spatial / per token


def build_elementwise(params: Params, shape: Shape) -> nn.Module:
    if params["broadcast"] == "scalar":
        return ElementwiseConstant(params["op"], 1.37)
    other = torch.rand(_broadcast_shape(params["broadcast"], shape)) + 0.5  # away from 0 for div
    return ElementwiseConstant(params["op"], other)


def sample_elementwise(rng: np.random.Generator, batch: int) -> tuple[Params, Shape]:
    params = {"op": sampling.choice(rng, ELEMENTWISE_OPS, p=[0.4, 0.1, 0.4, 0.1]),
              "broadcast": sampling.choice(rng, BROADCASTS, p=[0.4, 0.3, 0.1, 0.2])}
    return params, _feature_map(rng, batch)


def elements(params: Params, shape: Shape) -> int:
    return numel(*shape)


def build_activation(params: Params, shape: Shape) -> nn.Module:
    return activation(params["activation"])


def sample_activation(rng: np.random.Generator, batch: int) -> tuple[Params, Shape]:
    return {"activation": sampling.choice(rng, ACTIVATION_OPS)}, _feature_map(rng, batch)


class Softmax(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(x, dim=-1)


def build_softmax(params: Params, shape: Shape) -> nn.Module:
    return Softmax()


def sample_softmax(rng: np.random.Generator, batch: int) -> tuple[Params, Shape]:
    layout = sampling.choice(rng, ["logits", "scores", "head_scores", "windows"], p=[0.2, 0.25, 0.35, 0.2])
    if layout == "windows":  # many short rows: (B, windows x heads, T, T) with T ≤ 64
        tokens = sampling.log_uniform_int(rng, 4, 64)
        return {"layout": layout}, (batch, sampling.log_uniform_int(rng, 16, 2048), tokens, tokens)
    if layout == "logits":
        return {"layout": layout}, (batch, sampling.log_uniform_int(rng, 10, 32000))
    tokens = sampling.log_uniform_int(rng, 4, 1024)
    if layout == "scores":
        return {"layout": layout}, (batch, tokens, tokens)
    return {"layout": layout}, (batch, sampling.choice(rng, [1, 2, 3, 4, 6, 8, 12, 16]), tokens, tokens)


def build_layernorm(params: Params, shape: Shape) -> nn.Module:
    return nn.LayerNorm(shape[-1], eps=params["eps"])


def sample_layernorm(rng: np.random.Generator, batch: int) -> tuple[Params, Shape]:
    shape = (batch, sampling.log_uniform_int(rng, 1, 1024), sampling.channels(rng, 32, 1024))
    return {"eps": sampling.choice(rng, [1e-5, 1e-6])}, shape


def build_batchnorm(params: Params, shape: Shape) -> nn.Module:
    return nn.BatchNorm2d(shape[1])


def sample_batchnorm(rng: np.random.Generator, batch: int) -> tuple[Params, Shape]:
    while True:
        shape = _feature_map(rng, batch)
        if len(shape) == 4:
            return {}, shape


FAMILIES = (
    Family(name="elementwise", kind="kernel",
           description="add/sub/mul/div with a constant: full shape, per channel, per position, scalar",
           sample_params=sample_elementwise, build_module=build_elementwise, flops=elements,
           shrink=shrink_input),
    Family(name="activation", kind="kernel",
           description="one activation: relu, relu6, sigmoid, tanh, gelu, hardswish, hardsigmoid, silu, leaky_relu",
           sample_params=sample_activation, build_module=build_activation, flops=elements,
           shrink=shrink_input),
    Family(name="softmax", kind="kernel",
           description="softmax over the last axis of logits (≤32000), (T, T), (H, T, T) or windowed"
                       " (G≤2048, T≤64, T) scores",
           sample_params=sample_softmax, build_module=build_softmax, flops=elements, shrink=shrink_input),
    Family(name="layernorm", kind="kernel",
           description="LayerNorm over D of (B, T≤1024, D 32–1024)",
           sample_params=sample_layernorm, build_module=build_layernorm, flops=elements,
           shrink=shrink_input),
    Family(name="batchnorm", kind="kernel",
           description="BatchNorm2d in inference mode on (B, 8–512, H, W)",
           sample_params=sample_batchnorm, build_module=build_batchnorm, flops=elements,
           shrink=shrink_input),
)
