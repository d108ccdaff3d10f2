"""Shared pieces of the graph readers: the annotated graph record, dtypes, shapes."""

from __future__ import annotations

import hashlib
from typing import Optional, Tuple

from ..records import SCHEMA_VERSION, KernelRecord, ModelGraph

# A shape as the readers handle it internally: a tuple of ints (-1 for a dimension
# that is not known) or None when even the rank is unknown.
Shape = Optional[Tuple[int, ...]]

# Bits per element of each dtype name used in KernelRecord.dtype.
DTYPE_BITS: dict[str, int] = {
    "float32": 32, "float16": 16, "bfloat16": 16, "float64": 64,
    "int8": 8, "uint8": 8, "int16": 16, "uint16": 16, "int32": 32, "uint32": 32,
    "int64": 64, "uint64": 64, "bool": 8, "complex64": 64, "complex128": 128,
    "float8e4m3fn": 8, "float8e4m3fnuz": 8, "float8e5m2": 8, "float8e5m2fnuz": 8,
    "uint4": 4, "int4": 4, "float4e2m1": 4, "string": 0, "unknown": 0,
}

# ONNX TensorProto.DataType -> dtype name.
ONNX_DTYPES: dict[int, str] = {
    0: "unknown", 1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32",
    7: "int64", 8: "string", 9: "bool", 10: "float16", 11: "float64", 12: "uint32",
    13: "uint64", 14: "complex64", 15: "complex128", 16: "bfloat16", 17: "float8e4m3fn",
    18: "float8e4m3fnuz", 19: "float8e5m2", 20: "float8e5m2fnuz", 21: "uint4", 22: "int4",
    23: "float4e2m1",
}

INT_DTYPES = frozenset({"int64", "int32", "int16", "int8", "uint64", "uint32", "uint16", "uint8", "bool"})
# Integer dtypes that hold indices, shapes and axes rather than weights.
INDEX_DTYPES = frozenset({"int64", "bool"})


def numel(shape: Shape) -> int:
    """Number of elements of a known shape; 0 when the shape is unknown or has an unknown dim."""
    if shape is None:
        return 0
    n = 1
    for d in shape:
        if d < 0:
            return 0
        n *= d
    return n


def known(shape: Shape) -> bool:
    return shape is not None and all(d >= 0 for d in shape)


def nbytes(shape: Shape, dtype: str) -> int:
    bits = DTYPE_BITS.get(dtype, 32)
    return (numel(shape) * bits + 7) // 8


def batch_transposed(shape: Shape, flag: int) -> Shape:
    """A FusedMatMul operand as ORT multiplies it when ``transBatchA``/``transBatchB`` is set.

    The first axis moves to the row position, the batch axes shift left:
    (d0, d1, .., d[r-2], d[r-1]) -> (d1, .., d[r-2], d0, d[r-1]).  ORT's attention fusion
    sets it where a (T, B, H, hd) tensor is multiplied as (B, H, T, hd) without a Transpose.
    """
    if not flag or shape is None or len(shape) < 3:
        return shape
    return tuple(shape[1:-1]) + (shape[0], shape[-1])


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


#: Kept for readability in the readers: every ModelGraph carries graph-level ``attrs``
#: (e.g. ``opset``, ``producer``; for ORT-optimized graphs ``eliminated``, ``ort_level``).
AnnotatedGraph = ModelGraph


__all__ = [
    "AnnotatedGraph", "DTYPE_BITS", "INDEX_DTYPES", "INT_DTYPES", "KernelRecord", "ONNX_DTYPES",
    "SCHEMA_VERSION", "Shape", "batch_transposed", "known", "nbytes", "numel", "sha256_hex",
]
