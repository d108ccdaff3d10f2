"""Single convolutions: regular, depthwise and grouped, with an optional fusable activation.

params: ``out_channels``, ``kernel`` (1/3/5/7), ``stride`` (1/2), ``groups``, ``bias``,
``activation`` (none/relu/relu6/hardswish: what runtimes fuse into the conv).  Input
(B, C_in, H, W); same padding (kernel // 2).
"""

from __future__ import annotations

import numpy as np
from torch import nn

from .. import sampling
from ..family import Family, Params, Shape, shrink_input
from ..flops import conv_flops, conv_out
from ..layers import activation, activation_flops

FUSABLE = ("none", "relu", "relu6", "hardswish")
FUSABLE_WEIGHTS = (0.3, 0.35, 0.2, 0.15)
SIDES = (7, 14, 28, 56, 112, 224)
MAX_WEIGHT_ELEMENTS = 1 << 22  # 16 MiB of float32 weights at most


def build(params: Params, shape: Shape) -> nn.Module:
    conv = nn.Conv2d(shape[1], params["out_channels"], params["kernel"], params["stride"],
                     params["kernel"] // 2, groups=params["groups"], bias=params["bias"])
    return nn.Sequential(conv, activation(params["activation"]))


def flops(params: Params, shape: Shape) -> int:
    k, s = params["kernel"], params["stride"]
    h, w = conv_out(shape[2], k, s), conv_out(shape[3], k, s)
    total = conv_flops(shape[0], shape[1], params["out_channels"], k, h, w, params["groups"])
    return total + activation_flops(params["activation"], shape[0] * params["out_channels"] * h * w)


def _side(rng: np.random.Generator) -> int:
    return sampling.choice(rng, SIDES) if sampling.coin(rng, 0.6) else sampling.randint(rng, 7, 224)


def _common(rng: np.random.Generator) -> Params:
    return {"stride": sampling.choice(rng, [1, 2], p=[0.75, 0.25]), "bias": sampling.coin(rng, 0.5),
            "activation": sampling.choice(rng, FUSABLE, p=FUSABLE_WEIGHTS)}


def sample_conv(rng: np.random.Generator, batch: int) -> tuple[Params, Shape]:
    side = _side(rng)
    cin = 3 if sampling.coin(rng, 0.1) else sampling.channels(rng, 4, 512)
    cout = sampling.channels(rng, 8, 512)
    kernel = sampling.choice(rng, [1, 3, 5, 7], p=[0.35, 0.45, 0.1, 0.1])
    while cin * cout * kernel * kernel > MAX_WEIGHT_ELEMENTS:
        kernel -= 2
    params = {"out_channels": cout, "kernel": kernel, "groups": 1, **_common(rng)}
    return params, (batch, cin, side, side)


def sample_depthwise(rng: np.random.Generator, batch: int) -> tuple[Params, Shape]:
    side = _side(rng)
    chans = sampling.channels(rng, 8, 1024)
    params = {"out_channels": chans, "kernel": sampling.choice(rng, [3, 5, 7], p=[0.6, 0.25, 0.15]),
              "groups": chans, **_common(rng)}
    return params, (batch, chans, side, side)


def sample_group(rng: np.random.Generator, batch: int) -> tuple[Params, Shape]:
    side = _side(rng)
    groups = sampling.choice(rng, [2, 4, 8, 16, 32])
    cin = groups * sampling.log_uniform_int(rng, 4, max(4, 1024 // groups))
    cout = groups * sampling.log_uniform_int(rng, 4, max(4, 1024 // groups))
    params = {"out_channels": cout, "kernel": sampling.choice(rng, [1, 3, 5], p=[0.4, 0.5, 0.1]),
              "groups": groups, **_common(rng)}
    return params, (batch, cin, side, side)


FAMILIES = (
    Family(name="conv", kind="kernel",
           description="Conv2d, C_in 3–512, C_out 8–512, kernel 1/3/5/7, stride 1/2, + fusable activation",
           sample_params=sample_conv, build_module=build, flops=flops, shrink=shrink_input),
    Family(name="depthwise_conv", kind="kernel",
           description="depthwise Conv2d, 8–1024 channels, kernel 3/5/7, stride 1/2, + fusable activation",
           sample_params=sample_depthwise, build_module=build, flops=flops, shrink=shrink_input),
    Family(name="group_conv", kind="kernel",
           description="grouped Conv2d, 2–32 groups of 4–512 channels, kernel 1/3/5, stride 1/2",
           sample_params=sample_group, build_module=build, flops=flops, shrink=shrink_input),
)
