"""MobileNetV2-like networks: inverted residual blocks with ReLU6, no squeeze-excite.

Sampled around the published network: width multiplier 0.3–1.4, per-stage depth ±1,
expansion 3/4/6, depthwise kernel 3/5/7, channels rounded to 8 or left unaligned.
Built by :mod:`edgecost.zoo.mobile`.
"""

from __future__ import annotations

import numpy as np

from . import mobile, sampling
from .family import Family, Params, Shape, shrink_resolution

# (expansion, channels, repeats, stride) of MobileNetV2 (Sandler et al. 2018, table 2)
STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
          (6, 160, 3, 2), (6, 320, 1, 1))
WIDTHS = (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)


def sample(rng: np.random.Generator, batch: int) -> tuple[Params, Shape]:
    side = sampling.resolution(rng)
    width = sampling.choice(rng, WIDTHS) if sampling.coin(rng, 0.6) else sampling.uniform(rng, 0.3, 1.4, 2)
    round_to = 8 if sampling.coin(rng, 0.7) else 1
    stem = sampling.align(32 * width, round_to)
    blocks, cin = [], stem
    for index, (t, c, n, s) in enumerate(STAGES):
        first_or_last = index in (0, len(STAGES) - 1)
        repeats = n if first_or_last else max(1, n + sampling.randint(rng, -1, 1))
        expansion = 1 if index == 0 else sampling.choice(rng, [3, 4, 6], p=[0.2, 0.2, 0.6])
        kernel = sampling.choice(rng, [3, 5, 7], p=[0.6, 0.25, 0.15])
        cout = sampling.align(c * width, round_to)
        for repeat in range(repeats):
            blocks.append([round(cin * expansion), cout, kernel, s if repeat == 0 else 1, 0, "relu6"])
            cin = cout
    params = {"width_mult": width, "stem_channels": stem, "stem_act": "relu6", "blocks": blocks,
              "se_act": "relu", "se_gate": "hardsigmoid",
              "head_channels": sampling.align(1280 * max(1.0, width), round_to), "head_act": "relu6",
              "hidden": 0, "hidden_act": "none", "num_classes": 1000}
    return params, (batch, 3, side, side)


FAMILY = Family(
    name="mobilenetv2", kind="network",
    description="MobileNetV2-like: inverted residuals, ReLU6, kernels 3/5/7, expansion 3/4/6",
    sample_params=sample, build_module=mobile.build, flops=mobile.flops,
    shrink=shrink_resolution(16, 32),
)
