"""What a profile learns as a model's latency: which statistic of its timed runs.

A measurement is many timed runs (a visit), and a campaign may visit a model more than
once.  Three statistics are offered, and ``auto`` (the default) picks one of them:

``auto`` (the default)
    When a profile is fitted (``edgecost train``, ``edgecost evaluate``;
    ``edgecost.predictor.train.fit_by_statistic``): the statistic whose fitted profile predicts
    whole networks best out of fold, against its own labels (mean |log(predicted / measured)|
    of the fit's cross-validated predictions).  That costs a fit for each statistic.  Where a
    dataset is built without a fit to choose by (the campaign's sampling fits), and as a figure
    the card keeps: the statistic whose revisits agree best (``choose_statistic``): for every
    model visited twice or more, the difference between its first two visits by each statistic,
    capped at 25 % so a few wild visits do not decide, averaged over the models.  Which statistic
    repeats best depends on the host: on a contended VM the fastest run does (load only ever adds
    time), on a quiet one the median does (one lucky run is itself noise).  With fewer than
    ``AUTO_MIN_REVISITED`` revisited models that rule takes ``min``.  Evidence for the revisit
    rule (ORT, this project's VMs, the same campaigns and splits, random split within ±10 %): a
    quiet Intel host of 2026-12-06, 1 thread, median 93.2 % against fastest run 90.0 % (second
    visits within ±5 %: 78.9 % by medians, 66.3 % by fastest runs); a noisier Intel host that
    morning, 1 thread, fastest run 83.5 % and p10 85.6 % against median 78.0 % (second visits
    within ±5 %: 48.5 / 46.3 / 36.0 %), 2 threads, median 85.4 % against fastest run 80.3 % (second
    visits within ±10 %: 85.8 against 81.5 %); a contended AMD host of 2026-11-28, fastest run
    86.2 % against median 68.8 % (second visits within ±10 %: 75.5 against 55.8 %).  Where it
    failed, and why ``auto`` now fits: at 2 threads on the Intel VMs of 2026-12-06 and 2026-12-07
    the revisits took p10 by a hair and median labels gave the better profile both times (random
    split 91.0 against 89.4 %, 88.2 against 83.4 %).
``min``
    The fastest timed run over all visits, and for each kernel its fastest profiled run.
    Other tenants' load and the OS only ever add time, so the fastest run is the latency
    of the device when nothing else runs on it.
``p10``
    The fastest over visits of each visit's 10th-percentile run, and for each kernel its
    fastest profiled run (a profile has no percentiles).  Where single runs jitter but the
    load comes in no long spells, a low percentile repeats better than the one fastest run.
``median``
    The median of each visit's median run, and each kernel's median profiled run: the
    typical latency under whatever load the device had while it was measured.

On a dedicated, quiet device they differ little.  A profile's card names the statistic it
learned (and, for ``auto``, the revisit figures that chose it); ``edgecost predict`` says it.

Whichever the statistic, each visit's figure can first be divided by the host's speed factor
at the time of the visit, estimated from the revisits (``edgecost.predictor.drift``; ``DRIFT_CHOICES``),
so a model measured in a slow spell is not labelled slow.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..errors import UsageError  # no NumPy: the CLI reads the choices below at start-up

#: The statistics a label can be (``auto`` resolves to one of them).
LATENCY_STATISTICS = ("min", "p10", "median")
AUTO = "auto"
#: What ``--statistic`` accepts.
STATISTIC_CHOICES = (AUTO,) + LATENCY_STATISTICS
DEFAULT_LATENCY_STATISTIC = AUTO
#: How labels account for the device's speed drifting during a campaign (``edgecost.predictor.drift``):
#: ``revisits`` estimates it from the revisits and labels every visit at the average speed, where that
#: predicts held-out revisits better; ``none`` takes every visit as measured.
DRIFT_CHOICES = ("revisits", "none")
DEFAULT_DRIFT = "revisits"
#: ``auto`` needs this many models visited twice or more; with fewer it takes ``AUTO_FALLBACK``.
AUTO_MIN_REVISITED = 20
AUTO_FALLBACK = "min"
#: A revisit's disagreement counts at most this much (|log ratio| of 25 %) in ``auto``'s score.
_AUTO_CAP = math.log(1.25)
#: The statistics that take the lowest figure over visits, for a model and for each kernel (a
#: kernel by its fastest profiled run: a profile has no percentiles).
_LOWEST_OVER_VISITS = ("min", "p10")
DESCRIPTIONS = {
    "min": "fastest timed run (over all visits); kernels: fastest profiled run",
    "p10": "fastest over visits of each visit's 10th-percentile run; kernels: fastest profiled run",
    "median": "median of each visit's median run; kernels: median profiled run",
    AUTO: "whichever of min, p10, median its fitted profile predicts networks best by (cross-validated)",
}


def check_drift(drift: str) -> str:
    if drift not in DRIFT_CHOICES:
        raise UsageError(f"unknown drift correction {drift!r}", f"use one of: {', '.join(DRIFT_CHOICES)}")
    return drift


def check_statistic(statistic: str) -> str:
    if statistic not in STATISTIC_CHOICES:
        raise UsageError(f"unknown latency statistic {statistic!r}",
                         f"use one of: {', '.join(STATISTIC_CHOICES)}")
    return statistic


def revisit_disagreement(visits_by_model: Mapping[str, Sequence]) -> dict[str, Any]:
    """How well each statistic repeats: over the models with two visits or more, the mean
    |log| ratio of the first two visits' figures (by ``id``, each capped at 25 %), in percent."""
    pairs = [sorted(vs, key=lambda v: v.id)[:2] for vs in visits_by_model.values() if len(vs) >= 2]
    out: dict[str, Any] = {"revisited_models": len(pairs), "mean_capped_gap_pct": {}}
    if not pairs:
        return out
    for stat in LATENCY_STATISTICS:
        gaps = []
        for a, b in pairs:
            fa, fb = model_latency_ms([a], stat), model_latency_ms([b], stat)
            if fa > 0 and fb > 0:
                gaps.append(min(abs(math.log(fb / fa)), _AUTO_CAP))
        if gaps:
            out["mean_capped_gap_pct"][stat] = 100.0 * (math.exp(statistics.fmean(gaps)) - 1.0)
    return out


