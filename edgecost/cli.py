"""The ``edgecost`` command line: a thin layer over ``edgecost.api``.

Exit codes: 0 success, 1 a failure while running, 2 bad input or usage, 130 interrupted.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from . import __version__
from .errors import EdgecostError, UsageError
from .predictor.labels import (
    DEFAULT_DRIFT,
    DEFAULT_LATENCY_STATISTIC,
    DRIFT_CHOICES,
    STATISTIC_CHOICES,
    describe_choice,
    describe_drift,
)

EXAMPLE_DEVICE = "ci-epyc-2vcpu"


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def _print_json(obj: Any) -> None:
    click.echo(json.dumps(obj, separators=(",", ":"), default=str))


def _parse_shapes(values: tuple[str, ...]) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    for value in values:
        name, sep, dims = value.partition("=")
        try:
            if not sep or not name:
                raise ValueError
            shape = tuple(int(d) for d in dims.lower().split("x"))
            if any(d <= 0 for d in shape):
                raise ValueError
        except ValueError:
            raise UsageError(f"bad --input-shape {value!r}", "write it as NAME=1x3x224x224 with positive sizes") from None
        shapes[name] = shape
    return shapes


def _positive(ctx, param, value):
    if value is not None and value <= 0:
        raise click.BadParameter("must be a positive whole number")
    return value


def target_options(fn):
    """--device/--runtime/--threads/--precision/--batch, defaults from the device's inventory entry."""
    options = [
        click.option("--batch", type=int, default=None, callback=_positive, help="Batch size (default: the device's)."),
        click.option("--precision", type=click.Choice(["fp32", "fp16", "int8"]), default=None,
                     help="Precision (default: the device's)."),
        click.option("--threads", type=int, default=None, callback=_positive,
                     help="Threads the runtime may use (default: the device's)."),
        click.option("--runtime", type=click.Choice(["onnxruntime", "tflite", "torch"]), default=None,
                     help="Runtime on the device (default: the device's, or the model file's kind)."),
    ]
    for opt in options:
        fn = opt(fn)
    return fn


statistic_option = click.option(
    "--statistic", type=click.Choice(STATISTIC_CHOICES), default=DEFAULT_LATENCY_STATISTIC, show_default=True,
    help="What a model's latency is: min = its fastest timed run over all visits (the device with nothing else "
         "running), p10 = the lowest of its visits' 10th-percentile runs (steadier where single runs jitter), "
         "median = the median of its visits' medians; auto = whichever of the three gives the profile that "
         "predicts whole networks best, cross-validated (a fit for each, so three times as long).")

drift_option = click.option(
    "--drift", type=click.Choice(DRIFT_CHOICES), default=DEFAULT_DRIFT, show_default=True,
    help="The device's speed drifting while it was measured: revisits = estimate it from the models measured "
         "more than once (a model revisited later ran slower or faster by the host's change of speed) and "
         "take every measurement at the average speed, where that predicts held-out revisits better; "
         "none = take every measurement as it came.")


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="edgecost")
def cli() -> None:
    """Predict and measure how long neural networks take on devices.

    \b
    edgecost predict                              # the shipped example model on a shipped profile
    edgecost measure model.onnx --device local    # a real measurement by the device agent
    edgecost profile --device local --budget-minutes 10
    edgecost predict model.onnx --device local
    """


# -- predict ----------------------------------------------------------------------


@cli.command()
@click.argument("models", nargs=-1, type=click.Path(path_type=Path))
@click.option("--device", default=None, help=f"Device name (default: {EXAMPLE_DEVICE} for the example, else local).")
@target_options
@click.option("--input-shape", "input_shape", multiple=True, metavar="NAME=1x3x224x224",
              help="Fix a dynamic input dimension (repeatable).")
@click.option("--profile", "profile_path", type=click.Path(path_type=Path), default=None,
              help="Use this profile file instead of the target's.")
