"""The description of one generated model: which family, which settings, which input, which seed.

A :class:`ModelSpec` is plain JSON data.  Everything a family needs to rebuild the
exact same network (channel counts, kernel sizes, block lists, ...) is resolved by the
sampler and stored in ``params``, so a spec read back from a store rebuilds the same
module with the same weights.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from ..errors import UsageError

SPEC_SCHEMA_VERSION = 1
SPEC_ID_HEX_CHARS = 12


def _json_native(value: Any) -> Any:
    """``value`` as JSON itself would give it back (tuples become lists, numpy scalars plain)."""
    try:
        return json.loads(json.dumps(value, sort_keys=True, default=_numpy_scalar))
    except (TypeError, ValueError) as exc:
        raise UsageError(f"model spec params are not JSON data: {exc}",
                         "use only str, int, float, bool, None, lists and dicts") from exc


def _numpy_scalar(value: Any) -> Any:
    """JSON fallback for numpy scalars (``numpy.int64`` and friends have ``.item()``)."""
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


@dataclass(frozen=True)
class ModelSpec:
    """A zoo model: ``family`` name, resolved ``params``, full ``input_shape`` (batch first), ``seed``."""

    family: str
    params: dict[str, Any]
    input_shape: tuple[int, ...]
    seed: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", _json_native(dict(self.params)))
        try:
            shape = tuple(int(d) for d in self.input_shape)
            seed = int(self.seed)
        except (TypeError, ValueError) as exc:
            raise UsageError(f"invalid model spec for {self.family!r}: {exc}",
                             "input_shape must be whole numbers and seed one whole number") from exc
        if not shape or any(d <= 0 for d in shape):
            raise UsageError(f"invalid input_shape {shape} for {self.family!r}",
                             "every dimension must be a positive whole number")
        object.__setattr__(self, "input_shape", shape)
        object.__setattr__(self, "seed", seed)

    @property
    def batch(self) -> int:
        return self.input_shape[0]

    def canonical_json(self) -> str:
        """The spec as compact JSON with sorted keys: what :attr:`spec_id` hashes."""
        core = {"family": self.family, "params": self.params,
                "input_shape": list(self.input_shape), "seed": self.seed}
        return json.dumps(core, sort_keys=True, separators=(",", ":"))

    @property
    def spec_id(self) -> str:
        """``<family>-<12 hex chars of sha256(canonical JSON)>``: stable across runs and machines."""
        digest = hashlib.sha256(self.canonical_json().encode("utf-8")).hexdigest()
        return f"{self.family}-{digest[:SPEC_ID_HEX_CHARS]}"

    def __hash__(self) -> int:
        return hash(self.canonical_json())

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SPEC_SCHEMA_VERSION,
            "family": self.family,
            "params": self.params,
            "input_shape": list(self.input_shape),
            "seed": self.seed,
            "spec_id": self.spec_id,  # informative; recomputed on load
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelSpec:
        try:
            return cls(family=str(d["family"]), params=dict(d["params"]),
                       input_shape=tuple(d["input_shape"]), seed=int(d["seed"]))
        except KeyError as exc:
            raise UsageError(f"model spec lacks the field {exc.args[0]!r}",
                             "a spec needs family, params, input_shape and seed") from exc

    def with_changes(self, **changes: Any) -> ModelSpec:
        """A copy with some fields replaced (e.g. ``input_shape`` for another batch)."""
        d = {"family": self.family, "params": self.params, "input_shape": self.input_shape,
             "seed": self.seed}
        d.update(changes)
        return ModelSpec(**d)
