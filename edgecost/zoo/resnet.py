"""ResNet-like networks: basic (two 3×3) or bottleneck (1×1, 3×3, 1×1 ×4) residual blocks.

params: ``block`` ("basic" | "bottleneck"), ``stem`` ("imagenet": 7×7/2 conv + 3×3/2
max-pool; "cifar": 3×3/1 conv), ``stem_width``, ``stages`` = [[width, depth], ...] (the
first stage keeps the resolution, each later one halves it), ``num_classes``.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from . import sampling
from .family import Family, Params, Shape, shrink_resolution
from .flops import matmul_flops, pool_out
from .layers import ConvBNAct, conv_bn_act_flops

EXPANSION = {"basic": 1, "bottleneck": 4}


def _blocks(params: Params) -> Iterator[tuple[int, int, int, int]]:
    """(in channels, inner width, out channels, stride) of every residual block."""
    cin = params["stem_width"]
    for index, (width, depth) in enumerate(params["stages"]):
        cout = width * EXPANSION[params["block"]]
        for repeat in range(depth):
            stride = 2 if index > 0 and repeat == 0 else 1
            yield cin, width, cout, stride
            cin = cout


class ResidualBlock(nn.Module):
    def __init__(self, kind: str, cin: int, width: int, cout: int, stride: int):
        super().__init__()
        if kind == "basic":
            self.body = nn.Sequential(ConvBNAct(cin, width, 3, stride),
                                      ConvBNAct(width, cout, 3, act="none"))
        else:
            self.body = nn.Sequential(ConvBNAct(cin, width, 1), ConvBNAct(width, width, 3, stride),
                                      ConvBNAct(width, cout, 1, act="none"))
        self.shortcut = (ConvBNAct(cin, cout, 1, stride, act="none")
                         if stride != 1 or cin != cout else nn.Identity())
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.shortcut(x))


class ResNet(nn.Module):
    def __init__(self, params: Params, in_channels: int):
        super().__init__()
        width = params["stem_width"]
        if params["stem"] == "imagenet":
            self.stem = nn.Sequential(ConvBNAct(in_channels, width, 7, 2), nn.MaxPool2d(3, 2, 1))
        else:
            self.stem = ConvBNAct(in_channels, width, 3)
        self.blocks = nn.Sequential(*(ResidualBlock(params["block"], *b) for b in _blocks(params)))
        cout = params["stages"][-1][0] * EXPANSION[params["block"]]
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cout, params["num_classes"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.blocks(self.stem(x))), 1))


def build(params: Params, shape: Shape) -> nn.Module:
    return ResNet(params, shape[1])


def flops(params: Params, shape: Shape) -> int:
    batch, cin = shape[0], shape[1]
    size = (shape[2], shape[3])
    width = params["stem_width"]
    if params["stem"] == "imagenet":
        total, size = conv_bn_act_flops(batch, cin, width, 7, size, 2)
        total += batch * width * size[0] * size[1]
        size = (pool_out(size[0], 3, 2, 1), pool_out(size[1], 3, 2, 1))
    else:
        total, size = conv_bn_act_flops(batch, cin, width, 3, size)
    for cin, mid, cout, stride in _blocks(params):
        if params["block"] == "basic":
            f1, out = conv_bn_act_flops(batch, cin, mid, 3, size, stride)
            f2, _ = conv_bn_act_flops(batch, mid, cout, 3, out, act="none")
            total += f1 + f2
        else:
            f1, _ = conv_bn_act_flops(batch, cin, mid, 1, size)
            f2, out = conv_bn_act_flops(batch, mid, mid, 3, size, stride)
            f3, _ = conv_bn_act_flops(batch, mid, cout, 1, out, act="none")
            total += f1 + f2 + f3
        if stride != 1 or cin != cout:
            total += conv_bn_act_flops(batch, cin, cout, 1, size, stride, act="none")[0]
        size = out
        total += 2 * batch * cout * size[0] * size[1]  # add, relu
    cout = params["stages"][-1][0] * EXPANSION[params["block"]]
    total += batch * cout * size[0] * size[1]  # global pool
    return total + matmul_flops(1, batch, cout, params["num_classes"])


def sample(rng: np.random.Generator, batch: int) -> tuple[Params, Shape]:
    side = sampling.resolution(rng)
    block = sampling.choice(rng, ["basic", "bottleneck"])
    stem = "imagenet" if side >= 96 else "cifar"
    n_stages = 4 if stem == "imagenet" else sampling.choice(rng, [3, 4])
    aligned = sampling.coin(rng, 0.7)
    base = sampling.choice(rng, [16, 24, 32, 48, 64]) if aligned else sampling.randint(rng, 12, 72)
    max_depth = 3 if block == "bottleneck" else 4
    stages = []
    for index in range(n_stages):
        raw = base * 2 ** index * sampling.uniform(rng, 0.75, 1.25)
        width = sampling.align(raw, 8) if aligned else max(4, int(raw))
        stages.append([width, sampling.randint(rng, 1, max_depth)])
    params = {"block": block, "stem": stem, "stem_width": stages[0][0] if block == "basic" else base,
              "stages": stages, "num_classes": 1000 if stem == "imagenet" else sampling.choice(rng, [10, 100])}
    return params, (batch, 3, side, side)


FAMILY = Family(
    name="resnet", kind="network",
    description="ResNet-like: basic or bottleneck residual blocks, ImageNet or CIFAR stem",
    sample_params=sample, build_module=build, flops=flops, shrink=shrink_resolution(16, 32),
)

