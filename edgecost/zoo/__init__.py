"""Parametric model generators for profiling campaigns (needs torch; the predict path never imports it).

A model is a JSON-serializable :class:`ModelSpec`; :func:`sample` draws one from a family
with a numpy ``Generator``, :func:`build` makes the ``torch.nn.Module`` (eval mode, weights
from the spec's seed).  Same generator seed → same spec → same weights → same exported bytes.

Families of kind ``"network"``: resnet, mobilenetv2, mobilenetv3, efficientnet, shufflenetv2,
densenet, vgg, vit, mixer, nb201, fbnet.  Families of kind ``"kernel"`` build one op each: conv,
depthwise_conv, group_conv, linear, matmul, attention, elementwise, activation, softmax,
layernorm, batchnorm, pool, resize, concat, transpose.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from torch import nn

from ..errors import UsageError
from . import (
    densenet,
    efficientnet,
    fbnet,
    kernels,
    mixer,
    mobilenetv2,
    mobilenetv3,
    nb201,
    resnet,
    shufflenet,
    vgg,
    vit,
)
from .family import DEFAULT_MAX_FLOPS, Family
from .spec import ModelSpec

_NETWORKS = (resnet.FAMILY, mobilenetv2.FAMILY, mobilenetv3.FAMILY, efficientnet.FAMILY,
             shufflenet.FAMILY, densenet.FAMILY, vgg.FAMILY, vit.FAMILY, mixer.FAMILY, nb201.FAMILY, fbnet.FAMILY)

FAMILIES: dict[str, Family] = {f.name: f for f in _NETWORKS + kernels.FAMILIES}


def get_family(name: str) -> Family:
    """The family called ``name``; an unknown name is a :class:`UsageError` listing the known ones."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise UsageError(f"unknown model family {name!r}",
                         f"use one of: {', '.join(sorted(FAMILIES))}") from None


def network_families() -> list[str]:
    return [name for name, f in FAMILIES.items() if f.kind == "network"]


def kernel_families() -> list[str]:
    return [name for name, f in FAMILIES.items() if f.kind == "kernel"]


def sample(family: str, rng: np.random.Generator, *, batch: int = 1,
           max_flops: int | None = None) -> ModelSpec:
    """One random spec of ``family`` with at most ``max_flops`` (default: 2 GFLOPs for
    networks, 0.5 GFLOPs for single kernels)."""
    return get_family(family).sample(rng, batch, max_flops)


def build(spec: ModelSpec) -> nn.Module:
    """The module of ``spec`` in eval mode, weights drawn from ``spec.seed``."""
    return get_family(spec.family).build(spec)


def estimate_flops(spec: ModelSpec) -> int:
    """Analytic FLOPs of one forward pass (2 per MAC; see :mod:`edgecost.zoo.flops`)."""
    return get_family(spec.family).estimate_flops(spec)


def sample_mix(rng: np.random.Generator, n: int, families: Iterable[str] | None = None,
               kernel_share: float = 0.3, batch: int = 1,
               max_flops: int | None = None) -> list[ModelSpec]:
    """``n`` specs spread evenly over ``families`` (default: all), in a shuffled order.

    ``kernel_share`` of the samples go to kernel families and the rest to network families
    (when both kinds are among ``families``); within a kind, families take turns, each
    round in a fresh random order, so counts differ by at most one.
    """
    names = list(FAMILIES) if families is None else list(dict.fromkeys(families))
    if not names:
        raise UsageError("sample_mix got an empty list of families", "leave families out to use all")
    if n < 0:
        raise UsageError(f"sample_mix needs n >= 0, got {n}", "pass the number of models to draw")
    if not 0.0 <= kernel_share <= 1.0:
        raise UsageError(f"kernel_share must be within 0..1, got {kernel_share}", "e.g. kernel_share=0.3")
    nets = [name for name in names if get_family(name).kind == "network"]
    kerns = [name for name in names if get_family(name).kind == "kernel"]
    if nets and kerns:
        n_kernels = round(n * kernel_share)
    else:
        n_kernels = n if kerns else 0
    chosen = _round_robin(rng, kerns, n_kernels) + _round_robin(rng, nets, n - n_kernels)
    order = rng.permutation(len(chosen))
    return [sample(chosen[i], rng, batch=batch, max_flops=max_flops) for i in order]


def _round_robin(rng: np.random.Generator, names: Sequence[str], count: int) -> list[str]:
    picked: list[str] = []
    while len(picked) < count:
        picked += [names[i] for i in rng.permutation(len(names))]
    return picked[:count]


__all__ = [
    "DEFAULT_MAX_FLOPS",
    "FAMILIES",
    "Family",
    "ModelSpec",
    "build",
    "estimate_flops",
    "get_family",
    "kernel_families",
    "network_families",
    "sample",
    "sample_mix",
]
