"""Single-kernel generators: one op (or one fused group a runtime runs as one kernel) per model."""

from __future__ import annotations

from . import conv, dense, layout, pointwise, spatial

FAMILIES = conv.FAMILIES + dense.FAMILIES + pointwise.FAMILIES + spatial.FAMILIES + layout.FAMILIES

__all__ = ["FAMILIES"]