@click.option("--kernels/--no-kernels", default=False, help="Show the per-kernel breakdown.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object a line, one line per model.")
def predict(models, device, runtime, threads, precision, batch, input_shape, profile_path, kernels, as_json):
    """Predict the latency of MODELS (.onnx/.tflite) on a device, from its profile.

    With no MODELS, predicts the shipped example model on the shipped example profile.
    """
    from . import api
    from .paths import shipped_models_dir

    if not models:
        models = (shipped_models_dir() / "examples" / "mobilenetv2_like.onnx",)
        device = device or EXAMPLE_DEVICE
        if not as_json:
            _console(stderr=True).print(
                f"[dim]no model given: predicting the shipped example {models[0].name} on {device}[/dim]")
    device = device or "local"
    preds = api.predict(list(models), device, runtime=runtime, threads=threads, precision=precision, batch=batch,
                        input_shapes=_parse_shapes(input_shape), profile_path=profile_path)
    if as_json:
        for p in preds:
            d = p.to_dict()
            if not kernels:
                d["kernels"] = [{k: v for k, v in kk.items() if k != "covers"} for kk in d["kernels"]]
            _print_json(d)
        return
    from rich.table import Table

    table = Table(title=f"predicted latency on {preds[0].target.key}" if preds else None)
    for col in ("model", "latency ms", f"{int(preds[0].interval_coverage * 100)}% interval ms", "kernels"):
        table.add_column(col, justify="right" if col != "model" else "left")
    for p in preds:
        table.add_row(Path(p.model).name, f"{p.latency_ms:.3f}", f"{p.low_ms:.3f} – {p.high_ms:.3f}",
                      str(len(p.kernels)))
    con = _console()
    con.print(table)
    if kernels:
        for p in preds:
            kt = Table(title=f"{Path(p.model).name}: executed kernels")
            for col in ("kernel", "op", "ms", "covers"):
                kt.add_column(col)
            for k in sorted(p.kernels, key=lambda k: -k.latency_ms):
                kt.add_row(k.name, k.op_type, f"{k.latency_ms:.4f}", ", ".join(k.covers[:4]))
            con.print(kt)
    what = {"min": "; latency = the fastest run, the device with nothing else running",
            "p10": "; latency = the 10th-percentile run of the fastest visit",
            "median": "; latency = the median run"}
    con.print(f"[dim]profile: {preds[0].profile}{what.get(preds[0].latency_statistic, '')}[/dim]" if preds else "")


# -- measure ----------------------------------------------------------------------


