"""What a profile learns as a model's latency: which statistic of its timed runs.

A measurement is many timed runs (a visit), and a campaign may visit a model more than
once.  Three statistics are offered:

``min`` (the default)
    The fastest timed run over all visits, and for each kernel its fastest profiled run.
    Other tenants' load and the OS only ever add time, so the fastest run is the latency
    of the device when nothing else runs on it: the most reproducible figure.  On this
    project's shared 2-vCPU VM two visits of the same network a minute apart agreed within
    ±10 % for 75.5 % of networks by their fastest runs and for 55.8 % by their medians (ORT
    1 thread; 46.3 % against 35.5 % at 2 threads; ``scripts/benchmarks.py`` reports it).
``p10``
    The fastest over visits of each visit's 10th-percentile run, and for each kernel its
    fastest profiled run (a profile has no percentiles).  Where single runs jitter but the
    load comes in no long spells, a low percentile repeats better than the one fastest run.
    On a noisier host (an Intel VM of 2026-12-06, where second visits agreed within ±10 % for
    77 % of networks at 1 thread) the random split within ±10 % was 85.6 % against 83.5 % by
    fastest runs at 1 thread, 80.5 % against 80.3 % at 2 threads (within ±5 %: 57.6 against
    57.2 %, 48.2 against 45.4 %; same splits).  Not the default: no quiet campaign has tried it.
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

LATENCY_STATISTICS = ("min", "p10", "median")
DEFAULT_LATENCY_STATISTIC = "min"
#: The statistics that take the lowest figure over visits, for a model and for each kernel (a
#: kernel by its fastest profiled run: a profile has no percentiles).
_LOWEST_OVER_VISITS = ("min", "p10")
DESCRIPTIONS = {
    "min": "fastest timed run (over all visits); kernels: fastest profiled run",
    "p10": "fastest over visits of each visit's 10th-percentile run; kernels: fastest profiled run",
    "median": "median of each visit's median run; kernels: median profiled run",
}


def check_statistic(statistic: str) -> str:
    if statistic not in LATENCY_STATISTICS:
        raise UsageError(f"unknown latency statistic {statistic!r}",
                         f"use one of: {', '.join(LATENCY_STATISTICS)}")
    return statistic


def model_latency_ms(visits: Sequence, statistic: str) -> float:
    """A model's label from its stored ok measurements (``StoredMeasurement``), one per visit."""
    if statistic in _LOWEST_OVER_VISITS:
        return float(min(_visit_ms(v, statistic) for v in visits))
    return float(statistics.median([v.median_ms for v in visits]))


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
