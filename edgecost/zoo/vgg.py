"""VGG-like networks: stages of 3×3 convolutions (optionally with BatchNorm) and 2×2 max-pools.

params: ``stages`` = [[width, convs], ...] (a max-pool after each stage), ``batch_norm``,
``hidden`` (width of the hidden classifier layer), ``num_classes``.  The classifier
pools globally first, so the parameter count stays moderate at any resolution.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from . import sampling
from .family import Family, Params, Shape, shrink_resolution
from .flops import matmul_flops
from .layers import ConvBNAct, conv_bn_act_flops

BASE_WIDTHS = (64, 128, 256, 512, 512)
CONFIGS = ((1, 1, 2, 2, 2), (2, 2, 2, 2, 2), (2, 2, 3, 3, 3), (2, 2, 4, 4, 4))  # VGG-11/13/16/19


class VGG(nn.Module):
    def __init__(self, params: Params, in_channels: int):
        super().__init__()
        layers: list[nn.Module] = []
        cin = in_channels
        for width, convs in params["stages"]:
            for _ in range(convs):
                layers.append(ConvBNAct(cin, width, 3, bn=params["batch_norm"],
                                        bias=not params["batch_norm"]))
                cin = width
            layers.append(nn.MaxPool2d(2, 2))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Linear(cin, params["hidden"]), nn.ReLU(),
                                        nn.Linear(params["hidden"], params["num_classes"]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


def build(params: Params, shape: Shape) -> nn.Module:
    return VGG(params, shape[1])


def flops(params: Params, shape: Shape) -> int:
    batch, cin, size = shape[0], shape[1], (shape[2], shape[3])
    total = 0
    for width, convs in params["stages"]:
        for _ in range(convs):
            f, size = conv_bn_act_flops(batch, cin, width, 3, size, bn=params["batch_norm"])
            total += f
            cin = width
        total += batch * cin * size[0] * size[1]  # max-pool reads the whole map
        size = (size[0] // 2, size[1] // 2)
    total += batch * cin * size[0] * size[1]
    total += matmul_flops(1, batch, cin, params["hidden"]) + batch * params["hidden"]
    return total + matmul_flops(1, batch, params["hidden"], params["num_classes"])


def sample(rng: np.random.Generator, batch: int) -> tuple[Params, Shape]:
    side = sampling.resolution(rng)
    n_stages = 5 if side >= 64 else sampling.choice(rng, [3, 4, 5])
    config = sampling.choice(rng, CONFIGS)
    width = sampling.uniform(rng, 0.0625, 0.5, 3)
    aligned = sampling.coin(rng, 0.7)
    stages = []
    for index in range(n_stages):
        raw = BASE_WIDTHS[index] * width
        stages.append([sampling.align(raw, 8) if aligned else max(4, int(raw)), config[index]])
    params = {"width_mult": width, "stages": stages, "batch_norm": sampling.coin(rng, 0.5),
              "hidden": sampling.choice(rng, [256, 512, 1024, 2048, 4096]),
              "num_classes": 1000 if side >= 96 else sampling.choice(rng, [10, 100])}
    return params, (batch, 3, side, side)


FAMILY = Family(
    name="vgg", kind="network",
    description="VGG-like: stacks of 3×3 convs (BN optional), max-pools, two-layer classifier",
    sample_params=sample, build_module=build, flops=flops, shrink=shrink_resolution(32, 32),
)
