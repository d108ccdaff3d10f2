"""ONNX (and ONNX Runtime-optimized ONNX) -> :class:`ModelGraph`.

One pass over the nodes, after one run of ONNX's shape inference:

1. the input shapes are fixed from ``input_shapes``; a dimension that is still symbolic,
   unknown or ≤ 0 raises :class:`DynamicShapeError` naming the flag that fixes it;
2. ``onnx.shape_inference.infer_shapes(strict_mode=False, data_prop=True)`` runs once, on a
   light copy of the model whose large initializers are replaced by typed inputs (their
   bytes would otherwise be serialized to C++ and back: 150 ms for a ResNet-18);
3. where ONNX leaves a tensor without a full shape (ops it does not know, such as the
   ``com.microsoft``/``com.microsoft.nchwc`` ops ORT writes, and everything after them), our
   own rules in :mod:`edgecost.graph.shapes` fill it in, evaluating small integer shape
   computations (Shape → Gather → Concat → Reshape ...) when a rule needs their values.

Parameters: ``params`` of a kernel is the number of elements of the weights it consumes —
initializers and ``Constant`` outputs of a non-index dtype and rank ≥ 1 (int64 and bool
tensors hold shapes, axes and indices, and scalars are clip bounds and the like, not
weights).  A weight shared by several nodes is counted once per model, at its first consumer
in execution order, so ``ModelGraph.params`` is the model's parameter count.

Nodes are never dropped.  ``Constant`` nodes and pure shape computations (Shape/Size and the
integer ops that only combine shapes and constants) get ``attrs["shape_only"] = True``;
nodes whose every input is a constant get ``attrs["foldable"] = True``; ops we cannot shape
keep what is known and get ``attrs["shape_unknown"] = True``; an unknown op whose output
shape we copied from its one activation input gets ``attrs["shape_guessed"] = True``.
Unnamed (or duplicate-named) nodes are named ``<op_type>_<index>``.
"""

from __future__ import annotations

import functools
import os
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import numpy_helper

from ..errors import DynamicShapeError, ModelFileError, UsageError
from . import shapes as S
from ._common import (
    INDEX_DTYPES, INT_DTYPES, ONNX_DTYPES, AnnotatedGraph, KernelRecord, Shape, known, numel, sha256_hex,
)
from .cost import kernel_cost

SMALL = 1024  # initializers up to this many elements keep their data for shape inference

_CONV_LIKE = {
    ("", "Conv"), ("", "ConvInteger"), ("", "QLinearConv"), ("com.microsoft", "FusedConv"),
    ("com.microsoft", "QLinearConv"), ("com.microsoft.nchwc", "Conv"),
}
_POOL_LIKE = {
    ("", "MaxPool"), ("", "AveragePool"), ("", "LpPool"), ("com.microsoft.nchwc", "MaxPool"),
    ("com.microsoft.nchwc", "AveragePool"), ("com.microsoft", "QLinearAveragePool"),
}
_WEIGHT_INDEX = {("", "QLinearConv"): 3, ("com.microsoft", "QLinearConv"): 3}
# Integer ops that combine shapes; their outputs stay "shape-only" when their inputs are.
_SHAPE_OPS = frozenset({
    "Gather", "Unsqueeze", "Squeeze", "Concat", "Slice", "Cast", "Add", "Sub", "Mul", "Div",
    "Reshape", "Identity", "ConstantOfShape", "Range", "Equal", "Where", "Expand", "Min", "Max",
    "ReduceProd", "Neg", "Floor", "Ceil", "Abs", "Not", "Less", "Greater", "Mod", "Tile",
    "Flatten", "Sign", "Shape", "Size", "NonZero", "Transpose", "Split", "ScatterND", "CumSum",
})


# ----------------------------------------------------------------------------- loading


def parse_onnx_bytes(data: bytes, source: str = "") -> onnx.ModelProto:
    """Parse ONNX protobuf bytes; anything that is not a usable ONNX model raises ModelFileError."""
    where = f"'{source}'" if source else "the model"
    if not data:
        raise ModelFileError(f"{where} is empty (0 bytes)", "export the model again")
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except (DecodeError, ValueError, RuntimeError) as exc:
        kind = _sniff_kind(data)
        raise ModelFileError(
            f"{where} is not a valid ONNX model ({kind or f'protobuf error: {exc}'})",
            "pass an .onnx file exported completely (a truncated or corrupt file cannot be read)"
            if not kind else "pass an .onnx or .tflite model file",
        ) from None
    _validate(model, where, data)
    return model


