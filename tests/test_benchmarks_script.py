"""scripts/benchmarks.py's diagnostics on synthetic data where the answer is known."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from edgecost.predictor.model import TrainingModel
from edgecost.records import KernelRecord

_SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "benchmarks.py"


def _benchmarks():
    spec = importlib.util.spec_from_file_location("benchmarks_script", _SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _nets(rng, n: int, noise: float) -> list[TrainingModel]:
    out = []
    for i in range(n):
        kernels, times = [], []
        for j in range(int(rng.integers(5, 30))):
            op = "Conv" if j % 3 else "Relu"
            c = int(rng.choice([8, 16, 32]))
            kernels.append(KernelRecord(name=f"k{j}", op_type=op, input_shapes=((1, c, 8, 8),),
                                        output_shapes=((1, c, 8, 8),), attrs={"kernel_shape": [1, 1]} if op == "Conv" else {}))
            times.append(float(rng.uniform(5, 200)))
        # unprofiled run: convolutions at 0.8x their profiled time, 2 µs less per kernel, 30 µs per run
        latency_us = sum(0.8 * t - 2.0 for t in times) + 30.0
        out.append(TrainingModel(key=f"m{i}", kernels=kernels, kernel_times_us=times, family="net",
                                 latency_ms=latency_us / 1000.0 * float(np.exp(rng.normal(0, noise)))))
    return out


def test_per_kernel_reference_is_exact_when_latency_is_a_linear_map_of_kernel_times():
    b = _benchmarks()
    exact = b.kernel_sum_reference(_nets(np.random.default_rng(0), 120, 0.0), kernels=set())
    assert exact["within_10pct"] == 1.0 and exact["median_ape"] < 0.5
    noisy = b.kernel_sum_reference(_nets(np.random.default_rng(0), 120, 0.15), kernels=set())
    assert 0.3 < noisy["within_10pct"] < 0.8
    assert b.kernel_sum_reference(_nets(np.random.default_rng(0), 12, 0.0), kernels=set()) is None  # too few
