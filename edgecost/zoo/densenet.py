"""DenseNet-like networks: dense blocks (each layer sees the concat of all earlier ones).

params: ``growth``, ``blocks`` (layers per dense block), ``bn_size`` (bottleneck width =
bn_size × growth), ``init_channels``, ``compression`` (transition keeps this share of
channels), ``stem`` ("imagenet": 7×7/2 conv + 3×3/2 max-pool; "cifar": 3×3 conv),
``num_classes``.  As in torchvision's DenseNet, every layer concatenates its inputs anew,
so concat traffic grows quadratically with block depth, as it does on devices.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from . import sampling
from .family import Family, Params, Shape, shrink_resolution
from .flops import conv_flops, matmul_flops, pool_out

PUBLISHED_BLOCKS = ((6, 12, 24, 16), (6, 12, 32, 32))  # DenseNet-121, -169


class BNReLUConv(nn.Sequential):
    """Pre-activation: BatchNorm → ReLU → conv."""

    def __init__(self, cin: int, cout: int, kernel: int):
        super().__init__(nn.BatchNorm2d(cin), nn.ReLU(),
                         nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False))


class DenseLayer(nn.Module):
    def __init__(self, cin: int, growth: int, bn_size: int):
        super().__init__()
        self.bottleneck = BNReLUConv(cin, bn_size * growth, 1)
        self.conv = BNReLUConv(bn_size * growth, growth, 3)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = features[0] if len(features) == 1 else torch.cat(features, dim=1)
        return self.conv(self.bottleneck(x))


class DenseBlock(nn.Module):
    def __init__(self, cin: int, layers: int, growth: int, bn_size: int):
        super().__init__()
        self.layers = nn.ModuleList(DenseLayer(cin + i * growth, growth, bn_size) for i in range(layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.layers:
            features.append(layer(features))
        return torch.cat(features, dim=1)


def _transition_channels(channels: int, compression: float) -> int:
    return max(1, int(channels * compression))


class DenseNet(nn.Module):
    def __init__(self, params: Params, in_channels: int):
        super().__init__()
        growth, bn_size, channels = params["growth"], params["bn_size"], params["init_channels"]
        if params["stem"] == "imagenet":
            stem: list[nn.Module] = [nn.Conv2d(in_channels, channels, 7, 2, 3, bias=False),
                                     nn.BatchNorm2d(channels), nn.ReLU(), nn.MaxPool2d(3, 2, 1)]
        else:
            stem = [nn.Conv2d(in_channels, channels, 3, 1, 1, bias=False)]
        body: list[nn.Module] = []
        for index, layers in enumerate(params["blocks"]):
            body.append(DenseBlock(channels, layers, growth, bn_size))
            channels += layers * growth
            if index < len(params["blocks"]) - 1:
                out = _transition_channels(channels, params["compression"])
                body += [BNReLUConv(channels, out, 1), nn.AvgPool2d(2, 2)]
                channels = out
        self.features = nn.Sequential(*stem, *body, nn.BatchNorm2d(channels), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, params["num_classes"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


def build(params: Params, shape: Shape) -> nn.Module:
    return DenseNet(params, shape[1])


def _bn_relu_conv_flops(batch: int, cin: int, cout: int, kernel: int, size: tuple[int, int]) -> int:
    return 2 * batch * cin * size[0] * size[1] + conv_flops(batch, cin, cout, kernel, *size)


def flops(params: Params, shape: Shape) -> int:
    batch, growth, bn_size = shape[0], params["growth"], params["bn_size"]
    channels = params["init_channels"]
    h, w = shape[2], shape[3]
    if params["stem"] == "imagenet":
        h, w = (h + 6 - 7) // 2 + 1, (w + 6 - 7) // 2 + 1
        total = conv_flops(batch, shape[1], channels, 7, h, w) + 3 * batch * channels * h * w
        h, w = pool_out(h, 3, 2, 1), pool_out(w, 3, 2, 1)
    else:
        total = conv_flops(batch, shape[1], channels, 3, h, w)
    for index, layers in enumerate(params["blocks"]):
        for i in range(layers):
            cin = channels + i * growth
            total += batch * cin * h * w if i > 0 else 0  # concat (a single tensor is not copied)
            total += _bn_relu_conv_flops(batch, cin, bn_size * growth, 1, (h, w))
            total += _bn_relu_conv_flops(batch, bn_size * growth, growth, 3, (h, w))
        channels += layers * growth
        total += batch * channels * h * w  # block output concat
        if index < len(params["blocks"]) - 1:
            out = _transition_channels(channels, params["compression"])
            total += _bn_relu_conv_flops(batch, channels, out, 1, (h, w)) + batch * out * h * w
            channels, h, w = out, h // 2, w // 2
    total += 3 * batch * channels * h * w  # final BN, ReLU, pool
    return total + matmul_flops(1, batch, channels, params["num_classes"])


def sample(rng: np.random.Generator, batch: int) -> tuple[Params, Shape]:
    side = sampling.resolution(rng)
    stem = "imagenet" if side >= 96 else "cifar"
    growth = sampling.choice(rng, [12, 16, 24, 32, 48], p=[0.25, 0.2, 0.2, 0.25, 0.1])
    if sampling.coin(rng, 0.3):
        blocks = [max(1, round(n * sampling.uniform(rng, 0.25, 0.7))) for n in
                  sampling.choice(rng, PUBLISHED_BLOCKS)]
    else:
        blocks = [sampling.randint(rng, 2, 12) for _ in range(sampling.choice(rng, [3, 4]))]
    params = {"growth": growth, "blocks": blocks, "bn_size": sampling.choice(rng, [2, 4], p=[0.3, 0.7]),
              "init_channels": 2 * growth, "compression": sampling.choice(rng, [0.5, 1.0], p=[0.8, 0.2]),
              "stem": stem, "num_classes": 1000 if stem == "imagenet" else sampling.choice(rng, [10, 100])}
    return params, (batch, 3, side, side)


FAMILY = Family(
    name="densenet", kind="network",
    description="DenseNet-like: dense blocks with BN-ReLU-conv bottlenecks, concat, transitions",
    sample_params=sample, build_module=build, flops=flops, shrink=shrink_resolution(16, 32),
)
