"""What a zoo family is: a sampler of specs, a builder of modules, and a FLOP estimate.

A family module (``resnet.py``, ``kernels/conv.py``, ...) defines three plain functions over
``(params, input_shape)`` and wraps them in a :class:`Family`.  The wrapper adds what is
common: seeded weights, eval mode, and keeping samples under a FLOP cap.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import UsageError
from . import sampling
from .spec import ModelSpec

Shape = tuple[int, ...]
Params = dict[str, Any]
SampleFn = Callable[[np.random.Generator, int], tuple[Params, Shape]]
BuildFn = Callable[[Params, Shape], nn.Module]
FlopsFn = Callable[[Params, Shape], int]
ShrinkFn = Callable[[Params, Shape], tuple[Params, Shape] | None]

KINDS = ("network", "kernel")
DEFAULT_MAX_FLOPS = {"network": 2_000_000_000, "kernel": 500_000_000}
PLAIN_TRIES = 25  # draws kept only if they fit as drawn
SHRINK_TRIES = 75  # further draws, each shrunk until it fits


@dataclass(frozen=True)
class Family:
    """One generator of models: ``kind`` is ``"network"`` or ``"kernel"`` (a single op)."""

    name: str
    kind: str
    description: str
    sample_params: SampleFn
    build_module: BuildFn
    flops: FlopsFn
    shrink: ShrinkFn | None = None  # one step smaller, or None at the smallest

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"family kind must be one of {KINDS}, got {self.kind!r}")

    @property
    def default_max_flops(self) -> int:
        return DEFAULT_MAX_FLOPS[self.kind]

    def sample(self, rng: np.random.Generator, batch: int = 1,
               max_flops: int | None = None) -> ModelSpec:
        """A random spec of this family with at most ``max_flops`` (default: the kind's cap).

        Draws up to ``PLAIN_TRIES`` times and keeps the first draw that fits; then draws up
        to ``SHRINK_TRIES`` more, shrinking each (resolution first) until it fits.
        """
        if not isinstance(batch, numbers.Integral) or isinstance(batch, bool) or batch <= 0:
            raise UsageError(f"batch must be a positive whole number, got {batch!r}", "pass e.g. batch=1")
        batch = int(batch)
        cap = self.default_max_flops if max_flops is None else int(max_flops)
        smallest = None
        for attempt in range(PLAIN_TRIES + SHRINK_TRIES):
            params, shape = self.sample_params(rng, batch)
            flops = self.flops(params, shape)
            while attempt >= PLAIN_TRIES and flops > cap and self.shrink is not None:
                smaller = self.shrink(params, shape)
                if smaller is None:
                    break
                params, shape = smaller
                flops = self.flops(params, shape)
            if flops <= cap:
                return ModelSpec(self.name, params, shape, sampling.seed(rng))
            smallest = flops if smallest is None else min(smallest, flops)
        raise UsageError(
            f"max_flops={cap:.3g} is below what family {self.name!r} generates at batch {batch} "
            f"(smallest found: {smallest:.3g} FLOPs)",
            "raise max_flops, lower the batch, or leave this family out")

    def build(self, spec: ModelSpec) -> nn.Module:
        """The module of ``spec``, in eval mode, with weights drawn from ``spec.seed``."""
        if spec.family != self.name:
            raise UsageError(f"spec of family {spec.family!r} given to family {self.name!r}",
                             "build it with edgecost.zoo.build(spec)")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(spec.seed)
            module = self.build_module(spec.params, spec.input_shape)
            reset_parameters(module)
        return module.eval()

    def estimate_flops(self, spec: ModelSpec) -> int:
        """Analytic FLOPs of one forward pass at the spec's input (see :mod:`edgecost.zoo.flops`)."""
        return int(self.flops(spec.params, spec.input_shape))

    def example_input(self, spec: ModelSpec) -> torch.Tensor:
        """A random input of the spec's shape, drawn from its seed."""
        generator = torch.Generator().manual_seed(spec.seed)
        return torch.randn(spec.input_shape, generator=generator)


def reset_parameters(module: nn.Module) -> None:
    """Weights that keep activations of order one through deep stacks, from torch's global RNG.

    Convolutions get He-normal weights; BatchNorm and LayerNorm layers get non-trivial
    statistics and affine terms (so a converter that drops or misplaces one is caught by numeric checks).
    """
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            nn.init.kaiming_normal_(layer.weight, mode="fan_in", nonlinearity="relu")
            if layer.bias is not None:
                nn.init.normal_(layer.bias, std=0.02)
        elif isinstance(layer, nn.BatchNorm2d):
            with torch.no_grad():
                layer.weight.uniform_(0.4, 0.9)
                layer.bias.normal_(0.0, 0.05)
                layer.running_mean.normal_(0.0, 0.05)
                layer.running_var.uniform_(0.8, 1.2)
        elif isinstance(layer, nn.LayerNorm) and layer.elementwise_affine:
            with torch.no_grad():
                layer.weight.uniform_(0.8, 1.2)
                if layer.bias is not None:
                    layer.bias.normal_(0.0, 0.02)


def smaller_patch_side(patch: int, side: int) -> int:
    """One shrink step of a patch-grid input side: × 0.8, in whole patches, never below
    :func:`sampling.min_patches` patches (equal to ``side`` when it cannot shrink)."""
    return max(patch * sampling.min_patches(patch), int(side * 0.8) // patch * patch)


def shrink_resolution(multiple: int, minimum: int) -> ShrinkFn:
    """A shrink step for (B, C, H, W) inputs: H and W × 0.8, kept a multiple of ``multiple``."""

    def shrink(params: Params, shape: Shape) -> tuple[Params, Shape] | None:
        side = shape[2]
        smaller = max(minimum, int(side * 0.8) // multiple * multiple)
        if smaller >= side:
            return None
        return params, (shape[0], shape[1], smaller, max(1, smaller * shape[3] // side))

    return shrink


def shrink_input(params: Params, shape: Shape) -> tuple[Params, Shape] | None:
    """A shrink step for single-kernel inputs: spatial sides (rank 4) or the second
    dimension (tokens, rows) × 0.8, so that derived constants shrink along."""
    dims = [2, 3] if len(shape) == 4 else [1]
    smaller = list(shape)
    for d in dims:
        smaller[d] = max(1, int(shape[d] * 0.8))
    if tuple(smaller) == tuple(shape):
        return None
    return params, tuple(smaller)
