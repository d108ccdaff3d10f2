"""A small multilayer perceptron in NumPy, the per-layer regressor of Justus et al. (2018).

Trained with Adam on standardised inputs (mini-batches, early stopping on a held-out
tenth), saved as plain arrays. An optional per-sample ``weight`` scales each sample's squared
error, in the training batches and in the early-stopping loss alike, as the trees' weights do.
It is the alternative to the boosted trees in ``edgecost.predictor.trees``;
`scripts/benchmarks.py` compares the two on measured data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class MLP:
    weights: list[np.ndarray]
    biases: list[np.ndarray]
    x_mean: np.ndarray
    x_std: np.ndarray
    y_mean: float
    y_std: float
    #: The training targets' range: predictions are held inside it, as a tree's are by its leaves.
    #: A ReLU network extrapolates linearly, and a kernel whose weight in the fit was near zero
    #: (a 1 µs reshape among a network's convolutions) is barely constrained at all.
    y_low: float = -np.inf
    y_high: float = np.inf

    @classmethod
    def fit(cls, X: np.ndarray, y: np.ndarray, *, hidden: tuple[int, ...] = (64, 128, 128, 64),
            epochs: int = 300, batch_size: int = 256, learning_rate: float = 2e-3, weight_decay: float = 1e-5,
            patience: int = 25, seed: int = 0, weight: np.ndarray | None = None) -> "MLP":
        rng = np.random.default_rng(seed)
        X = np.asarray(X, float)
        y = np.asarray(y, float)
        w_all = np.ones(len(y)) if weight is None else np.asarray(weight, float)
        if w_all.shape != y.shape or not np.all(np.isfinite(w_all)) or np.any(w_all < 0) or w_all.sum() <= 0:
            raise ValueError("MLP weights must be one finite, non-negative number per sample, not all zero")
        w_all = w_all / w_all.mean()
        x_mean, x_std = X.mean(0), X.std(0)
        x_std[x_std < 1e-9] = 1.0
        y_mean, y_std = float(y.mean()), float(y.std() or 1.0)
        Xs, ys = (X - x_mean) / x_std, (y - y_mean) / y_std
        order = rng.permutation(len(ys))
        n_val = max(1, len(ys) // 10)
        val, tr = order[:n_val], order[n_val:]
        sizes = [X.shape[1], *hidden, 1]
        W = [rng.normal(0, np.sqrt(2.0 / a), (a, b)) for a, b in zip(sizes[:-1], sizes[1:])]
        B = [np.zeros(b) for b in sizes[1:]]
        mW = [np.zeros_like(w) for w in W]
        vW = [np.zeros_like(w) for w in W]
        mB = [np.zeros_like(b) for b in B]
        vB = [np.zeros_like(b) for b in B]
        step, best, best_loss, bad = 0, None, np.inf, 0
        for _ in range(epochs):
            perm = rng.permutation(tr)
            for start in range(0, len(perm), batch_size):
                idx = perm[start : start + batch_size]
                acts = [Xs[idx]]
                for i, (w, b) in enumerate(zip(W, B)):
                    z = acts[-1] @ w + b
                    acts.append(np.maximum(z, 0.0) if i < len(W) - 1 else z)
                grad = 2.0 * (w_all[idx] * (acts[-1][:, 0] - ys[idx]))[:, None] / len(idx)
                step += 1
                for i in range(len(W) - 1, -1, -1):
                    gw = acts[i].T @ grad + weight_decay * W[i]
                    gb = grad.sum(0)
                    if i > 0:
                        grad = (grad @ W[i].T) * (acts[i] > 0)
                    for p, g, m, v in ((W, gw, mW, vW), (B, gb, mB, vB)):
                        m[i] = 0.9 * m[i] + 0.1 * g
                        v[i] = 0.999 * v[i] + 0.001 * g * g
                        mh = m[i] / (1 - 0.9**step)
                        vh = v[i] / (1 - 0.999**step)
                        p[i] = p[i] - learning_rate * mh / (np.sqrt(vh) + 1e-8)
            model = cls([w.copy() for w in W], [b.copy() for b in B], x_mean, x_std, y_mean, y_std,
                        float(y.min()), float(y.max()))
            loss = float(np.average((model._forward(Xs[val]) - ys[val]) ** 2, weights=w_all[val] + 1e-12))
            if loss < best_loss - 1e-6:
                best, best_loss, bad = model, loss, 0
            else:
                bad += 1
                if bad >= patience:
                    break
        assert best is not None
        return best

    def _forward(self, Xs: np.ndarray) -> np.ndarray:
        a = Xs
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            a = a @ w + b
            if i < len(self.weights) - 1:
                a = np.maximum(a, 0.0)
        return a[:, 0]

    def predict(self, X: np.ndarray) -> np.ndarray:
        Xs = (np.asarray(X, float) - self.x_mean) / self.x_std
        return np.clip(self._forward(Xs) * self.y_std + self.y_mean, self.y_low, self.y_high)

    def to_dict(self) -> dict[str, Any]:
        d = {"format": "edgecost-mlp-1", "weights": [w.tolist() for w in self.weights],
             "biases": [b.tolist() for b in self.biases], "x_mean": self.x_mean.tolist(),
             "x_std": self.x_std.tolist(), "y_mean": self.y_mean, "y_std": self.y_std}
        if np.isfinite(self.y_low) and np.isfinite(self.y_high):  # JSON has no infinity
            d["y_range"] = [self.y_low, self.y_high]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "MLP":
        if d.get("format") != "edgecost-mlp-1":
            raise ValueError(f"unknown MLP format {d.get('format')!r}")
        low, high = d.get("y_range", [-np.inf, np.inf])  # saved before 2026-12-07: unclipped
        return cls([np.asarray(w, float) for w in d["weights"]], [np.asarray(b, float) for b in d["biases"]],
                    np.asarray(d["x_mean"], float), np.asarray(d["x_std"], float), float(d["y_mean"]),
                    float(d["y_std"]), float(low), float(high))
