"""FBNet networks (Wu et al. 2019) in the CIFAR form the HELP latency set uses.

Stem ConvBNReLU 3×3, 16 channels, stride 1; 7 stages with [1, 4, 4, 4, 4, 4, 1] layers,
channels [16, 24, 32, 64, 112, 184, 352], strides [1, 1, 2, 2, 1, 2, 1] (first layer of a
stage only); each of the 22 layers is one of 9 blocks, in this order: k3_e1, k3_e1_g2,
k3_e3, k3_e6, k5_e1, k5_e1_g2, k5_e3, k5_e6, skip.  A block: 1×1 group conv to C_in·e +
BN + ReLU; channel shuffle when g = 2; k×k depthwise (stride s) + BN + ReLU; 1×1 group
conv to C_out + BN; residual add when C_in = C_out and s = 1.  skip: identity, or 1×1
conv (stride s) + BN + ReLU when stride or channels change.  Head: 1×1 ConvBNReLU to 1504
→ global average pool → FC(100).  Input 1×3×32×32.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..errors import UsageError
from .family import Family, Params, Shape
from .flops import matmul_flops
from .layers import ChannelShuffle, ConvBNAct, conv_bn_act_flops
from .spec import ModelSpec

STAGE_LAYERS = (1, 4, 4, 4, 4, 4, 1)
STAGE_CHANNELS = (16, 24, 32, 64, 112, 184, 352)
STAGE_STRIDES = (1, 1, 2, 2, 1, 2, 1)
STEM_CHANNELS = 16
HEAD_CHANNELS = 1504
NUM_CLASSES = 100
N_LAYERS = sum(STAGE_LAYERS)
INPUT_SHAPE = (1, 3, 32, 32)


@dataclass(frozen=True)
class BlockChoice:
    name: str
    kernel: int = 0  # 0 = skip
    expansion: int = 1
    groups: int = 1


BLOCKS = (
    BlockChoice("k3_e1", 3, 1), BlockChoice("k3_e1_g2", 3, 1, 2), BlockChoice("k3_e3", 3, 3),
    BlockChoice("k3_e6", 3, 6), BlockChoice("k5_e1", 5, 1), BlockChoice("k5_e1_g2", 5, 1, 2),
    BlockChoice("k5_e3", 5, 3), BlockChoice("k5_e6", 5, 6), BlockChoice("skip"),
)


def layers(op_idx_list: Sequence[int]) -> Iterator[tuple[int, int, int, BlockChoice]]:
    """(in channels, out channels, stride, block) of each of the 22 layers."""
    if len(op_idx_list) != N_LAYERS or not all(isinstance(i, int) and 0 <= i < len(BLOCKS)
                                               for i in op_idx_list):
        raise UsageError(f"an FBNet op_idx_list has {N_LAYERS} whole numbers in 0..{len(BLOCKS) - 1}, "
                         f"got {list(op_idx_list)!r}", "take it from the HELP fbnet set's op_idx_list column")
    ops = iter(op_idx_list)
    cin = STEM_CHANNELS
    for n, cout, stride in zip(STAGE_LAYERS, STAGE_CHANNELS, STAGE_STRIDES):
        for index in range(n):
            yield cin, cout, stride if index == 0 else 1, BLOCKS[next(ops)]
            cin = cout


class FBNetBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, choice: BlockChoice):
        super().__init__()
        mid = cin * choice.expansion
        layers_: list[nn.Module] = [ConvBNAct(cin, mid, 1, groups=choice.groups)]
        if choice.groups == 2:
            layers_.append(ChannelShuffle(2))
        layers_ += [ConvBNAct(mid, mid, choice.kernel, stride, groups=mid),
                    ConvBNAct(mid, cout, 1, groups=choice.groups, act="none")]
        self.body = nn.Sequential(*layers_)
        self.residual = cin == cout and stride == 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        return x + out if self.residual else out


def make_block(cin: int, cout: int, stride: int, choice: BlockChoice) -> nn.Module:
    if choice.kernel:
        return FBNetBlock(cin, cout, stride, choice)
    if cin == cout and stride == 1:
        return nn.Identity()
    return ConvBNAct(cin, cout, 1, stride)


class FBNet(nn.Module):
    def __init__(self, op_idx_list: Sequence[int], num_classes: int = NUM_CLASSES, in_channels: int = 3):
        super().__init__()
        self.stem = ConvBNAct(in_channels, STEM_CHANNELS, 3)
        self.layers = nn.Sequential(*(make_block(*layer) for layer in layers(op_idx_list)))
        self.head = ConvBNAct(STAGE_CHANNELS[-1], HEAD_CHANNELS, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(HEAD_CHANNELS, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.head(self.layers(self.stem(x))))
        return self.fc(torch.flatten(x, 1))


def build(params: Params, shape: Shape) -> nn.Module:
    return FBNet(params["op_idx_list"], params["num_classes"], shape[1])


def flops(params: Params, shape: Shape) -> int:
    batch = shape[0]
    total, size = conv_bn_act_flops(batch, shape[1], STEM_CHANNELS, 3, (shape[2], shape[3]))
    for cin, cout, stride, choice in layers(params["op_idx_list"]):
        if not choice.kernel:
            if cin != cout or stride != 1:
                f, size = conv_bn_act_flops(batch, cin, cout, 1, size, stride)
                total += f
            continue
        mid, g = cin * choice.expansion, choice.groups
        f, _ = conv_bn_act_flops(batch, cin, mid, 1, size, groups=g)
        total += f + (batch * mid * size[0] * size[1] if g == 2 else 0)  # shuffle copy
        f, out = conv_bn_act_flops(batch, mid, mid, choice.kernel, size, stride, groups=mid)
        total += f + conv_bn_act_flops(batch, mid, cout, 1, out, groups=g, act="none")[0]
        total += batch * cout * out[0] * out[1] if cin == cout and stride == 1 else 0
        size = out
    total += conv_bn_act_flops(batch, STAGE_CHANNELS[-1], HEAD_CHANNELS, 1, size)[0]
    total += batch * HEAD_CHANNELS * size[0] * size[1]
    return total + matmul_flops(1, batch, HEAD_CHANNELS, params["num_classes"])


def spec_from_op_idx_list(op_idx_list: Sequence[int], seed: int = 0, batch: int = 1) -> ModelSpec:
    ops = [int(i) for i in op_idx_list]
    list(layers(ops))  # validates
    return ModelSpec("fbnet", {"op_idx_list": ops, "num_classes": NUM_CLASSES},
                     (batch,) + INPUT_SHAPE[1:], seed)


def build_from_op_idx_list(op_idx_list: Sequence[int], seed: int = 0, batch: int = 1) -> nn.Module:
    """The FBNet of ``op_idx_list`` in eval mode, weights drawn from ``seed``."""
    return FAMILY.build(spec_from_op_idx_list(op_idx_list, seed, batch))


def sample(rng: np.random.Generator, batch: int) -> tuple[Params, Shape]:
    ops = [int(i) for i in rng.integers(0, len(BLOCKS), size=N_LAYERS)]
    return {"op_idx_list": ops, "num_classes": NUM_CLASSES}, (batch,) + INPUT_SHAPE[1:]


FAMILY = Family(
    name="fbnet", kind="network",
    description="FBNet (HELP's CIFAR form): 22 layers × 9 block choices from an op_idx_list",
    sample_params=sample, build_module=build, flops=flops,
)
