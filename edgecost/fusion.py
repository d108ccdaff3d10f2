"""Kernels as the runtime executes them, after its operator fusion.

* ONNX Runtime: the host runs ORT's own graph optimizer offline (no inference) at the
  level that reproduces the device's kernels, and reads the optimized graph.  Which level
  that is, is *learned* per target from the per-node profiles the agent returned: for
  each candidate level, how well the host's kernels match the kernels the device really
  ran (on the same machine and ORT version, ``all`` matches exactly; an ARM device, which
  has no NCHWc kernels, is matched best by ``extended``).
* TFLite: a ``.tflite`` graph is already fused at conversion; its ops are the kernels,
  except what XNNPACK fuses when it builds its runtime: a zero ``PAD`` of the spatial
  axes feeding a (depthwise) convolution becomes that convolution's implicit padding
  (``xnnpack_kernels``).  litert-torch writes one such PAD before every stride-2
  convolution whose padding is asymmetric in TFLite's terms; timed alone (as a slice) it
  is a full copy of its input, inside the delegate it costs nothing.

For training, ``kernels_from_profile`` turns the device's per-node profile (names, op
types, shapes, times) plus its optimized node list (domains, attributes) into kernel
records with measured times.
"""

from __future__ import annotations

import functools
import platform
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .errors import UsageError
from .graph.cost import with_cost
from .records import KernelRecord, ModelGraph

ORT_LEVELS = ("all", "extended", "basic")
#: Version of how the host derives executed kernels (shape inference, cost formulas, fusion
#: rules).  Kernels derived and kept by an earlier version (the on-disk cache, the store's
#: executed views) are rebuilt, not reused.  2: FusedMatMul shapes follow transBatchA/B.
KERNELS_VERSION = 2


@dataclass(frozen=True)
class ExecutionSpec:
    """How to obtain a target's executed kernels on the host."""

    runtime: str
    ort_level: str = "all"
    agreement: float | None = None  # kernel-type agreement between host and device on the training models
    host_runtime_version: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"runtime": self.runtime, "ort_level": self.ort_level, "agreement": self.agreement,
                "host_runtime_version": self.host_runtime_version}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ExecutionSpec":
        return cls(runtime=d["runtime"], ort_level=d.get("ort_level", "all"), agreement=d.get("agreement"),
                   host_runtime_version=d.get("host_runtime_version", ""))


def executed_kernels(path: str | Path, graph: ModelGraph, spec: ExecutionSpec,
                     input_shapes: dict[str, tuple[int, ...]] | None = None) -> list[KernelRecord]:
    """The kernels ``spec``'s runtime will execute for the model at ``path``."""
    if spec.runtime == "onnxruntime":
        if graph.format != "onnx":
            raise UsageError(f"{Path(path).name} is a {graph.format} model; an onnxruntime target needs ONNX",
                             "pass the .onnx file, or use --runtime tflite for .tflite models")
        from .graph.ort_optimized import optimize_with_ort
        from .kernel_cache import cached_kernels

        shapes = input_shapes or dict(graph.inputs)
        facts = {"runtime": "onnxruntime", "ort_level": spec.ort_level, "ort_version": host_ort_version(),
                 "kernels_version": KERNELS_VERSION,
                 "machine": platform.machine(), "input_shapes": sorted((k, list(v)) for k, v in shapes.items())}
        return list(cached_kernels(graph.content_hash, facts, lambda: list(
            optimize_with_ort(path, level=spec.ort_level, input_shapes=shapes,
                              original=graph if graph.kernels else None).kernels)))
    if spec.runtime == "tflite":
        if graph.format != "tflite":
            raise UsageError(f"{Path(path).name} is a {graph.format} model; a tflite target needs a .tflite file",
                             "convert it with litert-torch (edgecost.convert.to_tflite), or use --runtime onnxruntime")
        return xnnpack_kernels(graph.kernels)
    raise UsageError(f"predicting for runtime {spec.runtime!r} is not supported yet",
                     "use --runtime onnxruntime or --runtime tflite")


_PAD_CONSUMERS = ("CONV_2D", "DEPTHWISE_CONV_2D")


