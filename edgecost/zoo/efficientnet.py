"""EfficientNet-like networks: MBConv blocks with squeeze-excite and SiLU, compound scaling.

Starts from EfficientNet-B0 (Tan & Le 2019) and scales depth × 1.2^φ, width × 1.1^φ and
resolution × 1.15^φ for φ in [-3, 1.5] (resolution capped at 224), then perturbs each
stage's kernel (3/5/7) and expansion (3/4/6) with probability 0.3; squeeze-excite on
(p = 0.85) with a quarter of the block's input channels.  Built by :mod:`edgecost.zoo.mobile`.
"""

from __future__ import annotations

import math

import numpy as np

from . import mobile, sampling
from .family import Family, Params, Shape, shrink_resolution

# (expansion, channels, repeats, stride, kernel) of EfficientNet-B0
STAGES = ((1, 16, 1, 1, 3), (6, 24, 2, 2, 3), (6, 40, 2, 2, 5), (6, 80, 3, 2, 3),
          (6, 112, 3, 1, 5), (6, 192, 4, 2, 5), (6, 320, 1, 1, 3))
DEPTH_BASE, WIDTH_BASE, RESOLUTION_BASE = 1.2, 1.1, 1.15


def sample(rng: np.random.Generator, batch: int) -> tuple[Params, Shape]:
    phi = sampling.uniform(rng, -3.0, 1.5, 2)
    depth_coef = round(DEPTH_BASE ** phi, 3)
    width_coef = round(WIDTH_BASE ** phi, 3)
    side = min(224, max(32, int(224 * RESOLUTION_BASE ** phi) // 16 * 16))
    round_to = 8 if sampling.coin(rng, 0.8) else 1
    with_se = sampling.coin(rng, 0.85)
    stem = sampling.align(32 * width_coef, round_to)
    blocks, cin = [], stem
    for t, c, n, s, k in STAGES:
        if t != 1 and sampling.coin(rng, 0.3):
            t = sampling.choice(rng, [3, 4, 6])
        if sampling.coin(rng, 0.3):
            k = sampling.choice(rng, [3, 5, 7])
        cout = sampling.align(c * width_coef, round_to)
        for repeat in range(math.ceil(n * depth_coef)):
            se = max(1, int(cin * 0.25)) if with_se else 0
            blocks.append([cin * t, cout, k, s if repeat == 0 else 1, se, "silu"])
            cin = cout
    params = {"phi": phi, "depth_coef": depth_coef, "width_coef": width_coef,
              "stem_channels": stem, "stem_act": "silu", "blocks": blocks,
              "se_act": "silu", "se_gate": "sigmoid",
              "head_channels": sampling.align(1280 * width_coef, round_to), "head_act": "silu",
              "hidden": 0, "hidden_act": "none", "num_classes": 1000}
    return params, (batch, 3, side, side)


FAMILY = Family(
    name="efficientnet", kind="network",
    description="EfficientNet-like: MBConv + squeeze-excite + SiLU, compound-scaled from B0",
    sample_params=sample, build_module=mobile.build, flops=mobile.flops,
    shrink=shrink_resolution(16, 32),
)
