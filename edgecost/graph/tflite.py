"""TFLite / LiteRT flatbuffers -> :class:`ModelGraph`.

Read with the flatbuffer schema LiteRT ships (``ai_edge_litert.schema_py_generated``): no
interpreter is built, nothing is allocated, and each operator's builtin options come out in
full.  A ``.tflite`` is already the runtime's view: every operator is an executed kernel
(before any delegate such as XNNPACK regroups them).

Each kernel's ``op_type`` is the TFLite builtin name (``CONV_2D``, ``DEPTHWISE_CONV_2D``,
``FULLY_CONNECTED`` ...; custom ops keep their custom code), ``domain`` is ``"tflite"``, and
``attrs`` holds the builtin options in snake_case with enums as names (``padding="SAME"``,
``fused_activation_function="RELU6"``, ``stride_h``, ``depth_multiplier`` ...), plus, for
convolutions and pools, ``kernel_shape``/``strides``/``dilations``/``group`` in the ONNX
spelling, ``axes`` for reductions, ``const_inputs``, ``op_index`` and ``quantized``.
Tensors are NHWC; conv weights OHWI, depthwise weights 1HWO.  Quantized tensors keep their
dtype (``int8``/``uint8``/``int16``) and bytes are counted at that size.

Only the primary subgraph (0) is read; control-flow ops that call other subgraphs are kept
with ``unknown_cost``.  Shapes are the ones stored in the file (what the interpreter runs
without resizing); ``input_shapes`` may name inputs but cannot resize them.

Parameters are the elements of constant tensors an op reads, once per model, except integer
tensors that hold shapes, axes, permutations or paddings (int32 biases of quantized
convolutions and fully connected layers count).
"""

from __future__ import annotations

import re
import struct
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

from ..errors import ModelFileError, UsageError
from ._common import AnnotatedGraph, KernelRecord, numel, sha256_hex
from .cost import kernel_cost
from .reader import TFLITE_IDENTIFIER, read_bytes

_BIAS_INDEX = {"CONV_2D": 2, "DEPTHWISE_CONV_2D": 2, "FULLY_CONNECTED": 2, "TRANSPOSE_CONV": 3, "CONV_3D": 2}
_REDUCERS = {"MEAN", "SUM", "REDUCE_MAX", "REDUCE_MIN", "REDUCE_PROD", "REDUCE_ANY", "REDUCE_ALL"}
_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")


def _schema():
    import ai_edge_litert.schema_py_generated as sc

    return sc


def _enum_names(cls: Any) -> dict[int, str]:
    return {v: k for k, v in vars(cls).items() if not k.startswith("_") and isinstance(v, int)}


class _Names:
    """Enum value -> name tables, built once."""

    _cache: Optional["_Names"] = None

    def __init__(self, sc: Any):
        self.ops = _enum_names(sc.BuiltinOperator)
        self.types = {k: v.lower() for k, v in _enum_names(sc.TensorType).items()}
        self.padding = _enum_names(sc.Padding)
        self.act = _enum_names(sc.ActivationFunctionType)
        self.enums = {
            "padding": self.padding,
            "fusedActivationFunction": self.act,
            "weightsFormat": _enum_names(sc.FullyConnectedOptionsWeightsFormat),
            "mode": _enum_names(sc.MirrorPadMode),
            "kernelType": _enum_names(sc.LSTMKernelType),
            "combiner": _enum_names(sc.CombinerType),
            "quantizedBiasType": self.types,
            "outType": self.types,
            "outputType": self.types,
            "inDataType": self.types,
            "outDataType": self.types,
            "idxOutType": self.types,
        }

    @classmethod
    def get(cls, sc: Any) -> "_Names":
        if cls._cache is None:
            cls._cache = cls(sc)
        return cls._cache


