"""ViT-like transformer encoders on image patches.

params: ``patch`` (side of the square patch, 8–32), ``embed_dim`` (64–384), ``depth``,
``heads``, ``mlp_ratio``, ``attention`` ("matmul": plain matmul + softmax; "sdpa":
``F.scaled_dot_product_attention``; "mha": ``nn.MultiheadAttention``), ``cls_token``
(else mean pooling), ``num_classes``.  Pre-norm blocks: x + attn(LN(x)), x + MLP(LN(x)),
GELU MLP.  The input side is a multiple of the patch.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from . import sampling
from .family import Family, Params, Shape, smaller_patch_side
from .flops import conv_flops, matmul_flops
from .layers import SelfAttention, mlp_flops, self_attention_flops

PATCHES = (8, 14, 16, 32)
HEAD_DIMS = (16, 32, 48, 64)
HEADS = (1, 2, 3, 4, 6, 8, 12)
MIN_DIM, MAX_DIM = 64, 384


class EncoderBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: int, impl: str):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, heads, impl)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, dim * mlp_ratio), nn.GELU(), nn.Linear(dim * mlp_ratio, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class VisionTransformer(nn.Module):
    def __init__(self, params: Params, shape: Shape):
        super().__init__()
        dim, patch = params["embed_dim"], params["patch"]
        tokens = (shape[2] // patch) * (shape[3] // patch) + (1 if params["cls_token"] else 0)
        self.patch_embed = nn.Conv2d(shape[1], dim, patch, patch)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02) if params["cls_token"] else None
        self.pos_embed = nn.Parameter(torch.randn(1, tokens, dim) * 0.02)
        self.blocks = nn.Sequential(*(EncoderBlock(dim, params["heads"], params["mlp_ratio"],
                                                   params["attention"]) for _ in range(params["depth"])))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, params["num_classes"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        if self.cls_token is not None:
            x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1)
        x = self.norm(self.blocks(x + self.pos_embed))
        pooled = x[:, 0] if self.cls_token is not None else x.mean(dim=1)
        return self.head(pooled)


def build(params: Params, shape: Shape) -> nn.Module:
    return VisionTransformer(params, shape)


def flops(params: Params, shape: Shape) -> int:
    batch, dim, patch = shape[0], params["embed_dim"], params["patch"]
    grid_h, grid_w = shape[2] // patch, shape[3] // patch
    tokens = grid_h * grid_w + (1 if params["cls_token"] else 0)
    elems = batch * tokens * dim
    total = conv_flops(batch, shape[1], dim, patch, grid_h, grid_w)
    total += elems * (2 if params["cls_token"] else 1)  # cls concat, position add
    per_block = (2 * elems  # two LayerNorms
                 + self_attention_flops(batch, tokens, dim, params["heads"], params["attention"])
                 + mlp_flops(batch, tokens, dim, dim * params["mlp_ratio"])
                 + 2 * elems)  # two residual adds
    total += params["depth"] * per_block + elems  # final LayerNorm
    total += 0 if params["cls_token"] else elems  # mean over tokens
    return total + matmul_flops(1, batch, dim, params["num_classes"])


def sample(rng: np.random.Generator, batch: int) -> tuple[Params, Shape]:
    patch = sampling.choice(rng, PATCHES, p=[0.2, 0.15, 0.45, 0.2])
    side = sampling.patch_side(rng, patch)
    heads, head_dim = sampling.choice(rng, [(h, d) for h in HEADS for d in HEAD_DIMS
                                            if MIN_DIM <= h * d <= MAX_DIM])
    params = {"patch": patch, "embed_dim": heads * head_dim, "depth": sampling.randint(rng, 1, 12),
              "heads": heads, "mlp_ratio": sampling.choice(rng, [2, 3, 4], p=[0.2, 0.1, 0.7]),
              "attention": sampling.choice(rng, ["matmul", "sdpa", "mha"], p=[0.4, 0.3, 0.3]),
              "cls_token": sampling.coin(rng, 0.7),
              "num_classes": 1000 if side >= 96 else sampling.choice(rng, [10, 100])}
    return params, (batch, 3, side, side)


def shrink(params: Params, shape: Shape) -> tuple[Params, Shape] | None:
    """Fewer patches per side first, then fewer blocks."""
    patch, side = params["patch"], shape[2]
    smaller = smaller_patch_side(patch, side)
    if smaller < side:
        return params, (shape[0], shape[1], smaller, smaller)
    if params["depth"] > 1:
        return dict(params, depth=params["depth"] - 1), shape
    return None


FAMILY = Family(
    name="vit", kind="network",
    description="ViT-like encoder: patch-embedding conv, pre-norm attention (matmul/SDPA/MHA), GELU MLP",
    sample_params=sample, build_module=build, flops=flops, shrink=shrink,
)
