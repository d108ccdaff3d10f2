"""Accuracy metrics on whole-model latency, as the literature reports them.

share within ±5 % / ±10 % (nn-Meter, LitePred), MAPE, RMSPE, RMSE in ms, Spearman ρ and
Kendall τ (HELP, BRP-NAS), and the coverage of prediction intervals.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def _ranks(x: np.ndarray) -> np.ndarray:
    """Average ranks (ties share the mean rank)."""
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), dtype=np.float64)
    sx = x[order]
    i = 0
    while i < len(x):
        j = i
        while j + 1 < len(x) and sx[j + 1] == sx[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0
        i = j + 1
    return ranks


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 2:
        return float("nan")
    ra, rb = _ranks(np.asarray(a, float)), _ranks(np.asarray(b, float))
    ra -= ra.mean()
    rb -= rb.mean()
    denom = math.sqrt(float((ra * ra).sum() * (rb * rb).sum()))
    return float((ra * rb).sum() / denom) if denom > 0 else float("nan")


def kendall_tau(a: np.ndarray, b: np.ndarray) -> float:
    """Kendall's τ-b, O(n²) in NumPy blocks (evaluation sets are at most a few thousand models)."""
    a = np.asarray(a, float)
    b = np.asarray(b, float)
    n = len(a)
    if n < 2:
        return float("nan")
    concordant = discordant = ties_a = ties_b = 0.0
    for start in range(0, n, 512):
        sa = np.sign(a[start : start + 512, None] - a[None, :])
        sb = np.sign(b[start : start + 512, None] - b[None, :])
        prod = sa * sb
        concordant += float((prod > 0).sum())
        discordant += float((prod < 0).sum())
        ties_a += float(((sa == 0) & (sb != 0)).sum())
        ties_b += float(((sb == 0) & (sa != 0)).sum())
    # every pair counted twice, diagonal pairs are ties in both (ignored above)
    denom = math.sqrt((concordant + discordant + ties_a) * (concordant + discordant + ties_b))
    return float((concordant - discordant) / denom) if denom > 0 else float("nan")


def accuracy(measured_ms, predicted_ms, low_ms=None, high_ms=None) -> dict[str, Any]:
    """All whole-model metrics for one evaluation set."""
    y = np.asarray(measured_ms, float)
    p = np.asarray(predicted_ms, float)
    rel = (p - y) / y
    out: dict[str, Any] = {
        "n": int(len(y)),
        "within_5pct": float(np.mean(np.abs(rel) <= 0.05)) if len(y) else float("nan"),
        "within_10pct": float(np.mean(np.abs(rel) <= 0.10)) if len(y) else float("nan"),
        "within_15pct": float(np.mean(np.abs(rel) <= 0.15)) if len(y) else float("nan"),
        "mape": float(np.mean(np.abs(rel)) * 100.0) if len(y) else float("nan"),
        "rmspe": float(math.sqrt(np.mean(rel**2)) * 100.0) if len(y) else float("nan"),
        "rmse_ms": float(math.sqrt(np.mean((p - y) ** 2))) if len(y) else float("nan"),
        "spearman": spearman(y, p),
        "kendall_tau": kendall_tau(y, p),
    }
    if low_ms is not None and high_ms is not None and len(y):
        lo = np.asarray(low_ms, float)
        hi = np.asarray(high_ms, float)
        out["interval_coverage"] = float(np.mean((y >= lo) & (y <= hi)))
        out["interval_mean_width_pct"] = float(np.mean((hi - lo) / p) * 100.0)
        out["interval_median_width_pct"] = float(np.median((hi - lo) / p) * 100.0)
    return out


def mean_std(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Mean and std of every numeric metric over repetitions."""
    keys = [k for k in rows[0] if isinstance(rows[0][k], (int, float))] if rows else []
    out = {}
    for k in keys:
        vals = np.array([r[k] for r in rows if r.get(k) is not None], float)
        vals = vals[~np.isnan(vals)]
        out[k] = {"mean": float(vals.mean()) if len(vals) else float("nan"),
                  "std": float(vals.std(ddof=1)) if len(vals) > 1 else 0.0}
    return out
