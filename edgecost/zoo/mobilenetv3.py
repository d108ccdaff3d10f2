"""MobileNetV3-like networks: inverted residuals with squeeze-excite, ReLU or hardswish.

The Once-for-All MobileNetV3 space (Cai et al. 2020): after a fixed first block, five
stages of 2–4 blocks, each block with kernel 3/5/7 and expansion 3/4/6; squeeze-excite
(hardsigmoid gate) on the stages where MobileNetV3-Large has it, each flipped with
probability 0.2; width multiplier 0.5–1.3.  Built by :mod:`edgecost.zoo.mobile`.
"""

from __future__ import annotations

import numpy as np

from . import mobile, sampling
from .family import Family, Params, Shape, shrink_resolution

# (channels, stride, activation, squeeze-excite) of the five searchable stages
STAGES = ((24, 2, "relu", False), (40, 2, "relu", True), (80, 2, "hardswish", False),
          (112, 1, "hardswish", True), (160, 2, "hardswish", True))


def sample(rng: np.random.Generator, batch: int) -> tuple[Params, Shape]:
    side = sampling.resolution(rng)
    width = sampling.uniform(rng, 0.5, 1.3, 2)
    round_to = 8 if sampling.coin(rng, 0.7) else 1
    stem = sampling.align(16 * width, round_to)
    blocks = [[stem, stem, 3, 1, 0, "relu"]]
    cin = stem
    for c, s, act, se_default in STAGES:
        use_se = se_default != sampling.coin(rng, 0.2)
        cout = sampling.align(c * width, round_to)
        for repeat in range(sampling.randint(rng, 2, 4)):
            kernel = sampling.choice(rng, [3, 5, 7])
            expanded = sampling.align(cin * sampling.choice(rng, [3, 4, 6]), round_to)
            se = sampling.align(expanded / 4, 8) if use_se else 0
            blocks.append([expanded, cout, kernel, s if repeat == 0 else 1, se, act])
            cin = cout
    params = {"width_mult": width, "stem_channels": stem, "stem_act": "hardswish", "blocks": blocks,
              "se_act": "relu", "se_gate": "hardsigmoid",
              "head_channels": sampling.align(960 * width, round_to), "head_act": "hardswish",
              "hidden": 1280, "hidden_act": "hardswish", "num_classes": 1000}
    return params, (batch, 3, side, side)


FAMILY = Family(
    name="mobilenetv3", kind="network",
    description="MobileNetV3-like (OFA space): inverted residuals, squeeze-excite, hardswish",
    sample_params=sample, build_module=mobile.build, flops=mobile.flops,
    shrink=shrink_resolution(16, 32),
)