def _options(obj: Any, names: _Names) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if obj is None:
        return out
    for key, val in vars(obj).items():
        if val is None:
            continue
        snake = _CAMEL.sub("_", key).lower()
        table = names.enums.get(key)
        if table is not None and isinstance(val, int) and not isinstance(val, bool):
            val = table.get(val, val)
            if isinstance(val, str) and table is names.types:
                val = val.lower()
        elif isinstance(val, (bool, int, float, str)):
            pass
        elif isinstance(val, bytes):
            val = val.decode("utf-8", "replace")
        elif hasattr(val, "tolist"):
            val = val.tolist()
        elif isinstance(val, (list, tuple)) and all(isinstance(x, (int, float, bool, str)) for x in val):
            val = list(val)
        else:
            continue
        out[snake] = val
    return out


def read_tflite(path: Union[str, Path], input_shapes: Optional[Mapping[str, Sequence[int]]] = None) -> AnnotatedGraph:
    p, data = read_bytes(path)
    return read_tflite_bytes(data, input_shapes, source=str(p), content_hash=sha256_hex(data))


def read_tflite_bytes(data: bytes, input_shapes: Optional[Mapping[str, Sequence[int]]] = None, *,
                      source: str = "", content_hash: Optional[str] = None) -> AnnotatedGraph:
    where = f"'{source}'" if source else "the model"
    if data[4:8] != TFLITE_IDENTIFIER:
        raise ModelFileError(f"{where} is not a TFLite flatbuffer (no 'TFL3' identifier at bytes 4..8)",
                             "convert the model to .tflite again")
    sc = _schema()
    names = _Names.get(sc)
    try:
        model = sc.Model.GetRootAs(data, 0)
        if model.SubgraphsLength() < 1:
            raise ModelFileError(f"{where} has no subgraph", "convert the model to .tflite again")
        return _read(sc, names, model, data, input_shapes, source, content_hash or sha256_hex(data))
    except ModelFileError as exc:
        if source and source not in exc.message:
            raise ModelFileError(f"{where}: {exc.message}", exc.hint) from None
        raise
    except (IndexError, ValueError, TypeError, AttributeError, UnicodeDecodeError, struct.error,
            OverflowError, MemoryError) as exc:
        # flatbuffers reads lazily: a truncated or corrupt file fails here, on first access.
        raise ModelFileError(
            f"{where} is a corrupt or truncated TFLite flatbuffer ({type(exc).__name__}: {exc})",
            "convert the model to .tflite again",
        ) from None