def _sniff_kind(data: bytes) -> str:
    head = data[:8]
    if head.startswith(b"PK\x03\x04"):
        return "it is a zip archive, e.g. a PyTorch checkpoint; export it to ONNX first"
    if head.startswith(b"\x89HDF"):
        return "it is an HDF5 file, e.g. a Keras model; convert it first"
    if head.startswith(b"\x80") and b"torch" in data[:64]:
        return "it is a Python pickle"
    sample = data[:512]
    if sample and all(32 <= b < 127 or b in (9, 10, 13) for b in sample):
        return "it is a text file"
    return ""


def _validate(model: onnx.ModelProto, where: str, data: bytes) -> None:
    kind = _sniff_kind(data)
    if not model.HasField("graph") or model.ir_version <= 0 or not model.graph.output:
        raise ModelFileError(
            f"{where} is not a valid ONNX model ({kind or 'no graph, IR version or outputs in it'})",
            "pass an .onnx file exported completely, or a .tflite file",
        )
    g = model.graph
    known_names = {vi.name for vi in g.input} | {t.name for t in g.initializer}
    known_names |= {t.values.name for t in g.sparse_initializer}
    for node in g.node:
        known_names.update(node.output)
    for node in g.node:
        for t in node.input:
            if t and t not in known_names:
                raise ModelFileError(
                    f"{where} is incomplete: node '{node.name or node.op_type}' reads tensor '{t}' "
                    "that nothing produces",
                    "the file is truncated or corrupt; export it again",
                )
    for vi in g.output:
        if vi.name not in known_names:
            raise ModelFileError(
                f"{where} is incomplete: graph output '{vi.name}' is produced by no node",
                "the file is truncated or corrupt; export it again",
            )


def _check_external_data(model: onnx.ModelProto, base_dir: Optional[str], where: str) -> None:
    for t in model.graph.initializer:
        if t.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = next((e.value for e in t.external_data if e.key == "location"), "")
        if base_dir is None:
            raise ModelFileError(
                f"{where} keeps initializer '{t.name}' in external file '{location}' and was given in memory",
                "read it from its path with read_model(path) so the data beside it is found",
            )
        if not os.path.isfile(os.path.join(base_dir, location)):
            raise ModelFileError(
                f"{where} keeps its weights in '{location}', which is not beside it in {base_dir}",
                f"copy '{location}' next to the .onnx file",
            )


# ----------------------------------------------------------------------------- public entry points


def read_onnx_bytes(data: bytes, input_shapes: Optional[Mapping[str, Sequence[int]]] = None, *,
                    source: str = "", base_dir: Optional[str] = None,
                    content_hash: Optional[str] = None) -> AnnotatedGraph:
    model = parse_onnx_bytes(data, source)
    return _read(model, input_shapes, source=source, base_dir=base_dir,
                 content_hash=content_hash or sha256_hex(data))


def read_onnx_model(model: onnx.ModelProto, input_shapes: Optional[Mapping[str, Sequence[int]]] = None, *,
                    source: str = "", base_dir: Optional[str] = None) -> AnnotatedGraph:
    """Read an in-memory ``onnx.ModelProto``; ``content_hash`` is the sha256 of its serialization."""
    data = model.SerializeToString()
    _validate(model, f"'{source}'" if source else "the model", data[:8])
    return _read(model, input_shapes, source=source, base_dir=base_dir, content_hash=sha256_hex(data))


# ----------------------------------------------------------------------------- helpers


def _attr_value(a: onnx.AttributeProto) -> Any:
    t = a.type
    if t == 2:
        return int(a.i)
    if t == 1:
        return float(a.f)
    if t == 3:
        return a.s.decode("utf-8", "replace")
    if t == 7:
        return [int(x) for x in a.ints]
    if t == 6:
        return [float(x) for x in a.floats]
    if t == 8:
        return [x.decode("utf-8", "replace") for x in a.strings]
    if t == 4:
        return {"dims": [int(d) for d in a.t.dims], "dtype": ONNX_DTYPES.get(a.t.data_type, "unknown")}
    if t in (5, 10):
        return "<graph>"
    return None


