"""Typed records that flow through edgecost, with units in their field names.

Records that are stored or sent over the wire carry ``schema_version`` and load
from older versions through ``from_dict``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from .errors import InvalidTargetError

SCHEMA_VERSION = 1

RUNTIMES = ("onnxruntime", "tflite", "torch")
PRECISIONS = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class Target:
    """A device plus how a model runs there. Measurements and profiles are per target."""

    device: str
    runtime: str = "onnxruntime"
    threads: int = 1
    precision: str = "fp32"
    batch: int = 1

    def __post_init__(self) -> None:
        if self.runtime not in RUNTIMES:
            raise InvalidTargetError(
                f"unknown runtime {self.runtime!r}", f"use one of: {', '.join(RUNTIMES)}"
            )
        if self.precision not in PRECISIONS:
            raise InvalidTargetError(
                f"unknown precision {self.precision!r}", f"use one of: {', '.join(PRECISIONS)}"
            )
        for name in ("threads", "batch"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise InvalidTargetError(
                    f"--{name} must be a positive whole number, got {value!r}",
                    f"pass e.g. --{name} 1",
                )

    @property
    def key(self) -> str:
        """A stable string naming the target, e.g. ``local/onnxruntime/t1/fp32/b1``."""
        return f"{self.device}/{self.runtime}/t{self.threads}/{self.precision}/b{self.batch}"

    @classmethod
    def from_key(cls, key: str) -> "Target":
        try:
            device, runtime, threads, precision, batch = key.split("/")
            return cls(device, runtime, int(threads[1:]), precision, int(batch[1:]))
        except ValueError as exc:
            raise InvalidTargetError(f"not a target key: {key!r}", "expected DEVICE/RUNTIME/tN/PRECISION/bN") from exc

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class LatencyStats:
    """Statistics of the timed runs of one measurement, in milliseconds."""

    n: int
    median_ms: float
    p10_ms: float
    p90_ms: float
    mean_ms: float
    std_ms: float
    min_ms: float
    max_ms: float
    p95_ms: float | None = None
    p99_ms: float | None = None

    @property
    def cv(self) -> float:
        """Spread as std / median (the agent warns at >= 0.10)."""
        return self.std_ms / self.median_ms if self.median_ms > 0 else math.inf

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "LatencyStats":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Measurement:
    """One measured model on one target, with its provenance."""

    model_hash: str
    target: Target
    stats: LatencyStats
    runtime_version: str
    agent_version: str
    measured_at: str  # ISO 8601, UTC
    init_ms: float | None = None
    first_inference_ms: float | None = None
    warnings: tuple[str, ...] = ()
    provenance: dict[str, Any] = field(default_factory=dict)  # governor, cpu, power mode, ...
    node_profile: tuple[dict[str, Any], ...] = ()  # per-kernel times: ORT's profile, or LiteRT op slices
    optimized_nodes: tuple[dict[str, Any], ...] = ()  # ORT graph after its optimizations
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["target"] = self.target.to_dict()
        d["warnings"] = list(self.warnings)
        d["node_profile"] = list(self.node_profile)
        d["optimized_nodes"] = list(self.optimized_nodes)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Measurement":
        return cls(
            model_hash=d["model_hash"],
            target=Target(**d["target"]),
            stats=LatencyStats.from_dict(d["stats"]),
            runtime_version=d.get("runtime_version", ""),
            agent_version=d.get("agent_version", ""),
            measured_at=d.get("measured_at", ""),
            init_ms=d.get("init_ms"),
            first_inference_ms=d.get("first_inference_ms"),
            warnings=tuple(d.get("warnings", ())),
            provenance=dict(d.get("provenance", {})),
            node_profile=tuple(d.get("node_profile", ())),
            optimized_nodes=tuple(d.get("optimized_nodes", ())),
            schema_version=d.get("schema_version", 1),
        )


@dataclass(frozen=True)
class KernelRecord:
    """One node of a model graph (or one kernel a runtime executes), with its cost figures.

    Shapes are tuples of ints; ``attrs`` holds the op's attributes in plain Python
    values (``kernel_shape``, ``strides``, ``pads``, ``dilations``, ``group``,
    ``activation`` for fused kernels, ...).
    """

    name: str
    op_type: str
    domain: str = ""
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    input_shapes: tuple[tuple[int, ...], ...] = ()
    output_shapes: tuple[tuple[int, ...], ...] = ()
    dtype: str = "float32"
    attrs: dict[str, Any] = field(default_factory=dict)
    flops: int = 0
    macs: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    params: int = 0

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["inputs"] = list(self.inputs)
        d["outputs"] = list(self.outputs)
        d["input_shapes"] = [list(s) for s in self.input_shapes]
        d["output_shapes"] = [list(s) for s in self.output_shapes]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "KernelRecord":
        return cls(
            name=d["name"],
            op_type=d["op_type"],
            domain=d.get("domain", ""),
            inputs=tuple(d.get("inputs", ())),
            outputs=tuple(d.get("outputs", ())),
            input_shapes=tuple(tuple(s) for s in d.get("input_shapes", ())),
            output_shapes=tuple(tuple(s) for s in d.get("output_shapes", ())),
            dtype=d.get("dtype", "float32"),
            attrs=dict(d.get("attrs", {})),
            flops=int(d.get("flops", 0)),
            macs=int(d.get("macs", 0)),
            bytes_read=int(d.get("bytes_read", 0)),
            bytes_written=int(d.get("bytes_written", 0)),
            params=int(d.get("params", 0)),
        )


@dataclass(frozen=True)
class ModelGraph:
    """A model as a list of kernel records, plus what identifies it."""

    content_hash: str  # sha256 of the model file's bytes
    format: str  # "onnx" | "tflite"
    kernels: tuple[KernelRecord, ...]
    inputs: dict[str, tuple[int, ...]]
    outputs: dict[str, tuple[int, ...]]
    source: str = ""  # path or zoo spec it came from
    attrs: dict[str, Any] = field(default_factory=dict)  # graph-level facts: opset, producer, ORT level, ...

    @property
    def flops(self) -> int:
        return sum(k.flops for k in self.kernels)

    @property
    def params(self) -> int:
        return sum(k.params for k in self.kernels)

    def summary(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "n_kernels": len(self.kernels),
            "flops": self.flops,
            "params": self.params,
            "inputs": {k: list(v) for k, v in self.inputs.items()},
            "outputs": {k: list(v) for k, v in self.outputs.items()},
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "content_hash": self.content_hash,
            "format": self.format,
            "source": self.source,
            "inputs": {k: list(v) for k, v in self.inputs.items()},
            "outputs": {k: list(v) for k, v in self.outputs.items()},
            "kernels": [k.to_dict() for k in self.kernels],
            "attrs": dict(self.attrs),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelGraph":
        return cls(
            content_hash=d["content_hash"],
            format=d["format"],
            source=d.get("source", ""),
            inputs={k: tuple(v) for k, v in d.get("inputs", {}).items()},
            outputs={k: tuple(v) for k, v in d.get("outputs", {}).items()},
            kernels=tuple(KernelRecord.from_dict(k) for k in d["kernels"]),
            attrs=dict(d.get("attrs", {})),
        )


@dataclass(frozen=True)
class KernelPrediction:
    name: str
    op_type: str
    latency_ms: float
    covers: tuple[str, ...] = ()  # names of the model's nodes this executed kernel runs

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "op_type": self.op_type, "latency_ms": self.latency_ms,
                "covers": list(self.covers)}


@dataclass(frozen=True)
class Prediction:
    """A predicted latency with an interval (``low_ms``..``high_ms``) and per-kernel breakdown."""

    model: str
    target: Target
    latency_ms: float
    low_ms: float
    high_ms: float
    kernels: tuple[KernelPrediction, ...] = ()
    energy_mj: float | None = None
    profile: str = ""  # which profile answered
    interval_coverage: float = 0.9
    latency_statistic: str = "median"  # what the profile learned as latency: "min" (fastest run) or "median"

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "device": self.target.device,
            "runtime": self.target.runtime,
            "threads": self.target.threads,
            "precision": self.target.precision,
            "batch": self.target.batch,
            "latency_ms": round(self.latency_ms, 6),
            "low_ms": round(self.low_ms, 6),
            "high_ms": round(self.high_ms, 6),
            "interval_coverage": self.interval_coverage,
            "latency_statistic": self.latency_statistic,
            "energy_mj": self.energy_mj,
            "profile": self.profile,
            "kernels": [k.to_dict() for k in self.kernels],
        }
