#!/usr/bin/env python3
"""Fit a profile from a store and ship it under models/ with its model card.

    python scripts/build_shipped_profile.py --home /tmp/edgecost-benchmarks/ort1 \\
        --device-name ci-epyc-2vcpu --runtime onnxruntime --threads 1

The store's measurements of the `local` target are fitted as usual; the profile is saved
under ``models/`` renamed to ``--device-name`` (a shipped device is known by its profile
only: `edgecost predict --device ci-epyc-2vcpu` works without an inventory entry), and a
markdown card ``models/<device-name>.md`` gets a section for the target.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", type=Path, required=True, help="EDGECOST_HOME holding the campaign's store")
    ap.add_argument("--device-name", required=True)
    ap.add_argument("--runtime", default="onnxruntime")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--description", default="")
    args = ap.parse_args()
    os.environ["EDGECOST_HOME"] = str(args.home)

    from edgecost.predictor.profile import profile_filename
    from edgecost.predictor.train import train_profile
    from edgecost.records import Target
    from edgecost.store import Store

    source = Target("local", args.runtime, args.threads)
    shipped = replace(source, device=args.device_name)
    profile = train_profile(Store(), source)
    profile.card["target"] = shipped.to_dict()
    profile.card["trained_from"] = {"device": "local", "note": args.description}
    facts = profile.card.get("device_facts", {})
    # Hostnames and interpreter paths say nothing useful about the device: keep the card portable.
    facts.pop("hostname", None)
    facts.get("python", {}).pop("executable", None)
    path = profile.save(ROOT / "models" / profile_filename(shipped))
    print("wrote", path, f"{path.stat().st_size / 1e6:.2f} MB")

    card = ROOT / "models" / f"{args.device_name}.md"
    cpu = facts.get("cpu", {})
    acc = profile.card["accuracy"]
    tr = profile.card["training"]
    kernel_times = (("measured (ORT per-node profile)" if args.runtime == "onnxruntime"
                     else "measured (single-operator slices)")
                    if tr["kernel_times_measured"] else "inferred from whole-model times")
    section = "\n".join([
        f"## {shipped.key}",
        "",
        f"- runtime: {args.runtime} {profile.card.get('runtime_version', '')}, {args.threads} thread(s), fp32, batch 1;"
        f" executed kernels from ONNX Runtime's optimizer at level `{profile.execution.ort_level}`"
        if args.runtime == "onnxruntime" else f"- runtime: {args.runtime} {profile.card.get('runtime_version', '')},"
        f" {args.threads} thread(s), fp32, batch 1, XNNPACK on",
        f"- latency: {profile.card['latency_statistic']['what']} (`edgecost train --statistic"
        f" {profile.card['latency_statistic']['name']}`)",
        f"- training data: {tr['n_models']} generated models ({tr['n_kernels']} kernels), per-kernel times"
        f" {kernel_times};"
        f" families: {', '.join(f'{k} {v}' for k, v in tr['families'].items())}",
        f"- cross-validated accuracy (5-fold over the training models, all items): {100 * acc['within_10pct']:.1f} %"
        f" within ±10 %, {100 * acc['within_5pct']:.1f} % within ±5 %, MAPE {acc['mape']:.1f} %, Spearman"
        f" {acc['spearman']:.4f}; 90 % interval coverage {100 * acc.get('interval_coverage', float('nan')):.1f} %"
        + (f"; whole networks only (single-operator probes left out, {acc['networks']['n']} models):"
           f" {100 * acc['networks']['within_10pct']:.1f} % within ±10 %, {100 * acc['networks']['within_5pct']:.1f} %"
           f" within ±5 %, MAPE {acc['networks']['mape']:.1f} %" if acc.get("networks") else ""),
        *([f"- kernel trees: at least {tr['kernel_leaf_size']['chosen']} kernels a leaf, chosen among"
           f" {', '.join(tr['kernel_leaf_size']['oof_mean_abs_log_error'])} by out-of-fold error"]
          if tr.get("kernel_leaf_size") else []),
        *([f"- measurement consistency: the measured per-kernel times explain"
           f" {100 * profile.card['measurement_consistency']['within_10pct']:.1f} % of"
           f" {profile.card['measurement_consistency']['n_networks']} networks' latencies within ±10 %"
           " (how much the campaign's own measurements agree; `edgecost.evaluate.kernel_time_consistency`)"]
          if profile.card.get("measurement_consistency") else []),
        f"- file: `{path.name}` (JSON, gzip; no pickle)",
        "",
    ])
    header = "\n".join([
        f"# {args.device_name}",
        "",
        args.description or "A shipped device profile.",
        "",
        f"Device facts when measured: CPU {cpu.get('model_name')} ({cpu.get('logical_cores')} logical cores,"
        f" ISA {', '.join(cpu.get('isa_features') or [])}), {round((facts.get('memory') or {}).get('total_mb') or 0)}"
        f" MB memory, {(facts.get('os') or {}).get('distro', '')}.",
        "",
        "Measurements by the edgecost agent (`edgecost profile`), see BENCHMARKS.md for how accurate the predictions"
        " are on models outside the training set.",
        "",
    ])
    text = card.read_text() if card.exists() else header
    marker = f"## {shipped.key}"
    if marker in text:
        head, _, rest = text.partition(marker)
        tail = rest.split("\n## ", 1)
        text = head + section + ("\n## " + tail[1] if len(tail) > 1 else "")
    else:
        text = text.rstrip() + "\n\n" + section
    card.write_text(text)
    print("wrote", card)
    print(json.dumps({"accuracy": acc, "training": tr}, default=str)[:400])


if __name__ == "__main__":
    main()