def choose_statistic(visits_by_model: Mapping[str, Sequence], requested: str = AUTO) -> tuple[str, dict[str, Any]]:
    """(the concrete statistic to label by, how it was chosen).  ``requested`` other than
    ``auto`` is taken as it is; ``auto`` takes the statistic whose revisits disagree least
    (ties: the earlier of ``LATENCY_STATISTICS``), or ``AUTO_FALLBACK`` with too few revisits."""
    check_statistic(requested)
    if requested != AUTO:
        return requested, {"requested": requested}
    how = {"requested": AUTO, **revisit_disagreement(visits_by_model)}
    gaps = how["mean_capped_gap_pct"]
    if how["revisited_models"] < AUTO_MIN_REVISITED or not gaps:
        how["reason"] = (f"{how['revisited_models']} models visited twice (auto needs {AUTO_MIN_REVISITED}):"
                         f" {AUTO_FALLBACK}")
        return AUTO_FALLBACK, how
    best = min(gaps, key=lambda s: (round(gaps[s], 9), LATENCY_STATISTICS.index(s)))
    how["reason"] = f"its revisits agree best ({how['revisited_models']} models visited twice)"
    return best, how


def describe_choice(chosen: Mapping[str, Any]) -> str:
    """' (auto: ...)' with the figures that chose a statistic, or '' if it was asked for."""
    if chosen.get("requested") != AUTO:
        return ""
    errors = chosen.get("oof_mean_abs_log_error") or {}
    revisits = chosen.get("revisits") or chosen
    gaps = revisits.get("mean_capped_gap_pct") or {}
    parts = [chosen.get("reason", "")]
    if errors:
        parts.append("out-of-fold mean |log error| " + ", ".join(f"{k} {v:.4f}" for k, v in errors.items()))
    if gaps:
        parts.append("mean revisit gap " + ", ".join(f"{k} {v:.1f} %" for k, v in gaps.items())
                     + (f" (revisits alone would take {revisits['would_choose']})" if revisits.get("would_choose")
                        else ""))
    return " (auto: " + "; ".join(p for p in parts if p) + ")"


def describe_drift(record: Mapping[str, Any]) -> str | None:
    """'host speed drift corrected for: ...' (or 'not corrected: ...') from a dataset's or card's
    ``host_drift`` record (``edgecost.predictor.drift``), or None where it has no reason."""
    if not record.get("reason"):
        return None
    verb = "corrected for" if record.get("applied") else "not corrected"
    return f"host speed drift {verb}: {record['reason']}"


def model_latency_ms(visits: Sequence, statistic: str, speed: Callable[[Any], float] | None = None) -> float:
    """A model's label from its stored ok measurements (``StoredMeasurement``), one per visit,
    by a concrete statistic (``choose_statistic`` resolves ``auto``); each visit's figure divided
    by ``speed(visit)`` where given (the host's speed factor then, ``edgecost.predictor.drift``)."""
    if statistic not in LATENCY_STATISTICS:
        raise ValueError(f"a label needs a concrete statistic, got {statistic!r} (resolve auto first)")
    factor = speed or (lambda v: 1.0)
    if statistic in _LOWEST_OVER_VISITS:
        return float(min(_visit_ms(v, statistic) / factor(v) for v in visits))
    return float(statistics.median([v.median_ms / factor(v) for v in visits]))


def _visit_ms(visit, statistic: str) -> float:
    """A visit's ``p10_ms`` or ``min_ms``, falling back p10 -> min -> median where a figure is
    missing (stats stored before it existed)."""
    stats = visit.measurement.stats if visit.measurement is not None else None
    for name in (("p10_ms", "min_ms") if statistic == "p10" else ("min_ms",)):
        value = getattr(stats, name, None) if stats is not None else None
        if value is not None and value > 0:
            return float(value)
    return float(visit.median_ms)


def node_time_us(entry: dict, statistic: str) -> float:
    """One node's time from a per-node profile entry; ``median_us`` where ``min_us`` is absent
    (profiles of agents before 0.2.0, LiteRT op slices timed before the statistic existed)."""
    if statistic in _LOWEST_OVER_VISITS and entry.get("min_us") is not None:
        return float(entry["min_us"])
    return float(entry.get("median_us", 0.0))


def combine_visits(values: Sequence[float | None], statistic: str) -> float | None:
    """One kernel's time over the visits that timed it."""
    known = [v for v in values if v is not None]
    if not known:
        return None
    return float(min(known)) if statistic in _LOWEST_OVER_VISITS else float(statistics.median(known))