def _vi_shape(vi: onnx.ValueInfoProto) -> Optional[tuple[Shape, str]]:
    if not vi.type.HasField("tensor_type"):
        return None
    tt = vi.type.tensor_type
    dtype = ONNX_DTYPES.get(tt.elem_type, "unknown")
    if not tt.HasField("shape"):
        return None, dtype
    dims = tuple(int(d.dim_value) if d.HasField("dim_value") else -1 for d in tt.shape.dim)
    return dims, dtype


def _better(new: Shape, old: Shape) -> bool:
    if new is None:
        return False
    if old is None:
        return True
    if len(new) != len(old):
        return known(new) and not known(old)
    return sum(d < 0 for d in new) < sum(d < 0 for d in old)


@functools.lru_cache(maxsize=1)
def host_nchwc_block() -> int:
    """MLAS's NCHWc block size on this host: 16 with AVX-512F (x86) or on ARM64, else 8."""
    import platform

    machine = platform.machine().lower()
    if machine in ("aarch64", "arm64"):
        return 16
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return 16 if " avx512f" in line else 8
    except OSError:
        pass
    return 8


def _dim_flag(name: str, dims: Sequence[Any]) -> str:
    parts = []
    for axis, d in enumerate(dims):
        if isinstance(d, int) and d > 0:
            parts.append(str(d))
        elif axis == 0:
            parts.append("1")
        else:
            parts.append(str(d).upper() if isinstance(d, str) and d else f"D{axis}")
    return f"--input-shape {name}={'x'.join(parts)}"


# ----------------------------------------------------------------------------- the reader


def _fix_inputs(g: onnx.GraphProto, init_names: set, overrides: Mapping[str, Sequence[int]]
                ) -> tuple[dict[str, Shape], dict[str, str], list[onnx.ValueInfoProto]]:
    real = [vi for vi in g.input if vi.name not in init_names]
    names = [vi.name for vi in real]
    unknown = [n for n in overrides if n not in names]
    if unknown:
        raise UsageError(
            f"the model has no input named {', '.join(repr(n) for n in unknown)}",
            f"its inputs are: {', '.join(names) or '(none)'}",
        )
    shapes: dict[str, Shape] = {}
    dtypes: dict[str, str] = {}
    problems: list[tuple[str, int, str]] = []
    flags: list[str] = []
    fixed_vis = []
    for vi in real:
        info = _vi_shape(vi)
        if info is None:  # sequence/map/optional inputs: no tensor shape to fix
            fixed_vis.append(vi)
            continue
        _, dtype = info
        dtypes[vi.name] = dtype
        tt = vi.type.tensor_type
        dims: list[Any] = []
        if tt.HasField("shape"):
            for d in tt.shape.dim:
                if d.HasField("dim_value") and d.dim_value > 0:
                    dims.append(int(d.dim_value))
                else:
                    dims.append(d.dim_param if d.HasField("dim_param") else "")
        rank_known = tt.HasField("shape")
        if vi.name in overrides:
            want = tuple(int(x) for x in overrides[vi.name])
            if any(x <= 0 for x in want):
                raise UsageError(f"--input-shape {vi.name}: every dimension must be positive, got {want}",
                                 f"pass e.g. {_dim_flag(vi.name, dims or [1])}")
            if rank_known and len(want) != len(dims):
                raise UsageError(
                    f"--input-shape {vi.name} has {len(want)} dimensions but the input has {len(dims)}",
                    f"pass e.g. {_dim_flag(vi.name, dims)}",
                )
            for axis, (d, w) in enumerate(zip(dims, want)):
                if isinstance(d, int) and d != w:
                    raise UsageError(
                        f"input '{vi.name}' has a fixed size {d} on axis {axis}; it cannot be set to {w}",
                        "re-export the model with that axis dynamic, or keep its size",
                    )
            shapes[vi.name] = want
        else:
            if not rank_known:
                problems.append((vi.name, -1, ""))
                flags.append(f"--input-shape {vi.name}=D0xD1x... (its full shape)")
                continue
            bad = [(axis, d) for axis, d in enumerate(dims) if not isinstance(d, int)]
            if bad:
                problems.append((vi.name, bad[0][0], bad[0][1]))
                flags.append(_dim_flag(vi.name, dims))
                continue
            shapes[vi.name] = tuple(dims)
        new = onnx.ValueInfoProto()
        new.CopyFrom(vi)
        shp = new.type.tensor_type.shape
        shp.Clear()
        for d in shapes[vi.name]:
            shp.dim.add().dim_value = d
        fixed_vis.append(new)
    if problems:
        name, axis, dim = problems[0]
        if axis < 0:
            msg = f"input '{name}' has no shape in the model"
        elif dim:
            msg = f"input '{name}' has a dynamic dimension '{dim}' (axis {axis})"
        else:
            msg = f"input '{name}' has an unknown dimension (axis {axis})"
        extra = len(problems) - 1
        if extra:
            msg += f" and {extra} more input{'s' if extra > 1 else ''} are dynamic"
        raise DynamicShapeError(msg, "pass " + " ".join(flags))
    return shapes, dtypes, fixed_vis


