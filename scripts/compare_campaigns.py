#!/usr/bin/env python3
"""How much the same models' latencies moved between two stores (campaigns) of one target.

    python scripts/compare_campaigns.py /tmp/eb-s8/ort1 /tmp/edgecost-benchmarks/ort1 \\
        --runtime onnxruntime --threads 1

Campaigns with the same seed draw many of the same models; each model's median (median of
medians if measured more than once) in store B over store A, overall and per family
(single-kernel probes pooled).  A predictor trained on one campaign and scored against the
other cannot beat this agreement: it is the drift of the machine, not of the model.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path


def medians(home: Path, runtime: str, threads: int) -> dict[str, tuple[float, str, str]]:
    """model hash -> (median ms, family, kind) of the `local` target in the store under ``home``."""
    from edgecost import zoo
    from edgecost.records import Target
    from edgecost.store import Store

    store = Store(home / "edgecost.sqlite")
    by_model: dict[str, list[float]] = defaultdict(list)
    for r in store.measurements(Target("local", runtime, threads), status="ok"):
        by_model[r.model_hash].append(r.median_ms)
    out = {}
    for h, ms in by_model.items():
        stored = store.model(h)
        family = (stored.family if stored else "") or "user"
        kind = zoo.FAMILIES[family].kind if family in zoo.FAMILIES else "network"
        out[h] = (statistics.median(ms), family, kind)
    return out


def summary(ratios: list[float]) -> dict[str, float]:
    return {"n": len(ratios), "median_ratio": round(statistics.median(ratios), 4),
            "within_5pct": round(sum(abs(r - 1) < 0.05 for r in ratios) / len(ratios), 3),
            "within_10pct": round(sum(abs(r - 1) < 0.10 for r in ratios) / len(ratios), 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("store_a", type=Path, help="EDGECOST_HOME of the first campaign")
    ap.add_argument("store_b", type=Path, help="EDGECOST_HOME of the second campaign")
    ap.add_argument("--runtime", default="onnxruntime")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    for home in (args.store_a, args.store_b):
        if not (home / "edgecost.sqlite").is_file():
            raise SystemExit(f"error: no store at {home} (expected {home / 'edgecost.sqlite'}); pass an EDGECOST_HOME")
    a = medians(args.store_a, args.runtime, args.threads)
    b = medians(args.store_b, args.runtime, args.threads)
    both = sorted(set(a) & set(b))
    if not both:
        raise SystemExit("error: the two stores have no model in common; campaigns with the same --seed share models")
    groups: dict[str, list[float]] = defaultdict(list)
    for h in both:
        ratio = b[h][0] / a[h][0]
        groups["(all)"].append(ratio)
        groups["(single-kernel probes)" if b[h][2] == "kernel" else b[h][1]].append(ratio)
    print(json.dumps({g: summary(r) for g, r in sorted(groups.items())}, indent=1))


if __name__ == "__main__":
    main()
