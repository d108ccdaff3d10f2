"""The device's speed over a campaign, from its revisits, so labels are taken at one speed.

A shared host does not keep one speed for fifteen minutes.  On this project's Intel VM, in the
ORT 2-thread campaign of 2026-12-07, every model ran about 6 % slower from minute 3 to minute 6
and about 6 % faster from minute 13 on than the campaign's average, the same for every family.
A revisit a minute later shares the slow spell with the first visit, so the two agree, and the
campaign's noise watch does not see it; but a model first measured in the spell is labelled 6 %
slow against one measured at minute 14, and no predictor can learn that from kernels: a third of
that campaign's networks outside ±10 % were outside because of when they were measured.

The revisits measure the drift without any model of latency.  A model visited at ``t1`` and
again at ``t2`` ran ``s(t2) / s(t1)`` times as long the second time, whatever the model, if the
host's speed ``s`` is what changed.  So ``log s`` is estimated on a grid of ``BIN_S``-second
bins (linear between bin centres) by least squares over every revisit pair's log ratio, with a
penalty on the change between neighbouring bins (``smoothness``) and the visit-weighted mean of
``log s`` held at zero: a label becomes the latency at the campaign's average speed.  Pairs are
weighted by Huber's rule (a wild visit counts like a 5 % one).  Visits more than
``SEGMENT_GAP_S`` apart start a new segment (a later campaign, a measurement days later) with
its own grid; segments joined by revisits share one average, and each other segment keeps its
own.

Whether to correct at all is decided by the revisits too: ``FOLDS``-fold cross-validation over
models (a model's pairs all in one fold) asks how well the fitted drift predicts held-out pairs'
log ratios, against predicting no change, for each smoothness in ``SMOOTHNESS_GRID``.  The best
is kept only if it lowers that error by ``MIN_GAIN`` or more; on a steady device nothing is
corrected.  On the 2026-12-07 campaign (531 pairs) the drift estimated from revisits alone and the
drift seen in an uncorrected profile's out-of-fold errors, binned by time of measurement, agree
with r = 0.85 (30-s bins); with labels corrected, held-out revisits err 0.0345 against 0.0464
(mean |log ratio|), and the benchmark's random split over 20 seeds rose from 88.3 to 93.4 % within
±10 % (±5 %: 59.0 to 69.2 %), families left out from 71.9 to 80.9 % (BENCHMARKS.md).

This module knows nothing of the store: it takes ``Visit`` records (``visits_of`` builds them
from stored measurements) and returns a factor per visit id.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

#: Width of one bin of the speed grid, seconds (wider where the visits span more than
#: ``MAX_BINS`` bins in all, so the normal equations stay small).
BIN_S = 10.0
MAX_BINS = 1500
#: A gap longer than this between consecutive visits (any model) starts a new segment.
SEGMENT_GAP_S = 600.0
#: Fewer revisit pairs than this: no correction.
MIN_PAIRS = 20
#: Candidate weights of the penalty on the change of log speed between neighbouring bins.
SMOOTHNESS_GRID = (0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0)
FOLDS = 5
#: The drift must lower the held-out pairs' mean capped |log error| by this share to be applied.
MIN_GAIN = 0.02
#: Huber's threshold on a pair's |log ratio| residual; and the cap on a held-out pair's error.
HUBER = math.log(1.05)
_CAP = math.log(1.25)
_ANCHOR_WEIGHT = 1e6
#: No factor beyond these (a speed estimate this far out is a fault, not a drift).
FACTOR_RANGE = (0.5, 2.0)


@dataclass(frozen=True)
class Visit:
    """One timed visit of a model: its store id, when it started (seconds, any epoch), and its
    latency by the statistic being labelled (ms)."""

    id: int
    model: str
    at_s: float
    latency_ms: float


@dataclass
class HostDrift:
    """A speed factor per visit id (latency measured / latency at the average speed) and what
    was found (``record``: the profile card's ``host_drift``)."""

    factor_by_id: dict[int, float] = field(default_factory=dict)
    record: dict[str, Any] = field(default_factory=dict)

    def factor(self, visit_id: int) -> float:
        return self.factor_by_id.get(visit_id, 1.0)

    @property
    def applied(self) -> bool:
        return bool(self.record.get("applied"))


def no_drift(reason: str) -> HostDrift:
    return HostDrift(record={"method": "revisits", "applied": False, "reason": reason})


def parse_time_s(iso: str | None) -> float | None:
    """Seconds since the epoch of an ISO 8601 time (a ``Measurement.measured_at``), or None."""
    if not iso:
        return None
    try:
        t = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t.timestamp()  # a time without a zone is taken as local time, the same for every visit


def visits_of(rows: Sequence, latency_ms: Callable[[Any], float]) -> list[Visit]:
    """``Visit`` records of stored ok measurements (``StoredMeasurement``), latency by
    ``latency_ms(row)``; rows without a time or a positive latency are left out."""
    out = []
    for r in rows:
        at = parse_time_s(r.measurement.measured_at if r.measurement is not None else None)
        ms = latency_ms(r)
        if at is not None and ms is not None and ms > 0:
            out.append(Visit(id=r.id, model=r.model_hash, at_s=at, latency_ms=float(ms)))
    return out


class _Grid:
    """Segments of visits and the bins of each: the unknowns (log speed per bin), and for every
    visit the (at most two) bins it lies between and its weights on them."""

    def __init__(self, visits: Sequence[Visit]):
        order = sorted(range(len(visits)), key=lambda i: visits[i].at_s)
        self.segment_of = np.zeros(len(visits), dtype=int)
        starts: list[float] = []
        ends: list[float] = []
        for rank, i in enumerate(order):
            t = visits[i].at_s
            if rank == 0 or t - ends[-1] > SEGMENT_GAP_S:
                starts.append(t)
                ends.append(t)
            ends[-1] = t
            self.segment_of[i] = len(starts) - 1
        span = sum(e - s for s, e in zip(starts, ends))
        self.bin_s = max(BIN_S, span / MAX_BINS)
        self.n_bins = [int((e - s) // self.bin_s) + 1 for s, e in zip(starts, ends)]
        self.offset = np.concatenate([[0], np.cumsum(self.n_bins)]).astype(int)
        self.n = int(self.offset[-1])
        self.n_segments = len(starts)
        self.cols = np.zeros((len(visits), 2), dtype=int)
        self.wts = np.zeros((len(visits), 2))
        for i, v in enumerate(visits):
            seg = self.segment_of[i]
            nb, first = self.n_bins[seg], self.offset[seg]
            x = min(max((v.at_s - starts[seg]) / self.bin_s - 0.5, 0.0), nb - 1.0)  # among bin centres
            k = min(int(math.floor(x)), nb - 2) if nb > 1 else 0
            f = x - k if nb > 1 else 0.0
            self.cols[i] = (first + k, first + min(k + 1, nb - 1))
            self.wts[i] = (1.0 - f, f)

    def log_speed(self, s: np.ndarray) -> np.ndarray:
        """Each visit's log speed factor."""
        return (s[self.cols] * self.wts).sum(axis=1)

    def normal_fixed(self, smoothness: float, pairs: np.ndarray) -> np.ndarray:
        """The normal-equation terms of the smoothness penalty and of the anchors: per group of
        segments joined by pairs, the visit-weighted mean of log speed held at zero."""
        M = np.zeros((self.n, self.n))
        lam2 = smoothness ** 2
        for seg, nb in enumerate(self.n_bins):
            for k in range(self.offset[seg], self.offset[seg] + nb - 1):
                M[k, k] += lam2
                M[k + 1, k + 1] += lam2
                M[k, k + 1] -= lam2
                M[k + 1, k] -= lam2
        parent = list(range(self.n_segments))

        def root(a: int) -> int:
            while parent[a] != a:
                parent[a] = parent[parent[a]]
                a = parent[a]
            return a

        for i, j in pairs:
            parent[root(self.segment_of[i])] = root(self.segment_of[j])
        groups: dict[int, list[int]] = defaultdict(list)
        for i in range(len(self.segment_of)):
            groups[root(self.segment_of[i])].append(i)
        for idx in groups.values():
            a = np.zeros(self.n)
            np.add.at(a, self.cols[idx].ravel(), self.wts[idx].ravel() / len(idx))
            M += _ANCHOR_WEIGHT * np.outer(a, a)
        return M

    def pair_terms(self, pairs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each pair's (4) bins and coefficients: log speed of the second visit minus the first's."""
        a, b = pairs[:, 0], pairs[:, 1]
        return (np.hstack([self.cols[b], self.cols[a]]), np.hstack([self.wts[b], -self.wts[a]]))


def _pairs(visits: Sequence[Visit]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(index pairs of consecutive visits of one model, their log latency ratios, model ids)."""
    by_model: dict[str, list[int]] = defaultdict(list)
    for i, v in enumerate(visits):
        by_model[v.model].append(i)
    idx, ratio, owner = [], [], []
    for m, (_, members) in enumerate(sorted(by_model.items())):
        members.sort(key=lambda i: visits[i].at_s)
        for a, b in zip(members, members[1:]):
            idx.append((a, b))
            ratio.append(math.log(visits[b].latency_ms / visits[a].latency_ms))
            owner.append(m)
    return np.array(idx, dtype=int).reshape(-1, 2), np.array(ratio), np.array(owner, dtype=int)


def _solve(n: int, cols: np.ndarray, coef: np.ndarray, r: np.ndarray, fixed: np.ndarray,
           iterations: int = 5) -> np.ndarray:
    """Log speed per bin: Huber-weighted least squares of the pairs' log ratios ``r`` on their
    bins (``cols``, ``coef``), plus the fixed terms (smoothness, anchors), by normal equations."""
    w = np.ones(len(r))
    s = np.zeros(n)
    outer = coef[:, :, None] * coef[:, None, :]
    rows = np.repeat(cols, cols.shape[1], axis=1)
    cols_ = np.tile(cols, (1, cols.shape[1]))
    for _ in range(iterations):
        M = fixed.copy()
        np.add.at(M, (rows.ravel(), cols_.ravel()), (w[:, None, None] * outer).reshape(len(r), -1).ravel())
        rhs = np.zeros(n)
        np.add.at(rhs, cols.ravel(), (w[:, None] * coef * r[:, None]).ravel())
        s = np.linalg.solve(M + 1e-9 * np.eye(n), rhs)
        resid = np.abs(r - (s[cols] * coef).sum(axis=1))
        w_new = np.where(resid <= HUBER, 1.0, HUBER / np.maximum(resid, 1e-12))
        if np.allclose(w_new, w, atol=1e-4):
            break
        w = w_new
    return s


def estimate_drift(visits: Sequence[Visit]) -> HostDrift:
    """The host's speed factor at each visit, from the revisits (module docstring)."""
    if not visits:
        return no_drift("no timed visits")
    pairs, ratio, owner = _pairs(visits)
    if len(pairs) < MIN_PAIRS:
        return no_drift(f"{len(pairs)} revisit pairs (the drift needs {MIN_PAIRS})")
    grid = _Grid(visits)
    cols, coef = grid.pair_terms(pairs)
    fold = np.random.default_rng(0).permutation(int(owner.max()) + 1)[owner] % FOLDS
    without = float(np.mean(np.minimum(np.abs(ratio), _CAP)))
    scores = {}
    for lam in SMOOTHNESS_GRID:
        fixed = grid.normal_fixed(lam, pairs)
        err = np.zeros(len(ratio))
        for k in range(FOLDS):
            test = fold == k
            if not test.any() or test.all():
                continue
            s = _solve(grid.n, cols[~test], coef[~test], ratio[~test], fixed)
            err[test] = np.abs(ratio[test] - (s[cols[test]] * coef[test]).sum(axis=1))
        scores[lam] = float(np.mean(np.minimum(err, _CAP)))
    best = min(scores, key=lambda k: (scores[k], -k))
    record: dict[str, Any] = {
        "method": "revisits", "pairs": int(len(pairs)), "segments": grid.n_segments, "bin_s": round(grid.bin_s, 1),
        "cv_mean_abs_log_error": {"without": round(without, 5), "with": round(scores[best], 5)},
    }
    if scores[best] >= without * (1.0 - MIN_GAIN):
        return HostDrift(record={**record, "applied": False, "reason": (
            f"the revisits' drift did not predict held-out revisits better (mean |log error| {scores[best]:.4f}"
            f" against {without:.4f} with no drift): the device held its speed")})
    s = _solve(grid.n, cols, coef, ratio, grid.normal_fixed(best, pairs))
    log_f = np.clip(grid.log_speed(s), *np.log(FACTOR_RANGE))
    factors = {v.id: float(math.exp(x)) for v, x in zip(visits, log_f)}
    lo, hi = float(np.min(log_f)), float(np.max(log_f))
    return HostDrift(factor_by_id=factors, record={
        **record, "applied": True, "smoothness": best,
        "range_pct": [round(100 * (math.exp(lo) - 1), 2), round(100 * (math.exp(hi) - 1), 2)],
        "reason": (f"the device's speed moved {100 * (math.exp(lo) - 1):+.1f} % to {100 * (math.exp(hi) - 1):+.1f} %"
                   f" of its average over the measurements ({len(pairs)} revisit pairs; held-out revisits'"
                   f" mean |log error| {scores[best]:.4f} against {without:.4f} with no drift)")})