def _light_model(model: onnx.ModelProto, fixed_inputs: list, base_dir: Optional[str]) -> onnx.ModelProto:
    g = model.graph
    light = onnx.ModelProto()
    light.ir_version = max(model.ir_version, 4)
    light.opset_import.extend(model.opset_import)
    if model.functions:
        light.functions.extend(model.functions)
    lg = light.graph
    lg.name = g.name
    lg.node.extend(g.node)
    lg.input.extend(fixed_inputs)
    lg.output.extend(g.output)
    lg.value_info.extend(g.value_info)
    for t in g.initializer:
        n = 1
        for d in t.dims:
            n *= d
        if n <= SMALL and t.data_location != onnx.TensorProto.EXTERNAL:
            lg.initializer.append(t)
        elif n <= SMALL and base_dir is not None:
            arr = numpy_helper.to_array(t, base_dir)
            lg.initializer.append(numpy_helper.from_array(arr, t.name))
        else:
            vi = lg.input.add()
            vi.name = t.name
            tt = vi.type.tensor_type
            tt.elem_type = t.data_type
            tt.shape.SetInParent()
            for d in t.dims:
                tt.shape.dim.add().dim_value = d
    return light


def _read(model: onnx.ModelProto, input_shapes: Optional[Mapping[str, Sequence[int]]], *, source: str,
          base_dir: Optional[str], content_hash: str) -> AnnotatedGraph:
    g = model.graph
    where = f"'{source}'" if source else "the model"
    _check_external_data(model, base_dir, where)
    init = {t.name: t for t in g.initializer}
    for st in g.sparse_initializer:
        init.setdefault(st.values.name, st.values)
    sparse_dims = {st.values.name: tuple(st.dims) for st in g.sparse_initializer}
    in_shapes, in_dtypes, fixed_vis = _fix_inputs(g, set(init), dict(input_shapes or {}))

    # --- one run of ONNX's shape inference on a light copy
    light = _light_model(model, fixed_vis, base_dir)
    try:
        inferred = onnx.shape_inference.infer_shapes(light, check_type=False, strict_mode=False, data_prop=True)
    except Exception:  # noqa: BLE001 - onnx raises assorted C++ error types; our own rules take over
        inferred = light

    shape: dict[str, Shape] = {}
    dtype: dict[str, str] = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.output):
        info = _vi_shape(vi)
        if info is not None:
            shape[vi.name], dtype[vi.name] = info
    for name, t in init.items():
        shape[name] = sparse_dims.get(name, tuple(int(d) for d in t.dims))
        dtype[name] = ONNX_DTYPES.get(t.data_type, "unknown")
    shape.update(in_shapes)
    dtype.update(in_dtypes)

    nodes = list(g.node)
    order = _topological(nodes, set(init) | set(in_shapes) | {vi.name for vi in g.input})
    producer: dict[str, int] = {}
    for i, node in enumerate(nodes):
        for o in node.output:
            if o:
                producer[o] = i
    consumers: dict[str, list[int]] = {}
    for i, node in enumerate(nodes):
        for t in node.input:
            if t:
                consumers.setdefault(t, []).append(i)

    const_names: set[str] = set(init)     # tensors whose value is fixed
    shape_names: set[str] = set()         # tensors that only carry shapes
    values: dict[str, Optional[np.ndarray]] = {}
    attrs_of: dict[int, dict] = {}
    domain_of = [("" if n.domain in ("", "ai.onnx") else n.domain) for n in nodes]

    def node_attrs(i: int) -> dict:
        a = attrs_of.get(i)
        if a is None:
            a = {at.name: _attr_value(at) for at in nodes[i].attribute}
            attrs_of[i] = a
        return a

    def value(name: str) -> Optional[np.ndarray]:
        if not name:
            return None
        if name in values:
            return values[name]
        values[name] = None  # guards cycles
        result = None
        t = init.get(name)
        if t is not None:
            if numel(shape.get(name)) <= SMALL:
                try:
                    result = numpy_helper.to_array(t, base_dir) if base_dir else numpy_helper.to_array(t)
                except (ValueError, TypeError, OSError, KeyError):
                    result = None
        elif name in producer:
            result = _evaluate(nodes[producer[name]], domain_of[producer[name]], node_attrs(producer[name]),
                               value, shape, name)
        values[name] = result
        return result

    # NCHWc block size: the host's, unless the graph's filters say otherwise.
    block = host_nchwc_block()
    nchwc_out = [init[n.input[1]].dims[0] for n in nodes
                 if n.domain == "com.microsoft.nchwc" and n.op_type == "Conv" and len(n.input) > 1
                 and n.input[1] in init and init[n.input[1]].dims]
    if nchwc_out:
        common = int(np.gcd.reduce(np.array(nchwc_out, dtype=np.int64)))
        if common % block:
            block = next((b for b in (16, 8, 4) if common % b == 0), block)
    env = S.Env(block)

    records: list[KernelRecord] = []
    counted: set[str] = set()
    seen_names: set[str] = set()
    for i in order:
        node = nodes[i]
        dom = domain_of[i]
        op = node.op_type
        a = dict(node_attrs(i))
        ins = list(node.input)
        outs = list(node.output)
        flags: dict[str, Any] = {}

        if op == "Constant" and dom == "":
            cshape, cdtype, cval = _constant(node, a)
            for o in outs:
                shape[o], dtype[o] = cshape, cdtype
                const_names.add(o)
                shape_names.add(o)
                if cval is not None:
                    values[o] = cval
            a = {k: v for k, v in a.items() if k not in ("value",)}
            if "value" in node_attrs(i):
                a["value_shape"] = list(cshape or ())
            flags["shape_only"] = True
        else:
            s_in = [shape.get(t) if t else None for t in ins]
            cur = [shape.get(o) for o in outs]
            if any(o and not known(c) for o, c in zip(outs, cur)):
                special = None
                if op == "ReorderInput" and dom == "com.microsoft.nchwc":
                    special = _reorder_input_from_consumers(i, nodes, consumers, init, s_in)
                vfn = (lambda k, _ins=ins: value(_ins[k]) if k < len(_ins) else None)
                ours = [special] if special is not None else S.infer(dom, op, a, s_in, vfn, len(outs), env)
                if ours is None:
                    act = [s for t, s in zip(ins, s_in) if t and t not in const_names]
                    if len(outs) == 1 and len(act) == 1 and act[0] is not None and not known(cur[0]):
                        ours = [act[0]]
                        flags["shape_guessed"] = True
                if ours is not None:
                    for o, c, new in zip(outs, cur, ours):
                        if o and _better(new, c):
                            shape[o] = new
            in_dt = [dtype.get(t) if t else None for t in ins]
            if any(o and o not in dtype for o in outs):
                for o, d in zip(outs, S.output_dtypes(dom, op, a, in_dt, len(outs))):
                    if o and o not in dtype and d:
                        dtype[o] = d
            real_ins = [t for t in ins if t]
            if real_ins and all(t in const_names for t in real_ins):
                flags["foldable"] = True
                const_names.update(o for o in outs if o)
            if op in ("Shape", "Size") and dom == "":
                flags["shape_only"] = True
                shape_names.update(o for o in outs if o)
            elif (dom == "" and op in _SHAPE_OPS and real_ins
                  and all(t in shape_names or (t in const_names and dtype.get(t) in INT_DTYPES) for t in real_ins)
                  and any(t in shape_names for t in real_ins)
                  and all(dtype.get(o) in INT_DTYPES for o in outs if o)):
                flags["shape_only"] = True
                shape_names.update(o for o in outs if o)

        s_in = [shape.get(t) if t else None for t in ins]
        s_out = [shape.get(o) if o else None for o in outs]
        d_in = [dtype.get(t) if t else None for t in ins]
        d_out = [dtype.get(o) if o else None for o in outs]
        if any(t and not known(s) for t, s in zip(ins + outs, s_in + s_out)):
            flags["shape_unknown"] = True

        # attributes the predictor wants spelled out
        if (dom, op) in _CONV_LIKE or (dom, op) in _POOL_LIKE or (dom, op) == ("", "ConvTranspose"):
            _normalize_geometry(dom, op, a, s_in)
        if dom == "" and op.startswith("Reduce") and s_in and s_in[0] is not None:
            axes = a.get("axes")
            if axes is None and len(ins) > 1 and ins[1]:
                arr = value(ins[1])
                axes = None if arr is None else [int(x) for x in arr.reshape(-1)]
            if axes is not None:
                rank = len(s_in[0])
                a["axes"] = sorted(x + rank if x < 0 else x for x in axes)
        const_idx = [k for k, t in enumerate(ins) if t and t in const_names]
        if const_idx:
            flags["const_inputs"] = const_idx
        a.update(flags)

        params = 0
        for k in const_idx:
            t = ins[k]
            if (t in counted or dtype.get(t) in INDEX_DTYPES or not shape.get(t)
                    or not (t in init or _is_constant_output(t, producer, nodes))):
                continue
            counted.add(t)
            params += numel(shape.get(t))

        cost = kernel_cost(dom, op, s_in, s_out, d_in, d_out, a)
        if cost.unknown:
            a["unknown_cost"] = True
        main_dtype = next((d for t, d in zip(ins, d_in) if t and d and t not in const_names), None) \
            or next((d for d in d_out if d), None) or next((d for d in d_in if d), "float32")

        name = node.name
        if not name or name in seen_names:
            name = f"{node.name or op}_{i}"
        seen_names.add(name)
        records.append(KernelRecord(
            name=name, op_type=op, domain=dom, inputs=tuple(ins), outputs=tuple(outs),
            input_shapes=tuple(s if s is not None else () for s in s_in),
            output_shapes=tuple(s if s is not None else () for s in s_out),
            dtype=main_dtype, attrs=a, flops=cost.flops, macs=cost.macs,
            bytes_read=cost.bytes_read, bytes_written=cost.bytes_written, params=params,
        ))

    outputs = {vi.name: tuple(d if d is not None else -1 for d in (shape.get(vi.name) or ())) for vi in g.output}
    gattrs: dict[str, Any] = {
        "opset": {(o.domain or "ai.onnx"): int(o.version) for o in model.opset_import},
        "ir_version": int(model.ir_version),
        "producer": f"{model.producer_name} {model.producer_version}".strip(),
    }
    if any(d == "com.microsoft.nchwc" for d in domain_of):
        gattrs["nchwc_block"] = block
    return AnnotatedGraph(
        content_hash=content_hash, format="onnx", kernels=tuple(records),
        inputs={k: tuple(v) for k, v in in_shapes.items()}, outputs=outputs, source=source, attrs=gattrs,
    )


