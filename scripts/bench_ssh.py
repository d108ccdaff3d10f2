#!/usr/bin/env python3
"""How much the SSH transport costs: session setup, measurement agreement, SFTP throughput.

Starts one real sshd test host (tests/support/sshfleet.py: a network namespace when run as
root, else a 127.0.0.1 port) whose "remote" Python is this one, then measures

(a) session setup with the agent already on the device (connect, host-key check, key auth,
    work dir, agent stat, agent start up to its hello line): median of ``--setups`` (10),
    after one session that uploads the agent; target < 1.5 s;
(b) `edgecost measure` of a MobileNetV2-like model (``models/examples/mobilenetv2_like.onnx``,
    or one built with ``edgecost.zoo`` at 224x224) with 1 thread over SSH and with the local
    transport on the same machine, in interleaved rounds (the order alternates), as the ratio
    of the medians of the per-round medians; target within +-5 %;
(c) SFTP upload throughput of a ``--sftp-mb`` MB file (median of 3);
(d) a profiling campaign of ``--campaign-items`` (30) generated models over SSH, once exporting
    each model only when its turn comes (``--no-prefetch``) and once exporting the next model
    while the device measures (``--prefetch``, the default for SSH devices): models per minute
    of each, and how the two campaigns' medians of the same models agree (the test host shares
    this machine's CPU, so an export beside a measurement can slow it; on a real device it cannot).

    python scripts/bench_ssh.py            # a table
    python scripts/bench_ssh.py --json     # one JSON object

Not a test: it prints figures.  Run it on a quiet machine; other load shows up in (b).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # tests/support/sshfleet.py imports without pytest


def _model(tmp: Path) -> Path:
    shipped = REPO / "models" / "examples" / "mobilenetv2_like.onnx"
    if shipped.exists():
        return shipped
    from edgecost import convert
    from edgecost.zoo.mobilenetv2 import STAGES
    from edgecost.zoo.spec import ModelSpec

    blocks, cin = [], 32  # the published MobileNetV2 (width 1.0, kernels 3) at 224x224
    for t, c, n, s in STAGES:
        for repeat in range(n):
            blocks.append([cin * t, c, 3, s if repeat == 0 else 1, 0, "relu6"])
            cin = c
    params = {"width_mult": 1.0, "stem_channels": 32, "stem_act": "relu6", "blocks": blocks, "se_act": "relu",
              "se_gate": "hardsigmoid", "head_channels": 1280, "head_act": "relu6", "hidden": 0,
              "hidden_act": "none", "num_classes": 1000}
    spec = ModelSpec(family="mobilenetv2", params=params, input_shape=(1, 3, 224, 224), seed=0)
    return convert.export_spec(spec, tmp, fmt="onnx")


def _campaigns(dev, tmp: Path, items: int) -> dict:
    from edgecost.campaign import CampaignSettings, run_campaign
    from edgecost.records import Target
    from edgecost.store import Store
    from edgecost.transport.ssh import SshSession

    target = Target("bench", "onnxruntime", 1)
    settings = CampaignSettings(seed=5, strategy="random")
    out, medians = {"items": items}, {}
    for mode in ("serial", "prefetch"):
        store = Store(tmp / f"campaign-{mode}.sqlite")
        session = SshSession(dev)
        try:
            r = run_campaign(session, target, store, budget_s=3600, settings=settings, max_items=items,
                             prefetch=mode == "prefetch")
        finally:
            session.close(cleanup=True)
        out[mode] = {"measured": r.measured, "failed": r.failed, "wall_s": r.elapsed_s,
                     "device_s": r.device_seconds, "models_per_min": 60.0 * (r.measured + r.failed) / r.elapsed_s}
        medians[mode] = {m.campaign_item: m.median_ms for m in store.measurements(target)}
    common = sorted(set(medians["serial"]) & set(medians["prefetch"]))
    ratios = [medians["prefetch"][k] / medians["serial"][k] for k in common]
    out["speedup"] = out["prefetch"]["models_per_min"] / out["serial"]["models_per_min"]
    out["median_ratio"] = statistics.median(ratios) if ratios else float("nan")
    out["within_10pct"] = sum(abs(r - 1) <= 0.1 for r in ratios) / len(ratios) if ratios else float("nan")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--setups", type=int, default=10, help="session setups to time (a)")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved measure rounds (b)")
    parser.add_argument("--sftp-mb", type=int, default=64, help="size of the SFTP test file (c)")
    parser.add_argument("--loopback", action="store_true", help="run sshd on 127.0.0.1, not in a namespace")
    parser.add_argument("--campaign-items", type=int, default=30, help="models per campaign (d); 0 skips (d)")
    args = parser.parse_args(argv)

    from support.sshfleet import SshFleet

    from edgecost.devices import Device, local_device
    from edgecost.bench import BenchSettings
    from edgecost.transport.local import LocalSession
    from edgecost.transport.ssh import SshSession

    out: dict = {}
    tmp = Path(tempfile.mkdtemp(prefix="edgecost-bench-ssh-"))
    with SshFleet(netns=False if args.loopback else None) as fleet:
        host = fleet.add_host("bench")
        known = fleet.write_known_hosts(tmp / "known_hosts")
        (tmp / "ssh_config").write_text(host.ssh_config_block("bench"))
        os.environ.update(EDGECOST_SSH_CONFIG=str(tmp / "ssh_config"), EDGECOST_KNOWN_HOSTS=str(known),
                          EDGECOST_HOME=str(tmp / "home"))
        dev = Device(name="bench", host="bench", python=host.python)
        out["host"] = {"mode": fleet.mode, "address": f"{host.address}:{host.port}", "python": host.python}

        # (a) session setup, agent unchanged on the device
        first = SshSession(dev)
        first.start()
        first.close()
        setups, parts = [], []
        for _ in range(args.setups):
            t0 = time.perf_counter()
            session = SshSession(dev)
            session.start()
            setups.append(time.perf_counter() - t0)
            parts.append(dict(session.timings))
            assert session.upload.files_sent == 0, "the agent was uploaded again"
            session.close()
        out["session_setup_s"] = {
            "median": statistics.median(setups), "min": min(setups), "max": max(setups), "n": len(setups),
            "parts_median": {k: statistics.median(p[k] for p in parts) for k in parts[0]},
            "target": "< 1.5 s"}

        # (b) the same measurement over SSH and locally, interleaved
        model = _model(tmp)
        settings = BenchSettings()  # the CLI's defaults: 3 warm-up runs, >= 50 runs and >= 1 s
        from edgecost import api

        ssh_session, local_session = SshSession(dev), LocalSession(local_device())
        try:
            facts = {"ssh": ssh_session.sysinfo(), "local": local_session.sysinfo()}
            rounds = []
            for r in range(args.rounds):
                order = (("ssh", ssh_session), ("local", local_session))
                if r % 2:
                    order = order[::-1]
                row = {}
                for name, session in order:
                    m = api.measure(model, device="local", threads=1, settings=settings, session=session,
                                    facts=facts[name], save=False)
                    row[name] = m.stats.median_ms
                rounds.append(row)
        finally:
            ssh_session.close(cleanup=True)
            local_session.close()
        ssh_med = statistics.median(r["ssh"] for r in rounds)
        local_med = statistics.median(r["local"] for r in rounds)
        out["measure_agreement"] = {
            "model": str(model.relative_to(REPO) if model.is_relative_to(REPO) else model),
            "threads": 1, "rounds": rounds, "ssh_median_ms": ssh_med, "local_median_ms": local_med,
            "ratio_ssh_over_local": ssh_med / local_med, "target": "within +-5 %"}

        # (c) SFTP throughput
        blob = tmp / "blob.bin"
        speeds = []
        session = SshSession(dev)
        try:
            session.connect()
            for i in range(3):
                blob.write_bytes(os.urandom(args.sftp_mb * 1_000_000))
                before = session.upload.seconds
                remote = f"{session.workdir}/bench-{i}.bin"
                session.put_file(blob, remote)
                speeds.append(args.sftp_mb / (session.upload.seconds - before))
                session.connect().sftp(30.0).remove(remote)
        finally:
            session.close()
        out["sftp_mb_per_s"] = {"median": statistics.median(speeds), "runs": speeds, "file_mb": args.sftp_mb}

        # (d) campaign throughput, serial export vs export of the next model during the measurement
        if args.campaign_items > 0:
            out["campaign"] = _campaigns(dev, tmp, args.campaign_items)

    if args.json:
        print(json.dumps(out))
        return 0
    s, m, f = out["session_setup_s"], out["measure_agreement"], out["sftp_mb_per_s"]
    print(f"SSH test host: {out['host']['mode']} {out['host']['address']}")
    print(f"(a) session setup (agent unchanged): median {s['median'] * 1000:.0f} ms "
          f"(min {s['min'] * 1000:.0f}, max {s['max'] * 1000:.0f}, n={s['n']}; target < 1500 ms)")
    print("    parts (median ms): " + ", ".join(f"{k} {v * 1000:.0f}" for k, v in s["parts_median"].items()))
    print(f"(b) {Path(m['model']).name}, 1 thread, {len(m['rounds'])} interleaved rounds: "
          f"SSH {m['ssh_median_ms']:.3f} ms vs local {m['local_median_ms']:.3f} ms, "
          f"ratio {m['ratio_ssh_over_local']:.3f} (target 0.95-1.05)")
    print(f"(c) SFTP upload: {f['median']:.0f} MB/s (median of {len(f['runs'])} x {f['file_mb']} MB)")
    if "campaign" in out:
        c = out["campaign"]
        print(f"(d) campaign of {c['items']} models over SSH: {c['serial']['models_per_min']:.1f} models/min exporting "
              f"each in turn, {c['prefetch']['models_per_min']:.1f} with the next export beside the measurement "
              f"(x{c['speedup']:.2f}); same models' medians, prefetch over serial: median ratio "
              f"{c['median_ratio']:.3f}, {c['within_10pct'] * 100:.0f} % within 10 %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
