"""scripts/benchmarks.py: which notes a run replaces; random splits fitted in parallel."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.conv_models import conv_chain

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class SimpleModel:
    key: str
    latency_ms: float


def _script():
    spec = importlib.util.spec_from_file_location("benchmarks_script", ROOT / "scripts" / "benchmarks.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its worker processes find its functions by module name, as under __main__
    spec.loader.exec_module(mod)
    return mod


def test_a_merge_replaces_generated_notes_and_keeps_hand_written_ones_that_quote_its_commands():
    B = _script()
    generated = ("Targets ort1 re-run on 2026-12-07 with `python scripts/benchmarks.py --merge --targets ort1`; "
                 "kept as they were: ort2 (2026-12-06).")
    edited = ("Target ort2 re-run on 2026-12-06 with `python scripts/benchmarks.py --merge --targets ort2`; "
              "tflite1 kept as it was.")
    hand = ("2026-12-07, day: **ort1 from a fresh campaign** (`python scripts/benchmarks.py --merge --skip agreement "
            "--targets ort1`): random split 95.6 %.")
    speed = ("Prediction speed of ort1,tflite1 re-timed on 2026-12-07 with `python scripts/benchmarks.py "
             "--refresh-speed --targets ort1,tflite1` (same campaigns and profiles).")
    assert B._superseded(generated, ["tflite1"]) and B._superseded(edited, ["tflite1"])
    assert not B._superseded(hand, ["ort1"])  # a finding, not the script's own line
    assert B._superseded(speed, ["ort1", "tflite1", "ort2"]) and not B._superseded(speed, ["ort1"])
    assert not B._superseded("A note on --refresh-speed --targets ort1` and what it showed.", ["ort1"])


def test_a_rescore_note_is_replaced_only_by_a_rescore_of_the_same_targets():
    B = _script()
    note = ("Figures of ort1,tflite1 re-scored on 2026-12-07 with `python scripts/benchmarks.py "
            "--rescore --targets ort1,tflite1` (same campaigns and realistic measurements).")
    assert note.startswith(B._RESCORE_NOTE)
    assert B._superseded(note, ["ort1", "tflite1"]) and not B._superseded(note, ["ort1"])


def _conv_nets(n: int):
    """Small conv nets with exact per-kernel times (20 GFLOP/s + 2 µs) and 3 % noise on the latency."""
    import numpy as np

    rng = np.random.default_rng(5)
    models = []
    for i in range(n):
        shapes = [(int(rng.choice([16, 32, 64])), int(rng.choice([8, 16, 32]))) for _ in range(int(rng.integers(16, 30)))]
        models.append(conv_chain(f"m{i}", shapes, float(np.exp(rng.normal(0, 0.03))), "convnet"))
    return models


def _parallel_matches_serial() -> None:
    """Splits and families fitted on two processes score as on one (run in a fresh interpreter)."""
    B = _script()
    assert "jax" not in sys.modules  # else the script runs the calls in one process and this compares nothing
    models = _conv_nets(48)
    params = {"n_estimators": 30}
    serial = B.split_metrics(models, set(), seeds=2, params=params, workers=1)
    parallel = B.split_metrics(models, set(), seeds=2, params=params, workers=2)
    assert serial["seeds"] == parallel["seeds"] == 2
    assert serial["architectures"]["n"]["mean"] == 9
    for key in ("within_10pct", "within_5pct", "mape", "spearman"):
        assert parallel["architectures"][key] == serial["architectures"][key]
    assert serial["architectures"]["within_10pct"]["mean"] > 0.5  # a learnable set: the splits really scored
    assert B.interval_summary(serial)["architectures"]["coverage"] == serial["architectures"]["interval_coverage"]["mean"]
    for i, m in enumerate(models):
        m.family = ("wide", "narrow", "deep")[i % 3]
    serial = B.family_out(models, set(), params=params, workers=1)
    parallel = B.family_out(models, set(), params=params, workers=2)
    assert sorted(serial) == ["deep", "narrow", "wide"]
    assert all(parallel[f]["within_10pct"] == serial[f]["within_10pct"] for f in serial)


def test_random_splits_and_families_fitted_in_parallel_score_as_one_process_does():
    # A fresh interpreter: this test process may hold JAX's threads (LiteRT tests), and the
    # script does not fork under them.
    code = ("import importlib.util, sys; sys.path.insert(0, 'tests'); "
            "spec = importlib.util.spec_from_file_location('bench_test', sys.argv[1]); "
            "m = importlib.util.module_from_spec(spec); sys.modules['bench_test'] = m; spec.loader.exec_module(m); "
            "m._parallel_matches_serial()")
    proc = subprocess.run([sys.executable, "-c", code, str(Path(__file__).resolve())], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_no_fork_where_jax_is_loaded(monkeypatch):
    B = _script()
    monkeypatch.setitem(sys.modules, "jax", object())
    assert B._in_parallel(os.getpid, [(), ()], workers=2) == [os.getpid(), os.getpid()]


def test_the_regressor_comparison_scores_both_regressors_on_the_first_splits_networks():
    B = _script()
    models = _conv_nets(40)
    params = {"n_estimators": 30, "model_correction": False}
    out = B.regressor_comparison("test", models, set(), params)
    assert sorted(out) == ["gbm", "mlp"]
    first = B._split_seed(models, set(), 0, dict(params, regressor="gbm"))[0]
    assert out["gbm"]["n"] == first["n"] == 8 and out["gbm"]["within_10pct"] == first["within_10pct"]
    assert all(v["fit_s"] > 0 and 0 <= v["within_10pct"] <= 1 for v in out.values())


def test_realistic_models_are_also_scored_at_the_campaign_speed_their_anchors_show():
    from types import SimpleNamespace

    B = _script()
    B.STATISTIC = "median"
    ds = SimpleNamespace(models=[SimpleNamespace(key=f"a{i}", latency_ms=float(i + 1)) for i in range(4)])
    # The host runs 10 % slow now: the anchors' rounds are 1.1x their campaign labels, one wild.
    anchors = {f"a{i}": {"round_medians_ms": [1.1 * (i + 1)] * 3, "round_min_ms": [(i + 1)] * 3} for i in range(4)}
    anchors["a3"]["round_medians_ms"][0] = 9.0
    real = {"models": [{"model": "r1", "measured_ms": 22.0, "predicted_ms": 20.0},
                       {"model": "r2", "measured_ms": 11.0, "predicted_ms": 12.0}], "anchors": anchors}
    out = B.at_campaign_speed(real, ds, "median")
    assert out["host_speed"]["factor"] == pytest.approx(1.1) and out["host_speed"]["anchors"] == 4
    assert out["errors_at_campaign_speed_pct"] == pytest.approx([0.0, 20.0])
    assert out["metrics_at_campaign_speed"]["within_10pct"] == pytest.approx(0.5)
    assert B.at_campaign_speed(real, ds, "min")["host_speed"]["factor"] == pytest.approx(1.0)
    assert B.at_campaign_speed({**real, "anchors": {"gone": anchors["a0"]}}, ds, "median") == {}


def test_the_curve_labels_its_training_models_by_the_drift_known_at_each_cut():
    import math

    import numpy as np

    B = _script()
    B.STATISTIC = "median"
    rng = np.random.default_rng(0)

    def speed(minute):
        return math.exp(0.08 * math.sin(2 * math.pi * minute / 10.0))

    visits = {}
    for m in range(80):
        t = rng.uniform(0, 14)
        visits[f"m{m}"] = [(t + dt, {"median": (m + 1) * speed(t + dt)}) for dt in (0.0, 1.0)]
    factors = B._drift_so_far(visits, 15.0)
    assert factors and all(k[0] in visits for k in factors)
    model = SimpleModel(key="m3", latency_ms=0.0)
    relabelled = B._relabelled(model, visits["m3"], 15.0, factors)
    raw = np.median([v["median"] for _, v in visits["m3"]])
    assert relabelled.latency_ms != pytest.approx(raw)
    assert relabelled.latency_ms == pytest.approx(4.0, rel=0.04)  # at the average speed, near the model's own 4 ms
    early = min(t for t, _ in visits["m3"])
    assert B._relabelled(model, visits["m3"], early, {}).latency_ms == pytest.approx(visits["m3"][0][1]["median"])
    steady = {k: [(t, {"median": float(i + 1)}) for t, _ in v] for i, (k, v) in enumerate(visits.items())}
    assert B._drift_so_far(steady, 15.0) == {}