def _is_constant_output(t: str, producer: dict, nodes: list) -> bool:
    i = producer.get(t)
    return i is not None and nodes[i].op_type == "Constant"


def _topological(nodes: list, available: set) -> list[int]:
    """Node indices in execution order (the file's order when it is already topological)."""
    ready = set(available)
    ok = True
    for node in nodes:
        if any(t and t not in ready for t in node.input):
            ok = False
            break
        ready.update(node.output)
    if ok:
        return list(range(len(nodes)))
    produced = {o: i for i, n in enumerate(nodes) for o in n.output if o}
    deps = [{produced[t] for t in n.input if t in produced} for n in nodes]
    done: set[int] = set()
    order: list[int] = []
    pending = list(range(len(nodes)))
    while pending:
        rest = [i for i in pending if deps[i] - done - {i}]
        now = [i for i in pending if not (deps[i] - done - {i})]
        if not now:  # a cycle: keep file order for the rest
            order.extend(rest)
            break
        order.extend(now)
        done.update(now)
        pending = rest
    return order


def _constant(node: onnx.NodeProto, a: dict) -> tuple[Shape, Optional[str], Optional[np.ndarray]]:
    for at in node.attribute:
        if at.name == "value" and at.type == 4:
            t = at.t
            dims = tuple(int(d) for d in t.dims)
            val = None
            if numel(dims) <= SMALL and t.data_location != onnx.TensorProto.EXTERNAL:
                try:
                    val = numpy_helper.to_array(t)
                except (ValueError, TypeError):
                    val = None
            return dims, ONNX_DTYPES.get(t.data_type, "unknown"), val
        if at.name == "value_int":
            return (), "int64", np.array(at.i, dtype=np.int64)
        if at.name == "value_ints":
            return (len(at.ints),), "int64", np.array(list(at.ints), dtype=np.int64)
        if at.name == "value_float":
            return (), "float32", np.array(at.f, dtype=np.float32)
        if at.name == "value_floats":
            return (len(at.floats),), "float32", np.array(list(at.floats), dtype=np.float32)
        if at.name == "sparse_value":
            return tuple(int(d) for d in at.sparse_tensor.dims), ONNX_DTYPES.get(
                at.sparse_tensor.values.data_type, "unknown"), None
    return None, None, None


