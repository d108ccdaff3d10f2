"""Single-operator ``.tflite`` models cut out of a model: LiteRT's per-op profile.

LiteRT's Python interpreter reports no per-operator times (XNNPACK runs the whole graph
as one delegate node).  To learn per-kernel times anyway, each operator of a model is
cut out into a model of its own — the operator, its tensors, its constant buffers (the
real weights), its non-constant inputs as the model's inputs — and that model is timed
on the device like any other.  The sum of an operator's slices matches the whole
model's latency to a few percent (MobileNetV2 0.99, EfficientNet-B0 1.01, DeiT-S 0.94 on
the CI machine with XNNPACK), and any remaining gap is reconciled by the predictor.

Operators that call other subgraphs (``WHILE``, ``IF``, ``CALL_ONCE`` ...) are not cut.
Operators with the same :func:`op_signature` (type, shapes, dtypes, options) run the
same kernel, so a caller measures one slice per signature.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ModelFileError
from ..records import KernelRecord
from .reader import TFLITE_IDENTIFIER

#: Operators that call other subgraphs: a single-op model cannot hold them.
_SUBGRAPH_OPS = {"WHILE", "IF", "CALL_ONCE", "CALL", "STABLEHLO_WHILE", "STABLEHLO_CASE", "STABLEHLO_REDUCE",
                 "STABLEHLO_SCATTER", "STABLEHLO_SORT", "STABLEHLO_COMPOSITE", "STABLEHLO_REDUCE_WINDOW"}
_IGNORED_ATTRS = {"op_index"}


def op_signature(kernel: KernelRecord) -> str:
    """A short key: kernels with equal keys are the same computation on the same shapes."""
    attrs = {k: v for k, v in kernel.attrs.items() if k not in _IGNORED_ATTRS}
    payload = json.dumps([kernel.op_type, [list(s) for s in kernel.input_shapes],
                          [list(s) for s in kernel.output_shapes], kernel.dtype, attrs],
                         sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


@dataclass(frozen=True)
class OpSlice:
    op_index: int
    signature: str
    content: bytes  # a complete .tflite model holding only this operator


class TFLiteSlicer:
    """Cut single-operator models out of one ``.tflite`` model (unpacked once)."""

    def __init__(self, data: bytes):
        import ai_edge_litert.schema_py_generated as sc

        if data[4:8] != TFLITE_IDENTIFIER:
            raise ModelFileError("not a .tflite flatbuffer", "convert the model to .tflite first")
        self._sc = sc
        self._data = data
        try:
            self._model = sc.ModelT.InitFromObj(sc.Model.GetRootAs(data, 0))
        except Exception as exc:
            raise ModelFileError(f"cannot unpack the .tflite flatbuffer ({exc})", "convert the model again") from exc
        if not self._model.subgraphs:
            raise ModelFileError("the .tflite model has no subgraph", "convert the model again")
        self._graph = self._model.subgraphs[0]

    @property
    def n_ops(self) -> int:
        return len(self._graph.operators or [])

    def _buffer(self, index: int):
        sc = self._sc
        bufs = self._model.buffers or []
        if index <= 0 or index >= len(bufs):
            return None
        buf = bufs[index]
        if buf.data is not None and len(buf.data):
            return buf
        offset, size = int(getattr(buf, "offset", 0) or 0), int(getattr(buf, "size", 0) or 0)
        if offset > 1 and size > 0:  # data stored after the flatbuffer (models over 2 GB)
            import numpy as np

            inline = sc.BufferT()
            inline.data = np.frombuffer(self._data[offset:offset + size], dtype=np.uint8)
            return inline
        return None

    def slice(self, i: int) -> bytes:
        """Operator ``i`` as a complete ``.tflite`` model."""
        import flatbuffers

        sc = self._sc
        op = self._graph.operators[i]
        inputs = [int(t) for t in (op.inputs if op.inputs is not None else [])]
        outputs = [int(t) for t in (op.outputs if op.outputs is not None else [])]
        inter = [int(t) for t in (op.intermediates if op.intermediates is not None else [])]
        used = list(dict.fromkeys(t for t in inputs + outputs + inter if t >= 0))
        remap = {t: j for j, t in enumerate(used)}

        model = sc.ModelT()
        model.version = self._model.version
        model.description = "edgecost op slice"
        model.operatorCodes = [self._model.operatorCodes[op.opcodeIndex]]
        model.buffers = [sc.BufferT()]  # buffer 0: the empty sentinel every tensor without data points at
        tensors, graph_inputs = [], []
        for t in used:
            tensor = copy.copy(self._graph.tensors[t])
            buf = self._buffer(tensor.buffer)
            if buf is not None:
                model.buffers.append(buf)
                tensor.buffer = len(model.buffers) - 1
            else:
                tensor.buffer = 0
                if t in inputs and not tensor.isVariable:
                    graph_inputs.append(remap[t])
            tensors.append(tensor)
        new_op = copy.copy(op)
        new_op.opcodeIndex = 0
        new_op.inputs = [remap[t] if t >= 0 else -1 for t in inputs]
        new_op.outputs = [remap[t] for t in outputs if t >= 0]
        if inter:
            new_op.intermediates = [remap[t] for t in inter if t >= 0]
        graph = sc.SubGraphT()
        graph.tensors = tensors
        graph.inputs = graph_inputs
        graph.outputs = list(new_op.outputs)
        graph.operators = [new_op]
        graph.name = "main"
        model.subgraphs = [graph]
        builder = flatbuffers.Builder(1024)
        builder.Finish(model.Pack(builder), file_identifier=TFLITE_IDENTIFIER)
        return bytes(builder.Output())


def distinct_slices(data: bytes | Path, kernels: list[KernelRecord], skip: set[str] | frozenset = frozenset()
                    ) -> Iterator[OpSlice]:
    """One slice per distinct signature among ``kernels`` (the graph reader's view of ``data``).

    Signatures in ``skip`` (already measured) are not cut; the model (a path is read) is only
    unpacked when some signature is new.
    """
    todo: dict[str, int] = {}
    for k in kernels:
        i = k.attrs.get("op_index")
        if isinstance(i, int) and k.op_type not in _SUBGRAPH_OPS:
            sig = op_signature(k)
            if sig not in skip:
                todo.setdefault(sig, i)
    if not todo:
        return
    slicer = TFLiteSlicer(data.read_bytes() if isinstance(data, Path) else data)
    for sig, i in todo.items():
        if i < slicer.n_ops:
            yield OpSlice(i, sig, slicer.slice(i))


def op_profile(kernels: list[KernelRecord], times_us: dict[str, float],
               min_times_us: dict[str, float] | None = None) -> tuple[dict[str, Any], ...]:
    """A per-node profile of the model (the agent's ORT profile layout) from per-signature
    median times, and fastest-run times where known."""
    out = []
    for k in kernels:
        sig = op_signature(k)
        if sig in times_us:
            entry = {"name": k.name, "op_type": k.op_type, "median_us": float(times_us[sig]), "signature": sig,
                     "input_shapes": [list(s) for s in k.input_shapes],
                     "output_shapes": [list(s) for s in k.output_shapes], "source": "op-slice"}
            if min_times_us and sig in min_times_us:
                entry["min_us"] = float(min_times_us[sig])
            out.append(entry)
    return tuple(out)
