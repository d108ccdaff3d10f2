"""ShuffleNetV2-like networks: channel split, two branches, concat, channel shuffle.

params: ``stem_channels``, ``stages`` = [[channels, repeats], ...] (each stage starts with a
stride-2 unit), ``kernel`` per stage (depthwise 3/5/7), ``last_channels``, ``num_classes``.
Channel counts are even (the split halves them) and, as in the paper, often not multiples
of 8 (116, 232, 464 at width 1.0).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from . import sampling
from .family import Family, Params, Shape, shrink_resolution
from .flops import matmul_flops, pool_out
from .layers import ConvBNAct, channel_shuffle, conv_bn_act_flops

# stage channels of ShuffleNetV2 0.5× / 1× / 1.5× / 2× (Ma et al. 2018, table 5)
PUBLISHED = {0.5: (48, 96, 192, 1024), 1.0: (116, 232, 464, 1024),
             1.5: (176, 352, 704, 1024), 2.0: (244, 488, 976, 2048)}
REPEATS = (4, 8, 4)


class ShuffleUnit(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, kernel: int):
        super().__init__()
        half = cout // 2
        self.stride = stride
        if stride > 1:
            self.branch1 = nn.Sequential(ConvBNAct(cin, cin, kernel, stride, groups=cin, act="none"),
                                         ConvBNAct(cin, half, 1))
        branch_in = cin if stride > 1 else half
        self.branch2 = nn.Sequential(ConvBNAct(branch_in, half, 1),
                                     ConvBNAct(half, half, kernel, stride, groups=half, act="none"),
                                     ConvBNAct(half, half, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            kept, x = x.chunk(2, dim=1)
            out = torch.cat((kept, self.branch2(x)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return channel_shuffle(out, 2)


def _units(params: Params):
    cin = params["stem_channels"]
    for (cout, repeats), kernel in zip(params["stages"], params["kernels"]):
        for repeat in range(repeats):
            yield cin, cout, 2 if repeat == 0 else 1, kernel
            cin = cout


class ShuffleNetV2(nn.Module):
    def __init__(self, params: Params, in_channels: int):
        super().__init__()
        self.stem = nn.Sequential(ConvBNAct(in_channels, params["stem_channels"], 3, 2),
                                  nn.MaxPool2d(3, 2, 1))
        self.units = nn.Sequential(*(ShuffleUnit(*u) for u in _units(params)))
        self.head = ConvBNAct(params["stages"][-1][0], params["last_channels"], 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(params["last_channels"], params["num_classes"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.head(self.units(self.stem(x))))
        return self.fc(torch.flatten(x, 1))


def build(params: Params, shape: Shape) -> nn.Module:
    return ShuffleNetV2(params, shape[1])


def flops(params: Params, shape: Shape) -> int:
    batch = shape[0]
    stem = params["stem_channels"]
    total, size = conv_bn_act_flops(batch, shape[1], stem, 3, (shape[2], shape[3]), 2)
    total += batch * stem * size[0] * size[1]
    size = (pool_out(size[0], 3, 2, 1), pool_out(size[1], 3, 2, 1))
    for cin, cout, stride, kernel in _units(params):
        half = cout // 2
        if stride > 1:
            f, out = conv_bn_act_flops(batch, cin, cin, kernel, size, stride, groups=cin, act="none")
            total += f + conv_bn_act_flops(batch, cin, half, 1, out)[0]
            total += conv_bn_act_flops(batch, cin, half, 1, size)[0]
        else:
            out = size
            total += conv_bn_act_flops(batch, half, half, 1, size)[0]
        total += conv_bn_act_flops(batch, half, half, kernel, size, stride, groups=half, act="none")[0]
        total += conv_bn_act_flops(batch, half, half, 1, out)[0]
        total += 2 * batch * cout * out[0] * out[1]  # concat, shuffle copy
        size = out
    last = params["last_channels"]
    total += conv_bn_act_flops(batch, params["stages"][-1][0], last, 1, size)[0]
    total += batch * last * size[0] * size[1]
    return total + matmul_flops(1, batch, last, params["num_classes"])


def sample(rng: np.random.Generator, batch: int) -> tuple[Params, Shape]:
    side = sampling.resolution(rng)
    if sampling.coin(rng, 0.5):
        channels = PUBLISHED[sampling.choice(rng, sorted(PUBLISHED))]
    else:
        width = sampling.uniform(rng, 0.4, 2.0, 2)
        channels = tuple(2 * max(4, int(c * width / 2)) for c in PUBLISHED[1.0][:3]) + (
            sampling.choice(rng, [512, 1024, 2048]),)
    stages = [[c, max(1, r + sampling.randint(rng, -2, 2))] for c, r in zip(channels[:3], REPEATS)]
    kernels = [sampling.choice(rng, [3, 5, 7], p=[0.6, 0.25, 0.15]) for _ in stages]
    params = {"stem_channels": 24, "stages": stages, "kernels": kernels,
              "last_channels": channels[3], "num_classes": 1000}
    return params, (batch, 3, side, side)


FAMILY = Family(
    name="shufflenetv2", kind="network",
    description="ShuffleNetV2-like: channel split, depthwise 3/5/7, concat and channel shuffle",
    sample_params=sample, build_module=build, flops=flops, shrink=shrink_resolution(16, 32),
)
