"""What a profile learns as latency: the fastest run (default) or the median, and old data."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from edgecost.errors import UsageError
from edgecost.predictor.labels import (
    DEFAULT_LATENCY_STATISTIC,
    check_statistic,
    combine_visits,
    model_latency_ms,
    node_time_us,
)
from edgecost.records import LatencyStats


def visit(median_ms: float, min_ms: float | None, p10_ms: float | None = None):
    stats = LatencyStats(n=10, median_ms=median_ms, p10_ms=p10_ms or median_ms, p90_ms=median_ms, mean_ms=median_ms,
                         std_ms=0.0, min_ms=min_ms, max_ms=median_ms)
    return SimpleNamespace(median_ms=median_ms, measurement=SimpleNamespace(stats=stats))


def test_the_fastest_run_is_the_default_label():
    visits = [visit(10.0, 9.0), visit(14.0, 8.5), visit(11.0, 10.0)]
    assert DEFAULT_LATENCY_STATISTIC == "min"
    assert model_latency_ms(visits, "min") == 8.5
    assert model_latency_ms(visits, "median") == 11.0


def test_a_visit_without_a_fastest_run_counts_by_its_median():
    assert model_latency_ms([visit(10.0, None), visit(12.0, 11.0)], "min") == 10.0
    assert model_latency_ms([SimpleNamespace(median_ms=7.0, measurement=None)], "min") == 7.0


def test_node_times_fall_back_to_the_median_for_profiles_of_older_agents():
    assert node_time_us({"median_us": 20.0, "min_us": 15.0}, "min") == 15.0
    assert node_time_us({"median_us": 20.0, "min_us": 15.0}, "median") == 20.0
    assert node_time_us({"median_us": 20.0}, "min") == 20.0  # agent 0.1.0 wrote no min_us


def test_kernel_times_combine_over_visits():
    assert combine_visits([5.0, None, 4.0, 6.0], "min") == 4.0
    assert combine_visits([5.0, None, 4.0, 6.0], "median") == 5.0
    assert combine_visits([None, None], "min") is None


def test_an_unknown_statistic_says_which_exist():
    with pytest.raises(UsageError) as e:
        check_statistic("mean")
    assert "mean" in str(e.value) and "min, p10, median" in (e.value.hint or "")


def test_the_low_percentile_label_is_the_fastest_visit_percentile_and_kernels_keep_their_fastest_run():
    visits = [visit(10.0, 8.0, 9.0), visit(14.0, 8.5, 8.8), visit(11.0, 7.0, 10.0)]
    assert model_latency_ms(visits, "p10") == 8.8  # not the one lucky 7.0 run
    assert model_latency_ms([SimpleNamespace(median_ms=7.0, measurement=None)], "p10") == 7.0
    assert node_time_us({"median_us": 20.0, "min_us": 15.0}, "p10") == 15.0
    assert combine_visits([5.0, None, 4.0], "p10") == 4.0
