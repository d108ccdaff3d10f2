"""Fit a target's profile from the store and save it where `predict` finds it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import NoProfileError
from ..metrics import accuracy
from ..records import Target
from ..store import Store
from .dataset import TargetDataset, build_dataset
from .labels import DEFAULT_LATENCY_STATISTIC, DESCRIPTIONS
from .model import LatencyPredictor
from .profile import Profile, new_card
from .registry import user_profile_path

MIN_MODELS = 5


def fit_dataset(ds: TargetDataset, **params) -> LatencyPredictor:
    if len(ds.models) < MIN_MODELS:
        raise NoProfileError(
            f"only {len(ds.models)} measured models for {ds.target.key}; at least {MIN_MODELS} are needed",
            f"run `edgecost profile --device {ds.target.device}` for a few minutes",
        )
    return LatencyPredictor(**params).fit(ds.models)


def train_profile(store: Store, target: Target, statistic: str = DEFAULT_LATENCY_STATISTIC, **params) -> Profile:
    """Fit ``target``'s profile on its stored measurements, labelled by ``statistic`` (``labels``)."""
    ds = build_dataset(store, target, statistic=statistic)
    predictor = fit_dataset(ds, **params)
    y = np.array([m.latency_ms for m in ds.models])
    cv = accuracy(y, predictor.oof_predictions_ms_, predictor.oof_low_ms_, predictor.oof_high_ms_)
    networks = _network_accuracy(ds, predictor, y)
    card = new_card(
        target,
        device_facts=store.device_facts(target.device) or {},
        runtime_version=ds.runtime_version,
        agent_version=ds.agent_version,
        latency_statistic={"name": ds.statistic, "what": DESCRIPTIONS[ds.statistic], "chosen": ds.statistic_choice},
        training={
            "n_models": len(ds.models),
            "n_kernels": predictor.n_kernels_,
            "kernel_times_measured": predictor.kernel_times_measured_,
            "families": ds.families,
            "device_seconds": round(ds.device_seconds, 1),
            "skipped": ds.skipped,
            "kernel_leaf_size": predictor.leaf_size_record(),
        },
        accuracy={"protocol": f"{predictor.folds}-fold cross-validation over the training models", **cv,
                  **({"networks": networks} if networks else {})},
        measurement_consistency=_consistency(ds),
        execution=ds.execution.to_dict(),
        calibration=predictor.calibration_,
    )
    return Profile(card=card, execution=ds.execution, predictor=predictor)


def _network_accuracy(ds: TargetDataset, predictor: LatencyPredictor, y: np.ndarray) -> dict | None:
    """The cross-validated accuracy over whole networks only, leaving out the campaign's
    single-operator probes (a kernel family's models, which a user rarely predicts and which
    are the hardest to get within ±10 %: a few µs of runtime overhead is a large share of
    them).  None when the models are all networks or too few are."""
    from ..evaluate import kernel_family_names

    kernel_families = kernel_family_names()
    keep = np.array([m.family not in kernel_families for m in ds.models])
    if keep.all() or keep.sum() < MIN_MODELS:
        return None
    acc = accuracy(y[keep], predictor.oof_predictions_ms_[keep], predictor.oof_low_ms_[keep],
                   predictor.oof_high_ms_[keep])
    return {k: acc[k] for k in ("n", "within_5pct", "within_10pct", "mape", "spearman", "interval_coverage")
            if k in acc}


def _consistency(ds: TargetDataset) -> dict | None:
    from ..evaluate import consistency_warning, kernel_time_consistency

    c = kernel_time_consistency(ds.models)
    if c is None:
        return None
    out = {"what": "share of networks whose measured per-kernel times, mapped per kernel category, land within "
                   "±10 % of their measured latency (5-fold)",
           "n_networks": c["n"], "within_10pct": c["within_10pct"], "within_5pct": c["within_5pct"]}
    warning = consistency_warning(c)
    if warning:
        out["warning"] = warning
    return out


def train_and_save(store: Store, target: Target, path: str | Path | None = None,
                   statistic: str = DEFAULT_LATENCY_STATISTIC, **params) -> Path:
    profile = train_profile(store, target, statistic, **params)
    return profile.save(path or user_profile_path(target))