def _reorder_input_from_consumers(i: int, nodes: list, consumers: dict, init: dict, s_in: list) -> Shape:
    """A ReorderInput's padded channel count, read off the nchwc Conv that consumes it."""
    x = s_in[0] if s_in else None
    node = nodes[i]
    if x is None or len(x) < 3 or not node.output:
        return None
    channels_last = any(at.name == "channels_last" and at.i for at in node.attribute)
    spatial = x[1:-1] if channels_last else x[2:]
    for j in consumers.get(node.output[0], ()):
        c = nodes[j]
        if c.domain == "com.microsoft.nchwc" and c.op_type == "Conv" and len(c.input) > 1 \
                and c.input[0] == node.output[0] and c.input[1] in init:
            w = init[c.input[1]].dims
            group = next((at.i for at in c.attribute if at.name == "group"), 1)
            cin = w[1] * group
            return (x[0], int(cin), *spatial)
    return None


def _normalize_geometry(dom: str, op: str, a: dict, s_in: list) -> None:
    x = s_in[0] if s_in else None
    wi = _WEIGHT_INDEX.get((dom, op), 1)
    w = s_in[wi] if len(s_in) > wi else None
    is_pool = (dom, op) in _POOL_LIKE
    kernel = a.get("kernel_shape") or (list(w[2:]) if w is not None and len(w) > 2 and not is_pool else None)
    if not is_pool:
        a.setdefault("group", 1)
    if x is None or kernel is None or len(x) != len(kernel) + 2:
        return
    if op == "ConvTranspose":
        nd = len(kernel)
        a["kernel_shape"] = list(kernel)
        a.setdefault("strides", [1] * nd)
        a.setdefault("dilations", [1] * nd)
        a.setdefault("pads", [0] * (2 * nd))
        return
    geo = S.conv_geometry(a, x, kernel)
    a.update(geo)


