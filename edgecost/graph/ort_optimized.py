"""The kernels ONNX Runtime executes on this host, mapped back to the model's own nodes.

:func:`optimize_with_ort` runs the host's ONNX Runtime graph optimizer offline (creating an
``InferenceSession`` with ``SessionOptions.optimized_model_filepath`` is enough; nothing is
run), reads the optimized graph with the ONNX reader (which shapes the ``com.microsoft`` and
``com.microsoft.nchwc`` ops ONNX does not know) and records for each executed kernel the
original nodes it runs, ``attrs["covers"]``.

How ``covers`` is found.  ORT keeps the names of the tensors that survive its rewrites, so a
tensor name shared by both graphs is an *anchor*.  Each kernel's input and output tensors are
resolved to anchors; the kernel covers the original nodes reached by walking the original
graph backwards from the producers of its output anchors, stopping at its input anchors, at
constants and at shape computations.
Tensors ORT invents (``reorder_token_*`` of the NCHWc transformer) are resolved through the
ops that make them: ``ReorderOutput``'s input holds its output's value, ``ReorderInput``'s
output holds its input's, and an NCHWc node is named ``<original output>_nchwc`` after the
tensor its convolution/pool produced (other fused ops keep an original node's name), then
moved on through the residual ``Add`` it absorbed (its 4th "Sum" input), the activation it
applies after that sum, and any activation or ``QuantizeLinear`` whose result no longer
exists in the optimized graph (a ``QLinearConv`` writes through its output's quantization).  A tensor that cannot be
resolved is walked through: its consumer takes over its producer's input anchors, and the
whole region found that way goes to the kernel in it with the most MACs, if it has more than
the one that reached it — e.g.
the Gemm between the two Reshapes ORT puts around a 3-D MatMul+Add, not the last Reshape.

Every original node ends up in exactly one kernel's ``covers`` or in the graph's
``attrs["eliminated"]`` (node name -> reason): ``"no-op"`` (Identity, Dropout),
``"constant"`` (Constant nodes and constant-folded nodes), ``"shape"`` (shape computations
ORT folded), ``"unmapped"`` (anything else — a sign this mapping missed a rewrite).  A batch
normalization folded into a convolution is *covered* by that convolution's kernel (its math
lives in the kernel's weights).  ``attrs["covers_conflicts"]`` lists nodes two kernels'
walks reached (the first kernel keeps them); it is empty on the models we test.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

from ..errors import ModelFileError, UsageError
from ._common import AnnotatedGraph, KernelRecord, sha256_hex
from .categories import fused_sum
from .reader import read_bytes, sniff_format

LEVELS = ("disabled", "basic", "extended", "all")
_NOOPS = frozenset({"Identity", "Dropout"})
_ACTIVATION_OPS = {
    "Relu": {"Relu"}, "Clip": {"Clip"}, "Sigmoid": {"Sigmoid"}, "Tanh": {"Tanh"},
    "LeakyRelu": {"LeakyRelu"}, "HardSigmoid": {"HardSigmoid"},
}
_TOKEN_SUFFIX = re.compile(r"_token_\d+$")
# Ops a kernel absorbs on its output side when their result no longer exists in the optimized graph.
_FORWARD_ABSORBED = frozenset({"QuantizeLinear", "Relu", "Clip", "Sigmoid", "Tanh", "LeakyRelu", "HardSigmoid",
                               "HardSwish"})
_QDQ = frozenset({"QuantizeLinear", "DequantizeLinear"})


def optimize_with_ort(path_or_bytes: Union[str, Path, bytes], level: str = "all", threads: int = 1,
                      input_shapes: Optional[Mapping[str, Sequence[int]]] = None,
                      original: Optional[AnnotatedGraph] = None) -> AnnotatedGraph:
    """Optimize an ONNX model with this host's ONNX Runtime (CPU) and return its executed kernels.

    ``level`` is ``"basic"``, ``"extended"`` or ``"all"`` (``"disabled"`` gives the model as
    ORT loads it).  At ``"all"`` ORT applies layout optimizations (NCHWc) that depend on the
    host's CPU, so the result describes this machine.  ``content_hash`` is the original model's
    hash (the graph describes that model); ``attrs`` carries ``ort_level``, ``ort_version``,
    ``threads``, ``optimized_hash``, ``eliminated`` and ``covers_conflicts``.
    ``original`` is the model's graph as :func:`read_model` gave it for the same input shapes,
    when the caller already has it (saves reading and hashing the model again).
    """
    if level not in LEVELS:
        raise UsageError(f"unknown ORT optimization level {level!r}", f"use one of: {', '.join(LEVELS)}")
    if not isinstance(threads, int) or isinstance(threads, bool) or threads <= 0:
        raise UsageError(f"threads must be a positive whole number, got {threads!r}", "pass e.g. threads=1")
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        data = bytes(path_or_bytes)
        path: Optional[Path] = None
        if not data:
            raise ModelFileError("the model is empty (0 bytes)", "export the model again")
    else:
        path, data = read_bytes(path_or_bytes)
    if sniff_format(data) == "tflite":
        raise UsageError("optimize_with_ort needs an ONNX model, got a TFLite flatbuffer",
                         "a .tflite file is already fused: read it with read_model()")

    from .onnx_reader import read_onnx_bytes

    source = str(path) if path else ""
    base_dir = str(path.parent) if path else None
    if original is None or original.format != "onnx":
        original = read_onnx_bytes(data, input_shapes, source=source, base_dir=base_dir,
                                   content_hash=sha256_hex(data))

    import onnxruntime as ort

    levels = {
        "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }
    with tempfile.TemporaryDirectory(prefix="edgecost-ort-") as tmp:
        out = os.path.join(tmp, "optimized.onnx")
        so = ort.SessionOptions()
        so.graph_optimization_level = levels[level]
        so.optimized_model_filepath = out
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        try:
            ort.InferenceSession(str(path) if path else data, so, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - ORT's pybind errors share no base class but Exception
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelFileError(f"ONNX Runtime {ort.__version__} cannot load the model: {first}",
                                 "check that the model runs with onnxruntime on this host") from None
        optimized_bytes = Path(out).read_bytes()
        optimized = read_onnx_bytes(optimized_bytes, input_shapes, source=source, base_dir=tmp,
                                    content_hash=original.content_hash)

    eliminated, conflicts = map_covers(original.kernels, optimized.kernels)
    attrs: dict[str, Any] = dict(optimized.attrs)
    attrs.update({
        "ort_level": level, "ort_version": ort.__version__, "threads": threads,
        "optimized_hash": sha256_hex(optimized_bytes), "original_kernels": len(original.kernels),
        "eliminated": eliminated, "covers_conflicts": conflicts,
    })
    return AnnotatedGraph(
        content_hash=original.content_hash, format="onnx", kernels=optimized.kernels,
        inputs=original.inputs, outputs=original.outputs, source=source, attrs=attrs,
    )


def _hint(name: str) -> str:
    """The original name an ORT-made node or tensor name derives from.

    ``<output>_nchwc`` (NCHWc transformer), ``<name>/duplicated`` (a DequantizeLinear ORT
    duplicates so each QDQ node unit has its own), each possibly with a ``_token_<n>`` suffix.
    """
    base = _TOKEN_SUFFIX.sub("", name)
    if base.endswith("/duplicated"):
        return base[: -len("/duplicated")]
    return base[: -len("_nchwc")] if base.endswith("_nchwc") else base


def map_covers(original: Sequence[KernelRecord], optimized: Sequence[KernelRecord]
               ) -> tuple[dict[str, str], list[str]]:
    """Fill ``attrs["covers"]`` of each optimized kernel; return (eliminated, conflicts).

    Works on the records alone: tensor names, op types and ``const_inputs``/``shape_only``
    flags of both graphs.
    """
    prod0: dict[str, int] = {}
    cons0: dict[str, list[int]] = {}
    orig_values: set[str] = set()
    stop0: set[str] = set()
    names0 = {k.name: i for i, k in enumerate(original)}
    for i, k in enumerate(original):
        for t in k.outputs:
            if t:
                prod0[t] = i
                orig_values.add(t)
        const = set(k.attrs.get("const_inputs") or ())
        for j, t in enumerate(k.inputs):
            if t:
                orig_values.add(t)
                cons0.setdefault(t, []).append(i)
                if j in const:
                    stop0.add(t)
        if k.attrs.get("shape_only") or k.attrs.get("foldable"):
            stop0.update(t for t in k.outputs if t)
    stop0.update(t for t in orig_values if t not in prod0)  # graph inputs and initializers

    prod1: dict[str, int] = {}
    for i, k in enumerate(optimized):
        for t in k.outputs:
            if t:
                prod1[t] = i

    opt_tensors = {t for k in optimized for t in (*k.inputs, *k.outputs) if t}
    equiv: dict[str, str] = {}  # invented tensor -> original tensor holding the same values

    def resolve(t: str) -> Optional[str]:
        seen = set()
        while t and t not in orig_values:
            if t in seen or t not in equiv:
                return None
            seen.add(t)
            t = equiv[t]
        return t or None

    # ReorderOutput's input holds its output's values (walk backwards so chains resolve).
    for k in reversed(optimized):
        if k.op_type == "ReorderOutput" and k.inputs and k.outputs:
            r = resolve(k.outputs[0])
            if r:
                equiv.setdefault(k.inputs[0], r)
    # ReorderInput's output holds its input's values; nchwc nodes are named after their tensor.
    for k in optimized:
        if not k.outputs or not k.outputs[0]:
            continue
        t = k.outputs[0]
        if k.op_type == "ReorderInput" and k.inputs:
            r = resolve(k.inputs[0])
            if r:
                equiv.setdefault(t, r)
            continue
        if t in orig_values or t in equiv:
            continue
        h = _hint(k.name)
        base = h if h in orig_values else None
        if base is None and h in names0 and original[names0[h]].outputs:
            base = original[names0[h]].outputs[0]
        if base is None:
            continue
        r = base
        if fused_sum(k):
            nxt = next((original[j].outputs[0] for j in cons0.get(r, ()) if original[j].op_type in ("Add", "Sum")),
                       None)
            r = nxt or r
        act = k.attrs.get("activation")
        if act:
            ops = _ACTIVATION_OPS.get(str(act), {str(act)})
            if r not in prod0 or original[prod0[r]].op_type not in ops:
                nxt = next((original[j].outputs[0] for j in cons0.get(r, ()) if original[j].op_type in ops), None)
                r = nxt or r
        for _ in range(8):  # e.g. the QuantizeLinear a QLinearConv writes through
            users = cons0.get(r, ())
            if r in opt_tensors or len(users) != 1:
                break
            nxt_node = original[users[0]]
            if nxt_node.op_type not in _FORWARD_ABSORBED or not nxt_node.outputs:
                break
            r = nxt_node.outputs[0]
        equiv[t] = r

    # input anchors, walking through tensors we cannot resolve (and the kernels passed on the way)
    in_cache: dict[int, tuple[frozenset, frozenset]] = {}

    def in_anchors(i: int, depth: int = 0) -> tuple[frozenset, frozenset]:
        if i in in_cache:
            return in_cache[i]
        in_cache[i] = (frozenset(), frozenset())  # guards cycles
        k = optimized[i]
        const = set(k.attrs.get("const_inputs") or ())
        found: set[str] = set()
        members: set[int] = set()
        for j, t in enumerate(k.inputs):
            if not t or j in const:
                continue
            r = resolve(t)
            if r:
                found.add(r)
            elif t in prod1 and depth < 64:
                p = prod1[t]
                sub, sub_members = in_anchors(p, depth + 1)
                found |= sub
                members |= sub_members | {p}
        in_cache[i] = (frozenset(found), frozenset(members))
        return in_cache[i]

    covers: list[list[int]] = [[] for _ in optimized]
    for i, k in enumerate(optimized):
        ins, members = in_anchors(i)
        covered: list[int] = []
        stack: list[str] = []
        for t in k.outputs:
            r = resolve(t) if t else None
            if not r or r in ins or r not in prod0:
                continue
            n = prod0[r]
            if n not in covered:
                covered.append(n)
                stack.extend(x for x in original[n].inputs if x)
        seen: set[str] = set()
        while stack:
            t = stack.pop()
            if t in seen or t in ins or t in stop0 or t not in prod0:
                continue
            seen.add(t)
            n = prod0[t]
            if n not in covered:
                covered.append(n)
                stack.extend(x for x in original[n].inputs if x)
        # A region reached through invented tensors belongs to its heaviest kernel
        # (the Gemm between the Reshapes ORT inserts around it, not the last Reshape).
        target = i
        if members and covered:
            best = max(members, key=lambda m: (optimized[m].macs, -m))
            if optimized[best].macs > k.macs:
                target = best
        covers[target].extend(covered)

    owner: dict[int, int] = {}
    conflicts: list[str] = []
    for i, k in enumerate(optimized):
        mine = []
        for n in sorted(set(covers[i])):
            node = original[n]
            if node.op_type in _NOOPS and k.op_type != node.op_type:
                continue
            if n in owner:
                if node.op_type not in _QDQ:  # a shared DequantizeLinear is folded into each consumer
                    conflicts.append(node.name)
                continue
            owner[n] = i
            mine.append(node.name)
        k.attrs["covers"] = mine

    eliminated: dict[str, str] = {}
    for n, node in enumerate(original):
        if n in owner:
            continue
        if node.op_type in _NOOPS:
            reason = "no-op"
        elif node.op_type == "Constant" or node.attrs.get("foldable"):
            reason = "constant"
        elif node.attrs.get("shape_only"):
            reason = "shape"
        else:
            reason = "unmapped"
        eliminated[node.name] = reason
    return eliminated, conflicts
