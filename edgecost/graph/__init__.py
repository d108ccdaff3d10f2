"""Model files -> kernel records with shapes, FLOPs, bytes and parameters.

Public API::

    read_model(path, input_shapes=None) -> ModelGraph          # ONNX or TFLite, by content
    read_onnx_model(model_proto, input_shapes=None) -> ModelGraph
    optimize_with_ort(path_or_bytes, level="all", threads=1, input_shapes=None) -> ModelGraph
    kernel_category(k) -> str;  fused_activation(k) -> str | None;  fused_sum(k) -> bool
    kernel_cost(...) -> Cost;  cost_of(k) -> Cost;  with_cost(k) -> KernelRecord

The readers return :class:`AnnotatedGraph`, a ``ModelGraph`` with graph-level ``attrs``.
Importing this package imports neither onnx, onnxruntime nor the LiteRT schema; each
reader imports what it needs when first called.  Torch is never imported.
"""

from __future__ import annotations

from typing import Any

from ._common import AnnotatedGraph
from .categories import CATEGORIES, fused_activation, fused_sum, kernel_category
from .cost import Cost, cost_of, kernel_cost, with_cost
from .reader import read_model, sniff_format

__all__ = [
    "AnnotatedGraph", "CATEGORIES", "Cost", "cost_of", "fused_activation", "fused_sum", "kernel_category",
    "kernel_cost", "optimize_with_ort", "read_model", "read_onnx_model", "read_tflite", "sniff_format", "with_cost",
]


def read_onnx_model(model: Any, input_shapes=None, *, source: str = "", base_dir=None) -> AnnotatedGraph:
    """Read an in-memory ``onnx.ModelProto`` (see :func:`edgecost.graph.onnx_reader.read_onnx_model`)."""
    from .onnx_reader import read_onnx_model as _read

    return _read(model, input_shapes, source=source, base_dir=base_dir)


def optimize_with_ort(path_or_bytes: Any, level: str = "all", threads: int = 1, input_shapes=None) -> AnnotatedGraph:
    """The kernels ONNX Runtime executes on this host (see :mod:`edgecost.graph.ort_optimized`)."""
    from .ort_optimized import optimize_with_ort as _opt

    return _opt(path_or_bytes, level=level, threads=threads, input_shapes=input_shapes)


def read_tflite(path: Any, input_shapes=None) -> AnnotatedGraph:
    """Read a ``.tflite`` file (see :mod:`edgecost.graph.tflite`)."""
    from .tflite import read_tflite as _read

    return _read(path, input_shapes)
