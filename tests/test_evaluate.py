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
    text = format_report(report)
    assert "random 80/20" in text and "left out" in text


def test_evaluate_needs_data(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGECOST_HOME", str(tmp_path))
    with pytest.raises(NoProfileError):
        evaluate_target(Target("local"), store=Store())
