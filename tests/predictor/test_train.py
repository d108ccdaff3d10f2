"""Fitting a target's profile from the store: the latency statistic ``auto`` chooses by fit."""

from __future__ import annotations

import numpy as np
import pytest

from edgecost.predictor.dataset import build_dataset
from edgecost.predictor.labels import LATENCY_STATISTICS, describe_choice
from edgecost.predictor.train import AUTO_MIN_NETWORKS, _oof_error, fit_by_statistic, fit_dataset, train_profile
from edgecost.records import Target
from edgecost.store import Store

PARAMS = {"n_estimators": 60, "folds": 3, "min_child_samples": 20}


@pytest.fixture(scope="module")
def store(profiled):
    return Store(profiled.home / "edgecost.sqlite")


def test_auto_keeps_the_statistic_whose_profile_predicts_best_out_of_fold(store):
    target = Target("local", "onnxruntime", 1)
    ds, predictor = fit_by_statistic(store, target, "auto", **PARAMS)
    choice = ds.statistic_choice
    errors = choice["oof_mean_abs_log_error"]
    assert set(errors) == set(LATENCY_STATISTICS) and all(e > 0 for e in errors.values())
    assert ds.statistic == min(errors, key=errors.get) and choice["rule"] == "fit"
    # The errors are those of a fit by each statistic on its own labels, as `train --statistic` makes it.
    for stat in LATENCY_STATISTICS:
        other = build_dataset(store, target, statistic=stat)
        assert _oof_error(other, fit_dataset(other, **PARAMS))[0] == pytest.approx(errors[stat])
    # The kept predictor is the chosen statistic's fit, labels and all.
    again = fit_dataset(build_dataset(store, target, statistic=ds.statistic), **PARAMS)
    kernels = [m.kernels for m in ds.models[:5]]
    assert np.allclose(predictor.predict_many(kernels), again.predict_many(kernels))
    assert [m.latency_ms for m in ds.models] == [m.latency_ms for m in build_dataset(store, target,
                                                                                      statistic=ds.statistic).models]
    # What the revisits alone would have said is kept beside it, and the one-line report names both.
    revisits = choice["revisits"]
    assert revisits["would_choose"] == build_dataset(store, target).statistic
    assert "revisited_models" in revisits
    text = describe_choice(choice)
    assert text.startswith(" (auto: its profile's cross-validated predictions err least")
    assert "out-of-fold mean |log error| min " in text


def test_the_error_is_over_whole_networks_when_there_are_enough_else_over_every_model(store):
    target = Target("local", "onnxruntime", 1)
    ds = build_dataset(store, target, statistic="min")
    predictor = fit_dataset(ds, **PARAMS)
    error, over = _oof_error(ds, predictor)
    from edgecost.evaluate import kernel_family_names

    networks = sum(m.family not in kernel_family_names() for m in ds.models)
    y = {m.key: m.latency_ms for m in ds.models}
    log_error = np.abs(np.log(predictor.oof_predictions_ms_ / np.array([y[k] for k in predictor.oof_keys_])))
    if networks >= AUTO_MIN_NETWORKS:
        assert over == f"{networks} networks" and error != pytest.approx(float(log_error.mean()))
    else:
        assert over == f"{len(ds.models)} models" and error == pytest.approx(float(log_error.mean()))


def test_a_statistic_asked_for_is_fitted_alone_and_recorded_as_asked(store):
    target = Target("local", "onnxruntime", 1)
    ds, _ = fit_by_statistic(store, target, "median", **PARAMS)
    assert ds.statistic == "median" and ds.statistic_choice == {"requested": "median"}
    assert describe_choice(ds.statistic_choice) == ""
    card = train_profile(store, target, "p10", **PARAMS).card["latency_statistic"]
    assert card["name"] == "p10" and card["chosen"] == {"requested": "p10"}