@cli.command()
@click.argument("models", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--device", default="local", show_default=True, help="Device name from `edgecost devices list`.")
@target_options
@click.option("--input-shape", "input_shape", multiple=True, metavar="NAME=1x3x224x224",
              help="Fix a dynamic input dimension (repeatable).")
@click.option("--warmup-runs", type=int, default=3, show_default=True)
@click.option("--num-runs", type=int, default=50, show_default=True, help="Timed runs, at least.")
@click.option("--min-secs", type=float, default=1.0, show_default=True, help="Timed seconds, at least.")
@click.option("--max-secs", type=float, default=150.0, show_default=True, help="Stop timing after this long.")
@click.option("--profile-runs", type=int, default=0, show_default=True,
              help="Also take per-kernel times: ONNX Runtime's per-node profile over this many runs; "
                   "for a .tflite (any value > 0), each distinct operator timed as a single-op model.")
@click.option("--no-store", is_flag=True, help="Do not keep the measurement in the store.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object a line, one line per model.")
def measure(models, device, runtime, threads, precision, batch, input_shape, warmup_runs, num_runs, min_secs,
            max_secs, profile_runs, no_store, as_json):
    """Measure MODELS on a device with the edgecost agent (real runs, stored by default)."""
    from . import api
    from .bench import BenchSettings
    from .store import Store
    from .transport import open_session

    settings = BenchSettings(warmup_runs=warmup_runs, num_runs=num_runs, min_secs=min_secs, max_secs=max_secs,
                             profile_runs=profile_runs)
    shapes = _parse_shapes(input_shape)
    dev, _ = api.resolve_target(device, runtime, threads, precision, batch)
    for m in models:  # every bad input is reported before anything runs
        api.model_kind(m)
    store = None if no_store else Store()
    session = open_session(dev)
    con = _console()
    try:
        facts = session.sysinfo()  # stored with the first measurement, so a failure leaves the store untouched
        for path in models:
            meas = api.measure(path, device, runtime=runtime, threads=threads, precision=precision, batch=batch,
                               input_shapes=shapes, settings=settings, store=store, session=session,
                               facts=facts, save=store is not None)
            if as_json:
                s = meas.stats.to_dict()
                out = {"model": str(path), **meas.target.to_dict(), **s,
                       "init_ms": meas.init_ms, "first_inference_ms": meas.first_inference_ms,
                       "runtime_version": meas.runtime_version, "agent_version": meas.agent_version,
                       "measured_at": meas.measured_at, "model_hash": meas.model_hash,
                       "warnings": list(meas.warnings), "provenance": meas.provenance}
                if profile_runs:
                    out["node_profile"] = list(meas.node_profile)
                _print_json(out)
            else:
                _print_measurement(con, path, meas)
    finally:
        session.close(cleanup=True)


def _print_measurement(con, path, meas) -> None:
    s = meas.stats
    con.print(f"[bold]{Path(path).name}[/bold] on {meas.target.key} "
              f"({meas.provenance.get('runtime_module', meas.target.runtime)} {meas.runtime_version})")
    if meas.init_ms is not None:
        con.print(f"  init: {meas.init_ms:.2f} ms   first inference: {meas.first_inference_ms:.3f} ms")
    con.print(f"  count={s.n} min={s.min_ms:.3f} max={s.max_ms:.3f} mean={s.mean_ms:.3f} std={s.std_ms:.3f}")
    con.print(f"  P10={s.p10_ms:.3f} [bold]P50={s.median_ms:.3f}[/bold] P90={s.p90_ms:.3f} "
              f"P95={(s.p95_ms or 0):.3f} P99={(s.p99_ms or 0):.3f} ms")
    for w in meas.warnings:
        con.print(f"  [yellow]warning:[/yellow] {w}")


# -- profile ----------------------------------------------------------------------


@cli.command()
@click.option("--device", default=None, help="Device to profile.")
@click.option("--devices", default=None, help="Several devices, comma-separated, profiled in parallel.")
@target_options
@click.option("--budget-minutes", type=float, default=10.0, show_default=True, help="Wall-clock budget.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of a new campaign's model stream.")
@click.option("--families", default=None, help="Comma-separated zoo families (default: all).")
@click.option("--strategy", type=click.Choice(["random", "adaptive"]), default="adaptive", show_default=True,
              help="adaptive measures next where the predictor is least sure.")
@click.option("--new", is_flag=True, help="Start a new campaign instead of resuming the last one.")
@click.option("--max-models", type=int, default=None, help="Stop after this many models.")
@click.option("--no-train", is_flag=True, help="Do not fit the profile afterwards.")
@click.option("--no-op-slices", is_flag=True,
              help="LiteRT: do not time each distinct operator as a single-op model (more models measured, "
                   "a less accurate profile: per-kernel times are then inferred from whole-model times).")
@click.option("--revisit-share", type=float, default=None,
              help="Share of measuring turns that time an already-measured model again, at least a minute "
                   "after its last visit; each model's latency then comes from all its visits. Averages out "
                   "slow drift (a shared or throttling machine) at the cost of fewer models. 0 turns it off. "
                   "Default: 0.5.")
@click.option("--revisit-settle-pct", type=float, default=None,
              help="A model whose two fastest visits agree within this many percent (their fastest runs) is "
                   "settled and not timed again; the revisits go to models whose visits disagree, or to new "
                   "models when all are settled. 0 revisits every model alike. Default: 3.")
@click.option("--quiet-gate/--no-quiet-gate", default=False, show_default=True,
              help="Before each model, time a small sentinel network and wait (up to a minute) while the device "
                   "runs it (its median over 0.2 s) more than 10 % slower than its quietest. Helps where "
                   "contention comes in spells longer than a measurement (a throttling board, a batch job); "
                   "costs a fraction of a second of device time a model, more while it waits.")
@click.option("--prefetch/--no-prefetch", default=None,
              help="Export the next model on the host while the device measures the current one. "
                   "Default: on for SSH devices, off for `local` (there the export would share the CPU "
                   "with the measurement).")
@click.option("--json", "as_json", is_flag=True, help="Print the campaign summary as JSON.")
def profile(device, devices, runtime, threads, precision, batch, budget_minutes, seed, families, strategy, new,
            max_models, no_train, no_op_slices, revisit_share, revisit_settle_pct, quiet_gate, prefetch, as_json):
    """Measure generated models on a device until the budget is spent, then fit its profile.

    Interrupt with Ctrl-C at any time: what was measured is stored, and running the
    same command again resumes the campaign without measuring anything twice.
    """
    from . import api
    from .campaign import CampaignSettings

    if budget_minutes <= 0:
        raise UsageError("--budget-minutes must be positive", "pass e.g. --budget-minutes 10")
    names = [d for d in (devices.split(",") if devices else [device] if device else []) if d]
    if not names:
        raise UsageError("no device given", "pass --device NAME (or --devices A,B)")
    for n in names:
        api.resolve_target(n, runtime, threads, precision, batch)
    fams = tuple(f for f in (families or "").split(",") if f)
    settings = CampaignSettings(seed=seed, families=fams, strategy=strategy, op_profile=not no_op_slices,
                                revisit_share=CampaignSettings.revisit_share if revisit_share is None
                                else revisit_share,
                                revisit_settle_pct=CampaignSettings.revisit_settle_pct if revisit_settle_pct is None
                                else revisit_settle_pct, quiet_gate=quiet_gate)
    from .ui import run_profiles

    results = run_profiles(names, dict(runtime=runtime, threads=threads, precision=precision, batch=batch),
                           budget_minutes=budget_minutes, settings=settings, new=new, max_items=max_models,
                           train=not no_train, as_json=as_json, prefetch=prefetch)
    if as_json:
        for r in results:
            _print_json(r)
    if any("error" in r for r in results):
        failed = [r for r in results if "error" in r]
        raise EdgecostError(f"{len(failed)} of {len(results)} campaigns failed: "
                            + "; ".join(f"{r['device']}: {r['error']}" for r in failed),
                            "fix the cause and run the same command again to resume")


# -- train / evaluate ---------------------------------------------------------------


@cli.command()
@click.option("--device", default="local", show_default=True)
@target_options
@statistic_option
@drift_option
@click.option("--json", "as_json", is_flag=True)
def train(device, runtime, threads, precision, batch, statistic, drift, as_json):
    """Fit the target's profile from the measurements in the store."""
    from . import api
    from .evaluate import describe_consistency
    from .predictor.profile import Profile

    path = api.train(device, runtime=runtime, threads=threads, precision=precision, batch=batch, statistic=statistic,
                     drift=drift)
    card = Profile.load(path).card
    consistency = card.get("measurement_consistency")
    if as_json:
        _print_json({"profile": str(path), "accuracy": card.get("accuracy"), "measurement_consistency": consistency,
                     "kernel_leaf_size": (card.get("training") or {}).get("kernel_leaf_size"),
                     "latency_statistic": (card.get("latency_statistic") or {}).get("name"),
                     "latency_statistic_choice": (card.get("latency_statistic") or {}).get("chosen"),
                     "host_drift": card.get("host_drift")})
        return
    con = _console()
    con.print(f"profile saved: {path}")
    acc = card.get("accuracy") or {}
    stat = card.get("latency_statistic") or {}
    if stat.get("name"):
        con.print(f"  latency = {stat.get('what', stat['name'])}" + describe_choice(stat.get("chosen") or {}))
    drift_line = describe_drift(card.get("host_drift") or {})
    if drift_line:
        con.print(f"  {drift_line}")
    if "within_10pct" in acc:
        con.print(f"  cross-validated: {acc['within_10pct'] * 100:.1f} % of {acc['n']} models within ±10 %")
    if "networks" in acc:
        net = acc["networks"]
        con.print(f"  of them whole networks: {net['within_10pct'] * 100:.1f} % of {net['n']} within ±10 %,"
                  f" {net['within_5pct'] * 100:.1f} % within ±5 %")
    leaf = (card.get("training") or {}).get("kernel_leaf_size")
    if leaf:
        errors = ", ".join(f"{size}: {err:.4f}" for size, err in leaf["oof_mean_abs_log_error"].items())
        con.print(f"  kernel trees: at least {leaf['chosen']} kernels a leaf (out-of-fold mean |log error| {errors})")
    if consistency:
        con.print("  " + describe_consistency(consistency["within_10pct"], consistency["n_networks"]))
        if consistency.get("warning"):
            con.print(f"  [yellow]warning:[/yellow] {consistency['warning']}")


@cli.command()
@click.option("--device", default="local", show_default=True)
@target_options
@click.option("--protocol", type=click.Choice(["random", "family", "all"]), default="all", show_default=True,
              help="random: 80/20 split of architectures; family: each family left out in turn.")
@click.option("--seeds", type=int, default=5, show_default=True,
              help="Repetitions (random protocol). A split tests a fifth of the networks: with a few dozen "
                   "a split, single splits differ by several points, and 20 seeds steady the mean.")
@click.option("--plot", type=click.Path(path_type=Path), default=None,
              help="Write the predicted-vs-measured scatter (log-log, ±10% band) to this PNG.")
@statistic_option
@drift_option
@click.option("--json", "as_json", is_flag=True)
def evaluate(device, runtime, threads, precision, batch, protocol, seeds, plot, statistic, drift, as_json):
    """How accurate the target's predictor is, on models held out of its training."""
    from . import api
    from .evaluate import evaluate_target, format_report

    _, target = api.resolve_target(device, runtime, threads, precision, batch)
    report = evaluate_target(target, protocol=protocol, seeds=seeds, plot_path=plot, statistic=statistic, drift=drift)
    if as_json:
        _print_json(report)
    else:
        _console().print(format_report(report))


# -- devices ------------------------------------------------------------------------


@cli.group()
def devices() -> None:
    """The device inventory (devices.toml in the config dir; `local` is built in)."""


@devices.command("list")
@click.option("--json", "as_json", is_flag=True)
def devices_list(as_json):
    """List devices and their default targets."""
    from .devices import Inventory
    from .predictor import registry

    inv = Inventory()
    rows = []
    for d in inv.all():
        rows.append({"name": d.name, "kind": d.kind, "host": d.host, "runtime": d.runtime, "threads": d.threads,
                     "precision": d.precision, "batch": d.batch, "notes": d.notes, "source": "inventory"})
    for name, card in registry.shipped_devices().items():
        if name not in inv:
            rows.append({"name": name, "kind": "profile only", "host": None, "runtime": card.runtime,
                         "threads": card.threads, "precision": card.precision, "batch": card.batch,
                         "notes": "shipped profile (predict only)", "source": "shipped"})
    if as_json:
        for r in rows:
            _print_json(r)
        return
    from rich.table import Table

    t = Table(title="devices")
    for col in ("name", "kind", "host", "runtime", "threads", "precision", "batch", "notes"):
        t.add_column(col)
    for r in rows:
        t.add_row(*[str(r[c]) if r[c] is not None else "" for c in
                    ("name", "kind", "host", "runtime", "threads", "precision", "batch", "notes")])
    _console().print(t)


@devices.command("add")
@click.argument("name")
@click.option("--host", required=True, help="USER@HOST, HOST, or a Host alias from ~/.ssh/config.")
@click.option("--port", type=int, default=None)
@click.option("--user", default=None)
@click.option("--key", default=None, help="Private key file (default: ssh agent / ~/.ssh/config).")
@click.option("--runtime", type=click.Choice(["onnxruntime", "tflite", "torch"]), default="onnxruntime",
              show_default=True)
@click.option("--threads", type=int, default=1, show_default=True, callback=_positive)
@click.option("--precision", type=click.Choice(["fp32", "fp16", "int8"]), default="fp32", show_default=True)
@click.option("--batch", type=int, default=1, show_default=True, callback=_positive)
@click.option("--python", default="python3", show_default=True, help="Python interpreter on the device.")
@click.option("--workdir", default="~/.cache/edgecost-agent", show_default=True, help="Work dir on the device.")
@click.option("--proxy-jump", default=None, metavar="[USER@]HOST[:PORT]",
              help="Reach the device through this jump host (overrides ProxyJump in ~/.ssh/config).")
@click.option("--notes", default="")
@click.option("--replace", is_flag=True, help="Overwrite an existing entry.")
def devices_add(name, host, port, user, key, runtime, threads, precision, batch, python, workdir, proxy_jump, notes,
                replace):
    """Add a device reachable over SSH.

    Then trust its host key (`edgecost devices trust NAME`, unless ssh already knows it),
    check it (`edgecost devices check NAME`) and, if Python packages are missing, set it
    up (`edgecost devices setup NAME`).
    """
    from .devices import Device, Inventory

    dev = Device(name=name, host=host, port=port, user=user, key=key, runtime=runtime, threads=threads,
                 precision=precision, batch=batch, python=python, workdir=workdir, notes=notes,
                 extra={"proxy_jump": proxy_jump} if proxy_jump else {})
    Inventory().add(dev, replace=replace)
    _console().print(f"added {name} ({host}); check it with `edgecost devices check {name}`")


@devices.command("remove")
@click.argument("name")
def devices_remove(name):
    """Remove a device from the inventory (its measurements stay in the store)."""
    from .devices import Inventory

    Inventory().remove(name)
    _console().print(f"removed {name}")


@devices.command("check")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
def devices_check(name, as_json):
    """Reach the device, start the agent, and report Python, runtimes, sensors and clocks."""
    from .devices import Inventory
    from .health import check_device, format_check

    report = check_device(Inventory().get(name))
    if as_json:
        _print_json(report)
    else:
        _console().print(format_check(report))
    if not report.get("ok"):
        raise EdgecostError(f"{name}: {report.get('error') or 'the check failed'}")


@devices.command("trust")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Trust the key without asking (after checking its fingerprint).")
def devices_trust(name, yes):
    """Fetch the device's SSH host key, show its fingerprint, and add it to known_hosts.

    Compare the fingerprint with the one the device itself prints
    (`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` on it) before you accept.
    A key that CHANGED is never replaced here: remove the old line first (`ssh-keygen -R`).
    """
    from .devices import Inventory
    from .errors import HostKeyError
    from .transport.ssh import append_known_host, check_host_key, fetch_host_key, fingerprint

    dev = Inventory().get(name)
    if dev.kind != "ssh":
        raise UsageError(f"{name} is this machine; it has no SSH host key", "trust SSH devices only")
    endpoint, key, status = fetch_host_key(dev)
    con = _console()
    offered = f"{key.get_name()} {fingerprint(key)}"
    if status == "known":
        con.print(f"{name} ({endpoint.known_hosts_name}): {offered} is already trusted")
        return
    if status != "unknown":
        check_host_key(endpoint, key, device_name=name)  # raises the CHANGED / revoked error
        raise HostKeyError(f"the host key of {name} is {status}", "see `edgecost devices check`")  # pragma: no cover
    con.print(f"{name} ({endpoint.known_hosts_name}) offers the host key {offered}")
    if not yes:
        if not sys.stdin.isatty():
            raise UsageError("not trusting a host key without confirmation",
                             f"check the fingerprint, then run `edgecost devices trust {name} --yes`")
        if not click.confirm(f"Is that the device's key? Add it to {endpoint.known_hosts}", default=False):
            raise UsageError("host key not trusted", "nothing was changed")
    path = append_known_host(endpoint, key)
    con.print(f"added {endpoint.known_hosts_name} {key.get_name()} to {path}; "
              f"check the device with `edgecost devices check {name}`")


@devices.command("setup")
@click.argument("name")
@click.option("--wheels", type=click.Path(path_type=Path), default=None,
              help="Install from the .whl files in this folder (uploaded from here) instead of the package index.")
@click.option("--no-install", is_flag=True, help="Only check; print what is missing and the commands that fix it.")
@click.option("--dry-run", is_flag=True, help="Print the commands setup would run on the device; change nothing.")
@click.option("--json", "as_json", is_flag=True)
def devices_setup(name, wheels, no_install, dry_run, as_json):
    """Make the agent's Python dependencies (NumPy, the runtime) available on the device.

    Missing packages go into a user-level venv (`python3 -m venv --system-site-packages`
    in the device's work dir), installed with pip from the package index or, with
    --wheels, from wheels uploaded from this machine; the venv's python becomes the
    device's `python` in the inventory. What cannot be installed is reported with the
    commands that would install it.
    """
    from .device_setup import setup_device
    from .devices import Inventory

    dev = Inventory().get(name)
    con = _console(stderr=as_json)
    report = setup_device(dev, wheels=wheels, install=not no_install, dry_run=dry_run,
                          on_step=None if as_json else (lambda text: con.print(f"[dim]{text}[/dim]")))
    if as_json:
        _print_json(report.to_dict())
    else:
        found = report.found
        if report.ok and not report.installed:
            con.print(f"{name} is ready: Python {report.python_version}, numpy {found.get('numpy')}, "
                      f"runtime {dev.runtime} present ({report.python})")
        elif report.ok:
            con.print(f"{name} is ready: installed {', '.join(report.installed)} into {report.venv}; "
                      f"its python {report.python} is now the device's python in the inventory")
        elif dry_run:
            con.print(f"{name} lacks {', '.join(report.missing)}; setup would run there:")
            for cmd in report.planned:
                con.print(f"  {cmd}", markup=False)
        if not report.ok and not dry_run:
            for problem in report.problems:
                con.print(f"[red]problem:[/red] {problem}")
            con.print(f"to install {', '.join(report.missing)} without a package index on the device, run:")
            for cmd in report.manual:
                con.print(f"  {cmd}", markup=False)
    if not report.ok and not dry_run:
        why = "; ".join(report.problems) or ("not installed (--no-install)" if no_install else "not installed")
        raise EdgecostError(f"{name} still lacks {', '.join(report.missing)}: {why}",
                            "run the commands printed above")


# -- store --------------------------------------------------------------------------


@cli.group()
def store() -> None:
    """The measurement store (SQLite in the data dir; EDGECOST_HOME overrides)."""


@store.command("export")
@click.option("--format", "fmt", type=click.Choice(["csv", "parquet"]), default="csv", show_default=True)
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True)
@click.option("--device", default=None, help="Only this device's default target (with the target flags).")
@target_options
def store_export(fmt, output, device, runtime, threads, precision, batch):
    """Write all measurements as a flat table for pandas."""
    from . import api
    from .store import Store, export

    target = api.resolve_target(device, runtime, threads, precision, batch)[1] if device else None
    n = export(Store(), output, fmt, target)
    _console(stderr=True).print(f"wrote {n} rows to {output}")


@store.command("info")
@click.option("--json", "as_json", is_flag=True)
def store_info(as_json):
    """Where the store is and what it holds."""
    from .store import Store

    st = Store()
    info = {"path": str(st.path), "models": len(st.models()),
            "targets": {t.key: st.count_measurements(t) for t in st.targets()},
            "campaigns": st.campaigns()}
    if as_json:
        _print_json(info)
    else:
        con = _console()
        con.print(f"store: {info['path']}  models: {info['models']}")
        for k, v in info["targets"].items():
            con.print(f"  {k}: {v} measurements")
        for c in info["campaigns"]:
            con.print(f"  campaign {c['id']} {c['target_key']}: {c['status']}, {c['measured_ok']} ok,"
                      f" {c['measured_failed']} failed, {c['device_seconds']:.0f} device-s")


# -- entry point ----------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; every EdgecostError becomes one line on stderr and an exit code."""
    try:
        cli.main(args=argv, prog_name="edgecost", standalone_mode=False)
        return 0
    except EdgecostError as exc:
        click.echo(f"error: {exc}", err=True)
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("interrupted", err=True)
        return 130
    except KeyboardInterrupt:
        click.echo("interrupted; what was measured is stored — run the same command to resume", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except BrokenPipeError:
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