def _read(sc: Any, names: _Names, model: Any, data: bytes, input_shapes: Optional[Mapping[str, Sequence[int]]],
          source: str, content_hash: str) -> AnnotatedGraph:
    g = model.Subgraphs(0)
    n_tensors = g.TensorsLength()
    size = len(data)
    # Every vector element takes at least 4 bytes; longer vectors mean a corrupt file
    # (and would make us loop over garbage).
    for count in (n_tensors, g.OperatorsLength(), model.BuffersLength(), model.OperatorCodesLength(),
                  g.InputsLength(), g.OutputsLength()):
        if count * 4 > size:
            raise ModelFileError("the flatbuffer's tables point past the end of the file (corrupt or truncated)",
                                 "convert the model to .tflite again")

    tnames: list[str] = []
    tshapes: list[tuple[int, ...]] = []
    tdtypes: list[str] = []
    tconst: list[bool] = []
    seen: dict[str, int] = {}
    for j in range(n_tensors):
        t = g.Tensors(j)
        name = (t.Name() or b"").decode("utf-8", "replace") or f"tensor_{j}"
        if name in seen:
            name = f"{name}:{j}"
        seen[name] = j
        tnames.append(name)
        if t.ShapeLength() * 4 > size:
            raise ModelFileError(f"tensor {j} has a corrupt shape", "convert the model to .tflite again")
        tshapes.append(tuple(int(d) for d in t.ShapeAsNumpy()) if t.ShapeLength() else ())
        tdtypes.append(names.types.get(t.Type(), "unknown"))
        const = False
        bi = t.Buffer()
        if bi > 0 and not t.IsVariable() and bi < model.BuffersLength():
            buf = model.Buffers(bi)
            const = buf.DataLength() > 0 or (buf.Offset() > 1 and buf.Size() > 0)
            if buf.Offset() > 1 and buf.Offset() + buf.Size() > size:
                raise ModelFileError("buffer data lies past the end of the file (truncated)",
                                     "convert the model to .tflite again")
        tconst.append(const)

    def tensor_value(j: int) -> Optional[list]:
        if j < 0 or not tconst[j] or numel(tshapes[j]) > 64:
            return None
        import numpy as np

        buf = model.Buffers(g.Tensors(j).Buffer())
        np_dt = {"int32": np.int32, "int64": np.int64, "float32": np.float32}.get(tdtypes[j])
        if np_dt is None:
            return None
        if buf.DataLength() > 0:
            raw = buf.DataAsNumpy().tobytes()
        else:
            raw = data[buf.Offset(): buf.Offset() + buf.Size()]
        return np.frombuffer(raw, dtype=np_dt).tolist()

    g_inputs = [int(j) for j in g.InputsAsNumpy()] if g.InputsLength() else []
    g_outputs = [int(j) for j in g.OutputsAsNumpy()] if g.OutputsLength() else []
    in_names = [tnames[j] for j in g_inputs]
    overrides = dict(input_shapes or {})
    unknown = [n for n in overrides if n not in in_names]
    if unknown:
        raise UsageError(f"the model has no input named {', '.join(repr(n) for n in unknown)}",
                         f"its inputs are: {', '.join(in_names) or '(none)'}")
    dynamic: dict[str, list[int]] = {}
    for j in g_inputs:
        t = g.Tensors(j)
        if t.ShapeSignatureLength():
            sig = [int(d) for d in t.ShapeSignatureAsNumpy()]
            if any(d < 0 for d in sig):
                dynamic[tnames[j]] = sig
        want = overrides.get(tnames[j])
        if want is not None and tuple(int(x) for x in want) != tshapes[j]:
            raise UsageError(
                f"input '{tnames[j]}' is stored with shape {'x'.join(map(str, tshapes[j]))}; "
                "TFLite models are read at their stored shapes",
                "convert the model again with the input shape you need",
            )

    records: list[KernelRecord] = []
    counted: set[int] = set()
    n_codes = model.OperatorCodesLength()
    for i in range(g.OperatorsLength()):
        op = g.Operators(i)
        idx = op.OpcodeIndex()
        if idx >= n_codes:
            raise ModelFileError(f"operator {i} refers to a missing operator code", "convert the model again")
        oc = model.OperatorCodes(idx)
        code = max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())
        op_type = names.ops.get(code, f"BUILTIN_{code}")
        if op_type == "CUSTOM":
            op_type = (oc.CustomCode() or b"CUSTOM").decode("utf-8", "replace")
        if (op.InputsLength() + op.OutputsLength()) * 4 > size:
            raise ModelFileError(f"operator {i} is corrupt", "convert the model to .tflite again")
        ins = [int(j) for j in op.InputsAsNumpy()] if op.InputsLength() else []
        outs = [int(j) for j in op.OutputsAsNumpy()] if op.OutputsLength() else []
        for j in ins + outs:
            if j >= n_tensors:
                raise ModelFileError(f"operator {i} refers to missing tensor {j}", "convert the model again")

        a: dict[str, Any] = {}
        otype = op.BuiltinOptionsType()
        if otype:
            a.update(_options(sc.BuiltinOptionsCreator(otype, op.BuiltinOptions()), names))
        if hasattr(op, "BuiltinOptions2Type") and op.BuiltinOptions2Type():
            a.update(_options(sc.BuiltinOptions2Creator(op.BuiltinOptions2Type(), op.BuiltinOptions2()), names))
        _normalize(op_type, a, ins, tshapes, tensor_value)
        const_idx = [k for k, j in enumerate(ins) if j >= 0 and tconst[j]]
        if const_idx:
            a["const_inputs"] = const_idx
        a["op_index"] = i

        s_in = [tshapes[j] if j >= 0 else None for j in ins]
        s_out = [tshapes[j] if j >= 0 else None for j in outs]
        d_in = [tdtypes[j] if j >= 0 else None for j in ins]
        d_out = [tdtypes[j] if j >= 0 else None for j in outs]
        act_dt = next((tdtypes[j] for j in ins if j >= 0 and not tconst[j]), None) or \
            next((d for d in d_out if d), "float32")
        if act_dt in ("int8", "uint8", "int16"):
            a["quantized"] = True

        params = 0
        bias_i = _BIAS_INDEX.get(op_type)
        for k in const_idx:
            j = ins[k]
            if j in counted or not tshapes[j]:
                continue
            if tdtypes[j] in ("int32", "int64", "bool") and k != bias_i:
                continue
            counted.add(j)
            params += numel(tshapes[j])

        cost = kernel_cost("tflite", op_type, s_in, s_out, d_in, d_out, a)
        if cost.unknown:
            a["unknown_cost"] = True
        records.append(KernelRecord(
            name=f"{op_type}_{i}", op_type=op_type, domain="tflite",
            inputs=tuple(tnames[j] if j >= 0 else "" for j in ins),
            outputs=tuple(tnames[j] if j >= 0 else "" for j in outs),
            input_shapes=tuple(s if s is not None else () for s in s_in),
            output_shapes=tuple(s if s is not None else () for s in s_out),
            dtype=act_dt, attrs=a, flops=cost.flops, macs=cost.macs,
            bytes_read=cost.bytes_read, bytes_written=cost.bytes_written, params=params,
        ))

    gattrs: dict[str, Any] = {
        "schema_version": int(model.Version()),
        "description": (model.Description() or b"").decode("utf-8", "replace"),
        "subgraphs": int(model.SubgraphsLength()),
    }
    if dynamic:
        gattrs["dynamic_inputs"] = dynamic
    return AnnotatedGraph(
        content_hash=content_hash, format="tflite", kernels=tuple(records),
        inputs={tnames[j]: tshapes[j] for j in g_inputs},
        outputs={tnames[j]: tshapes[j] for j in g_outputs},
        source=source, attrs=gattrs,
    )


