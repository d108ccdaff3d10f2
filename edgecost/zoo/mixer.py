"""MLP-Mixer-like networks (Tolstikhin et al., 2021) and ResMLP's linear token mixing.

params: ``patch`` (8–32), ``dim`` (channels per token, 64–512), ``depth`` (1–12),
``token_mixing`` ("mlp": MLP-Mixer's two-layer GELU MLP across tokens with hidden width
``token_hidden``; "linear": ResMLP's single linear layer across tokens, ``token_hidden`` 0),
``channel_hidden`` (the channel MLP's hidden width), ``num_classes``.  Pre-norm blocks:
x + T(mix(T(LN(x)))), x + MLP(LN(x)); mean over tokens, LayerNorm, linear head.

Everything but the patch embedding is a dense layer on a (B, T, C) or (B, C, T) tensor,
with LayerNorm, GELU, transposes and residual adds between: the transformer's feed-forward
half without attention, so a profile learns how dense layers, GELU and LayerNorm run
*inside* a network (weights streamed from memory, no longer cached) from a family other
than ViT.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from . import sampling
from .family import Family, Params, Shape, smaller_patch_side
from .flops import conv_flops, matmul_flops
from .layers import mlp_flops

PATCHES = (8, 14, 16, 32)
TOKEN_MIXING = ("mlp", "linear")


class TokenMixing(nn.Module):
    """Mixes along the token axis: (B, T, C) -> (B, C, T) -> dense over T -> back."""

    def __init__(self, tokens: int, hidden: int, kind: str):
        super().__init__()
        if kind == "mlp":
            self.mix = nn.Sequential(nn.Linear(tokens, hidden), nn.GELU(), nn.Linear(hidden, tokens))
        else:
            self.mix = nn.Linear(tokens, tokens)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mix(x.transpose(1, 2)).transpose(1, 2)


class MixerBlock(nn.Module):
    def __init__(self, tokens: int, dim: int, params: Params):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.tokens = TokenMixing(tokens, params["token_hidden"], params["token_mixing"])
        self.norm2 = nn.LayerNorm(dim)
        hidden = params["channel_hidden"]
        self.channels = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.tokens(self.norm1(x))
        return x + self.channels(self.norm2(x))


class Mixer(nn.Module):
    def __init__(self, params: Params, shape: Shape):
        super().__init__()
        dim, patch = params["dim"], params["patch"]
        tokens = (shape[2] // patch) * (shape[3] // patch)
        self.patch_embed = nn.Conv2d(shape[1], dim, patch, patch)
        self.blocks = nn.Sequential(*(MixerBlock(tokens, dim, params) for _ in range(params["depth"])))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, params["num_classes"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.patch_embed(x).flatten(2).transpose(1, 2))
        return self.head(self.norm(x.mean(dim=1)))


def build(params: Params, shape: Shape) -> nn.Module:
    return Mixer(params, shape)


def flops(params: Params, shape: Shape) -> int:
    batch, dim, patch = shape[0], params["dim"], params["patch"]
    grid_h, grid_w = shape[2] // patch, shape[3] // patch
    tokens = grid_h * grid_w
    elems = batch * tokens * dim
    total = conv_flops(batch, shape[1], dim, patch, grid_h, grid_w)
    if params["token_mixing"] == "mlp":
        token_mix = mlp_flops(batch, dim, tokens, params["token_hidden"])  # rows are the channels
    else:
        token_mix = matmul_flops(1, batch * dim, tokens, tokens)
    per_block = (2 * elems  # two LayerNorms
                 + token_mix + mlp_flops(batch, tokens, dim, params["channel_hidden"])
                 + 2 * elems)  # two residual adds
    total += params["depth"] * per_block
    total += elems + batch * dim  # mean over tokens, final LayerNorm
    return total + matmul_flops(1, batch, dim, params["num_classes"])


def sample(rng: np.random.Generator, batch: int) -> tuple[Params, Shape]:
    patch = sampling.choice(rng, PATCHES, p=[0.2, 0.15, 0.45, 0.2])
    side = sampling.patch_side(rng, patch)
    tokens = (side // patch) ** 2
    dim = sampling.channels(rng, 64, 512)
    mixing = sampling.choice(rng, TOKEN_MIXING, p=[0.7, 0.3])
    token_hidden = max(8, int(tokens * sampling.choice(rng, [0.5, 1, 2])) // 8 * 8) if mixing == "mlp" else 0
    params = {"patch": patch, "dim": dim, "depth": sampling.randint(rng, 1, 12),
              "token_mixing": mixing, "token_hidden": token_hidden,
              "channel_hidden": dim * sampling.choice(rng, [2, 3, 4], p=[0.3, 0.1, 0.6]),
              "num_classes": 1000 if side >= 96 else sampling.choice(rng, [10, 100])}
    return params, (batch, 3, side, side)


def shrink(params: Params, shape: Shape) -> tuple[Params, Shape] | None:
    """Fewer blocks first (the token MLP's width is tied to the token count), then fewer patches."""
    if params["depth"] > 1:
        return dict(params, depth=params["depth"] - 1), shape
    patch, side = params["patch"], shape[2]
    smaller = smaller_patch_side(patch, side)
    if smaller < side:
        if params["token_mixing"] == "mlp":
            tokens = (smaller // patch) ** 2
            params = dict(params, token_hidden=max(8, min(params["token_hidden"], 2 * tokens) // 8 * 8))
        return params, (shape[0], shape[1], smaller, smaller)
    return None


FAMILY = Family(
    name="mixer", kind="network",
    description="MLP-Mixer / ResMLP: patch-embedding conv, token-mixing MLP or linear, channel GELU MLP, LayerNorm",
    sample_params=sample, build_module=build, flops=flops, shrink=shrink,
)
