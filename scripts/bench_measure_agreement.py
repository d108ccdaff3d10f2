#!/usr/bin/env python3
"""Does `edgecost measure` agree with a plain onnxruntime timing loop? (issue: ±5 % at 1 thread)

Alternates, in one process tree and one run, an edgecost measurement through the device
agent (local transport) and an independent timing loop written here with onnxruntime
alone, same model, same thread count, same optimization level. Reports the median of
each round and the ratio of the medians of rounds.

    python scripts/bench_measure_agreement.py [--model models/examples/mobilenetv2_like.onnx] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

import edgecost
from edgecost.devices import local_device
from edgecost.bench import BenchSettings
from edgecost.paths import shipped_models_dir
from edgecost.transport import LocalSession


def plain_ort_median_ms(model: Path, threads: int, runs: int, warmup: int) -> float:
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])
    feeds = {i.name: np.random.default_rng(0).standard_normal(i.shape).astype(np.float32) for i in sess.get_inputs()}
    for _ in range(warmup):
        sess.run(None, feeds)
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        sess.run(None, feeds)
        samples.append((time.perf_counter() - t0) * 1000.0)
    return statistics.median(samples)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=shipped_models_dir() / "examples" / "mobilenetv2_like.onnx")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    settings = BenchSettings(warmup_runs=10, num_runs=args.runs, min_secs=0.0, max_secs=120.0)
    edge, plain = [], []
    session = LocalSession(local_device())
    try:
        for _ in range(args.rounds):
            m = edgecost.measure(args.model, "local", threads=args.threads, settings=settings, session=session,
                                 save=False)
            edge.append(m.stats.median_ms)
            plain.append(plain_ort_median_ms(args.model, args.threads, args.runs, 10))
    finally:
        session.close()
    e, p = statistics.median(edge), statistics.median(plain)
    out = {"model": str(args.model), "threads": args.threads, "rounds": args.rounds, "runs_per_round": args.runs,
           "edgecost_median_ms": e, "plain_ort_median_ms": p, "ratio": e / p,
           "within_5pct": abs(e / p - 1) <= 0.05, "edgecost_rounds_ms": edge, "plain_rounds_ms": plain}
    if args.json:
        print(json.dumps(out))
    else:
        print(f"model {args.model.name}, {args.threads} thread(s), {args.rounds} rounds x {args.runs} runs")
        print(f"  edgecost measure (agent): median {e:.3f} ms  rounds {[round(x, 3) for x in edge]}")
        print(f"  plain onnxruntime loop:   median {p:.3f} ms  rounds {[round(x, 3) for x in plain]}")
        print(f"  ratio {e / p:.4f} -> {'within' if out['within_5pct'] else 'OUTSIDE'} ±5 %")


if __name__ == "__main__":
    main()