def xnnpack_kernels(kernels: Sequence[KernelRecord]) -> list[KernelRecord]:
    """The ops of a ``.tflite`` graph as XNNPACK runs them: a zero PAD of H and W only, read by
    one (depthwise) convolution and nothing else, is folded into it (the convolution keeps
    its padded input shape, which is the work it does, and lists the PAD in ``covers``)."""
    kernels = [k for k in kernels if k.op_type != "DELEGATE"]
    readers: dict[str, list[int]] = {}
    for i, k in enumerate(kernels):
        for name in k.inputs:
            readers.setdefault(name, []).append(i)
    pad_of: dict[int, int] = {}  # convolution index -> index of the PAD folded into it
    for i, k in enumerate(kernels):
        if k.op_type != "PAD" or len(k.outputs) != 1 or not k.input_shapes or not k.output_shapes:
            continue
        x, y = k.input_shapes[0], k.output_shapes[0]
        if len(x) != 4 or len(y) != 4 or x[0] != y[0] or x[3] != y[3]:
            continue  # batch or channels padded: XNNPACK keeps the PAD
        users = readers.get(k.outputs[0], [])
        if len(users) != 1 or kernels[users[0]].op_type not in _PAD_CONSUMERS:
            continue
        if kernels[users[0]].inputs[0] == k.outputs[0]:  # the data input, not the weights
            pad_of[users[0]] = i
    dropped = set(pad_of.values())
    out = []
    for i, k in enumerate(kernels):
        if i in dropped:
            continue
        if i in pad_of:
            k = replace(k, attrs={**k.attrs, "covers": [*k.attrs.get("covers", []), kernels[pad_of[i]].name]})
        out.append(k)
    return out


@functools.lru_cache(maxsize=1)
def host_ort_version() -> str:
    """The host's onnxruntime version, read from package metadata (importing ORT takes ~0.1 s)."""
    from importlib import metadata

    for dist in ("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino", "onnxruntime-directml"):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    import onnxruntime

    return str(onnxruntime.__version__)


def kernels_from_profile(node_profile: Sequence[dict[str, Any]],
                         optimized_nodes: Sequence[dict[str, Any]],
                         time_us: Callable[[dict[str, Any]], float] | None = None
                         ) -> list[tuple[KernelRecord, float]]:
    """(kernel record, measured µs) for every node the device's runtime executed; ``time_us``
    picks a node's time from its profile entry (default: its median run)."""
    by_name = {n.get("name"): n for n in optimized_nodes}
    out = []
    for p in node_profile:
        node = by_name.get(p.get("name"), {})
        k = KernelRecord(
            name=str(p.get("name", "")),
            op_type=str(p.get("op_type") or node.get("op_type", "")),
            domain=str(node.get("domain", "")),
            inputs=tuple(node.get("inputs", ())),
            outputs=tuple(node.get("outputs", ())),
            input_shapes=tuple(tuple(int(d) for d in s) for s in p.get("input_shapes") or ()),
            output_shapes=tuple(tuple(int(d) for d in s) for s in p.get("output_shapes") or ()),
            attrs=dict(node.get("attrs") or {}),
        )
        out.append((with_cost(k), time_us(p) if time_us else float(p.get("median_us", 0.0))))
    return out


def align_times(host_kernels: Sequence[KernelRecord], profiled: Sequence[tuple[KernelRecord, float]]
                ) -> tuple[list[float | None], float]:
    """Measured times aligned with the host's kernels by node name; and the share of profiled time matched."""
    total = sum(t for _, t in profiled) or 1.0
    by_name = {k.name: i for i, (k, _) in enumerate(profiled)}
    used: set[int] = set()
    aligned: list[float | None] = [None] * len(host_kernels)
    for j, k in enumerate(host_kernels):
        i = by_name.get(k.name)
        if i is not None and profiled[i][0].op_type == k.op_type:
            aligned[j] = profiled[i][1]
            used.add(i)
    # Names ORT invents (ReorderInput/Output tokens) are numbered per process: match the rest
    # by op type and shapes, in execution order.
    pending: dict[tuple, list[int]] = {}
    for i, (k, _) in enumerate(profiled):
        if i not in used:
            pending.setdefault(_signature(k), []).append(i)
    for j, k in enumerate(host_kernels):
        if aligned[j] is None:
            queue = pending.get(_signature(k))
            if queue:
                aligned[j] = profiled[queue.pop(0)][1]
    matched = sum(t for t in aligned if t is not None)
    return aligned, matched / total


def _signature(k: KernelRecord) -> tuple:
    return (k.op_type, tuple(tuple(s) for s in k.input_shapes[:1]), tuple(tuple(s) for s in k.output_shapes[:1]))


def op_agreement(host_kernels: Sequence[KernelRecord], profiled: Sequence[tuple[KernelRecord, float]]) -> float:
    """Multiset Jaccard similarity of op types: 1.0 when the host reproduces the device's kernels."""
    a = Counter(k.op_type for k in host_kernels)
    b = Counter(k.op_type for k, _ in profiled)
    inter = sum((a & b).values())
    union = sum((a | b).values())
    return inter / union if union else 1.0
