"""What a profile learns as a model's latency: which statistic of its timed runs.

A measurement is many timed runs (a visit), and a campaign may visit a model more than
once.  Two statistics are offered:

``min`` (the default)
    The fastest timed run over all visits, and for each kernel its fastest profiled run.
    Other tenants' load and the OS only ever add time, so the fastest run is the latency
    of the device when nothing else runs on it: the most reproducible figure.  On this
    project's shared 2-vCPU VM two visits of the same network a minute apart agreed within
    ±10 % for 75.5 % of networks by their fastest runs and for 55.8 % by their medians (ORT
    1 thread; 46.3 % against 35.5 % at 2 threads; ``scripts/benchmarks.py`` reports it).
``median``
    The median of each visit's median run, and each kernel's median profiled run: the
    typical latency under whatever load the device had while it was measured.

On a dedicated, quiet device the two differ little; a predictor cannot know a future
neighbour's load, so the default predicts the quiet latency and says so.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from ..errors import UsageError  # no NumPy: the CLI reads the choices below at start-up

LATENCY_STATISTICS = ("min", "median")
DEFAULT_LATENCY_STATISTIC = "min"
DESCRIPTIONS = {
    "min": "fastest timed run (over all visits); kernels: fastest profiled run",
    "median": "median of each visit's median run; kernels: median profiled run",
}


def check_statistic(statistic: str) -> str:
    if statistic not in LATENCY_STATISTICS:
        raise UsageError(f"unknown latency statistic {statistic!r}",
                         f"use one of: {', '.join(LATENCY_STATISTICS)}")
    return statistic


def model_latency_ms(visits: Sequence, statistic: str) -> float:
    """A model's label from its stored ok measurements (``StoredMeasurement``), one per visit."""
    if statistic == "min":
        fastest = [_visit_min_ms(v) for v in visits]
        return float(min(fastest))
    return float(statistics.median([v.median_ms for v in visits]))


def _visit_min_ms(visit) -> float:
    stats = visit.measurement.stats if visit.measurement is not None else None
    if stats is not None and stats.min_ms is not None and stats.min_ms > 0:
        return float(stats.min_ms)
    return float(visit.median_ms)


def node_time_us(entry: dict, statistic: str) -> float:
    """One node's time from a per-node profile entry; ``median_us`` where ``min_us`` is absent
    (profiles of agents before 0.2.0, LiteRT op slices timed before the statistic existed)."""
    if statistic == "min" and entry.get("min_us") is not None:
        return float(entry["min_us"])
    return float(entry.get("median_us", 0.0))


def combine_visits(values: Sequence[float | None], statistic: str) -> float | None:
    """One kernel's time over the visits that timed it."""
    known = [v for v in values if v is not None]
    if not known:
        return None
    return float(min(known)) if statistic == "min" else float(statistics.median(known))