def _normalize(op: str, a: dict, ins: list[int], shapes: list, value) -> None:
    """Add the ONNX spelling of conv/pool geometry and resolve reduction axes."""
    def shp(k: int) -> tuple:
        return shapes[ins[k]] if k < len(ins) and ins[k] >= 0 else ()

    if "stride_h" in a and "stride_w" in a:
        a["strides"] = [a["stride_h"], a["stride_w"]]
    if "dilation_h_factor" in a:
        a["dilations"] = [a["dilation_h_factor"], a.get("dilation_w_factor", 1)]
    if op in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        w, x = shp(1), shp(0)
        if len(w) == 4:
            a["kernel_shape"] = [w[1], w[2]]
            if op == "CONV_2D":
                a["group"] = x[3] // w[3] if len(x) == 4 and w[3] and x[3] % w[3] == 0 else 1
            else:
                a["group"] = x[3] if len(x) == 4 else w[3]
    elif op == "TRANSPOSE_CONV":
        w = shp(1)
        if len(w) == 4:
            a["kernel_shape"] = [w[1], w[2]]
    elif op in ("AVERAGE_POOL_2D", "MAX_POOL_2D", "L2_POOL_2D"):
        a["kernel_shape"] = [a.get("filter_height", 1), a.get("filter_width", 1)]
    elif op in _REDUCERS or op in ("ARG_MAX", "ARG_MIN"):
        axes = value(ins[1]) if len(ins) > 1 else None
        x = shp(0)
        if axes is not None:
            rank = len(x)
            a["axes"] = sorted(int(ax) + rank if ax < 0 else int(ax) for ax in axes)
