"""The network skeleton shared by MobileNetV2, MobileNetV3 and EfficientNet.

stem conv 3×3/2 → inverted-residual blocks → 1×1 head conv → global pool →
(optional hidden linear, MobileNetV3) → classifier.

params: ``stem_channels``, ``stem_act``, ``blocks`` = [[expanded, out, kernel, stride,
se_channels, act], ...] (``se_channels`` 0 = no squeeze-excite), ``se_act``, ``se_gate``,
``head_channels``, ``head_act``, ``hidden`` (0 = none), ``hidden_act``, ``num_classes``.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from .family import Params, Shape
from .flops import matmul_flops
from .layers import ConvBNAct, SqueezeExcite, activation, activation_flops, conv_bn_act_flops, squeeze_excite_flops


class InvertedResidual(nn.Module):
    """1×1 expand (skipped when the width does not change) → k×k depthwise → SE → 1×1 project."""

    def __init__(self, cin: int, expanded: int, cout: int, kernel: int, stride: int, act: str,
                 se_channels: int = 0, se_act: str = "relu", se_gate: str = "hardsigmoid"):
        super().__init__()
        layers: list[nn.Module] = []
        if expanded != cin:
            layers.append(ConvBNAct(cin, expanded, 1, act=act))
        layers.append(ConvBNAct(expanded, expanded, kernel, stride, groups=expanded, act=act))
        if se_channels:
            layers.append(SqueezeExcite(expanded, se_channels, se_act, se_gate))
        layers.append(ConvBNAct(expanded, cout, 1, act="none"))
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        return x + out if self.residual else out


def inverted_residual_flops(batch: int, cin: int, expanded: int, cout: int, kernel: int,
                            stride: int, act: str, se_channels: int,
                            size: tuple[int, int]) -> tuple[int, tuple[int, int]]:
    total = 0
    if expanded != cin:
        total += conv_bn_act_flops(batch, cin, expanded, 1, size, act=act)[0]
    f, out = conv_bn_act_flops(batch, expanded, expanded, kernel, size, stride, groups=expanded, act=act)
    total += f
    if se_channels:
        total += squeeze_excite_flops(batch, expanded, se_channels, out)
    total += conv_bn_act_flops(batch, expanded, cout, 1, out, act="none")[0]
    if stride == 1 and cin == cout:
        total += batch * cout * out[0] * out[1]
    return total, out


def _blocks(params: Params) -> Iterator[tuple[int, int, int, int, int, str, int]]:
    """(in, expanded, out, kernel, stride, act, se_channels) of every block."""
    cin = params["stem_channels"]
    for expanded, cout, kernel, stride, se_channels, act in params["blocks"]:
        yield cin, expanded, cout, kernel, stride, act, se_channels
        cin = cout


class MobileNet(nn.Module):
    def __init__(self, params: Params, in_channels: int):
        super().__init__()
        self.stem = ConvBNAct(in_channels, params["stem_channels"], 3, 2, act=params["stem_act"])
        self.blocks = nn.Sequential(*(
            InvertedResidual(cin, expanded, cout, kernel, stride, act, se,
                             params["se_act"], params["se_gate"])
            for cin, expanded, cout, kernel, stride, act, se in _blocks(params)))
        last = params["blocks"][-1][1]
        self.head = ConvBNAct(last, params["head_channels"], 1, act=params["head_act"])
        self.pool = nn.AdaptiveAvgPool2d(1)
        classifier: list[nn.Module] = []
        features = params["head_channels"]
        if params["hidden"]:
            classifier += [nn.Linear(features, params["hidden"]), activation(params["hidden_act"])]
            features = params["hidden"]
        classifier.append(nn.Linear(features, params["num_classes"]))
        self.classifier = nn.Sequential(*classifier)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.head(self.blocks(self.stem(x))))
        return self.classifier(torch.flatten(x, 1))


def build(params: Params, shape: Shape) -> nn.Module:
    return MobileNet(params, shape[1])


def flops(params: Params, shape: Shape) -> int:
    batch = shape[0]
    total, size = conv_bn_act_flops(batch, shape[1], params["stem_channels"], 3, (shape[2], shape[3]),
                                    2, act=params["stem_act"])
    for cin, expanded, cout, kernel, stride, act, se in _blocks(params):
        f, size = inverted_residual_flops(batch, cin, expanded, cout, kernel, stride, act, se, size)
        total += f
    last = params["blocks"][-1][1]
    head = params["head_channels"]
    total += conv_bn_act_flops(batch, last, head, 1, size, act=params["head_act"])[0]
    total += batch * head * size[0] * size[1]  # pool
    features = head
    if params["hidden"]:
        total += matmul_flops(1, batch, head, params["hidden"])
        total += activation_flops(params["hidden_act"], batch * params["hidden"])
        features = params["hidden"]
    return total + matmul_flops(1, batch, features, params["num_classes"])
