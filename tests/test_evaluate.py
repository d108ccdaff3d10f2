"""`edgecost evaluate`: the standard metrics under both protocols, and the scatter plot."""

from __future__ import annotations

import numpy as np
import pytest

from edgecost.errors import NoProfileError
from edgecost.evaluate import evaluate_target, format_report
from edgecost.metrics import accuracy, kendall_tau, spearman
from edgecost.records import Target
from edgecost.store import Store


def test_metrics_on_known_values():
    y = np.array([1.0, 2.0, 3.0, 4.0])
    p = np.array([1.04, 2.3, 2.9, 4.0])
    m = accuracy(y, p, p * 0.9, p * 1.1)
    assert m["within_5pct"] == 0.75 and m["within_10pct"] == 0.75
    assert m["mape"] == pytest.approx((4 + 15 + 10 / 3 + 0) / 4, rel=1e-9)
    assert m["spearman"] == 1.0 and m["kendall_tau"] == 1.0
    assert spearman(y, y[::-1]) == -1.0 and kendall_tau(y, y[::-1]) == -1.0
    assert m["interval_coverage"] == 0.75


def test_evaluate_protocols_and_plot(profiled, monkeypatch, tmp_path):
    monkeypatch.setenv("EDGECOST_HOME", str(profiled.home))
    png = tmp_path / "scatter.png"
    params = {"n_estimators": 40, "folds": 3}
    report = evaluate_target(Target("local"), protocol="all", seeds=2, plot_path=png, params=params)
    r = report["random"]
    assert len(r["runs"]) == 2 and 0.0 <= r["summary"]["within_10pct"]["mean"] <= 1.0
    assert set(r["summary"]) >= {"within_5pct", "within_10pct", "mape", "rmspe", "rmse_ms", "spearman",
                                 "kendall_tau", "interval_coverage"}
    assert report["family"]["families"], "at least one network family left out"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "consistency" in report  # None here: too few networks for a 5-fold fit
    text = format_report(report)
    assert "random 80/20" in text and "left out" in text


def test_evaluate_needs_data(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGECOST_HOME", str(tmp_path))
    with pytest.raises(NoProfileError):
        evaluate_target(Target("local"), store=Store())


def _nets(rng, n: int, noise: float):
    """Networks whose unprofiled latency is a linear map of their profiled kernel times
    (convolutions at 0.8x, 2 µs less a kernel, 30 µs a run), times log-normal noise."""
    from edgecost.predictor.model import TrainingModel
    from edgecost.records import KernelRecord

    out = []
    for i in range(n):
        kernels, times = [], []
        for j in range(int(rng.integers(5, 30))):
            op = "Conv" if j % 3 else "Relu"
            c = int(rng.choice([8, 16, 32]))
            kernels.append(KernelRecord(name=f"k{j}", op_type=op, input_shapes=((1, c, 8, 8),),
                                        output_shapes=((1, c, 8, 8),),
                                        attrs={"kernel_shape": [1, 1]} if op == "Conv" else {}))
            times.append(float(rng.uniform(5, 200)))
        latency_us = sum(0.8 * t - 2.0 for t in times) + 30.0
        out.append(TrainingModel(key=f"m{i}", kernels=kernels, kernel_times_us=times, family="net",
                                 latency_ms=latency_us / 1000.0 * float(np.exp(rng.normal(0, noise)))))
    return out


def test_measurement_consistency_tells_a_quiet_campaign_from_a_noisy_one():
    from edgecost.evaluate import consistency_warning, kernel_time_consistency

    quiet = kernel_time_consistency(_nets(np.random.default_rng(0), 120, 0.0), kernel_families=set())
    assert quiet["within_10pct"] == 1.0 and quiet["median_ape"] < 0.5 and quiet["n"] == 120
    assert consistency_warning(quiet) is None
    noisy = kernel_time_consistency(_nets(np.random.default_rng(0), 120, 0.15), kernel_families=set())
    assert 0.3 < noisy["within_10pct"] < 0.8
    warning = consistency_warning(noisy)
    assert warning and "idle" in warning and f"{noisy['within_10pct'] * 100:.0f} %" in warning
    assert kernel_time_consistency(_nets(np.random.default_rng(0), 12, 0.0), kernel_families=set()) is None
    probes = _nets(np.random.default_rng(0), 120, 0.0)
    assert kernel_time_consistency(probes, kernel_families={"net"}) is None  # single-kernel probes are not networks


def test_the_probe_families_are_known_without_the_zoo_and_match_it():
    """Cards and `edgecost evaluate` tell probes from networks where torch is not installed."""
    from edgecost import zoo
    from edgecost.evaluate import KERNEL_FAMILIES, kernel_family_names

    assert kernel_family_names() == {name for name, f in zoo.FAMILIES.items() if f.kind == "kernel"}
    assert "resnet" not in KERNEL_FAMILIES and "conv" in KERNEL_FAMILIES
