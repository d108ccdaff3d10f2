"""Single spatial ops on (B, C, H, W): pooling and resizing.

* ``pool``: max or average pooling (kernel 2/3, stride 1/2), or global average / max.
* ``resize``: nearest or bilinear (``align_corners=False``) up-sampling ×2/×4 or down-sampling ×½.
"""

from __future__ import annotations

import numpy as np
from torch import nn

from .. import sampling
from ..family import Family, Params, Shape, shrink_input
from ..flops import numel

POOL_MODES = ("max", "avg", "global_avg", "global_max")


def _map(rng: np.random.Generator, batch: int, max_side: int = 112) -> Shape:
    side = sampling.choice(rng, [7, 14, 28, 56, 112]) if sampling.coin(rng, 0.6) else sampling.randint(rng, 4, max_side)
    return batch, sampling.channels(rng, 8, 512), min(side, max_side), min(side, max_side)


def build_pool(params: Params, shape: Shape) -> nn.Module:
    mode = params["mode"]
    if mode == "global_avg":
        return nn.AdaptiveAvgPool2d(1)
    if mode == "global_max":
        return nn.AdaptiveMaxPool2d(1)
    layer = nn.MaxPool2d if mode == "max" else nn.AvgPool2d
    return layer(params["kernel"], params["stride"], params["padding"])


def pool_flops(params: Params, shape: Shape) -> int:
    return numel(*shape)  # every op reads its whole input, which is its largest tensor


def sample_pool(rng: np.random.Generator, batch: int) -> tuple[Params, Shape]:
    mode = sampling.choice(rng, POOL_MODES, p=[0.35, 0.2, 0.35, 0.1])
    kernel = sampling.choice(rng, [2, 3])
    params = {"mode": mode, "kernel": kernel, "stride": 2 if kernel == 2 else sampling.choice(rng, [1, 2]),
              "padding": kernel // 2 if kernel == 3 else 0}
    return params, _map(rng, batch)


def build_resize(params: Params, shape: Shape) -> nn.Module:
    mode = params["mode"]
    return nn.Upsample(scale_factor=params["scale"], mode=mode,
                       align_corners=False if mode == "bilinear" else None)


def resize_flops(params: Params, shape: Shape) -> int:
    scale = params["scale"]
    out = numel(shape[0], shape[1], int(shape[2] * scale), int(shape[3] * scale))
    return max(out, numel(*shape))


def sample_resize(rng: np.random.Generator, batch: int) -> tuple[Params, Shape]:
    scale = sampling.choice(rng, [2.0, 4.0, 0.5], p=[0.7, 0.1, 0.2])
    shape = _map(rng, batch, max_side=56 if scale > 1 else 112)
    if scale < 1 and shape[2] % 2:
        shape = shape[:2] + (shape[2] + 1, shape[3] + 1)
    return {"mode": sampling.choice(rng, ["nearest", "bilinear"]), "scale": scale}, shape


FAMILIES = (
    Family(name="pool", kind="kernel",
           description="max/avg pooling (kernel 2/3, stride 1/2) or global avg/max on (B, 8–512, ≤112, ≤112)",
           sample_params=sample_pool, build_module=build_pool, flops=pool_flops, shrink=shrink_input),
    Family(name="resize", kind="kernel",
           description="nearest/bilinear resize ×2, ×4 or ×½ on (B, 8–512, H, W)",
           sample_params=sample_resize, build_module=build_resize, flops=resize_flops,
           shrink=shrink_input),
)
