"""Small drawing helpers over ``numpy.random.Generator`` that return plain Python values.

Specs must be JSON data, so every helper converts numpy scalars to ``int`` / ``float`` /
``str``.  All randomness of the zoo goes through a caller's generator: the same generator
state gives the same spec.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TypeVar

import numpy as np

T = TypeVar("T")

IMAGENET_RESOLUTION = 224
MIN_RESOLUTION = 32


def choice(rng: np.random.Generator, options: Sequence[T], p: Sequence[float] | None = None) -> T:
    """One element of ``options`` (optionally weighted by ``p``, normalized here)."""
    if p is None:
        return options[int(rng.integers(len(options)))]
    weights = np.asarray(p, dtype=float)
    return options[int(rng.choice(len(options), p=weights / weights.sum()))]


def randint(rng: np.random.Generator, low: int, high: int) -> int:
    """A whole number in ``[low, high]`` (both ends included)."""
    return int(rng.integers(low, high + 1))


def uniform(rng: np.random.Generator, low: float, high: float, ndigits: int = 3) -> float:
    """A float in ``[low, high)``, rounded so that specs stay short and readable."""
    return round(float(rng.uniform(low, high)), ndigits)


def coin(rng: np.random.Generator, p_true: float = 0.5) -> bool:
    return bool(rng.random() < p_true)


def log_uniform_int(rng: np.random.Generator, low: int, high: int) -> int:
    """A whole number in ``[low, high]`` with log-uniform density (as many small as large sizes)."""
    value = math.exp(rng.uniform(math.log(low), math.log(high + 1)))
    return int(min(high, max(low, math.floor(value))))


def align(value: float, multiple: int, minimum: int | None = None) -> int:
    """``value`` rounded to the nearest multiple (at least ``minimum``, default ``multiple``),
    never dropping more than 10 % below ``value`` (the MobileNet ``make_divisible`` rule)."""
    if multiple <= 1:
        return max(round(value), minimum or 1)
    floor = multiple if minimum is None else minimum
    rounded = max(floor, int(value + multiple / 2) // multiple * multiple)
    if rounded < 0.9 * value:
        rounded += multiple
    return rounded


def channels(rng: np.random.Generator, low: int, high: int, aligned_share: float = 0.7,
             multiples: Sequence[int] = (8, 16)) -> int:
    """A channel count in ``[low, high]``: aligned to 8 or 16 with ``aligned_share``, else any value."""
    raw = log_uniform_int(rng, low, high)
    if coin(rng, aligned_share):
        multiple = choice(rng, multiples)
        if high >= multiple:
            return min(align(raw, multiple), high // multiple * multiple)
    return raw


def resolution(rng: np.random.Generator, p_imagenet: float = 0.5, low: int = MIN_RESOLUTION,
               high: int = IMAGENET_RESOLUTION, multiple: int = 16) -> int:
    """An input side length: 224 with ``p_imagenet``, otherwise a multiple of ``multiple`` in ``[low, high]``."""
    if high >= IMAGENET_RESOLUTION and coin(rng, p_imagenet):
        return IMAGENET_RESOLUTION
    steps = list(range(math.ceil(low / multiple) * multiple, high + 1, multiple))
    return choice(rng, steps)


def patch_side(rng: np.random.Generator, patch: int) -> int:
    """An input side that is a whole number of ``patch``-sized patches: half the time the largest
    such side up to 224, else between :func:`min_patches` and 224//patch patches, uniformly."""
    if coin(rng, 0.5):
        return IMAGENET_RESOLUTION // patch * patch
    return patch * randint(rng, min_patches(patch), IMAGENET_RESOLUTION // patch)


def min_patches(patch: int) -> int:
    """The fewest patches per side a patch-grid input has: enough to span MIN_RESOLUTION pixels."""
    return max(1, -(-MIN_RESOLUTION // patch))


def seed(rng: np.random.Generator) -> int:
    """A weight seed for a spec."""
    return int(rng.integers(0, 2**31 - 1))