def _evaluate(node: onnx.NodeProto, dom: str, a: dict, value, shape: dict, want: str) -> Optional[np.ndarray]:
    """Value of a small integer (shape) computation, or None."""
    if dom != "":
        return None
    op = node.op_type
    ins = list(node.input)
    try:
        if op == "Shape":
            x = shape.get(ins[0])
            if x is None or not known(x):
                return None
            start = int(a.get("start", 0))
            end = a.get("end")
            return np.array(x[slice(start, None if end is None else int(end))], dtype=np.int64)
        if op == "Size":
            x = shape.get(ins[0])
            return None if x is None or not known(x) else np.array(numel(x), dtype=np.int64)
        vals = [value(t) if t else None for t in ins]
        need = [v for t, v in zip(ins, vals) if t]
        if any(v is None for v in need):
            return None
        v0 = vals[0]
        out: Optional[np.ndarray]
        if op in ("Identity", "Cast"):
            out = v0 if op == "Identity" else v0.astype(_np_dtype(int(a.get("to", 7))))
        elif op == "Gather":
            out = np.take(v0, vals[1], axis=int(a.get("axis", 0)))
        elif op == "Unsqueeze":
            axes = a.get("axes") if len(ins) < 2 else [int(x) for x in vals[1].reshape(-1)]
            out = v0
            rank = v0.ndim + len(axes)
            for ax in sorted(x + rank if x < 0 else x for x in axes):
                out = np.expand_dims(out, ax)
        elif op == "Squeeze":
            axes = a.get("axes") if len(ins) < 2 else [int(x) for x in vals[1].reshape(-1)]
            out = np.squeeze(v0, axis=tuple(axes) if axes else None)
        elif op == "Concat":
            out = np.concatenate([np.atleast_1d(v) for v in vals], axis=int(a.get("axis", 0)))
        elif op == "Slice":
            if len(ins) > 1:
                starts, ends = vals[1].reshape(-1), vals[2].reshape(-1)
                axes = vals[3].reshape(-1) if len(ins) > 3 and ins[3] else range(len(starts))
                steps = vals[4].reshape(-1) if len(ins) > 4 and ins[4] else [1] * len(starts)
            else:
                starts, ends = a["starts"], a["ends"]
                axes = a.get("axes") or range(len(starts))
                steps = [1] * len(starts)
            idx = [slice(None)] * v0.ndim
            for st, en, ax, sp in zip(starts, ends, axes, steps):
                idx[int(ax)] = slice(int(st), int(en), int(sp))
            out = v0[tuple(idx)]
        elif op in ("Add", "Sub", "Mul", "Div", "Mod", "Min", "Max", "Equal", "Less", "Greater"):
            fn = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Mod": np.mod,
                  "Min": np.minimum, "Max": np.maximum, "Equal": np.equal, "Less": np.less,
                  "Greater": np.greater}.get(op)
            if op == "Div":
                out = (np.trunc(vals[0] / vals[1]).astype(v0.dtype) if v0.dtype.kind in "iu"
                       else vals[0] / vals[1])
            else:
                out = vals[0]
                for v in vals[1:]:
                    out = fn(out, v)
        elif op in ("Neg", "Abs", "Floor", "Ceil", "Not", "Sign"):
            out = {"Neg": np.negative, "Abs": np.abs, "Floor": np.floor, "Ceil": np.ceil,
                   "Not": np.logical_not, "Sign": np.sign}[op](v0)
        elif op == "Reshape":
            target = [int(x) for x in vals[1].reshape(-1)]
            target = [v0.shape[k] if d == 0 else d for k, d in enumerate(target)]
            out = v0.reshape(target)
        elif op == "Flatten":
            axis = int(a.get("axis", 1))
            out = v0.reshape(int(np.prod(v0.shape[:axis])), -1)
        elif op == "ConstantOfShape":
            target = [int(x) for x in v0.reshape(-1)]
            if int(np.prod(target)) > SMALL:
                return None
            out = np.zeros(target, dtype=np.int64)
            fill = a.get("value")
            if isinstance(fill, dict):
                t = next(at.t for at in node.attribute if at.name == "value")
                out = np.full(target, numpy_helper.to_array(t).reshape(-1)[0])
        elif op == "Range":
            out = np.arange(v0.item(), vals[1].item(), vals[2].item())
        elif op == "Where":
            out = np.where(vals[0], vals[1], vals[2])
        elif op == "Expand":
            out = v0 * np.ones([int(x) for x in vals[1].reshape(-1)], dtype=v0.dtype)
        elif op == "Tile":
            out = np.tile(v0, [int(x) for x in vals[1].reshape(-1)])
        elif op == "ReduceProd":
            axes = a.get("axes")
            out = np.prod(v0, axis=tuple(axes) if axes else None, keepdims=bool(a.get("keepdims", 1)))
        elif op == "Transpose":
            out = np.transpose(v0, a.get("perm"))
        else:
            return None
    except (ValueError, IndexError, TypeError, KeyError, ZeroDivisionError, StopIteration):
        return None
    if out is None:
        return None
    out = np.asarray(out)
    if out.size > SMALL:
        return None
    if len(node.output) > 1 and want != node.output[0]:
        return None
    return out


def _np_dtype(onnx_type: int):
    return {1: np.float32, 6: np.int32, 7: np.int64, 9: np.bool_, 10: np.float16, 11: np.float64,
            2: np.uint8, 3: np.int8}.get(onnx_type, np.int64)
