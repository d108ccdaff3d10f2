"""Bench settings, and turning an agent bench result into a stored measurement record.

The agent's timing follows TFLite's benchmark_model: warm-up runs, then timed runs until
both ``num_runs`` and ``min_secs`` are met, stopping at ``max_secs``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import UsageError
from .records import LatencyStats, Measurement, ModelGraph, Target
from .store import utc_now

_FORMAT_RUNTIMES = {"onnx": ("onnxruntime",), "tflite": ("tflite",), "torch": ("torch",)}


@dataclass(frozen=True)
class BenchSettings:
    """How long and how often to run a model (the agent's ``bench`` arguments)."""

    warmup_runs: int = 3
    warmup_min_secs: float = 0.1
    num_runs: int = 50
    min_secs: float = 1.0
    max_secs: float = 150.0
    profile_runs: int = 0  # ORT per-node profile runs (0 = none)
    ort_optimization_level: str = "all"
    xnnpack: bool = True
    return_samples: bool = False

    def __post_init__(self) -> None:
        if self.num_runs < 1 or self.warmup_runs < 0 or self.min_secs < 0 or self.max_secs <= 0:
            raise UsageError("bench settings must be positive (num_runs >= 1, max_secs > 0)",
                             "check --num-runs, --min-secs and --max-secs")
        if self.ort_optimization_level not in ("disable", "basic", "extended", "all"):
            raise UsageError(f"unknown ORT optimization level {self.ort_optimization_level!r}",
                             "use disable, basic, extended or all")

    def to_args(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


#: What a profiling campaign uses per model: short, repeated, with a per-node profile.
CAMPAIGN_BENCH = BenchSettings(warmup_runs=2, warmup_min_secs=0.05, num_runs=15, min_secs=0.4,
                               max_secs=8.0, profile_runs=5)

#: What a LiteRT op slice (one operator cut out of a campaign model) is timed with: slices
#: are many and small, and the kernel model averages their noise.
SLICE_BENCH = BenchSettings(warmup_runs=1, warmup_min_secs=0.0, num_runs=10, min_secs=0.03, max_secs=2.0)


def model_format(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix in (".pt", ".pt2"):
        return "torch"
    return "tflite" if suffix == ".tflite" else "onnx"


def check_runtime_accepts(fmt: str, target: Target, path: str | Path) -> None:
    allowed = _FORMAT_RUNTIMES.get(fmt, ())
    if target.runtime not in allowed:
        want = {"onnx": "onnxruntime", "tflite": "tflite", "torch": "torch"}[fmt]
        raise UsageError(
            f"{Path(path).name} is a {fmt} model and cannot run on runtime {target.runtime!r}",
            f"use --runtime {want}, or convert the model for {target.runtime}",
        )


def measurement_from_result(
    result: dict[str, Any], model_hash: str, target: Target, device_facts: dict[str, Any] | None = None
) -> Measurement:
    """Turn the agent's bench result into a typed, provenance-carrying record."""
    provenance = {
        key: result.get(key)
        for key in (
            "runtime_module", "provider", "providers", "ort_optimization_level", "xnnpack", "inputs",
            "environment", "warmup", "total_secs",
        )
        if result.get(key) is not None
    }
    if device_facts:
        cpu = device_facts.get("cpu") or {}
        provenance["device"] = {
            "hostname": device_facts.get("hostname"),
            "cpu_model": cpu.get("model_name"),
            "logical_cores": cpu.get("logical_cores"),
            "governor": cpu.get("governor"),
            "machine": (device_facts.get("os") or {}).get("machine"),
            "board": (device_facts.get("board") or {}).get("model"),
            "jetson_power_mode": (device_facts.get("jetson") or {}).get("power_mode"),
        }
    return Measurement(
        model_hash=model_hash,
        target=target,
        stats=LatencyStats.from_dict(result["stats"]),
        runtime_version=str(result.get("runtime_version", "")),
        agent_version=str(result.get("agent_version", "")),
        measured_at=utc_now(),
        init_ms=result.get("init_ms"),
        first_inference_ms=result.get("first_inference_ms"),
        warnings=tuple(result.get("warnings") or ()),
        provenance=provenance,
        node_profile=tuple(result.get("node_profile") or ()),
        optimized_nodes=tuple(result.get("optimized_nodes") or ()),
    )


def bench_args(target: Target, graph: ModelGraph, settings: BenchSettings) -> dict[str, Any]:
    args = settings.to_args()
    args.update(
        runtime=target.runtime,
        threads=target.threads,
        precision=target.precision,
        input_shapes={k: list(v) for k, v in graph.inputs.items()},
    )
    if target.runtime != "onnxruntime":
        args["profile_runs"] = 0
    return args
