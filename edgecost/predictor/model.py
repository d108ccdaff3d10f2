"""The latency predictor: per-kernel regression, summed, corrected end to end, with an interval.

``LatencyPredictor`` follows scikit-learn's conventions: hyper-parameters in ``__init__``,
``fit`` returns ``self``, learned state ends in ``_``.  It works on *executed* kernels (the
runtime's view after fusion), given as ``KernelRecord`` lists:

1. **Kernel model** — gradient-boosted trees on kernel features (``edgecost.features``)
   predicting log kernel time.  Trained on measured per-kernel times where the runtime
   reports them (ONNX Runtime's per-node profile); where it does not (LiteRT runs the
   whole graph inside XNNPACK), per-kernel times are inferred from whole-model times by
   backfitting: split each model's time over its kernels in proportion to the current
   predictions, refit, repeat.
2. **End-to-end correction** — ``latency = a·Σkernels + b·n_kernels + c``, fitted on
   out-of-fold kernel sums to minimise relative error, so the sum matches measured
   whole-model times (per-run and per-kernel dispatch overheads are what ``b``, ``c`` hold).
3. **Interval** — split-conformal quantiles of the out-of-fold log-ratio
   measured/predicted give ``low_ms``/``high_ms`` at the requested coverage.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..features import FEATURE_NAMES, feature_matrix
from ..graph.categories import kernel_category
from ..records import KernelRecord
from .trees import TreeEnsemble

_FLOOR_US = 0.05  # times below the clock's useful resolution are floored


@dataclass
class TrainingModel:
    """One measured model: its executed kernels, their measured times if known, its end-to-end time."""

    key: str  # model hash
    kernels: list[KernelRecord]
    latency_ms: float
    kernel_times_us: list[float | None] | None = None  # aligned with kernels; None entries: unmeasured
    family: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def has_kernel_times(self) -> bool:
        return self.kernel_times_us is not None and any(t is not None for t in self.kernel_times_us)


class LatencyPredictor:
    """Sum of per-kernel predictions, calibrated end to end, with a conformal interval."""

    def __init__(
        self,
        n_estimators: int = 500,
        learning_rate: float = 0.05,
        num_leaves: int = 31,
        max_depth: int = 10,
        min_child_samples: int = 3,
        folds: int = 5,
        backfit_rounds: int = 4,
        coverage: float = 0.9,
        seed: int = 0,
    ):
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.max_depth = max_depth
        self.min_child_samples = min_child_samples
        self.folds = folds
        self.backfit_rounds = backfit_rounds
        self.coverage = coverage
        self.seed = seed

    # -- fitting ---------------------------------------------------------------------

    def _tree_params(self) -> dict[str, Any]:
        return {"learning_rate": self.learning_rate, "num_leaves": self.num_leaves, "max_depth": self.max_depth,
                "min_data_in_leaf": self.min_child_samples}

    def _fit_kernels(self, X: np.ndarray, y_us: np.ndarray) -> TreeEnsemble:
        y = np.log(np.maximum(y_us, _FLOOR_US))
        return TreeEnsemble.fit(X, y, n_estimators=self.n_estimators, params=self._tree_params(), seed=self.seed)

    def _kernel_fit_backfit(self, blocks: list[np.ndarray], models: list[TrainingModel], seeds_us: list[np.ndarray],
                            overhead_ms: float) -> TreeEnsemble:
        """Kernel model from whole-model times only: iterate the split of each model's time."""
        X = np.vstack(blocks)
        split = [s.copy() for s in seeds_us]
        trees = None
        for _ in range(max(1, self.backfit_rounds)):
            trees = self._fit_kernels(X, np.concatenate(split))
            pred = np.exp(trees.predict(X))
            start = 0
            for i, (b, m) in enumerate(zip(blocks, models)):
                p = pred[start : start + len(b)]
                start += len(b)
                budget_us = max(m.latency_ms - overhead_ms, m.latency_ms * 0.2) * 1000.0
                split[i] = p * (budget_us / max(p.sum(), 1e-9))
        assert trees is not None
        return trees

    def _fit_kernel_model(self, models: list[TrainingModel], blocks: list[np.ndarray]) -> TreeEnsemble:
        measured = [m.has_kernel_times for m in models]
        if any(measured):
            rows, ys = [], []
            for m, b, ok in zip(models, blocks, measured):
                if not ok:
                    continue
                t = np.array([np.nan if v is None else v for v in m.kernel_times_us], float)
                keep = ~np.isnan(t)
                rows.append(b[keep])
                ys.append(t[keep])
            return self._fit_kernels(np.vstack(rows), np.concatenate(ys))
        # No per-kernel times: seed the split with FLOPs and bytes, overhead from the smallest models.
        overhead_ms = self._overhead_guess(models)
        seeds = []
        for m, b in zip(models, blocks):
            flops = np.exp2(b[:, FEATURE_NAMES.index("log2_flops")]) - 1
            byts = np.exp2(b[:, FEATURE_NAMES.index("log2_bytes_read")]) - 1 + \
                np.exp2(b[:, FEATURE_NAMES.index("log2_bytes_written")]) - 1
            w = flops / 20e3 + byts / 5e3 + 1.0  # rough µs at 20 GFLOP/s and 5 GB/s, +1 µs a kernel
            budget_us = max(m.latency_ms - overhead_ms, m.latency_ms * 0.2) * 1000.0
            seeds.append(w * (budget_us / w.sum()))
        return self._kernel_fit_backfit(blocks, models, seeds, overhead_ms)

    @staticmethod
    def _overhead_guess(models: list[TrainingModel]) -> float:
        small = sorted(m.latency_ms for m in models)[: max(1, len(models) // 50)]
        return 0.5 * float(np.median(small)) if small else 0.0

    def fit(self, models: Sequence[TrainingModel]) -> "LatencyPredictor":
        models = [m for m in models if m.kernels and m.latency_ms > 0]
        if len(models) < 5:
            raise ValueError(f"need at least 5 measured models to fit, got {len(models)}")
        blocks = [feature_matrix(m.kernels) for m in models]
        y = np.array([m.latency_ms for m in models])
        n_k = np.array([len(m.kernels) for m in models], float)
        # Out-of-fold kernel sums, for an honest end-to-end correction and interval.
        rng = np.random.default_rng(self.seed)
        fold_of = rng.permutation(len(models)) % max(2, min(self.folds, len(models)))
        oof_sum = np.zeros(len(models))
        for f in np.unique(fold_of):
            train_idx = np.flatnonzero(fold_of != f)
            test_idx = np.flatnonzero(fold_of == f)
            trees = self._fit_kernel_model([models[i] for i in train_idx], [blocks[i] for i in train_idx])
            for i in test_idx:
                oof_sum[i] = np.exp(trees.predict(blocks[i])).sum() / 1000.0
        self.calibration_ = _fit_calibration(oof_sum, n_k, y)
        pred = _apply_calibration(self.calibration_, oof_sum, n_k)
        log_ratio = np.log(y / pred)
        alpha = (1.0 - self.coverage) / 2.0
        self.interval_log_ = (float(np.quantile(log_ratio, alpha)), float(np.quantile(log_ratio, 1 - alpha)))
        self.oof_predictions_ms_ = pred
        self.oof_keys_ = [m.key for m in models]
        self.kernel_model_ = self._fit_kernel_model(models, blocks)
        self.n_models_ = len(models)
        self.n_kernels_ = int(sum(len(b) for b in blocks))
        self.kernel_times_measured_ = bool(any(m.has_kernel_times for m in models))
        return self

    # -- predicting --------------------------------------------------------------------

    def predict_kernels_us(self, kernels: Sequence[KernelRecord]) -> np.ndarray:
        """Per-kernel times (µs) before the end-to-end correction."""
        if not kernels:
            return np.zeros(0)
        return np.exp(self.kernel_model_.predict(feature_matrix(kernels)))

    def predict_one(self, kernels: Sequence[KernelRecord]) -> tuple[float, float, float, np.ndarray]:
        """(latency_ms, low_ms, high_ms, per-kernel ms scaled so they sum to the latency)."""
        k_us = self.predict_kernels_us(kernels)
        total = _apply_calibration(self.calibration_, np.array([k_us.sum() / 1000.0]), np.array([float(len(k_us))]))
        ms = float(total[0])
        lo, hi = self.interval_log_
        per_kernel = k_us / 1000.0 * (ms / max(k_us.sum() / 1000.0, 1e-12)) if len(k_us) else k_us
        return ms, ms * math.exp(lo), ms * math.exp(hi), per_kernel

    def predict_many(self, kernel_lists: Sequence[Sequence[KernelRecord]]) -> np.ndarray:
        """Latency (ms) of many models in one vectorised pass."""
        sizes = [len(k) for k in kernel_lists]
        flat = [k for ks in kernel_lists for k in ks]
        if not flat:
            return np.zeros(len(kernel_lists))
        k_us = np.exp(self.kernel_model_.predict(feature_matrix(flat)))
        sums = np.add.reduceat(k_us, np.r_[0, np.cumsum(sizes)[:-1]]) if flat else np.zeros(len(sizes))
        sums = np.where(np.array(sizes) > 0, sums, 0.0)
        return _apply_calibration(self.calibration_, sums / 1000.0, np.array(sizes, float))

    # -- portable state ------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "edgecost-latency-predictor-1",
            "params": {k: getattr(self, k) for k in ("n_estimators", "learning_rate", "num_leaves", "max_depth",
                                                     "min_child_samples", "folds", "backfit_rounds", "coverage",
                                                     "seed")},
            "feature_names": list(FEATURE_NAMES),
            "kernel_model": self.kernel_model_.to_dict(),
            "calibration": self.calibration_,
            "interval_log": list(self.interval_log_),
            "n_models": self.n_models_,
            "n_kernels": self.n_kernels_,
            "kernel_times_measured": self.kernel_times_measured_,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "LatencyPredictor":
        if d.get("kind") != "edgecost-latency-predictor-1":
            raise ValueError(f"unknown predictor kind {d.get('kind')!r}")
        if list(d["feature_names"]) != list(FEATURE_NAMES):
            raise ValueError("the profile was trained on a different feature set; retrain it with `edgecost train`")
        self = cls(**d["params"])
        self.kernel_model_ = TreeEnsemble.from_dict(d["kernel_model"])
        self.calibration_ = dict(d["calibration"])
        self.interval_log_ = tuple(d["interval_log"])
        self.n_models_ = d["n_models"]
        self.n_kernels_ = d["n_kernels"]
        self.kernel_times_measured_ = d["kernel_times_measured"]
        return self


def _fit_calibration(kernel_sum_ms: np.ndarray, n_kernels: np.ndarray, y_ms: np.ndarray) -> dict[str, float]:
    """latency ≈ a·Σ + b·n + c minimising relative squared error, with a > 0 and b, c ≥ 0."""
    A = np.column_stack([kernel_sum_ms, n_kernels, np.ones_like(y_ms)]) / y_ms[:, None]
    target = np.ones_like(y_ms)
    coef = _nnls(A, target)
    if coef[0] <= 0:
        coef = np.array([float(np.median(y_ms / np.maximum(kernel_sum_ms, 1e-9))), 0.0, 0.0])
    return {"a": float(coef[0]), "b_ms_per_kernel": float(coef[1]), "c_ms": float(coef[2])}


def _apply_calibration(cal: dict[str, float], kernel_sum_ms: np.ndarray, n_kernels: np.ndarray) -> np.ndarray:
    return cal["a"] * kernel_sum_ms + cal["b_ms_per_kernel"] * n_kernels + cal["c_ms"]


def _nnls(A: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Non-negative least squares on a few columns: the best of every non-negative column subset."""
    n = A.shape[1]
    best, best_err = np.zeros(n), math.inf
    for mask in range(1, 2**n):
        cols = [j for j in range(n) if mask >> j & 1]
        coef, *_ = np.linalg.lstsq(A[:, cols], b, rcond=None)
        if np.any(coef < 0):
            continue
        full = np.zeros(n)
        full[cols] = coef
        err = float(np.sum((A @ full - b) ** 2))
        if err < best_err:
            best, best_err = full, err
    return best


def kernel_categories(kernels: Sequence[KernelRecord]) -> list[str]:
    return [kernel_category(k) for k in kernels]
