"""Synthetic training models with exact per-kernel times, for predictor and benchmark tests."""

from __future__ import annotations


def conv_chain(key: str, shapes, noise: float = 1.0, family: str = ""):
    """A chain of 3x3 convolutions, one per (channels, side) of ``shapes``, whose kernels take
    FLOPs / 20 GFLOP/s + 2 µs and whose latency is their sum times ``noise``."""
    from edgecost.graph.cost import with_cost
    from edgecost.predictor.model import TrainingModel
    from edgecost.records import KernelRecord

    kernels, times = [], []
    for j, (c, side) in enumerate(shapes):
        k = with_cost(KernelRecord(name=f"conv{j}", op_type="Conv", input_shapes=((1, c, side, side), (c, c, 3, 3)),
                                   output_shapes=((1, c, side, side),), attrs={"kernel_shape": [3, 3], "group": 1}))
        kernels.append(k)
        times.append(k.flops / 2e4 + 2.0)
    return TrainingModel(key=key, kernels=kernels, latency_ms=sum(times) / 1000.0 * noise,
                         kernel_times_us=times, family=family)
